"""`put_many` on a sharded queue: rounds of one put call per shard, the checkpoint in the last one.

Items are sorted into one batch per shard (by id, or in rotation without ids); when one shard's batch
is full (`batch_size` items or `batch_bytes` bytes) the round is sent: each shard's batch in one call
(an atomic put of that shard, as on a queue of one shard), shard 0's last. So a put call carries as
many items as it would on one shard, and a round costs the same calls per item.

The checkpoint: a round is S calls, not one atomic call, so it is written once, in shard 0's call
(sent with no items when shard 0 has none), after every other shard's call of the round went in. So
it never says more than is in: a producer killed mid-round resumes from the round before, and the
items of the round that did go in are put again. With ids (`rediswq enqueue --unique`) those are
skipped as live already, so the resumed run adds exactly the rest, as on a queue of one shard;
without ids they are in twice (at-least-once across that kill). Per-shard checkpoints would avoid
that only by making the producer resume each shard apart, which an opaque checkpoint cannot say.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from rediswq._put import Checkpoint, Enqueued, checked_id, checked_payload
from rediswq._shards import shard_for_id
from rediswq.errors import InvalidArgument, RedisWQError

if TYPE_CHECKING:
    from rediswq.queue import Queue


class _Round:
    """The batches of the round being filled (one per shard), and what the rounds sent put in."""

    def __init__(self, queues: list[Queue], checkpoint: Checkpoint, with_ids: bool) -> None:
        self._queues = queues
        self._checkpoint = checkpoint
        self._with_ids = with_ids
        self.payloads: list[list[bytes]] = [[] for _ in queues]
        self.ids: list[list[str]] = [[] for _ in queues]
        self.sizes = [0 for _ in queues]
        self.added = self.skipped = 0

    def send(self, taken: int) -> None:
        """Send every shard's batch, shard 0's last with the checkpoint of the `taken` items so far."""
        mark = None if self._checkpoint is None else (self._checkpoint[0], self._checkpoint[1](taken))
        reserved = {} if self._with_ids else self._reserve()
        for i in [*range(1, len(self._queues)), 0]:
            if not self.payloads[i] and (i != 0 or mark is None):
                continue
            ids = self.ids[i] if self._with_ids else None
            put: Callable[..., tuple[int, int]] = self._queues[i]._putter._put_batch
            added, skipped = put(self.payloads[i], ids, mark if i == 0 else None, self.added, reserved.get(i))
            self.added += added
            self.skipped += skipped
            self.payloads[i], self.ids[i], self.sizes[i] = [], [], 0

    def _reserve(self) -> dict[int, int]:
        """The first id of each shard's batch, reserved for all of them in one pipeline (on a cluster,
        one round trip per master, not per shard); a gap if a put then fails, which nothing minds."""
        wanted = [(i, len(batch)) for i, batch in enumerate(self.payloads) if batch]
        owner = self._queues[0]

        def reserve() -> list[int]:
            with owner._redis.client.pipeline(transaction=False) as pipe:
                for i, n in wanted:
                    pipe.hincrby(self._queues[i].keys.meta, "seq", n)
                return [int(last) for last in pipe.execute()]

        lasts = owner._redis.call(reserve, idempotent=True)
        return {i: last - n + 1 for (i, n), last in zip(wanted, lasts, strict=True)}


def put_many(
    queues: list[Queue],
    start: int,
    payloads: Iterable[bytes | str],
    *,
    ids: Iterable[str] | None = None,
    batch_size: int = 2000,
    batch_bytes: int = 4 * 1024 * 1024,
    checkpoint: Checkpoint = None,
    stop: threading.Event | None = None,
) -> Enqueued:
    """See `Queue.put_many` and the module's docstring; `start`: the rotation's first shard."""
    batch = _Round(queues, checkpoint, ids is not None)
    try:
        taken = _fill(
            batch, queues, start, payloads, None if ids is None else iter(ids), batch_size, batch_bytes, stop
        )
    except RedisWQError as e:
        e.added = max(e.added, batch.added)
        raise
    if taken is not None:
        try:
            batch.send(taken)
        except RedisWQError as e:
            e.added = max(e.added, batch.added)
            raise
    return Enqueued(batch.added, batch.skipped)


def _fill(
    batch: _Round,
    queues: list[Queue],
    start: int,
    payloads: Iterable[bytes | str],
    ids: Iterable[str] | None,
    batch_size: int,
    batch_bytes: int,
    stop: threading.Event | None,
) -> int | None:
    """Sort the items into the round's batches, sending each full round; the items taken, for the last
    round (None: stopped, nothing more to send). The caller's iterator raising sends what it gave."""
    limit = queues[0].max_payload_bytes
    shard_of = _router(start, len(queues), ids, batch)
    taken = 0
    try:
        for payload in payloads:
            if type(payload) is not bytes or len(payload) > limit:
                payload = checked_payload(payload, limit)
            shard = shard_of(taken)
            batch.payloads[shard].append(payload)
            batch.sizes[shard] += len(payload)
            taken += 1
            if len(batch.payloads[shard]) >= batch_size or batch.sizes[shard] >= batch_bytes:
                if _stopped(stop):
                    return None
                batch.send(taken)
    except RedisWQError:
        raise
    except BaseException:
        batch.send(taken)  # the caller's iterator raised: what it gave before goes in
        raise
    return None if _stopped(stop) else taken


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _router(start: int, shards: int, ids: Iterable[str] | None, batch: _Round) -> Callable[[int], int]:
    """The shard of the item taken n-th: in rotation from `start`, or (with ids) its id's, whose id it
    takes from `ids` and adds to that shard's batch."""
    if ids is None:
        return lambda n: (start + n) % shards
    id_iter = iter(ids)

    def by_id(_n: int) -> int:
        try:
            item_id = checked_id(next(id_iter))
        except StopIteration:
            raise InvalidArgument("put_many was given fewer ids than payloads") from None
        shard = shard_for_id(item_id, shards)
        batch.ids[shard].append(item_id)
        return shard

    return by_id
