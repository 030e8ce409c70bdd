"""Reading the numbers of many queues at once: the one place that knows how the library offers it.

A thin adapter over the library: every queue is `rediswq.survey` (a bounded SCAN walk and one pipeline
per master, however many queues); queues named on the command line are read with one `stats()` call
each (no SCAN: a Redis user limited to their keys may run the dashboard).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import rediswq

Client = rediswq.Client


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
        # What the last read could not show: queues it could not read, and a walk cut short.
        self.problems: list[str] = []

    def queue(self, name: str) -> rediswq.Queue:
        """The queue `name` (made once: a queue checks the eviction policy in its first call only)."""
        q = self._queues.get(name)
        if q is None:
            q = self._queues[name] = self._open(self._client(), name)
        return q

    def read(self) -> dict[str, rediswq.Stats]:
        """One read cycle: each queue's counts and counters, by name."""
        if self._names:
            self.problems = []
            return {name: self.queue(name).stats() for name in self._names}
        found = rediswq.survey(self._client(), limit=self._limit)
        self.problems = [f"queue {q.name!r}: {q.error}" for q in found.queues if q.stats is None]
        if not found.complete:
            self.problems.append(f"more queues than shown (the walk stops at {self._limit})")
        if found.refused:
            self.problems.append(f"{found.refused} queue(s) this Redis user may not read")
        stats = {q.name: q.stats for q in found.queues if q.stats is not None}
        for gone in set(self._queues) - set(stats):
            del self._queues[gone]
        return stats
