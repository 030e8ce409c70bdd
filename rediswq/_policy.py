"""Refusing a Redis that may evict queue keys: an evicting Redis drops acknowledged items silently.

Queue keys have no TTL, so `noeviction` and the `volatile-*` policies (which evict only keys with a
TTL) never touch them; `allkeys-*` policies drop pending lists, leases and counters under memory
pressure with no error to anyone. The policy is read once per client (a weak map, so a dropped client
is forgotten): `INFO memory`, else `CONFIG GET` (whichever the ACL allows); if neither, a warning is
logged once and the queue goes on.
"""

from __future__ import annotations

import logging
import threading
import weakref

import redis
import redis.exceptions

from rediswq.errors import EvictingRedis

log = logging.getLogger("rediswq")

#: Policies that never evict a key without a TTL.
SAFE_POLICIES = frozenset({"noeviction", "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"})

# client -> its policy ("" when it could not be read); checked once per client, by any queue on it.
_policies: weakref.WeakKeyDictionary[redis.Redis, str] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_policy(client: redis.Redis) -> str:
    """The server's maxmemory-policy, or "" when neither INFO nor CONFIG GET is allowed."""
    try:
        return _text(client.info("memory").get("maxmemory_policy", ""))
    except redis.exceptions.ResponseError:
        pass  # NOPERM (an ACL without INFO), or a proxy that hides it: try CONFIG GET
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.exceptions.ResponseError:
        return ""
    return next((_text(v) for k, v in reply.items() if _text(k) == "maxmemory-policy"), "")


def check_eviction(client: redis.Redis, url: str, queue: str | None) -> None:
    """Raise `EvictingRedis` if the server may evict queue keys (read once per client).

    Runs inside the queue's first call (redis-py's errors pass through to its retry and wrapping).
    """
    with _lock:
        policy = _policies.get(client)
    if policy is None:
        policy = read_policy(client)
        with _lock:
            first = client not in _policies
            _policies[client] = policy
        if not policy and first:
            log.warning(
                "cannot read maxmemory-policy of Redis at %s (neither INFO nor CONFIG GET allowed, as "
                "for the worker and producer roles): run it with noeviction, or an evicting Redis may "
                "drop queue keys; Queue.install(), run as the admin role, checks it",
                url,
            )
    if policy and policy not in SAFE_POLICIES:
        raise EvictingRedis(
            f"Redis at {url} runs maxmemory-policy {policy}, which may evict "
            f"{'queue keys' if queue is None else f'the keys of queue {queue!r}'} and lose items: set it "
            "to noeviction (or allow it explicitly: "
            "allow_eviction=True)"
        )
