"""The worker runtime behind `rediswq work`: lease in batches, run items in slots, settle, drain, stop.

Where to read what:
  state.py     the worker's one state (LEASING, WAITING, DRAINING, STOPPING, STOPPED), its allowed
               transitions, and why a run exits with each code
  stopping.py  what SIGTERM does while an item runs: the grace period, the hard stop
  ledger.py    every lease held here (buffered, running, done, failed, late) and the Summary, one lock
  pacing.py    --prefetch auto, the look-ahead, the idle poll's back-off
  calls.py     the one Redis call policy: one call at a time, the one retry layer, outages
  leases.py    the Redis operations (lease, complete, fail, renew, give back) and their accounting
  slots.py     the --concurrency threads that run items; keeper.py the thread that does the rest
  overruns.py  items that run long: the warning, --item-timeout, the handler that cannot be stopped
  streak.py    --stop-after-failures: a handler or command that fails every item stops the run
  signals.py   the signal handler

Threads: slot x N (run items), the keeper ("rediswq-main": polls, renews, settles, stops) and the
process's main thread (signal handlers run there; it waits for the run to end, and after a signal
ends it by --grace-secs + 3 s even if a Redis call hangs). Locks: the Redis lock (calls.py) is taken
before the ledger's lock, never while holding it.
"""

from __future__ import annotations

import logging
import threading
import time

import rediswq
from rediswq_worker.logs import LOGGER
from rediswq_worker.observer import Observer
from rediswq_worker.outage import Outage
from rediswq_worker.runners import Runner
from rediswq_worker.runtime.calls import Calls, Fatal
from rediswq_worker.runtime.keeper import FLUSH_SECS, Keeper
from rediswq_worker.runtime.leases import Beat, Leases
from rediswq_worker.runtime.ledger import START_MARGIN_SECS, Ledger
from rediswq_worker.runtime.options import Options, Summary, Until
from rediswq_worker.runtime.overruns import LIMIT_GRACE_SECS, Overruns
from rediswq_worker.runtime.pacing import (
    AUTO_BATCH_MAX,
    AUTO_BATCH_SECS,
    LOOKAHEAD_MAX_SECS,
    LOOKAHEAD_MIN_SECS,
    MAX_POLL_SECS,
    MIN_POLL_SECS,
    Pacing,
    Wakeups,
)
from rediswq_worker.runtime.signals import Signals
from rediswq_worker.runtime.slots import Slot
from rediswq_worker.runtime.state import Ending, Phase, State
from rediswq_worker.runtime.stopping import HARD_STOP_SECS, Stopper


class Runtime:
    """Drains `queue` with `runner`; `run()` returns the Summary once it stops, never raising.

    The Summary says why the run ended (an Ending); turning that into an exit code is the command's
    job (worker.work), so the runtime serves a custom worker as well as `rediswq work`.
    """

    def __init__(
        self,
        queue: rediswq.Queue,
        runner: Runner,
        options: Options,
        log: logging.Logger | None = None,
        observer: Observer | None = None,
    ) -> None:
        log = log or logging.getLogger(LOGGER)
        observer = observer or Observer()
        self.options = options
        self.ledger = Ledger(options.lease_secs, options.max_items, options.stop_after_failures)
        self.phase = Phase()
        pacing = Pacing(options, self.ledger, self.phase)
        wakeups = Wakeups()
        self.signals = Signals(wakeups)
        calls = Calls(options, Outage(log, options.reconnect_secs, observer), observer, self.signals)
        leases = Leases(queue, options, self.ledger, pacing, self.phase, calls)
        self.beat = Beat(leases, options.lease_secs)
        self.stopper = Stopper(options, self.ledger, self.phase, leases, self.signals, runner, self.beat)
        overruns = Overruns(options, self.ledger, runner, log)
        self.keeper = Keeper(queue, options, pacing, leases, self.stopper, overruns)
        self.slots = [
            Slot(runner, self.ledger, pacing, leases, wakeups, observer, log)
            for _ in range(options.concurrency)
        ]
        self._finished = threading.Event()

    def run(self) -> Summary:
        started = time.monotonic()
        self.beat.start(started)
        restore = self.signals.install() if self.options.install_signals else {}
        for i, slot in enumerate(self.slots):
            threading.Thread(target=slot.run, name=f"rediswq-slot-{i}", daemon=True).start()
        threading.Thread(target=self._keep, name="rediswq-main", daemon=True).start()
        try:
            self.stopper.supervise(self._finished)
        finally:
            self._stopped()
            self.signals.restore(restore)
        with self.ledger.cv:
            self.ledger.summary.elapsed_secs = time.monotonic() - started
        return self.ledger.summary

    def _keep(self) -> None:
        try:
            self.keeper.run()
        finally:
            self._stopped()
            self._finished.set()

    def _stopped(self) -> None:
        """End in STOPPED (through STOPPING unless the run drained); the slots end."""
        with self.ledger.cv:
            if not self.phase.to(State.STOPPED):
                self.phase.to(State.STOPPING)
                self.phase.to(State.STOPPED)
            self.ledger.cv.notify_all()

    # -- read by the metrics endpoint (worker.metrics), from its own thread ----------------------

    @property
    def summary(self) -> Summary:
        """The counts so far; the same object `run()` returns."""
        return self.ledger.summary

    def state(self) -> str:
        """leasing, waiting, draining, stopping or stopped (see worker.runtime.state)."""
        with self.ledger.cv:
            return self.phase.state.value

    def held(self) -> tuple[int, int]:
        """(items running, leases held: prefetched, running, finished or failed but not yet settled)."""
        return self.ledger.held_counts()


__all__ = [
    "AUTO_BATCH_MAX",
    "AUTO_BATCH_SECS",
    "FLUSH_SECS",
    "HARD_STOP_SECS",
    "LIMIT_GRACE_SECS",
    "LOOKAHEAD_MAX_SECS",
    "LOOKAHEAD_MIN_SECS",
    "MAX_POLL_SECS",
    "MIN_POLL_SECS",
    "START_MARGIN_SECS",
    "Ending",
    "Fatal",
    "Options",
    "Runtime",
    "State",
    "Summary",
    "Until",
]
