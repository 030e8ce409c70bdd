"""Looking inside queues: stats, pending items, holders, dead letters, and the names of queues.

Apart from `Queue` because it is the operator's side (the admin commands, the exporter, "did you
mean ...?"), not the worker's: it reads what the scripts wrote and decodes it, showing a malformed
entry with the reason rather than failing on it. Requeueing and purging dead letters sit here too,
beside the reading of them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any, ClassVar

from rediswq import _topology
from rediswq._client import QueueClient
from rediswq._connection import Connection
from rediswq._keys import (
    LEASED_SENTINEL,
    SHARDS_FIELD,
    Keys,
    meta_pattern,
    queue_of_meta,
    shard_of,
    shard_tag,
)
from rediswq._scripts import StatsReply, wrong_type
from rediswq._topology import Client, Node
from rediswq._wire import id_text, malformed_error, malformed_id, read_dead_record, read_envelope, read_handle
from rediswq.errors import InvalidArgument, QueueNotFound, RedisWQError, ServerError, did_you_mean

# How close (difflib's ratio) another queue's name must be to be suggested: "typoq2" finds "typoq"
# (0.91), "jbos" finds "jobs" (0.75); two random names of the same length rarely come near.
SIMILAR_CUTOFF = 0.75


@dataclass(frozen=True)
class Item:
    """A pending item, as `peek` shows it; `error` says why an entry that does not decode is malformed.

    A malformed entry shows its raw bytes as the payload, under the id it gets once quarantined.
    """

    id: str
    attempts: int
    payload: bytes
    error: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """An item that spent its attempts (or failed without retry), with its last error."""

    id: str
    attempts: int
    payload: bytes
    error: str
    dead_at_ms: int


@dataclass(frozen=True)
class LeaseInfo:
    """A live lease as `holders` shows it: who holds which item until when."""

    id: str
    attempt: int
    worker: str
    leased_at_ms: int
    deadline_ms: int
    error: str = ""  # why a member of the leased zset that is no lease handle is malformed


@dataclass(frozen=True)
class Stats:
    """One consistent snapshot of a queue (read in a single script call)."""

    pending: int
    leased: int
    delayed: int
    dead: int
    closed: bool
    enqueued: int
    completed: int
    failed: int
    retried: int
    expired: int
    dead_lettered: int
    released: int
    dropped: int
    quarantined: int = 0  # malformed entries moved to the dead letters (ids malformed:<sha1>)
    exists: bool = True  # the queue has counters, or items in its inbox: something was ever added
    shards: int = 1  # how many shards the queue has (rediswq/_keys.py); the counts are their sums
    # Time to the earliest delayed item's retry on Redis's clock (None: nothing delayed). A moment's
    # reading, not a count: left out of comparisons, so two snapshots of the same counts are equal.
    next_retry_in_ms: int | None = field(default=None, compare=False)

    # The lifetime counters among the fields (the rest are counts of now), in the order views list them.
    COUNTERS: ClassVar[tuple[str, ...]] = (
        "enqueued",
        "completed",
        "failed",
        "retried",
        "expired",
        "dead_lettered",
        "released",
        "dropped",
        "quarantined",
    )

    @property
    def drained(self) -> bool:
        """The queue exists and nothing is pending, delayed or leased by anyone."""
        return self.exists and self.pending == 0 and self.leased == 0 and self.delayed == 0

    @property
    def outstanding(self) -> int:
        """Items not yet settled: pending, delayed or leased."""
        return self.pending + self.leased + self.delayed


def stats_of(reply: StatsReply) -> Stats:
    """`Stats` from what `Scripts.stats` (or `stats_reply`) returns."""
    pending, leased, delayed, dead, meta, inbox, next_retry_ms = reply
    return Stats(
        pending=pending,
        leased=leased,
        delayed=delayed,
        dead=dead,
        closed="closed" in meta,
        exists=bool(meta) or inbox > 0,
        shards=meta.get("shards", 1),
        next_retry_in_ms=None if next_retry_ms < 0 else next_retry_ms,
        **{name: meta.get(name, 0) for name in Stats.COUNTERS},
    )


def scan_nodes(client: Client) -> list[Node]:
    """The nodes a walk of `scan_names` must visit: each master of a cluster, or [None] for one
    server (a single Redis or a Sentinel-managed master)."""
    return _topology.of(client).masters()


def scan_names(
    client: Client,
    cursor: int = 0,
    count: int = 1000,
    *,
    node: Node = None,
    pattern: str = "*",
) -> tuple[int, list[str]]:
    """One SCAN step for the names of the queues on `client`'s Redis: (next cursor, names found).

    Start with cursor 0; the walk is complete when the next cursor is 0 again. `count` bounds the
    keys Redis looks at in one call (a hint, as SCAN's COUNT is); a name may come up twice. Each
    master of a cluster holds keys of its own: walk each, naming it as `node` (one of
    `scan_nodes(client)`); a node that does not answer makes the client re-read the cluster.
    `pattern` (a Redis glob) keeps the names it matches.
    """
    if "{" in pattern or "}" in pattern:
        raise InvalidArgument(f"bad queue name pattern {pattern!r}: queue names hold no braces")
    match = meta_pattern(pattern)
    topology = _topology.of(client)
    conn = Connection(topology.describe(), client=client)
    next_cursor, keys = conn.call(lambda: topology.scan(node, cursor, match, count), idempotent=True)
    found = [name for key in keys if (name := queue_of_meta(key)) is not None]
    return next_cursor, conn.call(lambda: _without_shards(client, found), idempotent=True)


def _without_shards(client: Client, names: list[str]) -> list[str]:
    """`names` but the shards of sharded queues (rediswq/_keys.py): a name of the form NAME~sI.K is a
    shard when the queue NAME records a count of shards that makes it one, and only then."""
    candidates = [(name, found) for name in names if (found := shard_of(name)) is not None]
    if not candidates:
        return names
    with client.pipeline(transaction=False) as pipe:
        for _name, (base, _shard) in candidates:
            pipe.hget(Keys.for_queue(base).meta, SHARDS_FIELD)
        counts = pipe.execute(raise_on_error=False)
    shards = {
        name for (name, found), count in zip(candidates, counts, strict=True) if _is_shard(name, found, count)
    }
    return [name for name in names if name not in shards]


def _is_shard(name: str, found: tuple[str, int], count: Any) -> bool:
    """Whether `name` is shard found[1] of queue found[0], whose meta's shard count is `count`."""
    base, shard = found
    recorded = int(count) if isinstance(count, bytes) and count.isdigit() else 0
    return shard < recorded and shard_tag(base, shard, recorded) == name


def names(
    client: Client, *, pattern: str = "*", limit: int = 1000, max_calls: int = 100, count: int = 1000
) -> list[str]:
    """The names of queues on `client`'s Redis (every master of a cluster), sorted: a bounded walk.

    It stops once it has `limit` names or has made `max_calls` SCAN calls in all (each looks at
    about `count` keys), so on a large keyspace the list may be partial; it never walks for long.
    Raises what a call raises: `PermissionDenied` for a user who may not SCAN.
    """
    found: set[str] = set()
    calls = 0
    for node in scan_nodes(client):
        cursor = 0
        while calls < max_calls and len(found) < limit:
            cursor, step = scan_names(client, cursor, count, node=node, pattern=pattern)
            calls += 1
            found.update(step)
            if cursor == 0:
                break
    return sorted(found)[:limit]


class Inspector:
    """Reads one queue (and writes only its dead letters) through its `QueueClient`."""

    def __init__(self, redis: QueueClient, keys: Keys, name: str) -> None:
        self._redis = redis
        self._keys = keys
        self._name = name

    def stats(self) -> Stats:
        """See `Queue.stats`."""
        return stats_of(self._redis.call(lambda: self._redis.scripts.stats(), idempotent=True))

    def not_found(self, advice: str) -> QueueNotFound:
        """See `Queue.not_found`."""
        similar = self.similar_names(3)
        text = f"no such queue {self._name!r} (nothing was ever added to it)"
        if similar:
            text += f"; {did_you_mean(similar)}" + (f" {advice[:1].upper()}{advice[1:]}" if advice else "")
        elif advice:
            text += f"; {advice}"
        return QueueNotFound(text, vanished=False, similar=similar)

    def similar_names(self, limit: int) -> list[str]:
        """See `Queue.similar_names`."""
        try:
            found = names(self._redis.connected())
        except RedisWQError:
            return []
        found = [name for name in found if name != self._name]
        return difflib.get_close_matches(self._name, found, n=limit, cutoff=SIMILAR_CUTOFF)

    def peek(self, count: int) -> list[Item]:
        """See `Queue.peek`."""
        if count < 1:
            return []
        pending = self._keys.pending
        raw = self._read(pending, "list", lambda: self._redis.client.lrange(pending, 0, count - 1))
        items = [self._item(envelope) for envelope in raw]
        if len(items) < count:
            inbox = self._redis.call(partial(self._inbox_head, count - len(items)), idempotent=True)
            items.extend(Item("", 0, payload) for payload in inbox)
        return items

    def _item(self, envelope: bytes) -> Item:
        """A pending envelope as an `Item`; a malformed one as its raw bytes and why."""
        try:
            item_id, attempts, payload = read_envelope(envelope)
        except ValueError as e:
            return Item(malformed_id(envelope), 0, envelope, malformed_error(self._keys.pending, str(e)))
        return Item(id_text(item_id), attempts, payload)

    def _read(self, key: str, kind: str, fn: Callable[[], Any]) -> Any:
        """Run a read of `key`; a key of another type is a `ServerError` that names it."""
        try:
            return self._redis.call(fn, idempotent=True)
        except ServerError as e:
            wrong = wrong_type(self._redis.client, key, kind) if "WRONGTYPE" in str(e) else None
            if wrong is None:
                raise
            raise ServerError(wrong) from e

    def _inbox_head(self, count: int) -> list[bytes]:
        """The first raw items of the inbox (none if that key is another application's non-list)."""
        client = self._redis.client
        if client.type(self._keys.inbox) not in (b"list", "list"):
            return []
        return list(client.lrange(self._keys.inbox, 0, count - 1))  # type: ignore[arg-type]

    def holders(self, count: int) -> list[LeaseInfo]:
        """See `Queue.holders`."""
        if count < 1:
            return []
        leased = self._keys.leased
        raw: list[tuple[bytes, float]] = self._read(
            leased, "zset", lambda: self._redis.client.zrange(leased, 0, count - 1, withscores=True)
        )
        return [self._lease_info(handle, deadline) for handle, deadline in raw if handle != LEASED_SENTINEL]

    def _lease_info(self, handle: bytes, deadline: float) -> LeaseInfo:
        """A leased zset member as `LeaseInfo`; one that is no handle as its quarantine id and why."""
        due = int(deadline) if math.isfinite(deadline) else 0
        try:
            envelope, _token, worker, leased_at_ms = read_handle(handle)
        except ValueError as e:
            return LeaseInfo(malformed_id(handle), 0, "", 0, due, malformed_error(self._keys.leased, str(e)))
        return LeaseInfo(id_text(envelope[0]), envelope[1] + 1, id_text(worker), leased_at_ms, due)

    def dead_letters(self, count: int | None) -> list[DeadLetter]:
        """See `Queue.dead_letters`."""

        def read() -> list[DeadLetter]:
            return [
                self._dead_letter(key, record)
                for key, record in self._redis.client.hscan_iter(self._keys.dead, count=500)
            ]

        letters = sorted(self._read(self._keys.dead, "hash", read), key=lambda d: (d.dead_at_ms, d.id))
        return letters if count is None else letters[: max(count, 0)]

    def _dead_letter(self, key: bytes, record: bytes) -> DeadLetter:
        """A dead record as `DeadLetter`; a malformed one under its field's name, raw, with why."""
        try:
            item_id, attempts, payload, error, dead_at_ms = read_dead_record(record)
        except ValueError as e:
            return DeadLetter(id_text(key), 0, record, f"malformed record in {self._keys.dead}: {e}", 0)
        return DeadLetter(id_text(item_id), attempts, payload, error.decode(errors="replace"), dead_at_ms)

    def requeue_dead(self, ids: Iterable[str] | None) -> int:
        """See `Queue.requeue_dead`."""

        def requeue(batch: list[str]) -> int:
            return self._redis.scripts.requeue_dead(ids=batch)

        return sum(
            self._redis.call(partial(requeue, batch), idempotent=True) for batch in self._dead_ids(ids)
        )

    def purge_dead(self, ids: Iterable[str] | None) -> int:
        """See `Queue.purge_dead`."""

        def purge(batch: list[str]) -> int:
            return self._redis.scripts.purge_dead(ids=batch)

        return sum(self._redis.call(partial(purge, batch), idempotent=True) for batch in self._dead_ids(ids))

    def _dead_ids(self, ids: Iterable[str] | None) -> Iterator[list[str]]:
        """`ids` (or every dead letter's id) in batches of 500."""
        if ids is None:
            # Collect first, then act: a scan that runs while its hash shrinks may miss keys.
            def scan() -> list[str]:
                return [id_text(key) for key, _ in self._redis.client.hscan_iter(self._keys.dead, count=500)]

            ids = self._read(self._keys.dead, "hash", scan)
        source = iter(ids)
        while batch := list(islice(source, 500)):
            yield batch
