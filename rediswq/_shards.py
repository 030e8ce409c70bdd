"""A sharded queue: S queues of the ordinary kind (its shards), each under a hash tag of its own.

A `Queue` learns its shard count from Redis (shard 0's meta field ``shards``, rediswq/_keys.py) in its
first call that needs it, and keeps it: a queue's count is fixed when it is made. With one shard (every
queue made without ``shards``) nothing here runs and every call is the queue's own, as it always was.
With more, the `Queue` is a façade: each of its calls goes to `Shards`, which holds one `Queue` per
shard (their keys are `Keys.for_shard`'s) and routes:

- puts: an item with an id to the shard its id hashes to (CRC-32, the same in every process; an id
  the queue assigned names its shard: shard i of S numbers its items i+1, S+i+1, ...), id-less
  items in rotation; `put_many` in rounds of one call per shard (rediswq/_sharded_put.py);
- leases (rediswq/_sharded_lease.py): from the worker's current shard, one call per item in the
  steady state, moving on in a rotation when it is empty and every `ROTATE_CALLS` calls;
- settles (complete, fail, extend, release): to the shard each lease came from (`Lease.shard`);
- close: every shard, shard 0 last, so the queue (whose ``closed`` is shard 0's) is never seen closed
  while a shard is still open; reopen and purge: the other shards first, shard 0 last;
- stats: the shards' sums (`shard_stats` for each); the readers and the dead letters' admin: each shard.
"""

from __future__ import annotations

import copy
import functools
import heapq
import itertools
import random
import threading
import weakref
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar, cast

import redis

from rediswq._inspect import DeadLetter, Item, LeaseInfo, Stats
from rediswq._keys import SHARDS_FIELD, Keys
from rediswq.errors import InvalidArgument, LeaseLost, ServerError
from rediswq.lease import Lease

if TYPE_CHECKING:
    from rediswq.queue import Queue

P = ParamSpec("P")
R = TypeVar("R")


def shard_for_id(item_id: str, shards: int) -> int:
    """The shard of the item `item_id` in a queue of `shards` shards: stable across processes."""
    if not isinstance(item_id, str):
        return 0  # no id at all: the shard's own put says why
    if item_id.isdigit() and item_id.isascii():
        return (int(item_id) - 1) % shards  # an id the queue assigned (see Scripts.put's stride)
    return zlib.crc32(item_id.encode()) % shards


def sharded(method: Callable[Concatenate[Queue, P], R]) -> Callable[Concatenate[Queue, P], R]:
    """A `Queue` method that a sharded queue runs through `Shards`' method of the same name."""
    return _dispatching(method, retry=True)


def sharded_put(method: Callable[Concatenate[Queue, P], R]) -> Callable[Concatenate[Queue, P], R]:
    """`sharded`, for a put: the count is read as a put is sent, once (a put is not retried blindly,
    and a refused connection is an error at once)."""
    return _dispatching(method, retry=False)


def _dispatching(
    method: Callable[Concatenate[Queue, P], R], retry: bool
) -> Callable[Concatenate[Queue, P], R]:
    name = method.__name__

    def dispatch(self: Queue, /, *args: P.args, **kwargs: P.kwargs) -> R:
        shards = self._shards
        if shards is not None and shards.sharded(retry):
            return cast(R, getattr(shards, name)(*args, **kwargs))
        return method(self, *args, **kwargs)

    functools.update_wrapper(dispatch, method)
    return dispatch


def _recorded(meta: dict[Any, Any], key: str) -> int:
    value = meta.get(SHARDS_FIELD.encode(), b"1")
    try:
        return int(value)
    except ValueError:
        raise ServerError(f"key {key} field {SHARDS_FIELD!r} holds {value[:40]!r}, not an integer") from None


class Shards:
    """The shards of one queue, made once its shard count is known; see the module's docstring."""

    def __init__(self, queue: Queue, requested: int | None) -> None:
        self._queue = weakref.ref(queue)  # the façade owns this object: no cycle
        self._requested = requested
        self._count: int | None = None
        self._queues: list[Queue] = []
        self._making = threading.Lock()
        self._next = random.randrange(1 << 30)  # the rotation of id-less puts starts anywhere
        self.lease_state: Any = None  # rediswq/_sharded_lease.py's, per queue object

    @property
    def owner(self) -> Queue:
        queue = self._queue()
        assert queue is not None
        return queue

    # -- the count ------------------------------------------------------------------------------

    def count(self, retry: bool = True) -> int | None:
        """The shard count, read (and with `shards=S`, checked or recorded) in the first call that
        needs it; None while the queue does not exist yet (asked again next time). `retry`: the read
        is retried as idempotent calls are."""
        if self._count is None:
            self._count = self._discover(retry)
        return self._count

    def sharded(self, retry: bool = True) -> bool:
        return (self.count(retry) or 1) > 1

    def _discover(self, retry: bool) -> int | None:
        q = self.owner

        def read() -> dict[Any, Any] | None:
            try:
                return dict(q._redis.client.hgetall(q.keys.meta))
            except redis.exceptions.ResponseError as e:
                if "WRONGTYPE" not in str(e):
                    raise
                return None  # a damaged queue: its own calls say so (and purge mends it)

        # Not retried for a put (not retried blindly) nor for a caller that retries itself (the worker
        # runtime: retry_settles=False), which must see the first connection error as its own calls'.
        meta = q._redis.call(read, idempotent=retry and q._redis._retry_settles)
        if meta is None:
            return None
        if not meta:
            if self._requested is None or self._requested == 1:
                return None
            recorded = self._create(q, self._requested)
        else:
            recorded = _recorded(meta, q.keys.meta)
        if self._requested is not None and recorded != self._requested:
            raise InvalidArgument(
                f"queue {q.name!r} has {recorded} shard(s), not {self._requested}: the shard count is "
                "fixed when the queue is made (leave the shard count out to use the queue's)"
            )
        return recorded

    @staticmethod
    def _create(q: Queue, shards: int) -> int:
        """Make every shard's meta (a count of 0), then record the count in shard 0's: a queue whose
        count is recorded has all its shards. Two producers making it at once agree or one fails."""
        client = q._redis.client

        def make() -> int:
            with client.pipeline(transaction=False) as pipe:
                for i in range(1, shards):
                    pipe.hincrby(Keys.for_shard(q.name, i, shards).meta, "enqueued", 0)
                pipe.execute()
            client.hsetnx(q.keys.meta, SHARDS_FIELD, shards)
            return _recorded(client.hgetall(q.keys.meta), q.keys.meta)

        return int(q._redis.call(make, idempotent=True))

    # -- the shards -----------------------------------------------------------------------------

    def queues(self) -> list[Queue]:
        """One `Queue` per shard, on the façade's client (made at the first call)."""
        count = self.count() or 1
        queues = self._queues
        if len(queues) != count:
            with self._making:  # a heartbeat's thread may ask at the same time: one set of shards
                if len(self._queues) != count:
                    owner = self.owner
                    self._queues = [self._shard_queue(owner, i, count) for i in range(count)]
                queues = self._queues
        return queues

    @staticmethod
    def _shard_queue(owner: Queue, shard: int, count: int) -> Queue:
        queue = copy.copy(owner)
        queue._attach(owner.client, Keys.for_shard(owner.name, shard, count))
        queue._shards = None
        queue._putter.stride = (count, shard)
        queue._waiter.seen = True  # the queue exists: a shard missing is a shard vanished
        return queue

    def shard(self, i: int) -> Queue:
        queues = self.queues()
        if not 0 <= i < len(queues):
            raise InvalidArgument(f"queue {self.owner.name!r} has no shard {i} (it has {len(queues)})")
        return queues[i]

    # -- adding ---------------------------------------------------------------------------------

    def put(self, payload: bytes | str, *, id: str | None = None) -> str | None:
        count = len(self.queues())
        if id is None:
            self._next += 1
            return self.shard(self._next % count).put(payload)
        return self.shard(shard_for_id(id, count)).put(payload, id=id)

    def put_many(self, payloads: Iterable[bytes | str], **options: Any) -> Any:
        from rediswq._sharded_put import put_many

        start, self._next = self._next, self._next + 1
        return put_many(self.queues(), start, payloads, **options)

    # -- leasing and settling -------------------------------------------------------------------

    def complete_and_lease(self, done: Sequence[Lease], count: int = 1, *args: Any, **options: Any) -> Any:
        from rediswq._sharded_lease import complete_and_lease

        return complete_and_lease(self, done, count, *args, **options)

    def each_group(self, leases: Sequence[Lease], call: Callable[[Queue, list[Lease]], None]) -> None:
        """`call` once per shard with that shard's leases; then one `LeaseLost` naming every lost one."""
        groups: dict[int, list[Lease]] = {}
        for lease in leases:
            groups.setdefault(lease.shard, []).append(lease)
        lost: list[Lease] = []
        unconfirmed = False
        for i, group in groups.items():
            try:
                call(self.shard(i), group)
            except LeaseLost as e:
                lost += e.leases
                unconfirmed = unconfirmed or e.unconfirmed
        if lost:
            raise self.owner._lost(lost, unconfirmed)

    def complete_many(self, leases: Sequence[Lease]) -> None:
        self.each_group(leases, lambda q, group: q.complete_many(group))

    def release_many(self, leases: Sequence[Lease]) -> None:
        self.each_group(leases, lambda q, group: q.release_many(group))

    def extend_many(self, leases: Sequence[Lease], lease_secs: float | None = None) -> None:
        self.each_group(leases, lambda q, group: q.extend_many(group, lease_secs))

    def fail(self, lease: Lease, error: str = "", *, retry: bool = True) -> bool:
        return self.shard(lease.shard).fail(lease, error, retry=retry)

    # -- closing, reopening, purging: shard 0 last ----------------------------------------------

    def _last_first(self) -> list[Queue]:
        queues = self.queues()
        return [*queues[1:], queues[0]]

    def close(self) -> None:
        for queue in self._last_first():
            queue.close()

    def reopen(self) -> None:
        for queue in self._last_first():
            queue.reopen()

    def purge(self) -> None:
        for queue in self._last_first():
            queue.purge()
        self._count = None  # made again, it may have another count
        self._queues = []

    # -- reading --------------------------------------------------------------------------------

    def shard_stats(self) -> list[Stats]:
        """Each shard's stats, shard 0 read last: its `closed` is the queue's."""
        stats = [queue.stats() for queue in self._last_first()]
        return [stats[-1], *stats[:-1]]

    def stats(self) -> Stats:
        return total(self.shard_stats())

    def peek(self, count: int = 10) -> list[Item]:
        items: list[Item] = []
        for queue in self.queues():
            if len(items) >= count:
                break
            items += queue.peek(count - len(items))
        return items

    def holders(self, count: int = 100) -> list[LeaseInfo]:
        found = [queue.holders(count) for queue in self.queues()]
        return list(itertools.islice(heapq.merge(*found, key=lambda h: h.deadline_ms), count))

    def dead_letters(self, count: int | None = None) -> list[DeadLetter]:
        found = [queue.dead_letters(count) for queue in self.queues()]
        letters = list(heapq.merge(*found, key=lambda d: d.dead_at_ms))
        return letters if count is None else letters[: max(count, 0)]

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        wanted = None if ids is None else list(ids)  # every shard is asked: a quarantined id names none
        return sum(queue.requeue_dead(wanted) for queue in self.queues())

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        wanted = None if ids is None else list(ids)
        return sum(queue.purge_dead(wanted) for queue in self.queues())


def total(shards: Sequence[Stats]) -> Stats:
    """One queue's stats from its shards' (shard 0 first): counts and counters summed; closed and
    exists are shard 0's (it is closed last and made last); the soonest retry."""
    first = shards[0]
    summed = {
        f.name: sum(getattr(s, f.name) for s in shards)
        for f in fields(Stats)
        if f.type in ("int", int) and f.name not in ("shards",)
    }
    retries = [s.next_retry_in_ms for s in shards if s.next_retry_in_ms is not None]
    return replace(first, **summed, next_retry_in_ms=min(retries) if retries else None, shards=len(shards))
