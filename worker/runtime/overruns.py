"""Items that run too long: the warning line, the time limit, the handler that cannot be stopped.

Without a time limit, an item running longer than --warn-after (default: the lease length) gets a
warning line once per lease period, with its id, attempt and running time: a hung item says so in
the log instead of having its lease renewed in silence.

With --item-timeout SECS, an item running that long is stopped:
  command  its process group is killed by the runner itself (worker.runners.CommandRunner), and the
           item fails: "time limit of SECS s exceeded"; the worker goes on
  handler  a TimeLimitExceeded is raised in its thread (worker.runners.HandlerRunner.interrupt); a
           handler that returns or raises then is a failed item like any other, and the worker goes on
An item still running LIMIT_GRACE_SECS after its limit (a handler blocked in C code, which the
exception cannot reach; a child that does not die) cannot be reclaimed: the worker stops renewing its
lease and fails it (an attempt charged: retried after a backoff, or dead-lettered), then stops early
(worker.runtime.state: exit 5), so Kubernetes replaces the pod and its stuck thread.
"""

from __future__ import annotations

import logging
import math
import time

from rediswq import Lease
from rediswq_worker.runners import Interruptible, Outcome, Runner, time_limit_text
from rediswq_worker.runtime.leases import item_fields
from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options

# How long an item past its time limit may take to stop before it counts as stuck: long enough for a
# handler that sleeps in steps of a second to see the exception.
LIMIT_GRACE_SECS = 2.0


class Overruns:
    """Watches the running items' times (keeper thread only: its fields are that thread's own)."""

    def __init__(self, options: Options, ledger: Ledger, runner: Runner, log: logging.Logger) -> None:
        self.limit_secs = options.item_timeout_secs
        warn = options.lease_secs if options.warn_after_secs is None else options.warn_after_secs
        self.warn_secs = warn or None
        self.every_secs = options.lease_secs
        self.ledger = ledger
        self.interrupt = runner.interrupt if isinstance(runner, Interruptible) else None
        self.log = log
        self.warned: dict[Lease, float] = {}  # when each overrunning item was last warned of
        self.stopped: set[Lease] = set()  # items interrupted

    def check(self) -> list[Lease]:
        """Warn, interrupt; returns the items that could not be stopped (now failed, off the ledger)."""
        now = time.monotonic()
        with self.ledger.cv:
            running = list(self.ledger.running.items())
        stuck: list[Lease] = []
        for lease, began in running:
            took = now - began
            if self._limit(lease, took):
                stuck.append(lease)
            self._warn_if_due(lease, now, took)
        self._forget({lease for lease, _ in running})
        return [lease for lease in stuck if self._abandon(lease)]

    def _limit(self, lease: Lease, took: float) -> bool:
        """Interrupt an item past its time limit (once); True if it is past the grace too: stuck."""
        if self.limit_secs is None or took < self.limit_secs:
            return False
        if took >= self.limit_secs + LIMIT_GRACE_SECS:
            return True
        if lease not in self.stopped:
            self.stopped.add(lease)
            if self.interrupt is not None:
                self.interrupt(lease, self.limit_secs)
        return False

    def _warn_if_due(self, lease: Lease, now: float, took: float) -> None:
        """The long-running warning, once per lease period after --warn-after."""
        due = self.warned.get(lease, -math.inf) + self.every_secs
        if self.warn_secs is not None and took >= self.warn_secs and now >= due:
            self.warned[lease] = now
            self._warn(lease, took)

    def _warn(self, lease: Lease, took: float) -> None:
        limit = "no time limit" if self.limit_secs is None else f"time limit {self.limit_secs:g} s"
        self.log.warning(
            "item %s attempt %d has been running for %.0f s (%s)",
            lease.id,
            lease.attempt,
            took,
            limit,
            extra=item_fields(lease, event="long_running", running_secs=round(took, 1)),
        )

    def _abandon(self, lease: Lease) -> bool:
        assert self.limit_secs is not None
        error = f"{time_limit_text(self.limit_secs)}; it did not stop within {LIMIT_GRACE_SECS:g} s more"
        with self.ledger.cv:
            return self.ledger.overran_locked(lease, Outcome(False, error, cause=error))

    def _forget(self, running: set[Lease]) -> None:
        """Drop what is kept of items no longer running."""
        self.warned = {lease: at for lease, at in self.warned.items() if lease in running}
        self.stopped &= running

    def next_due(self, now: float) -> float | None:
        """How long until the next limit, grace or warning falls due; None if nothing runs."""
        with self.ledger.cv:
            started = list(self.ledger.running.items())
        dues: list[float] = []
        for lease, began in started:
            if self.limit_secs is not None:
                limit_at = began + self.limit_secs
                dues.append(limit_at if lease not in self.stopped else limit_at + LIMIT_GRACE_SECS)
            if self.warn_secs is not None:
                warned = self.warned.get(lease)
                dues.append(began + self.warn_secs if warned is None else warned + self.every_secs)
        return max(0.0, min(dues) - now) if dues else None


__all__ = ["LIMIT_GRACE_SECS", "Overruns"]
