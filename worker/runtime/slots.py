"""A slot: one of --concurrency threads that run items (a handler call or a child process).

Per item, one round of the ledger's lock: file the last item as done or failed, take the next one
from the buffer. A slot that finds the buffer empty makes the lease call itself (completing the
items finished since the last call), unless the worker is WAITING: then the keeper polls and the
slot sleeps on the lock's condition. Once the worker is STOPPING a slot starts nothing more; at
STOPPED it ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rediswq import Lease
from rediswq_worker.observer import Observer
from rediswq_worker.runners import OK, Outcome, Overlapping, Runner
from rediswq_worker.runtime.leases import Leases, item_fields
from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.pacing import Pacing, Wakeups
from rediswq_worker.runtime.state import Phase, State


class Slot:
    """Runs items until the run is over; `ahead` is this slot thread's own."""

    def __init__(
        self,
        runner: Runner,
        ledger: Ledger,
        pacing: Pacing,
        leases: Leases,
        wakeups: Wakeups,
        observer: Observer,
        log: logging.Logger,
    ) -> None:
        self.runner = runner
        self.overlapped = runner.run_overlapped if isinstance(runner, Overlapping) else None
        self.ledger = ledger
        self.pacing = pacing
        self.phase: Phase = pacing.phase
        self.leases = leases
        self.wakeups = wakeups
        self.observer = observer
        self.log = log
        self.verbose = log.isEnabledFor(logging.DEBUG)
        self.ahead = False  # this slot leases the next batch itself while its item runs

    def run(self) -> None:
        """The slot thread's loop."""
        cv = self.ledger.cv
        lease: Lease | None = None
        outcome, took = OK, 0.0
        while True:
            with cv:  # one lock round per item: settle the last one, take the next
                if lease is not None:
                    self._finished_locked(lease, outcome, took)
                lease = self._next_locked()
                if lease is None and self.phase.state is State.STOPPED:
                    return
            if lease is None:
                self.leases.lease(by_slot=True)
                continue
            outcome, took = self._run(lease)

    def _next_locked(self) -> Lease | None:
        """Wait for the next item to run; None: make a lease call (`leasing` is set), or STOPPED."""
        ledger, pacing, phase = self.ledger, self.pacing, self.phase
        while True:
            if phase.state is State.STOPPED:
                return None
            if not phase.stopping:
                if ledger.buffer:
                    lease = ledger.start_locked()
                    if lease is None:  # too late to start: the keeper gives it back
                        self.wakeups.post()
                        continue
                    self._look_ahead_locked()
                    return lease
                if pacing.slot_may_lease_locked():
                    ledger.leasing = True
                    return None
                if phase.starved and not pacing.wanted:
                    pacing.wanted = True
                    self.wakeups.post()
            ledger.cv.wait()

    def _look_ahead_locked(self) -> None:
        """The last buffered item starts: lease the next batch now if the items' times say it pays."""
        pacing = self.pacing
        if self.ledger.buffer or not pacing.lookahead_pays or not pacing.may_lease_now_locked():
            return
        if self.overlapped is not None:
            self.ahead = self.ledger.leasing = True
        else:
            pacing.lookahead = True
            self.wakeups.post()

    def _run(self, lease: Lease) -> tuple[Outcome, float]:
        if self.verbose:
            self.log.debug("item %s attempt %d started", lease.id, lease.attempt, extra=item_fields(lease))
        began = time.monotonic()
        if self.ahead:
            self.ahead = False
            assert self.overlapped is not None
            meanwhile = _Once(self.leases.lease_by_slot)
            try:
                outcome = self.overlapped(lease, meanwhile)
            finally:
                meanwhile()  # the item could not start: the call is made all the same
        else:
            outcome = self.runner.run(lease)
        took = time.monotonic() - began
        if self.verbose and outcome.ok:
            self.log.debug("item %s done", lease.id, extra=item_fields(lease))
        return outcome, took

    def _finished_locked(self, lease: Lease, outcome: Outcome, took: float) -> None:
        """File a finished item; wake the keeper if it has a call to make for it."""
        self.observer.item_finished(took)
        self.pacing.item_took_locked(took)
        if not self.ledger.finished_locked(lease, outcome):
            return
        if self.ledger.streak.broken:  # start nothing more: the keeper stops the run (exit 6)
            self.phase.to(State.STOPPING)
        if not outcome.ok or self.phase.stopping or self.ledger.limit_reached():
            self.wakeups.post()  # the keeper fails it, or settles and ends the run


class _Once:
    """Calls `fn` on the first call only."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


__all__ = ["Slot"]
