"""SIGINT and SIGTERM for `rediswq enqueue`: stop between batches, so the count printed is exact.

A signal that comes while a batch may be on its way to Redis is deferred: `put_many` sends no further
batch, waits for the reply to the one in flight, and the run stops after counting it. Anywhere else
(reading input, opening the queue) nothing is in flight, and the signal stops the run at once: a
read from a quiet pipe must not keep it waiting. A second signal stops it at once even mid-call.

Timeline of a Ctrl-C:
  t0  batch k (2000 items) is sent; the reader fills batch k+1
  t1  SIGINT: the handler sets `stop`; nothing is raised
  t2  batch k's reply comes: counted; batch k+1 is not sent; put_many returns
  t3  the run raises `Interrupted`: "interrupted by SIGINT: enqueued ...", exit 130
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from rediswq_kit import EXIT_SIGINT, EXIT_SIGTERM

EXIT_CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the run; `unsure`: a call in flight was cut off (a second signal)."""

    def __init__(self, signum: int, unsure: bool = False) -> None:
        super().__init__(signal.Signals(signum).name)
        self.name = signal.Signals(signum).name
        self.exit_code = EXIT_CODES.get(signal.Signals(signum), 128 + signum)
        self.unsure = unsure


class DeferredSignals:
    """While installed, SIGINT and SIGTERM set `stop`, and raise `Interrupted` outside `deferred()`."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._signum = 0
        self._deferring = False
        self._previous: dict[signal.Signals, object] = {}

    @contextmanager
    def installed(self) -> Iterator[DeferredSignals]:
        for signum in EXIT_CODES:
            self._previous[signum] = signal.signal(signum, self._handle)
        try:
            yield self
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)  # type: ignore[arg-type]

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A section whose Redis calls must end with their reply: a signal in it stops the run after."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self.stop.is_set():
            raise Interrupted(self._signum)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        again = self.stop.is_set()
        self._signum = self._signum or signum
        self.stop.set()
        if not self._deferring:
            raise Interrupted(signum)
        if again:
            raise Interrupted(signum, unsure=True)
