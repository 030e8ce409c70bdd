"""Waiting made visible and bounded: the periodic progress line, and the idle limit (--max-wait).

Between its start line and its summary a worker would log nothing but failures: an operator tailing a
pod for an hour could not tell progress from a hang. So every `progress_secs` the keeper logs one line
(event "progress"): this run's done and failed, items running here, the rate since the last line,
the queue's pending and leased (one `Queue.stats()` call, the only Redis call a line costs), and what
the worker waits for when it has nothing to run.

The idle limit: with until="closed", a queue its producer never closes would keep the workers waiting
for ever. With `max_wait_secs`, a worker that held nothing and leased nothing for that long reads the
queue once: if it is still open with nothing pending, leased or delayed (nobody is working, nothing
will come back), the run ends with EXIT_IDLE. Otherwise the wait starts again.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import rediswq
from rediswq_worker.runtime.calls import Calls
from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.state import Phase


@dataclass(frozen=True)
class Snapshot:
    """What a progress line says: this worker's counts, the queue's, and what it waits for."""

    done: int
    failed: int
    running: int
    held: int
    items_per_sec: float
    stats: rediswq.Stats | None  # None: Redis did not answer the one call
    waiting_for: str

    def line(self) -> str:
        parts = f"progress: {self.done} done, {self.failed} failed, {self.running} running, "
        parts += f"{self.items_per_sec:.1f} items/s"
        if self.stats is None:
            parts += "; queue counts unavailable (Redis did not answer)"
        else:
            parts += f"; queue: {self.stats.pending} pending, {self.stats.leased} leased"
        if self.waiting_for:
            parts += f"; {self.waiting_for}"
        return parts

    def fields(self) -> dict[str, object]:
        stats = self.stats
        return {
            "event": "progress",
            "done": self.done,
            "failed": self.failed,
            "running": self.running,
            "items_per_sec": round(self.items_per_sec, 1),
            "pending": None if stats is None else stats.pending,
            "leased": None if stats is None else stats.leased,
            "delayed": None if stats is None else stats.delayed,
            "closed": None if stats is None else stats.closed,
            "waiting_for": self.waiting_for or None,
        }


def waiting_for(stats: rediswq.Stats, held: int, running: int, until: str) -> str:
    """What a worker with nothing to run waits for, in words; "" while it has work."""
    if running or stats.pending:
        return ""
    reasons = []
    others = max(0, stats.leased - held)
    if others:
        reasons.append(f"{others} items leased by other workers")
    if stats.delayed:
        due = "" if stats.next_retry_in_ms is None else f" due in {_secs(stats.next_retry_in_ms)}"
        reasons.append(f"{stats.delayed} retries{due}")
    if until == "closed" and not stats.closed:
        reasons.append("the queue to be closed")
    return "waiting for " + " and ".join(reasons) if reasons else ""


def _secs(ms: int) -> str:
    return f"{math.ceil(max(0, ms) / 1000)} s"


class Progress:
    """The keeper's clock for progress lines and the idle limit (keeper thread only)."""

    def __init__(
        self,
        queue: rediswq.Queue,
        options: Options,
        ledger: Ledger,
        phase: Phase,
        calls: Calls,
        log: logging.Logger,
    ) -> None:
        self.queue = queue
        self.options = options
        self.ledger = ledger
        self.phase = phase
        self.calls = calls
        self.log = log
        now = time.monotonic()
        self.every = options.progress_secs
        self.next_line = now + self.every if self.every > 0 else math.inf
        self.idle_limit = options.max_wait_secs if options.until == "closed" else None
        self.quiet_since = now
        self.taken = 0
        self.settled = 0
        self.line_at = now

    def next_due(self) -> float:
        """When the keeper should wake for this (monotonic time)."""
        due = self.next_line
        if self.idle_limit is not None:
            due = min(due, self.quiet_since + self.idle_limit)
        return due

    def tick(self) -> tuple[str, str] | None:
        """Log a line if due; (outcome, error) if the idle limit ends the run."""
        now = time.monotonic()
        with self.ledger.cv:
            if self.ledger.taken != self.taken or not self.ledger.idle_locked():
                self.taken, self.quiet_since = self.ledger.taken, now
        if now >= self.next_line:
            self.next_line = now + self.every
            self._line(now)
        if self.idle_limit is not None and now >= self.quiet_since + self.idle_limit:
            return self._idle(now)
        return None

    def _stats(self) -> rediswq.Stats | None:
        try:
            return self.calls.once(self.queue.stats)
        except rediswq.RedisWQError:
            return None  # an outage is reported on its own; this line says the counts are missing

    def _line(self, now: float) -> None:
        stats = self._stats()
        with self.ledger.cv:
            summary = self.ledger.summary
            done, failed = summary.done, summary.failed
            running, held = len(self.ledger.running), len(self.ledger.held)
        elapsed = max(now - self.line_at, 1e-9)
        rate = (done + failed - self.settled) / elapsed
        self.settled, self.line_at = done + failed, now
        waits = "" if stats is None else waiting_for(stats, held, running, self.options.until)
        snapshot = Snapshot(done, failed, running, held, rate, stats, waits)
        self.log.info(snapshot.line(), extra={"fields": snapshot.fields()})

    def _idle(self, now: float) -> tuple[str, str] | None:
        """Nothing held or leased for the idle limit: end the run if the queue is open and empty."""
        self.quiet_since = now  # if the run goes on, the next check is a whole limit away
        stats = self._stats()
        if stats is None or stats.closed or stats.outstanding:
            return None
        limit = f"{self.idle_limit:g} s"
        name = self.queue.name
        return (
            f"stopped: nothing to lease for {limit} and the queue is still open",
            f"nothing to lease for {limit} (--max-wait) and queue {name!r} is still open and empty: "
            f"its producer never closed it (did it fail?); once it is filled, `rediswq close {name}`",
        )


__all__ = ["Progress", "Snapshot", "waiting_for"]
