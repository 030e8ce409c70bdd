"""`RedisWQ`: the Kubernetes docs example's interface, with rediswq's guarantees underneath.

The docs' ``worker.py`` runs unchanged: it fills nothing itself, ``redis-cli rpush NAME item`` still
works (raw items are taken into the queue as workers lease), and expired leases now come back.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rediswq.errors import LeaseLost, LeaseTimeout
from rediswq.lease import Lease
from rediswq.queue import Queue

log = logging.getLogger(__name__)


class RedisWQ:
    """Drop-in for the docs example's class: `RedisWQ(name, host=..., **redis_kwargs)`."""

    def __init__(self, name: str, **redis_kwargs: Any) -> None:
        self._session = str(uuid.uuid4())
        # No blind retries by the client: rediswq retries only what is safe to repeat.
        redis_kwargs.setdefault("retry", Retry(NoBackoff(), 0))
        self._queue = Queue(redis.Redis(**redis_kwargs), name, worker=self._session)
        # The docs' API completes by value; equal values are separate items, so keep a list per value.
        self._held: dict[bytes, list[Lease]] = {}

    @property
    def queue(self) -> Queue:
        return self._queue

    def sessionID(self) -> str:
        """This worker's id, also shown as the holder of its leases."""
        return self._session

    def empty(self) -> bool:
        """True when nothing is pending, delayed or leased by anyone: then no work can come back."""
        return self._queue.is_drained()

    def lease(self, lease_secs: int = 60, block: bool = True, timeout: float | None = None) -> bytes | None:
        """Lease an item and return its payload, or None when none came (drained, or timed out)."""
        try:
            lease = self._queue.lease(lease_secs, timeout=timeout if block else 0)
        except LeaseTimeout:
            return None
        if lease is None:
            return None
        self._held.setdefault(lease.payload, []).append(lease)
        return lease.payload

    def complete(self, value: bytes) -> None:
        """Complete the lease this worker holds on `value`.

        The docs' loop cannot handle an error here, so a lease lost to expiry is logged, not raised:
        the item was reclaimed and another worker completes it.
        """
        held = self._held.get(value)
        if not held:
            log.warning("complete(%r): this worker holds no lease on that value", value)
            return
        lease = held.pop(0)
        if not held:
            del self._held[value]
        try:
            self._queue.complete(lease)
        except LeaseLost:
            log.warning("complete(%r): the lease had expired and the item was reclaimed", value)
