"""The leases this worker holds, where each one is, and the run's Summary: all under one lock.

Every lease held here is in exactly one place: the buffer (leased, not started), running, done
(finished, to be completed with the next call), failed (to be failed), late (past its start-by
time: to be given back) or spared (failed like the items that showed the handler broken, after
the verdict: given back, not charged, worker.runtime.streak);
`held` is all of them plus those in a call under way, and each renewal extends all of `held`, so
nothing held here can expire while it waits.

A buffered item is started only while its lease has time left on this worker's own clock: the time
the lease call was sent (or the last renewal that extended it) plus the lease length, less a margin
(START_MARGIN_SECS, at most a quarter of the lease). A worker that was frozen (SIGSTOP, a paused VM,
a stalled node) past that point gives the lease back instead of starting the item:
  time 0    worker A leases items 1-4 (lease 1 s) and starts item 1; A is frozen
  time 1    the leases of 2-4 expire; worker B takes them over and completes them
  time 3    A resumes: items 2-4 are past their start-by time, so A gives them back (the release
            finds them taken over and changes nothing) instead of running them a second time.

A buffered item never waits long for a slot while other workers could run it: one that has waited
`hold_secs` (half the lease) is given back, its attempt not charged (`take_waited_locked`). So an item
that hangs, or runs long, holds up only itself:
  time 0    worker A leases items 2 and 3 (lease 2 s); item 2 hangs; worker B is idle
  time 1    item 3 has waited half its lease: A gives it back, B leases and runs it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque

from rediswq import Lease
from rediswq_worker.runners import Outcome
from rediswq_worker.runtime.options import Summary
from rediswq_worker.runtime.state import Ending
from rediswq_worker.runtime.streak import Streak

# A buffered item starts only if its lease has this much left (at most a quarter of the lease) on the
# worker's clock: time for the keeper's next renewal to land before the lease runs out.
START_MARGIN_SECS = 1.0
_NEVER = (math.inf, 0)


class Ledger:
    """The held leases and the Summary, owned by one lock: `cv`.

    `cv` also guards the worker's Phase and Pacing; the slots wait on it for work. Methods whose
    name ends in `_locked` expect it held; the others take it. It is never held during a Redis call
    (the Redis lock, worker.runtime.calls, is taken first when both are needed).
    """

    def __init__(self, lease_secs: float, max_items: int | None, stop_after_failures: int = 0) -> None:
        self.cv = threading.Condition(threading.Lock())
        self.buffer: deque[Lease] = deque()
        # Buffered leases: (monotonic time to start by, the lease's deadline_ms that time was set for).
        self.start_by: dict[Lease, tuple[float, int]] = {}
        self.buffered_at: dict[Lease, float] = {}  # when each buffered lease was leased (monotonic)
        self.hold_secs = lease_secs / 2
        self.running: dict[Lease, float] = {}  # running leases: when each started (monotonic)
        self.streak = Streak(stop_after_failures)
        self.done: list[Lease] = []
        self.done_since: float | None = None
        self.failed: list[tuple[Lease, Outcome]] = []
        self.late: list[Lease] = []
        self.spared: list[Lease] = []
        self.held: set[Lease] = set()
        self.leasing = False  # a lease call is under way: its leases are in transit
        self.taken = 0  # leases taken, for --max-items
        self.returning = 0  # leases in a give-back call under way (for the hard stop's message)
        self.summary = Summary()
        self.max_items = max_items
        self.margin_secs = min(START_MARGIN_SECS, lease_secs / 4)

    # -- questions -------------------------------------------------------------------------------

    def limit_reached(self) -> bool:
        return self.max_items is not None and self.taken >= self.max_items

    def idle_locked(self) -> bool:
        """Nothing held and no lease call under way."""
        return not (
            self.buffer
            or self.running
            or self.done
            or self.failed
            or self.late
            or self.spared
            or self.leasing
        )

    def idle(self) -> bool:
        with self.cv:
            return self.idle_locked()

    def unsettled_locked(self) -> int:
        """Leases held but not running: what a hard stop leaves to expire."""
        return (
            len(self.buffer)
            + len(self.done)
            + len(self.failed)
            + len(self.late)
            + len(self.spared)
            + self.returning
        )

    # -- the items' way through ------------------------------------------------------------------

    def add_locked(self, leases: list[Lease], sent_at: float) -> None:
        """Leases a call sent at `sent_at` brought: buffered, each with its start-by time."""
        for lease in leases:
            self.start_by[lease] = (sent_at + lease.lease_ms / 1000 - self.margin_secs, lease.deadline_ms)
            self.buffered_at[lease] = sent_at
        self.held.update(leases)
        self.buffer.extend(leases)
        self.taken += len(leases)

    def start_locked(self) -> Lease | None:
        """The next buffered lease, now running; None (and it is late) if past its start-by time."""
        lease = self.buffer.popleft()
        self.buffered_at.pop(lease, None)
        now = time.monotonic()
        if now > self.start_by.pop(lease, _NEVER)[0]:
            self.late.append(lease)
            return None
        self.running[lease] = now
        return lease

    def take_waited_locked(self, now: float) -> list[Lease]:
        """Buffered leases that have waited `hold_secs` or more for a slot, taken off the ledger (those
        also past their start-by time move to `late`)."""
        waited: list[Lease] = []
        buffer, buffered_at = self.buffer, self.buffered_at
        while buffer and buffered_at.get(buffer[0], now) + self.hold_secs <= now:
            lease = buffer.popleft()  # leased in order: the oldest is first
            del buffered_at[lease]
            late = now > self.start_by.pop(lease, _NEVER)[0]  # frozen past it: said as late
            (self.late if late else waited).append(lease)
        return waited

    def next_hold_locked(self) -> float | None:
        """When the oldest buffered lease will have waited `hold_secs` (monotonic), if any waits."""
        if not self.buffer:
            return None
        return self.buffered_at.get(self.buffer[0], 0.0) + self.hold_secs

    def finished_locked(self, lease: Lease, outcome: Outcome) -> bool:
        """File a finished item as done or failed; False if it was given back meanwhile."""
        if self.running.pop(lease, None) is None:
            return False  # given back when the grace period ended, or failed as overrun
        if self.streak.same_locked(outcome):
            self.spared.append(lease)
            return True
        self.streak.filed_locked(outcome)
        if outcome.ok:
            self.done.append(lease)
            if self.done_since is None:
                self.done_since = time.monotonic()
        else:
            self.failed.append((lease, outcome))
        return True

    def overran_locked(self, lease: Lease, outcome: Outcome) -> bool:
        """A running item is abandoned as failed (its thread goes on); False if it has finished."""
        if self.running.pop(lease, None) is None:
            return False
        self.failed.append((lease, outcome))
        return True

    def take_done_locked(self) -> list[Lease]:
        """The finished items, for the call about to complete them."""
        settle, self.done, self.done_since = self.done, [], None
        return settle

    def put_back(self, settle: list[Lease]) -> None:
        """Finished items whose completion did not go through: the next call completes them."""
        with self.cv:
            self.done[:0] = settle
            if self.done_since is None:
                self.done_since = time.monotonic()

    def take_failed_locked(self) -> list[tuple[Lease, Outcome]]:
        failed, self.failed = self.failed, []
        return failed

    def put_back_failed(self, failed: list[tuple[Lease, Outcome]]) -> None:
        with self.cv:
            self.failed[:0] = failed

    def take_late(self) -> list[Lease]:
        with self.cv:
            late, self.late = self.late, []
            return late

    def take_spared(self) -> list[Lease]:
        with self.cv:
            spared, self.spared = self.spared, []
            return spared

    def take_unstarted_locked(self) -> list[Lease]:
        """Buffered and late leases, taken off the ledger to be given back."""
        unstarted = [*self.buffer, *self.late]
        self.buffer.clear()
        self.late.clear()
        self.start_by.clear()
        self.buffered_at.clear()
        return unstarted

    def take_running_locked(self) -> list[Lease]:
        """Running leases, taken off the ledger: their items are about to be killed."""
        running = list(self.running)
        self.running.clear()
        return running

    def renewed(self, began: float) -> None:
        """A renewal sent at `began` went through: buffered leases it extended get a new start-by time."""
        with self.cv:
            for lease in self.buffer:
                start_by = self.start_by.get(lease)
                if start_by is not None and start_by[1] != lease.deadline_ms:
                    self.start_by[lease] = (
                        began + lease.lease_ms / 1000 - self.margin_secs,
                        lease.deadline_ms,
                    )

    def lost_from_buffer(self, lease: Lease) -> bool:
        """A renewal found `lease` gone: drop it if not started (True), else its settle call reports it."""
        with self.cv:
            self.held.discard(lease)
            try:
                self.buffer.remove(lease)
            except ValueError:
                return False
            self.start_by.pop(lease, None)
            self.buffered_at.pop(lease, None)
            self.summary.lost += 1
            return True

    def release(self, leases: list[Lease], *, returned: bool = False) -> None:
        """Leases settled or given back (or not, but never to be renewed again); `returned`: the
        give-back call is over."""
        with self.cv:
            self.held.difference_update(leases)
            if returned:
                self.returning = 0

    # -- the Summary -----------------------------------------------------------------------------

    def count(
        self,
        *,
        done: int = 0,
        failed: int = 0,
        dead: int = 0,
        released: int = 0,
        lost: int = 0,
        unconfirmed: int = 0,
    ) -> None:
        with self.cv:
            summary = self.summary
            summary.done += done
            summary.failed += failed
            summary.dead += dead
            summary.released += released
            summary.lost += lost
            summary.unconfirmed += unconfirmed

    def end(self, outcome: str, ending: Ending, error: str = "") -> None:
        """Record how the run ended; the first end recorded stands (the hard stop, or the keeper)."""
        with self.cv:
            summary = self.summary
            if summary.outcome:
                return
            summary.outcome, summary.ending, summary.error = outcome, ending, error

    def held_counts(self) -> tuple[int, int]:
        """(items running, leases held)."""
        with self.cv:
            return len(self.running), len(self.held)


__all__ = ["START_MARGIN_SECS", "Ledger"]
