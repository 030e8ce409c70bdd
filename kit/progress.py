"""Progress figures the live views share (`rediswq stats --watch`, `rediswq job ... --watch`).

One rate meter, one time-to-drain rule, one duration format, so the two views never disagree.
"""

from __future__ import annotations

from collections import deque

import rediswq

RATE_WINDOW_SECS = 30.0


def settled(stats: rediswq.Stats) -> int:
    """Items done with for good: completed or dead-lettered (a rate of these is the drain rate)."""
    return stats.completed + stats.dead_lettered


class Rate:
    """Items settled per second over a sliding window of samples (smooths a bursty drain).

    The oldest sample is dropped only while the next one still spans the window, so once the view
    has run that long the figure always covers at least `window_secs`.
    """

    def __init__(self, window_secs: float = RATE_WINDOW_SECS) -> None:
        self.window_secs = window_secs
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, settled_count: int) -> float | None:
        """Record the settled count seen at monotonic time `at`; returns the rate now."""
        self._samples.append((at, settled_count))
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window_secs:
            self._samples.popleft()
        return self.per_sec()

    def per_sec(self) -> float | None:
        """None until two samples at different times are in."""
        if not self._samples:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def eta_secs(stats: rediswq.Stats, rate: float | None) -> float | None:
    """Seconds until the queue drains at `rate`: 0 once drained, None with no rate to go by."""
    if stats.drained:
        return 0.0
    return stats.outstanding / rate if rate and rate > 0 else None


def duration(secs: float) -> str:
    """A short human duration: 4.2s, 3m20s, 2h05m, 3d04h."""
    if secs < 60:
        return f"{secs:.1f}s"
    minutes, s = divmod(round(secs), 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{m:02d}m"
    days, h = divmod(hours, 24)
    return f"{days}d{h:02d}h"


def eta_text(outstanding: int, rate: float | None) -> str:
    """The time to drain `outstanding` items at `rate`, as `duration` writes it; `?` with no rate."""
    if outstanding == 0:
        return "0s"
    if not rate or rate <= 0:
        return "?"
    return duration(outstanding / rate)
