"""Reading the numbers of many queues at once: the one place that knows how the library offers it.

A thin adapter, so the dashboard follows the library's many-queue read with a small change here: today
a bounded `Queue.names` walk (every master of a cluster) and one `stats()` script call per queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import redis
from redis.cluster import RedisCluster

import rediswq

Client = redis.Redis | RedisCluster


class Reader:
    """The stats of the queues named, or of every queue on the Redis (found afresh on each read)."""

    def __init__(
        self,
        client: Callable[[], Client],
        open_queue: Callable[[Client, str], rediswq.Queue],
        names: Sequence[str] = (),
        limit: int = 1000,
    ) -> None:
        self._client = client
        self._open = open_queue
        self._names = sorted(set(names))
        self._limit = limit
        self._queues: dict[str, rediswq.Queue] = {}

    def queue(self, name: str) -> rediswq.Queue:
        """The queue `name` (made once: a queue checks the eviction policy in its first call only)."""
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = self._open(self._client(), name)
        return q

    def names(self) -> list[str]:
        return self._names or rediswq.Queue.names(self._client(), limit=self._limit)

    def read(self) -> dict[str, rediswq.Stats]:
        """One read cycle: the names, then each queue's counts and counters."""
        names = self.names()
        for gone in set(self._queues) - set(names):
            del self._queues[gone]
        return {name: self.queue(name).stats() for name in names}
