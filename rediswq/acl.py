"""The Redis ACL rules each rediswq role needs on one queue: its keys, and the commands its calls run.

Redis checks commands run inside a script as well, so a role needs every command its scripts call,
plus EVALSHA and SCRIPT LOAD (to reload scripts after a restart); EVAL is never used. Redis grants
commands, not scripts: a role that may run HSET for its leases may also close the queue with it. What
each role can and cannot do is pinned by tests/test_acl.py against a real Redis.
"""

from __future__ import annotations

from typing import Literal

from rediswq._keys import Keys

Role = Literal["worker", "producer", "admin"]
ROLES: tuple[Role, ...] = ("worker", "producer", "admin")

__all__ = ["ROLES", "Role", "acl_rules"]

# EVALSHA and SCRIPT LOAD run the scripts; INFO is how a queue's first call checks that Redis does not
# evict keys (maxmemory-policy): it shows server figures, no keys or values.
_SCRIPTS = ("evalsha", "script|load", "info")
# lease.lua (complete_and_lease too), fail, extend, release and stats.lua: what `rediswq work` runs.
# Their checks read before they write (rediswq/lua/README.md): EXISTS, HMGET, LLEN, HLEN, SCARD.
_WORKER = (
    "time", "type", "exists", "lrange", "ltrim", "lpush", "llen", "hget", "hmget", "hset", "hdel",
    "hincrby", "hgetall", "hlen", "scard", "srem", "zadd", "zrem", "zscore", "zmscore", "zcard", "zrange",
    "zrangebyscore",
)  # fmt: skip
# put.lua and its id counter, stats.lua, `peek` (pending and inbox), `holders`, `dead list`, close.
_PRODUCER = (
    "exists", "rpush", "sadd", "scard", "hget", "hmget", "hdel", "hincrby", "hset", "hgetall", "hlen",
    "hscan", "llen", "lrange", "type", "zcard", "zrange", "zscore",
)  # fmt: skip
# Everything, plus DEL: purge.lua, and reopen (which forgets the enqueue checkpoints); and SCAN, for
# `rediswq ls` (rediswq.survey) and "did you mean": it lists every key's name, other queues' too (the
# numbers of queues beyond the user's keys stay refused), so it is the admin's alone.
_ADMIN = (*_WORKER, *_PRODUCER, "del", "scan")

_COMMANDS: dict[Role, tuple[str, ...]] = {"worker": _WORKER, "producer": _PRODUCER, "admin": _ADMIN}


def acl_rules(queue: str, role: Role) -> list[str]:
    """The ACL SETUSER rules (without a password) that give `role` what it needs on `queue`, nothing more."""
    keys = Keys.for_queue(queue)
    prefix = _glob_escaped(keys.meta.rsplit(":", 1)[0])
    commands = sorted(set(_SCRIPTS) | set(_COMMANDS[role]))
    key_rules = [f"~{prefix}:*", f"~{_glob_escaped(keys.inbox)}"]
    return ["reset", "on", "resetchannels", *key_rules, "-@all", *(f"+{c}" for c in commands)]


def _glob_escaped(text: str) -> str:
    """`text` as a Redis key pattern that matches itself only (a queue name may hold * ? [ ])."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
