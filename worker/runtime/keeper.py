"""The keeper ("rediswq-main" thread): everything but running items and receiving signals.

Once a lease call finds nothing (the worker is WAITING or DRAINING), the slots wait and the keeper
polls, backing off from 50 ms to 0.5 s; it fails items, renews every lease held here in one call a
third of the way through the lease, completes finished items that would otherwise wait over
FLUSH_SECS, gives back items that waited half a lease for a slot (worker.runtime.ledger), watches
items that run long (worker.runtime.overruns), retries while Redis is unreachable, decides when the
run ends (worker.runtime.state) and runs the shutdown (worker.runtime.stopping). It sleeps on one
queue of wake-ups that the slots and the signal handler post to.
"""

from __future__ import annotations

import time

import rediswq
from rediswq_kit import message
from rediswq_worker.runtime.calls import Fatal, Interrupted
from rediswq_worker.runtime.leases import Beat, Leases
from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.overruns import LIMIT_GRACE_SECS, Overruns
from rediswq_worker.runtime.pacing import Pacing
from rediswq_worker.runtime.progress import Progress
from rediswq_worker.runtime.signals import Signals
from rediswq_worker.runtime.state import Ending, Phase, State
from rediswq_worker.runtime.stopping import Stopper

# Completions wait for the next lease call, but never longer than this (so `stats` stays current and
# a crash repeats little work).
FLUSH_SECS = 1.0


class Keeper:
    """The keeper thread's loop; `beat` and the signals' `noticed` count are this thread's own."""

    def __init__(
        self,
        queue: rediswq.Queue,
        options: Options,
        pacing: Pacing,
        leases: Leases,
        stopper: Stopper,
        overruns: Overruns,
    ) -> None:
        self.queue = queue
        self.options = options
        self.pacing = pacing
        self.ledger: Ledger = pacing.ledger
        self.phase: Phase = pacing.phase
        self.leases = leases
        self.stopper = stopper
        self.signals: Signals = stopper.signals
        self.beat: Beat = stopper.beat
        self.overruns = overruns
        self.log = leases.log
        self.progress = Progress(queue, options, self.ledger, self.phase, leases.calls, self.log)

    def run(self) -> None:
        """Serve until the run ends, record why in the Summary; never raises."""
        end, stopper = self.ledger.end, self.stopper
        try:
            end(*self._serve())
        except Fatal as e:
            end("stopped on an error", Ending.FAILED, str(e))
            stopper.abandon()
        except rediswq.QueueNotFound as e:
            # Never "drained": a typo'd name is a configuration error, a vanished queue a runtime one.
            if e.vanished:
                end("stopped: its state vanished", Ending.FAILED, str(e))
            else:
                typo = f"{e.suggestion()} " if e.similar else ""
                end(
                    "not found",
                    Ending.MISCONFIGURED,
                    f"no such queue {self.queue.name!r} (nothing was ever added to it); "
                    f"{typo}use --until closed to wait for a producer",
                )
            stopper.abandon()
        except (
            rediswq.AuthenticationFailed,
            rediswq.EvictingRedis,
            rediswq.InvalidArgument,
        ) as e:  # configuration
            end("stopped", Ending.MISCONFIGURED, message(e))
            stopper.abandon()
        except BaseException as e:  # a bug: say so in one place, and still end the run
            self.log.exception("the worker runtime failed")
            end("failed", Ending.FAILED, repr(e))
            stopper.abandon()

    def _serve(self) -> tuple[str, Ending]:
        """The main loop: returns (outcome, ending) once drained, stopped or interrupted."""
        while True:
            self.signals.pump(self._next_wait())
            if self.signals.noticed:
                return self.stopper.shutdown()
            try:
                ended = self._turn()
            except Interrupted:
                return self.stopper.shutdown()
            if ended is not None:
                return ended

    def _turn(self) -> tuple[str, Ending] | None:
        """One round of the keeper's chores; (outcome, ending) if the run ends here."""
        ended = self._stop_early_if_due()
        if ended is not None:
            return ended
        self._upkeep()
        if self.ledger.limit_reached():
            return self._stop_at_limit() if self.ledger.idle() else None
        return self._drain_or_poll() or self._idle_limit()

    def _stop_early_if_due(self) -> tuple[str, Ending] | None:
        """Failures settled; an item that could not be stopped, or a broken handler, ends the run."""
        stuck = self.overruns.check()
        self.leases.settle_failures()
        if stuck:
            return self._stuck(stuck)
        with self.ledger.cv:
            broken = self.ledger.streak.broken
        return self._broken() if broken else None

    def _upkeep(self) -> None:
        """Give back what waited too long, renew the leases when due, complete what waited FLUSH_SECS."""
        leases, ledger = self.leases, self.ledger
        leases.give_back_waited()
        leases.give_back_late()
        self.beat.if_due()
        with ledger.cv:
            flush = ledger.done_since is not None and time.monotonic() - ledger.done_since >= FLUSH_SECS
        if flush:
            leases.flush()

    def _drain_or_poll(self) -> tuple[str, Ending] | None:
        """The run ends once the queue is drained and nothing is held here; else poll when due."""
        with self.ledger.cv:
            drained = self.phase.state is State.DRAINING and self.ledger.idle_locked()
            poll = not drained and self._poll_locked()
        if drained:
            return self._drained_exit()
        if poll:
            self.leases.lease(by_slot=False)
        return None

    def _idle_limit(self) -> tuple[str, Ending] | None:
        """The progress line when due; the run ends (PRODUCER_MISSING) once idle past `max_wait_secs`."""
        idle = self.progress.tick()
        if idle is None:
            return None
        outcome, error = idle
        self.ledger.end(outcome, Ending.PRODUCER_MISSING, error)
        return outcome, Ending.PRODUCER_MISSING

    def _poll_locked(self) -> bool:
        """Make a lease call now: the poll is due, or a slot asked for the look-ahead (sets `leasing`)."""
        pacing, ledger = self.pacing, self.ledger
        poll = pacing.keeper_should_poll_locked() and time.monotonic() >= pacing.next_poll
        if pacing.lookahead:
            pacing.lookahead = False
            poll = poll or (pacing.may_lease_now_locked() and not ledger.buffer)
        if poll:
            ledger.leasing = True
        return poll

    def _next_wait(self) -> float:
        now = time.monotonic()
        # The beat is always on the clock: a slot may lease while this thread sleeps, and its new
        # leases must be renewed in time without waking anyone.
        waits = [1.0, self.beat.next - now, self.progress.next_due() - now]
        with self.ledger.cv:
            if self.pacing.keeper_should_poll_locked():
                waits.append(self.pacing.next_poll - now)
            if self.ledger.done_since is not None:
                waits.append(self.ledger.done_since + FLUSH_SECS - now)
            hold = self.ledger.next_hold_locked()
            if hold is not None:
                waits.append(hold - now)
        due = self.overruns.next_due(now)
        if due is not None:
            waits.append(due)
        return max(0.0, min(waits))

    def _stuck(self, stuck: list[rediswq.Lease]) -> tuple[str, Ending]:
        """An item overran its time limit and did not stop: its thread is lost to this process."""
        limit = self.options.item_timeout_secs
        ids = ", ".join(lease.id for lease in stuck)
        return self.stopper.stop_early(
            "stopped early (an item overran its time limit)",
            Ending.ITEM_STUCK,
            f"item {ids} ran past --item-timeout {limit:g} s and did not stop within {LIMIT_GRACE_SECS:g} s "
            "more (a handler blocked outside Python code cannot be interrupted): it was failed, and this "
            "worker stops so that its pod is replaced",
        )

    def _broken(self) -> tuple[str, Ending]:
        """The last items all failed alike: the handler or command looks broken (worker.runtime.streak)."""
        with self.ledger.cv:
            count, cause = self.ledger.streak.count, self.ledger.streak.cause
        return self.stopper.stop_early(
            "stopped early (the handler or command looks broken)",
            Ending.HANDLER_BROKEN,
            f"the last {count} items all failed with the same error, so the handler or command looks "
            f"broken; stopped early (--stop-after-failures {self.options.stop_after_failures}), the "
            f"items come back after their backoff: {cause}",
        )

    def _stop_at_limit(self) -> tuple[str, Ending]:
        self.leases.flush()
        self.leases.settle_failures()
        stats = self.leases.calls.retry(lambda _attempt: self.queue.stats())
        if stats.drained and (self.options.until == "drained" or stats.closed):
            return self._drained_exit(stats)
        return f"stopped after --max-items {self.options.max_items}", Ending.STOPPED

    def _drained_exit(self, stats: rediswq.Stats | None = None) -> tuple[str, Ending]:
        """The queue is done: DRAINED, or DRAINED_WITH_DEAD if it holds dead letters and `fail_on_dead`.

        The queue's count, not this run's: a Job is done only when no item of it ended as a dead
        letter, whichever pod dead-lettered it.
        """
        if stats is None:
            try:
                stats = self.leases.calls.retry(lambda _attempt: self.queue.stats())
            except Fatal:
                if self.options.fail_on_dead:
                    raise
                return "drained", Ending.DRAINED  # the count is for the summary line only
        with self.ledger.cv:
            self.ledger.summary.dead_letters = stats.dead
        if stats.dead and self.options.fail_on_dead:
            return f"drained with {stats.dead} dead letters", Ending.DRAINED_WITH_DEAD
        return "drained", Ending.DRAINED


__all__ = ["FLUSH_SECS", "Keeper"]
