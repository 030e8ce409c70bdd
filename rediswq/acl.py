"""The Redis ACL rules each rediswq role needs on one queue: its keys, and the commands its calls run.

Redis checks every command a script or function runs against the caller's ACL, so a role needs the
commands its operations run: a role cannot be given a write only through a function. What the rules
can do, and do on Redis 7 (functions, key permissions and selectors):

- no Lua of the role's own: FCALL of the role's named functions only (`+fcall|rediswq_lease`: the
  first-argument form, which Redis 7.0 accepts), no SCRIPT LOAD, EVAL or EVALSHA; a worker's FCALL of
  purge or reopen, or a producer's of lease, is refused before any Lua runs;
- read commands only at the root (FCALL needs write access to every key it is passed: `~`), and each
  write command only on the keys the role's functions write it to (one selector per key):
  a worker may not write the inbox but to trim it, nor the meta hash but to count (HINCRBY): it
  cannot reopen a closed queue, delete or overwrite a meta field (closing is a count too: `closed`
  stays truthy), or push into the inbox;
- no INFO, CONFIG or other server commands: the maxmemory-policy check is `rediswq install`'s (an
  admin's); WAIT for `--min-replicas`; the cluster introspection redis-py's cluster client needs
  (CLUSTER SLOTS/SHARDS/NODES/MYID/INFO, COMMAND, READONLY, ASKING).

What remains possible with a role's own writes (Redis cannot tell a function's call from a raw one): a
worker can push an envelope into pending, even on a closed queue, trim pending or move leases (release,
reclaim and lease need LPUSH, LTRIM and ZADD); a producer can push items without the closed check (put
needs RPUSH). lease.lua cannot tell such an item from one put back or put before the close (whatever
mark put added, the producer could forge). The admin role is trusted: it
loads the library (FUNCTION LOAD runs any Lua) and has every command on the queue's keys.

On Redis 6.2 (no functions, no selectors) the rules are one flat list: EVALSHA and SCRIPT LOAD (so any
Lua), and each command on every key of the queue. What each role can and cannot do is pinned by
tests/test_acl.py and tests/test_acl_matrix.py against real servers; docs/security.md
shows these rules (tests/acldoc.py).
"""

from __future__ import annotations

from typing import Literal

from rediswq import _library
from rediswq._keys import Keys, check_shards

Role = Literal["worker", "producer", "admin"]
ROLES: tuple[Role, ...] = ("worker", "producer", "admin")
RedisVersion = Literal["7", "6.2"]
REDIS_VERSIONS: tuple[RedisVersion, ...] = ("7", "6.2")

__all__ = ["REDIS_VERSIONS", "ROLES", "RedisVersion", "Role", "acl_rules"]

# What redis-py's cluster client runs to learn the slots and route commands (harmless elsewhere).
_CLUSTER = ("cluster|slots", "cluster|nodes", "cluster|myid", "cluster|info", "command", "readonly", "asking")
_CLUSTER_7 = (*_CLUSTER, "cluster|shards")
# Reads the operations and the readers (peek, holders, dead list, checkpoint) run; TIME is Redis's clock.
_READS = (
    "time", "type", "exists", "lrange", "llen", "hget", "hmget", "hgetall", "hlen", "hscan", "scard",
    "zcard", "zrange", "zrangebyscore", "zscore", "zmscore",
)  # fmt: skip
# Each role's writes, per key (the names of rediswq/_keys.py's fields): what its functions write there.
_WRITES: dict[Role, dict[str, tuple[str, ...]]] = {
    # lease (complete and reclaim too), fail, extend, release.
    "worker": {
        "inbox": ("ltrim",),
        "pending": ("lpush", "ltrim"),
        "leased": ("zadd", "zrem"),
        "payloads": ("hset", "hdel"),
        "delayed": ("zadd", "zrem"),
        "dead": ("hset",),
        "ids": ("srem",),
        "meta": ("hincrby",),
    },
    # put (checkpoints too), requeue_dead, purge_dead, close (a count: HINCRBY meta closed 1), and
    # making a sharded queue (HSETNX meta shards S: a field written once, never overwritten).
    "producer": {
        "pending": ("rpush",),
        "ids": ("sadd",),
        "dead": ("hdel",),
        "meta": ("hincrby", "hsetnx"),
        "checkpoints": ("hset",),
    },
}
_FUNCTIONS: dict[Role, tuple[str, ...]] = {
    "worker": ("lease", _library.SETTLE, "fail", "extend", "release"),
    "producer": ("put", "requeue_dead", "purge_dead"),
    "admin": (*_library.OPERATIONS, _library.SETTLE),
}


def acl_rules(queue: str, role: Role, redis_version: RedisVersion = "7", shards: int = 1) -> list[str]:
    """The ACL SETUSER rules (without a password) that give `role` what it needs on `queue`, nothing more.

    `shards`: the queue's shard count (rediswq/_keys.py); each shard's keys are named exactly, so the
    rules of queue NAME give nothing on a queue named like a shard of it."""
    every = [Keys.for_shard(queue, i, check_shards(shards)) for i in range(shards)]
    keys = every[0]
    prefixes = [f"~{_glob_escaped(k.meta.rsplit(':', 1)[0])}:*" for k in every]
    inbox = _glob_escaped(keys.inbox)
    if redis_version == "6.2":
        return _flat_rules(prefixes, inbox, role)
    head = ["reset", "on", "resetchannels"]
    cluster = [f"+{c}" for c in _CLUSTER_7]
    calls = [f"+fcall|{_library.function_name(f)}" for f in _FUNCTIONS[role]]
    calls += [f"+fcall_ro|{_library.function_name(f)}" for f in ("version", "stats")]
    reads = [f"+{c}" for c in _READS]
    if role == "admin":
        return [*head, *prefixes, f"~{inbox}", "-@all", *reads, *calls, *_admin_extra(), "+wait", *cluster]
    selectors = [_selector(every, key, commands) for key, commands in _WRITES[role].items()]
    return [*head, *prefixes, f"~{inbox}", "-@all", *reads, *calls, "+wait", *cluster, *selectors]


def _selector(every: list[Keys], key: str, commands: tuple[str, ...]) -> str:
    """One selector: the `commands` on the key `key` (a field of Keys) of every shard."""
    patterns = ["~" + _glob_escaped(getattr(keys, key)) for keys in every]
    return "(" + " ".join(patterns + ["+" + c for c in commands]) + ")"


def _admin_extra() -> list[str]:
    """The admin's rules beyond reads and calls. Trusted: it loads the library (`rediswq install`:
    FUNCTION LOAD, and INFO or CONFIG GET for the maxmemory-policy check), has every write of the
    others, DEL (purge) and HDEL (reopen); and SCAN, for `rediswq ls` (rediswq.survey) and "did you
    mean": it lists every key's name, other queues' too (their numbers stay refused), so it is the
    admin's alone."""
    loading = ["+function|load", "+function|list", "+info", "+config|get", "+scan"]
    return [*loading, *(f"+{c}" for c in sorted(_every_write()))]


def _every_write() -> set[str]:
    """Every write command of every role's functions, and the admin's own: DEL (purge), HDEL (reopen)."""
    return {c for w in _WRITES.values() for commands in w.values() for c in commands} | {"del", "hdel"}


def _flat_rules(prefixes: list[str], inbox: str, role: Role) -> list[str]:
    """Redis 6.2: scripts (EVALSHA, SCRIPT LOAD), and every command the role's scripts run, on every key."""
    writes = {c for key, commands in _WRITES.get(role, {}).items() for c in commands}
    if role == "admin":
        writes = _every_write() | {"scan"}  # scan: for `rediswq ls`, as on Redis 7
    if role == "producer":
        writes |= {"hset"}  # close on a 6.2-era client; harmless here: the rules are flat anyway
    commands = sorted({"evalsha", "script|load", "wait", *_READS, *_CLUSTER, *writes})
    return ["reset", "on", "resetchannels", *prefixes, f"~{inbox}", "-@all", *(f"+{c}" for c in commands)]


def _glob_escaped(text: str) -> str:
    """`text` as a Redis key pattern that matches itself only (a queue name may hold * ? [ ])."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
