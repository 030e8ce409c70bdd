"""The runtime's Redis operations on its leases, each with its accounting in the ledger.

Lease (completing what finished since the last call in the same script call), complete, fail,
renew, give back. While the queue flows, a slot that finds the buffer empty makes the lease call
itself: one round trip per batch and no thread hand-off at all. The hot path per item makes no
Redis call of its own (a failure is the exception: it wakes the keeper to call `fail`).

A call whose reply was lost (the connection broke after sending) may have been applied: its leases
are remembered (`maybe_sent`), and if the next call finds them no longer held they count as
unconfirmed, not lost.
"""

from __future__ import annotations

import time
from typing import Any

import redis.exceptions

import rediswq
from rediswq import Lease
from rediswq_worker.runners import Outcome
from rediswq_worker.runtime.calls import Calls, Fatal, Interrupted, unreachable
from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.pacing import Pacing
from rediswq_worker.runtime.state import Phase


class Leases:
    """Leases, settles, renews and gives back through `calls`.

    `maybe_sent` and `memory_full` are owned by the Redis lock (worker.runtime.calls): used only
    during a call.
    """

    def __init__(
        self,
        queue: rediswq.Queue,
        options: Options,
        ledger: Ledger,
        pacing: Pacing,
        phase: Phase,
        calls: Calls,
    ) -> None:
        self.queue = queue
        self.options = options
        self.ledger = ledger
        self.pacing = pacing
        self.phase = phase
        self.calls = calls
        self.log = calls.outage.log
        self.maybe_sent: set[Lease] = set()
        self.memory_full = False  # the last lease call found Redis out of memory (said once)

    # -- leasing ---------------------------------------------------------------------------------

    def lease(self, *, by_slot: bool) -> None:
        """Complete what is done and lease the next batch (the caller has set `ledger.leasing`).

        A slot tries once: on an error it leaves the retrying, and its reporting, to the keeper.
        """
        try:
            if not by_slot:
                self.calls.retry(self._lease_once)
                return
            try:
                self.calls.once(lambda: self._lease_once(1))
            except Exception as e:
                if not unreachable(e):
                    self.log.debug("lease call failed: %s", e)
                with self.ledger.cv:
                    self.pacing.failed_locked(time.monotonic())
        finally:
            with self.ledger.cv:
                self.ledger.leasing = False
                self.ledger.cv.notify_all()

    def lease_by_slot(self) -> None:
        self.lease(by_slot=True)

    def _lease_once(self, attempt: int) -> None:
        ledger = self.ledger
        with ledger.cv:
            if self.phase.stopping:
                return
            settle = ledger.take_done_locked()
            count = self.pacing.count_locked()
        if count < 1:
            self._put_back(settle, sent=False)
            return
        drained = False
        sent_at = time.monotonic()  # the leases' deadlines are later than this plus their length
        try:
            handoff = self.queue.complete_and_lease(
                settle, count, self.options.lease_secs, timeout=0, until=self.options.until
            )
            leases, lost = handoff.leases, handoff.lost
            drained = not leases
            self._memory(full=False)
        except rediswq.LeaseTimeout as e:
            leases, lost = [], []
            if e.out_of_memory:  # "nothing now" says nothing of memory: no item was asked of it
                self._memory(full=True)
        except rediswq.LeaseLost as e:
            leases, lost = [], e.leases
        except BaseException:
            self._put_back(settle, sent=True)
            raise
        self._settled(settle, lost)
        with ledger.cv:
            ledger.add_locked(leases, sent_at)
            self.pacing.leased_locked(bool(leases), drained, time.monotonic())

    def _memory(self, *, full: bool) -> None:
        """Say once that a full Redis stopped leasing (the worker polls on), and once that it resumed."""
        if full and not self.memory_full:
            self.log.warning(
                "Redis is out of memory: no new leases until memory is freed; held leases are still "
                "renewed and settled"
            )
        elif self.memory_full and not full:
            self.log.info("Redis has memory again: leasing goes on")
        self.memory_full = full

    # -- completing and failing ------------------------------------------------------------------

    def flush(self) -> None:
        """Complete the finished items now, without leasing (the slots are busy, or we are stopping)."""
        with self.ledger.cv:
            if not self.ledger.done:
                return
        self.calls.retry(self._flush_once)

    def _flush_once(self, attempt: int) -> None:
        with self.ledger.cv:
            settle = self.ledger.take_done_locked()
        if not settle:
            return
        lost: list[Lease] = []
        try:
            self.queue.complete_many(settle)
        except rediswq.LeaseLost as e:
            lost = e.leases
        except BaseException:
            self._put_back(settle, sent=True)
            raise
        self._settled(settle, lost)

    def _put_back(self, settle: list[Lease], *, sent: bool) -> None:
        """Finished items whose completion did not go through: the next call completes them.

        `sent`: the call failed on the way, so Redis may have applied it and only the reply was lost;
        if the next call then finds these leases gone, that is why (see `_settled`).
        """
        if not settle:
            return
        if sent:
            self.maybe_sent.update(settle)
        self.ledger.put_back(settle)

    def _settled(self, settle: list[Lease], lost: list[Lease]) -> None:
        """Account for completions sent: `lost` ones were no longer held."""
        unconfirmed = 0
        for lease in lost:
            if lease in self.maybe_sent:
                unconfirmed += 1  # completed by the call whose reply was lost, or expired meanwhile
            else:
                self._lost_lease(lease, "was finished")
        if unconfirmed:
            self.log.warning(
                "%d completions were sent as the connection broke: they were completed then, or their "
                "leases expired meanwhile and the items will be done again",
                unconfirmed,
            )
        if self.maybe_sent:
            self.maybe_sent.difference_update(settle)
        self.ledger.release(settle)
        self.ledger.count(done=len(settle) - len(lost), unconfirmed=unconfirmed)

    def settle_failures(self) -> None:
        with self.ledger.cv:
            if not self.ledger.failed:
                return
        self.calls.retry(self._settle_failures_once)

    def _settle_failures_once(self, attempt: int) -> None:
        with self.ledger.cv:
            failed = self.ledger.take_failed_locked()
            self.pacing.next_poll = 0.0  # a settled item may be what a starved worker waits for
        for i, (lease, outcome) in enumerate(failed):
            try:
                self._fail(lease, outcome)
            except BaseException:
                self.maybe_sent.add(lease)
                self.ledger.put_back_failed(failed[i:])
                raise

    def _fail(self, lease: Lease, outcome: Outcome) -> None:
        try:
            dead = self.queue.fail(lease, outcome.error, retry=outcome.retry)
        except rediswq.LeaseLost:
            if lease in self.maybe_sent:
                self.ledger.count(unconfirmed=1)  # failed by the call whose reply was lost, or expired
            else:
                first_line = outcome.error.partition("\n")[0]
                self._lost_lease(lease, f"failed ({first_line})")
        else:
            self.ledger.count(failed=1, dead=int(bool(dead)))
            then = (
                "dead-lettered"
                if dead
                else f"retrying after a backoff (attempt {lease.attempt} of {self.queue.max_attempts})"
            )
            self.log.warning(
                "item %s failed: %s; %s",
                lease.id,
                outcome.error,
                then,
                extra=item_fields(lease, error=outcome.error, dead_lettered=bool(dead)),
            )
        self.ledger.release([lease])
        self.maybe_sent.discard(lease)

    # -- giving back and renewing ----------------------------------------------------------------

    def give_back(self, leases: list[Lease], what: str) -> None:
        """Release leases without charging their attempt; never raises (the leases expire otherwise)."""
        if not leases:
            return

        def release(attempt: int) -> None:
            lost: list[Lease] = []
            try:
                self.queue.release_many(leases)
            except rediswq.LeaseLost as e:
                # After a retry, "lost" may mean released by the attempt whose reply was lost.
                lost = [] if attempt > 1 else e.leases
            self.ledger.count(released=len(leases) - len(lost), lost=len(lost))
            self.log.info("gave back %d %s items", len(leases) - len(lost), what)

        with self.ledger.cv:
            self.ledger.returning = len(leases)
        try:
            self.calls.retry(release)
        except (Fatal, Interrupted, rediswq.RedisWQError) as e:
            self.log.warning(
                "could not give back %d leases (%s): they come back when they expire", len(leases), e
            )
        finally:
            self.ledger.release(leases, returned=True)  # given back or not, never renewed again

    def give_back_late(self) -> None:
        late = self.ledger.take_late()
        if late:
            self.log.warning(
                "%d leased items were not started: their leases ran out while this worker was held up "
                "(frozen, or Redis unreachable); giving them back",
                len(late),
            )
            self.give_back(late, "late")

    def give_back_waited(self) -> None:
        """Give back buffered items that waited half a lease for a slot: another worker may be free."""
        with self.ledger.cv:
            waited = self.ledger.take_waited_locked(time.monotonic())
        if waited:
            self.give_back(waited, f"prefetched (waited {self.ledger.hold_secs:g} s for a free slot)")

    def renew(self, began: float) -> None:
        """Extend every lease held here in one call; a failed call is retried next beat.

        As `rediswq.Heartbeat.beat` does, but a connection failure counts towards the one report of
        an outage instead of a line of its own, and an extended lease that waits in the buffer gets
        a new start-by time.
        """
        with self.ledger.cv:
            if not self.ledger.held:
                return
        try:
            self.calls.once(self._extend)
        except rediswq.RedisWQError as e:
            if not unreachable(e):
                self.log.warning("could not renew leases: %s", e)
            return  # the next beat retries: a lease survives two missed beats
        except redis.exceptions.RedisError as e:  # passed through unwrapped by the library
            raise self.calls.fatal(e) from e
        self.ledger.renewed(began)

    def _extend(self) -> None:
        with self.ledger.cv:
            leases = list(self.ledger.held)
        try:
            self.queue.extend_many(leases)
        except rediswq.LeaseLost as e:
            for lease in e.leases:
                self._on_lost(lease)

    def _on_lost(self, lease: Lease) -> None:
        """A renewal found a lease gone (this worker stalled past its deadline): don't start it."""
        self.log.warning(
            "lease of item %s was lost before its work ended", lease.id, extra=item_fields(lease, lost=True)
        )
        self.ledger.lost_from_buffer(lease)

    def _lost_lease(self, lease: Lease, what: str) -> None:
        self.ledger.count(lost=1)
        self.log.warning(
            "item %s %s after its lease expired and was taken over; the new holder's work counts",
            lease.id,
            what,
            extra=item_fields(lease, lost=True),
        )


class Beat:
    """When the keeper renews every lease held here: every third of the lease (keeper thread only)."""

    def __init__(self, leases: Leases, lease_secs: float) -> None:
        self.leases = leases
        self.secs = lease_secs / 3
        self.next = 0.0

    def start(self, now: float) -> None:
        self.next = now + self.secs

    def if_due(self) -> None:
        now = time.monotonic()
        if now >= self.next:
            self.next = now + self.secs
            self.leases.renew(now)


def item_fields(lease: Lease, **more: Any) -> dict[str, Any]:
    """A log record's `extra` for a line about one item."""
    return {"fields": {"item": lease.id, "attempt": lease.attempt, **more}}


__all__ = ["Beat", "Leases", "item_fields"]
