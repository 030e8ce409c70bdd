"""Many queues' numbers at once: what `rediswq ls` and a dashboard show.

A survey costs each master a bounded number of round trips, however many queues it holds: a SCAN walk
for the names (at most `max_scan_calls` calls per master), then ONE pipeline per master that sends
stats.lua once per queue (EVALSHA; the same script as `Queue.stats`, so the numbers are the same),
with a SCRIPT LOAD in front (a Redis restart empties the script cache; loading it in the same
pipeline costs no round trip and needs no SCRIPT EXISTS) and a TIME (the master's clock, for rates).

A script cannot read several queues in one call: on a cluster every key of one call must be in one
slot, and each queue has a slot of its own (its hash tag). So it is one call per queue, pipelined.
Each queue's numbers agree with each other (one script call), not with another queue's: the
pipeline is not a transaction. A sharded queue (rediswq/_shards.py) is listed once, by its name: the
walk leaves its shards' tags out (`scan_names`), and its numbers are its shards' sums, read with one
call per shard after the pipeline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import redis

from rediswq import _library, _topology
from rediswq._connection import Connection
from rediswq._keys import Keys
from rediswq._scripts import _NAMED_KEY, functions_on, stats_reply
from rediswq._topology import Client, Node
from rediswq.errors import InvalidArgument, PermissionDenied, RedisWQError
from rediswq.queue import Queue, Stats, stats_of

_STATS = _library.script("stats")
_STATS_FUNCTION = _library.function_name("stats")
_STATS_SHA = hashlib.sha1(_STATS.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class QueueSummary:
    """One queue's numbers in a survey; a rate is the difference of `stats.completed` (or of
    completed + dead_lettered, what `rediswq ls` calls settled) between two surveys, over the
    difference of `read_at_ms`."""

    name: str
    stats: Stats | None  # None when the queue could not be read: see `error`
    read_at_ms: int  # Redis's clock (TIME) on the queue's master, in the pipeline that read it
    error: str = ""  # e.g. a key of the queue holds another type (another application's key)


@dataclass(frozen=True)
class Survey:
    """What `survey` found: the queues sorted by name, and whether that is all of them."""

    queues: list[QueueSummary]
    # Every master's names walk reached its end within the bounds: no queue matching was left out.
    complete: bool
    # Queues found whose keys this ACL user may not read (NOPERM): left out of `queues`.
    refused: int = 0


def survey(
    client: Client,
    *,
    pattern: str = "*",
    limit: int = 10_000,
    max_scan_calls: int = 100,
    count: int = 1000,
) -> Survey:
    """The numbers of every queue on `client`'s Redis (every master of a cluster) whose name matches
    the Redis glob `pattern`.

    Bounded: on each master at most `max_scan_calls` SCAN calls (each looks at about `count` keys)
    and then one pipeline; at most `limit` queues in all. When a bound cut the walk short,
    `complete` is False. Raises `PermissionDenied` for a user who may not SCAN (or run TIME, SCRIPT
    LOAD, EVALSHA), `ConnectionFailed` when a master does not answer; a queue that cannot be read
    (a key of another type) is listed with its `error`.
    """
    if limit < 1 or max_scan_calls < 1 or count < 1:
        raise InvalidArgument(
            f"limit, max_scan_calls and count must be at least 1, not {limit}, {max_scan_calls}, {count}"
        )
    topology = _topology.of(client)
    conn = Connection(topology.describe(), client=client)
    queues: list[QueueSummary] = []
    complete = True
    refused = 0
    nodes = Queue.scan_nodes(client)
    for node in nodes:
        if len(queues) >= limit:
            return Survey(sorted(queues, key=_by_name), False, refused)
        names, walked = _walk(client, node, pattern, max_scan_calls, count, limit - len(queues))
        complete = complete and walked
        if names:
            server = topology.master_client(node)
            read, moved, denied = conn.call(partial(_read, server, names), idempotent=True)
            moved_read, moved_denied = _read_moved(client, moved)
            queues += read + moved_read
            refused += denied + moved_denied
    return Survey(sorted(queues, key=_by_name), complete, refused)


def _by_name(summary: QueueSummary) -> str:
    return summary.name


def _walk(
    client: Client, node: Node, pattern: str, max_calls: int, count: int, limit: int
) -> tuple[list[str], bool]:
    """Up to `limit` names on one master, and whether its walk reached its end."""
    found: set[str] = set()
    cursor = 0
    for _ in range(max_calls):
        cursor, names = Queue.scan_names(client, cursor, count, node=node, pattern=pattern)
        found.update(names)
        if len(found) >= limit:
            return sorted(found)[:limit], cursor == 0 and len(found) == limit
        if cursor == 0:
            return sorted(found), True
    return sorted(found), False


# A MOVED or ASK: the queue's slot left this master between the walk and the read; read one by one.
_MOVED = (redis.exceptions.MovedError, redis.exceptions.AskError)


def _read(server: redis.Redis, names: Sequence[str]) -> tuple[list[QueueSummary], list[QueueSummary], int]:
    """One pipeline to one server: the queues read, those whose slot moved away meanwhile (MOVED or
    ASK: no stats yet), and how many the user may not read."""
    functions = functions_on(server)  # Redis 7: FCALL_RO of the library; 6.2: the script
    with server.pipeline(transaction=False) as pipe:
        if not functions:
            pipe.script_load(_STATS)
        pipe.time()
        for name in names:
            _read_stats(pipe, Keys.for_queue(name).all(), functions=functions)
        replies = pipe.execute(raise_on_error=False)
    head, replies = replies[: len(replies) - len(names)], replies[len(replies) - len(names) :]
    for reply in head:
        if isinstance(reply, Exception):
            raise reply
    now = head[-1]
    read_at_ms = int(now[0]) * 1000 + int(now[1]) // 1000
    read: list[QueueSummary] = []
    moved: list[QueueSummary] = []
    denied = 0
    for name, reply in zip(names, replies, strict=True):
        if isinstance(reply, _MOVED):
            moved.append(QueueSummary(name, None, read_at_ms, "moved"))
        elif isinstance(reply, redis.exceptions.NoPermissionError) or _is_noperm(reply):
            denied += 1
        elif isinstance(reply, Exception):
            read.append(QueueSummary(name, None, read_at_ms, _error_text(reply)))
        else:
            summary = _summary(name, reply, read_at_ms)
            _sharded_apart(summary, read, moved)
    return read, moved, denied


def _sharded_apart(summary: QueueSummary, read: list[QueueSummary], later: list[QueueSummary]) -> None:
    """A sharded queue's numbers are its shards' sums, read later: the pipeline read shard 0 alone."""
    (later if summary.stats is not None and summary.stats.shards > 1 else read).append(summary)


def _read_stats(pipe: Any, keys: list[str], *, functions: bool) -> None:
    """One queue's stats call, queued on `pipe`."""
    if functions:
        pipe.execute_command("FCALL_RO", _STATS_FUNCTION, len(keys), *keys, _library.library().version)
    else:
        pipe.evalsha(_STATS_SHA, len(keys), *keys)


def _summary(name: str, reply: Any, read_at_ms: int) -> QueueSummary:
    try:
        return QueueSummary(name, stats_of(stats_reply(reply, Keys.for_queue(name).meta)), read_at_ms)
    except redis.exceptions.ResponseError as e:
        return QueueSummary(name, None, read_at_ms, str(e))


def _is_noperm(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith("NOPERM")


def _error_text(e: Exception) -> str:
    """A script's error about one of its keys as one line, without Redis's wrapping."""
    found = _NAMED_KEY.search(str(e))
    return found.group(1) if found else str(e).splitlines()[0]


def _read_moved(client: Client, moved: list[QueueSummary]) -> tuple[list[QueueSummary], int]:
    """Read the queues whose slot moved during the survey one by one, through the cluster client
    (which follows MOVED): a rare case, worth a call each; and the sharded queues, a call per shard.
    Returns them and how many were refused."""
    out: list[QueueSummary] = []
    refused = 0
    for entry in moved:
        try:
            stats = Queue(client, entry.name, allow_eviction=True, retries=0).stats()
        except PermissionDenied:
            refused += 1
            continue
        except RedisWQError as e:
            out.append(replace(entry, error=str(e)))
            continue
        out.append(replace(entry, stats=stats, error=""))
    return out, refused
