"""Adding items: one `put`, or `put_many`'s stream of batches with their checkpoints.

Apart from `Queue` because it is the producer's side of the queue and has concerns of its own: the
hot loop of a million-line enqueue, a background thread that overlaps one batch's script call with
reading the next, and counting exactly what went in when anything (Redis, the caller's iterator, a
signal) stops it half-way.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from rediswq._client import QueueClient
from rediswq._keys import Keys
from rediswq._wire import id_text
from rediswq.errors import InvalidArgument, NotReplicated, QueueClosed, RedisWQError

Mark = tuple[str, str] | None  # a checkpoint (name, value) written with a batch
Checkpoint = tuple[str, Callable[[int], str]] | None  # (name, value_of(items taken so far))
Wait = tuple[int, int] | None  # Redis WAIT's (replicas, timeout_ms) after each write; None: no WAIT

_AUTO_ID = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class Enqueued:
    """What `put_many` did: items added, and items skipped because their id was live already."""

    added: int
    skipped: int


def checked_id(item_id: str) -> str:
    """A caller's item id, or `InvalidArgument` saying why it cannot be one."""
    if not isinstance(item_id, str) or not item_id:
        raise InvalidArgument(f"an item id must be a non-empty str, not {item_id!r}")
    if _AUTO_ID.fullmatch(item_id):
        # All-digit ids are the queue's own; a caller's would collide with them.
        raise InvalidArgument(f"item id {item_id!r} is all digits: those are reserved for the queue")
    return item_id


def checked_payload(payload: bytes | str, limit: int) -> bytes:
    """A payload as bytes, or `InvalidArgument` when it is of another type or over `limit` bytes."""
    data = payload.encode() if isinstance(payload, str) else payload
    if not isinstance(data, bytes):
        raise InvalidArgument(f"a payload must be bytes or str, not {type(payload).__name__}")
    if len(data) > limit:
        raise InvalidArgument(f"a payload of {len(data)} bytes is over the limit of {limit} bytes")
    return data


def check_replicated(name: str, wait: Wait, acked: int | None, what: str, added: int) -> None:
    """Raise `NotReplicated` when WAIT counted fewer replicas than asked for (None: not asked)."""
    if acked is None or wait is None or acked >= wait[0]:
        return
    raise NotReplicated(
        f"queue {name!r}: {what} went in, but only {acked} of {wait[0]} replica(s) "
        f"confirmed it within {wait[1] / 1000:g} s; a failover now could lose it",
        added=added,
    )


def _stopped(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


class _BatchSender:
    """Sends put batches from one background thread, at most one in flight, in order.

    While Redis runs the script for batch n (the thread waits on the socket, without the GIL), the
    caller's thread reads and checks batch n+1: the client's work and Redis's overlap instead of
    taking turns. A batch's error (QueueClosed) surfaces at the next send or at the end; nothing is
    sent after it.
    """

    def __init__(self, put: Callable[[list[bytes], list[str] | None, Mark, int], tuple[int, int]]) -> None:
        self._put = put
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: Future[tuple[int, int]] | None = None
        self.added = self.skipped = 0
        self.failed = False  # a batch raised: nothing more may be sent

    def send(self, batch: list[bytes], ids: list[str] | None, mark: Mark) -> None:
        self._settle()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rediswq-put")
        self._in_flight = self._pool.submit(self._put, batch, ids, mark, self.added)

    def _settle(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            try:
                added, skipped = future.result()
            except BaseException:
                self.failed = True
                raise
            self.added += added
            self.skipped += skipped

    def __enter__(self) -> _BatchSender:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self._settle()
            else:
                # The batch in flight is waited for even so, so that `added` is exact after an error.
                with contextlib.suppress(Exception):
                    self._settle()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


class _Batch:
    """The batch being filled, and how many items were handed to the sender before it."""

    def __init__(self, sender: _BatchSender, checkpoint: Checkpoint, with_ids: bool) -> None:
        self.sender = sender
        self._checkpoint = checkpoint
        self._with_ids = with_ids
        self.payloads: list[bytes] = []
        self.ids: list[str] = []  # stays empty without ids
        self.taken = 0

    def send(self) -> None:
        """Hand the batch (if it holds anything) to the sender with its checkpoint; start a new one."""
        if not self.payloads:
            return
        self.taken += len(self.payloads)
        mark = None if self._checkpoint is None else (self._checkpoint[0], self._checkpoint[1](self.taken))
        self.sender.send(self.payloads, self.ids if self._with_ids else None, mark)
        self.payloads, self.ids = [], []


class Putter:
    """Puts items on one queue through its `QueueClient`."""

    def __init__(self, redis: QueueClient, keys: Keys, name: str, max_payload_bytes: int, wait: Wait) -> None:
        self._redis = redis
        self._keys = keys
        self._name = name
        self._limit = max_payload_bytes
        self._wait = wait
        self.stride = (1, 0)  # (shards, shard) of a shard of a sharded queue: how it numbers items

    def put(self, payload: bytes | str, item_id: str | None) -> str | None:
        """See `Queue.put`."""
        data = checked_payload(payload, self._limit)
        ids = None if item_id is None else [checked_id(item_id)]
        closed, first_id, skipped, acked = self._redis.call(
            lambda: self._redis.scripts.put([data], ids, wait=self._wait, stride=self.stride),
            idempotent=ids is not None,
        )
        if closed:
            raise QueueClosed(f"queue {self._name!r} is closed: no more items may be added")
        check_replicated(self._name, self._wait, acked, "the item", 1 - skipped)
        if skipped:
            return None
        return item_id if item_id is not None else str(first_id)

    def put_many(
        self,
        payloads: Iterable[bytes | str],
        ids: Iterable[str] | None,
        batch_size: int,
        batch_bytes: int,
        checkpoint: Checkpoint,
        stop: threading.Event | None,
    ) -> Enqueued:
        """See `Queue.put_many`."""
        sender = _BatchSender(self._put_batch)
        try:
            with sender:
                self._stream(
                    _Batch(sender, checkpoint, ids is not None), payloads, ids, batch_size, batch_bytes, stop
                )
        except RedisWQError as e:
            e.added = max(e.added, sender.added)  # NotReplicated counts its own batch, which went in
            raise
        return Enqueued(sender.added, sender.skipped)

    def _stream(
        self,
        batch: _Batch,
        payloads: Iterable[bytes | str],
        ids: Iterable[str] | None,
        batch_size: int,
        batch_bytes: int,
        stop: threading.Event | None,
    ) -> None:
        """Send every batch of `payloads`; on the caller's iterator raising, the items it gave first."""
        try:
            self._fill(batch, payloads, None if ids is None else iter(ids), batch_size, batch_bytes, stop)
        except RedisWQError:
            raise  # a bad id or payload, or a batch's error: nothing more is sent
        except BaseException:
            # The caller's iterator raised: the items it gave before go in, and `added` says so.
            if not batch.sender.failed:
                batch.send()
            raise
        if not _stopped(stop):
            batch.send()

    def _fill(
        self,
        batch: _Batch,
        payloads: Iterable[bytes | str],
        ids: Iterator[str] | None,
        batch_size: int,
        batch_bytes: int,
        stop: threading.Event | None,
    ) -> None:
        """The hot loop of a million-line enqueue: fill batches, send each full one (not once stopped).

        Its locals alias the batch's lists, renewed only when one is sent: nothing per item but the
        checks and the appends. Returns with the last batch unsent (the caller sends it, or not).
        """
        limit = self._limit
        payload_list, id_list, size = batch.payloads, batch.ids, 0
        for payload in payloads:
            # Plain bytes skip the general checks.
            if type(payload) is not bytes or len(payload) > limit:
                payload = checked_payload(payload, limit)
            if ids is not None:
                try:
                    id_list.append(checked_id(next(ids)))
                except StopIteration:
                    raise InvalidArgument("put_many was given fewer ids than payloads") from None
            payload_list.append(payload)
            size += len(payload)
            if len(payload_list) >= batch_size or size >= batch_bytes:
                if _stopped(stop):
                    return  # leaving the sender waits for the reply to the batch in flight
                batch.send()
                payload_list, id_list, size = batch.payloads, batch.ids, 0

    def _put_batch(
        self,
        payloads: list[bytes],
        ids: list[str] | None,
        mark: Mark,
        added_before: int,
        reserved: int | None = None,
    ) -> tuple[int, int]:
        """Put one batch; returns (added, skipped). `reserved`: see `Scripts.put`."""
        closed, _first, skipped, acked = self._redis.call(
            lambda: self._redis.scripts.put(
                payloads, ids, mark, wait=self._wait, stride=self.stride, reserved=reserved
            ),
            idempotent=ids is not None,
        )
        if closed:
            raise QueueClosed(
                f"queue {self._name!r} is closed: {added_before} items were added before it closed",
                added=added_before,
            )
        added = added_before + len(payloads) - skipped
        check_replicated(self._name, self._wait, acked, f"a batch of {len(payloads)} items", added)
        return len(payloads) - skipped, skipped

    def checkpoint(self, name: str) -> str | None:
        """See `Queue.checkpoint`."""
        value = self._redis.call(
            lambda: self._redis.client.hget(self._keys.checkpoints, name), idempotent=True
        )
        return None if value is None else id_text(value)
