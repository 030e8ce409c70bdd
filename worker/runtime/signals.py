"""SIGTERM and SIGINT, kept one way: a list the handler appends to, read by the keeper and main thread.

What a signal then does is worker.runtime.stopping's.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType
from typing import Any

from rediswq_worker.runners import signal_name
from rediswq_worker.runtime.pacing import Wakeups


class Signals:
    """The signals received, and how many of them the keeper has noticed.

    `received` (name, monotonic time) is appended to by the handler only (the process's main
    thread); `noticed` is the keeper thread's: the signals received by its last `pump`.
    """

    def __init__(self, wakeups: Wakeups) -> None:
        self.wakeups = wakeups
        self.received: list[tuple[str, float]] = []
        self.noticed = 0

    def install(self) -> dict[int, Any]:
        """Handle SIGTERM and SIGINT (from the main thread only); returns the handlers to restore."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {signum: signal.signal(signum, self._on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def restore(handlers: dict[int, Any]) -> None:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.received.append((signal_name(signum), time.monotonic()))
        self.wakeups.post()  # SimpleQueue.put is safe in a signal handler

    def pump(self, timeout: float) -> None:
        """The keeper's sleep: wait up to `timeout` for a wake-up, then notice the signals received."""
        self.wakeups.wait(timeout)
        self.noticed = len(self.received)

    def name(self, index: int) -> str:
        return self.received[index][0]


__all__ = ["Signals"]
