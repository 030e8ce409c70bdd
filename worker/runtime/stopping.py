"""Stopping: what SIGTERM or SIGINT does, the grace period, the hard stop, the stop on an error.

SIGTERM while an item runs, step by step (`Stopper.shutdown`, on the keeper thread):
  1. the handler (worker.runtime.signals) records it and wakes the keeper;
  2. the worker moves to STOPPING (worker.runtime.state): no slot starts an item or makes a lease
     call after this (a lease call under way is let finish, so its leases reach the buffer);
  3. the items leased but not started are given back at once (`release_many`: no attempt charged);
  4. the running item gets up to --grace-secs to finish, and is completed (or failed) as usual if it
     does; leases are still renewed meanwhile; a second signal ends the grace period at once;
  5. what still runs then is killed (a command's whole process group) and given back;
     STOPPING -> STOPPED, exit code 3.
The worker stops early the same way, from step 2 on, when its handler looks broken or an item could
not be stopped (`stop_early`; worker.runtime.streak and worker.runtime.overruns), with exit code 6 or 5.
The process's main thread (`supervise`) keeps the promise made to Kubernetes: the run ends within
--grace-secs + HARD_STOP_SECS of the first signal even if a Redis call hangs (`hard_stop`: kill what
runs, leave the leases to expire).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import rediswq
from rediswq_worker.runners import Runner
from rediswq_worker.runtime.calls import Calls, Fatal, Interrupted
from rediswq_worker.runtime.leases import Beat, Leases
from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.signals import Signals
from rediswq_worker.runtime.state import Ending, Phase, State

# After the first signal the process is gone within --grace-secs plus this, whatever Redis does.
HARD_STOP_SECS = 3.0
_SUPERVISE_SECS = 0.5


class Stopper:
    """Runs the shutdown (keeper thread), the hard stop (main thread) and the stop on an error.

    It keeps no state of its own: the Phase and the held leases are the ledger's (under its lock),
    the shutdown's deadline is `Calls.give_up_at` (written by the keeper), the signals are Signals'.
    """

    def __init__(
        self,
        options: Options,
        ledger: Ledger,
        phase: Phase,
        leases: Leases,
        signals: Signals,
        runner: Runner,
        beat: Beat,
    ) -> None:
        self.options = options
        self.ledger = ledger
        self.phase = phase
        self.leases = leases
        self.calls: Calls = leases.calls
        self.signals = signals
        self.runner = runner
        self.beat = beat
        self.log: logging.Logger = leases.log

    def shutdown(self) -> tuple[str, Ending]:
        """Stop leasing, give back what has not started, let running items finish within the grace."""
        why = self.signals.name(0)
        self._wind_down(why, {"signal": why})
        return f"stopped by {why}", Ending.STOPPED

    def stop_early(self, outcome: str, ending: Ending, error: str) -> tuple[str, Ending]:
        """Stop as on SIGTERM, for a reason of the worker's own; `error` is the run's one line about it."""
        self.ledger.end(outcome, ending, error)
        self._wind_down("stopping early", {"ending": ending.value})
        return outcome, ending

    def _wind_down(self, why: str, fields: dict[str, object]) -> None:
        self.calls.give_up_at = time.monotonic() + self.options.grace_secs
        unstarted, running = self._stop_leasing()
        self.log.info(
            "%s: stopping; %d running items get up to %g s to finish",
            why,
            running,
            self.options.grace_secs,
            extra={"fields": {"event": "stopping", **fields}},
        )
        self.leases.give_back(unstarted, "unstarted")
        self.settle_quietly()
        self._grace()
        self._kill_leftover()
        self.settle_quietly()

    def _stop_leasing(self) -> tuple[list[rediswq.Lease], int]:
        """Move to STOPPING; take the unstarted leases off the ledger. Returns them and the count running."""
        ledger = self.ledger
        # Taking the Redis lock first lets a slot's lease call under way add its leases to the buffer
        # (if Redis does not answer it, those leases are not ours to give back: they will expire).
        with contextlib.suppress(Fatal), self.calls.turn(), ledger.cv:
            self.phase.to(State.STOPPING)  # any lease call after this one sees it, and leases nothing
        with ledger.cv:
            self.phase.to(State.STOPPING)  # (again, in case the Redis lock could not be had)
            ledger.cv.notify_all()
            return ledger.take_unstarted_locked(), len(ledger.running)

    def _grace(self) -> None:
        """Wait for the running items to finish, settling them, until the grace period ends."""
        signals, ledger = self.signals, self.ledger
        seen = signals.noticed
        give_up_at = self.calls.give_up_at or time.monotonic()
        while True:
            with ledger.cv:
                running = len(ledger.running)
            now = time.monotonic()
            if running == 0 or now >= give_up_at:
                return
            signals.pump(min(give_up_at - now, max(0.0, self.beat.next - now), 1.0))
            if signals.noticed > seen:
                seen = signals.noticed
                self.log.warning("second %s: ending the grace period now", signals.name(seen - 1))
                give_up_at = self.calls.give_up_at = time.monotonic()
            self.settle_quietly()
            self.beat.if_due()

    def _kill_leftover(self) -> None:
        with self.ledger.cv:
            leftover = self.ledger.take_running_locked()
        if leftover:
            self.log.warning("grace period over: stopping %d running items", len(leftover))
            self.runner.kill(leftover)
            self.calls.give_up_at = time.monotonic() + HARD_STOP_SECS / 2
            self.leases.give_back(leftover, "unfinished")

    def settle_quietly(self) -> None:
        """Settle what finished during shutdown; an unreachable Redis only means leases expire."""
        try:
            self.leases.settle_failures()
            self.leases.flush()
            self.leases.give_back(self.ledger.take_spared(), "more failing")
        except (Fatal, Interrupted, rediswq.RedisWQError) as e:
            self.log.warning("could not settle finished items (%s): their leases will expire", e)

    def abandon(self) -> None:
        """After a fatal error: stop the children of running items (their leases will expire)."""
        with self.ledger.cv:
            self.phase.to(State.STOPPING)
            running = self.ledger.take_running_locked()
            self.ledger.take_unstarted_locked()
        self.runner.kill(running)

    def supervise(self, finished: threading.Event) -> None:
        """Wait for the run to end (main thread); after a signal, end it by the deadline even if Redis hangs.

        The runtime's Redis calls can block for a long time when Redis stops answering (redis-py's
        socket timeout, times the library's own retries), so they run on the keeper thread, and this
        one keeps the promise: gone within --grace-secs + HARD_STOP_SECS of the first signal, a
        second signal or not (it shortens the deadline to HARD_STOP_SECS from then).
        """
        received = self.signals.received
        deadline: float | None = None
        seen = 0
        wait = _SUPERVISE_SECS
        while not finished.wait(wait):
            now = time.monotonic()
            if len(received) > seen:
                first = received[0][1] + self.options.grace_secs + HARD_STOP_SECS
                deadline = first if seen == 0 else min(deadline or now, now + HARD_STOP_SECS)
                seen = len(received)
            if deadline is not None and now >= deadline:
                self.hard_stop()
                return
            wait = _SUPERVISE_SECS if deadline is None else min(_SUPERVISE_SECS, deadline - now)

    def hard_stop(self) -> None:
        """Redis did not let the shutdown finish in time: kill what runs and leave the rest to expiry."""
        with self.ledger.cv:
            self.phase.to(State.STOPPING)
            running = self.ledger.take_running_locked()
            held = self.ledger.unsettled_locked()
        self.runner.kill(running)
        self.log.warning(
            "Redis did not answer in time to give back %d leases: they come back when they expire",
            held + len(running),
        )
        self.ledger.end(f"stopped by {self.signals.name(0)}", Ending.STOPPED)


__all__ = ["HARD_STOP_SECS", "Stopper"]
