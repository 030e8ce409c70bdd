"""The dashboard's numbers: one Redis read cycle per interval, shared by every page that asks.

Pages never read Redis themselves: they get the last cycle's snapshot (the overview's JSON is made
once per cycle), so ten open tabs cost Redis what one does. A queue's own page adds its holders and
dead letters, read when asked for and kept for one interval.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

import rediswq
from rediswq_kit.progress import RATE_WINDOW_SECS, duration, eta_secs, settled
from rediswq_producer.dashboard.reader import Reader
from rediswq_producer.show import payload_text

# The small chart of the overview: at most this many points per queue (the page is read every cycle).
CHART_POINTS = 60
HOLDERS_SHOWN = 100
DEAD_SHOWN = 100


@dataclass(frozen=True)
class Sample:
    """A queue's counters at one moment (monotonic seconds)."""

    at: float
    completed: int
    failed: int
    settled: int


class Board:
    """The cache every page reads: the last snapshot of each queue, its recent samples, the last error."""

    def __init__(
        self,
        reader: Reader,
        interval_secs: float,
        history_secs: float = 600.0,
        scrub: Callable[[str], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.reader = reader
        self.interval_secs = interval_secs
        self.history_secs = history_secs
        self.scrub = scrub
        self._clock = clock
        self._lock = threading.Lock()
        self._stats: dict[str, rediswq.Stats] = {}
        self._samples: dict[str, deque[Sample]] = {}
        self._error = ""
        self._updated_ms = 0
        self._overview = b""
        self._details: dict[str, tuple[float, dict[str, Any]]] = {}
        self.cycles = 0
        self._wake = threading.Event()

    # -- the read cycle ------------------------------------------------------------------------------

    def refresh(self) -> None:
        """One read cycle; an error is kept (redacted) and shown on every page until a cycle succeeds."""
        at = self._clock()
        try:
            stats = self.reader.read()
            error = self.scrub("; ".join(self.reader.problems))
        except rediswq.RedisWQError as e:
            stats, error = None, self.scrub(str(e))
        with self._lock:
            self.cycles += 1
            self._error = error
            if stats is not None:
                self._record(at, stats)
            self._updated_ms = int(time.time() * 1000)
            self._overview = json.dumps(self._overview_dict(at)).encode()

    def _record(self, at: float, stats: dict[str, rediswq.Stats]) -> None:
        self._stats = stats
        for gone in set(self._samples) - set(stats):
            del self._samples[gone]
        keep = int(self.history_secs / self.interval_secs) + 2
        for name, s in stats.items():
            samples = self._samples.setdefault(name, deque(maxlen=keep))
            samples.append(Sample(at, s.completed, s.failed, settled(s)))

    def run(self, stop: threading.Event) -> None:
        """Refresh every interval until `stop` is set; `refresh_soon` cuts a wait short (after an action)."""
        while not stop.is_set():
            began = self._clock()
            self.refresh()
            self._wake.wait(max(0.0, self.interval_secs - (self._clock() - began)))
            self._wake.clear()

    def refresh_soon(self, queue: str) -> None:
        with self._lock:
            self._details.pop(queue, None)
        self._wake.set()

    # -- what the pages get --------------------------------------------------------------------------

    def knows(self, name: str) -> bool:
        with self._lock:
            return name in self._stats

    def overview_json(self) -> bytes:
        with self._lock:
            return self._overview

    def _overview_dict(self, now: float) -> dict[str, Any]:
        return {
            "interval_secs": self.interval_secs,
            "updated_ms": self._updated_ms,
            "error": self._error,
            "queues": [self._queue_row(name, s, now, CHART_POINTS) for name, s in self._stats.items()],
        }

    def _queue_row(self, name: str, s: rediswq.Stats, now: float, points: int) -> dict[str, Any]:
        samples = self._samples.get(name, deque())
        rate = _rate(samples, now)
        eta = eta_secs(s, rate)
        return {
            "name": name,
            "closed": s.closed,
            "exists": s.exists,
            "drained": s.drained,
            "pending": s.pending,
            "leased": s.leased,
            "delayed": s.delayed,
            "done": s.completed,
            "failed": s.failed,
            "dead": s.dead,
            "rate_per_sec": rate,
            "drain_secs": eta,
            "drain_text": "drained" if s.drained else ("?" if eta is None else duration(eta)),
            "series": _series(samples, now, points),
        }

    def queue_detail(self, name: str) -> dict[str, Any] | None:
        """A queue's page: its row with the full history, its holders and dead letters (None: unknown)."""
        now = self._clock()
        with self._lock:
            s = self._stats.get(name)
            if s is None:
                return None
            row = self._queue_row(name, s, now, 10**6)
            error, cached = self._error, self._details.get(name)
        if cached is None or now - cached[0] >= self.interval_secs:
            cached = (now, self._read_detail(name))
            with self._lock:
                self._details[name] = cached
        detail = {**row, **cached[1], "error": error or cached[1]["error"], "updated_ms": self._updated_ms}
        detail["interval_secs"] = self.interval_secs
        return detail

    def _read_detail(self, name: str) -> dict[str, Any]:
        q = self.reader.queue(name)
        try:
            now_ms = _redis_now_ms(q)
            holders = q.holders(HOLDERS_SHOWN)
            dead = q.dead_letters()
        except rediswq.RedisWQError as e:
            return {"holders": [], "dead_letters": [], "dead_total": 0, "error": self.scrub(str(e))}
        return {
            "error": "",
            "holders": [
                {
                    "id": h.id,
                    "worker": h.worker,
                    "attempt": h.attempt,
                    "held_secs": max(0, now_ms - h.leased_at_ms) / 1000,
                    "expires_in_secs": (h.deadline_ms - now_ms) / 1000,
                    "error": h.error,
                }
                for h in holders
            ],
            "dead_total": len(dead),
            # The newest first: the one that just failed is the one a person looks for.
            "dead_letters": [
                {
                    "id": d.id,
                    "attempts": d.attempts,
                    "error": self.scrub(d.error),
                    "dead_at_ms": d.dead_at_ms,
                    "payload": self.scrub(payload_text(d.payload)),
                }
                for d in reversed(dead[-DEAD_SHOWN:])
            ],
        }


def _redis_now_ms(q: rediswq.Queue) -> int:
    """Redis's clock, which lease deadlines are on; this machine's for a Redis user that may not run TIME
    (the producer's, in k8s/)."""
    try:
        secs, micros = q.client.time()
    except redis.exceptions.NoPermissionError:
        return int(time.time() * 1000)
    return int(secs) * 1000 + int(micros) // 1000


def _rate(samples: deque[Sample], now: float) -> float | None:
    """Items settled per second over the last RATE_WINDOW_SECS (None: fewer than two samples)."""
    recent = [s for s in samples if now - s.at <= RATE_WINDOW_SECS + 1e-9]
    if len(recent) < 2 or recent[-1].at <= recent[0].at:
        return None
    return (recent[-1].settled - recent[0].settled) / (recent[-1].at - recent[0].at)


def _series(samples: deque[Sample], now: float, points: int) -> dict[str, list[float]]:
    """Done and failed per second between samples, at most `points` of them, with their age in seconds."""
    picked = list(samples)
    stride = max(1, -(-(len(picked) - 1) // points)) if len(picked) > 1 else 1
    picked = picked[::-1][::stride][::-1]
    ago, done, failed = [], [], []
    for a, b in itertools.pairwise(picked):
        span = b.at - a.at
        if span <= 0:
            continue
        ago.append(round(now - b.at, 1))
        # A counter that went down (the queue was purged and made again) shows as no progress.
        done.append(round(max(0, b.completed - a.completed) / span, 3))
        failed.append(round(max(0, b.failed - a.failed) / span, 3))
    return {"ago_secs": ago, "done_per_sec": done, "failed_per_sec": failed}
