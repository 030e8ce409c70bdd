"""When to lease and how much: --prefetch auto, the look-ahead, the idle poll's back-off.

An idle worker asks for work at most 20 times a second (MIN_POLL_SECS), backing off to twice a second
(MAX_POLL_SECS), and at once when one of its items finishes. The bounds are the runtime's own (the
library's blocking lease happens to use the same ones: a worker polls no harder than a user's loop).

--prefetch auto (Options.prefetch None): while items take under AUTO_BATCH_SECS, a lease call brings
about that much work, at most AUTO_BATCH_MAX items, so a quick command costs a fraction of a round
trip; slower items, and the first ones (their time unknown), are leased one at a time, so no pod
sits on items another pod could start. Item times are averaged, recent ones weighing most.

Look-ahead: while items take from LOOKAHEAD_MIN_SECS to LOOKAHEAD_MAX_SECS (a child process, say),
the next batch is leased as the last item of the current one starts, so the round trip to Redis is
off the critical path: by the slot itself while its child runs (a runner that is `Overlapping`: no
thread hand-off at all), else by the keeper. Quicker items gain nothing from it (the slot's own call
is sooner than waking the keeper); longer ones are leased only when a slot is free, so no pod sits on
an item another pod could start.
"""

from __future__ import annotations

import queue as stdqueue

from rediswq_worker.runtime.ledger import Ledger
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.state import Phase, State

MIN_POLL_SECS = 0.05
MAX_POLL_SECS = 0.5
LOOKAHEAD_MIN_SECS = 0.0005
LOOKAHEAD_MAX_SECS = 0.1
AUTO_BATCH_SECS = 0.05
AUTO_BATCH_MAX = 16
_AUTO_WEIGHT = 0.2


class Wakeups:
    """What the keeper sleeps on: the slots and the signal handler post to it (safe in a handler)."""

    def __init__(self) -> None:
        self._events: stdqueue.SimpleQueue[bool] = stdqueue.SimpleQueue()

    def post(self) -> None:
        self._events.put(True)

    def wait(self, timeout: float) -> None:
        """Wait up to `timeout` for a wake-up, then take every one that is there."""
        try:
            if timeout > 0:
                self._events.get(timeout=timeout)
            while True:
                self._events.get_nowait()
        except stdqueue.Empty:
            pass


class Pacing:
    """Decides when a lease call is worth making and how many items it asks for.

    Every field is guarded by the ledger's lock, like the Phase it reads; methods ending in
    `_locked` expect it held.
    """

    def __init__(self, options: Options, ledger: Ledger, phase: Phase) -> None:
        self.options = options
        self.ledger = ledger
        self.phase = phase
        self.troubled = False  # a slot's call failed: only the keeper calls until one succeeds
        self.wanted = False  # a starved slot has woken the keeper already
        self.lookahead_pays = False  # the last item took LOOKAHEAD_MIN_SECS to LOOKAHEAD_MAX_SECS
        self.lookahead = False  # a slot asks the keeper to lease the next batch now
        self.item_secs: float | None = None  # how long items take, averaged (for --prefetch auto)
        self.next_poll = 0.0
        self.poll_secs = MIN_POLL_SECS

    def item_took_locked(self, took: float) -> None:
        self.lookahead_pays = LOOKAHEAD_MIN_SECS <= took < LOOKAHEAD_MAX_SECS
        average = self.item_secs
        self.item_secs = took if average is None else average + _AUTO_WEIGHT * (took - average)

    def count_locked(self) -> int:
        """Items to ask for: the batch, or enough for every free slot; never past --max-items."""
        ledger = self.ledger
        count = max(self._batch_locked(), self.options.concurrency - len(ledger.running))
        if ledger.max_items is not None:
            count = min(count, ledger.max_items - ledger.taken)
        return count

    def _batch_locked(self) -> int:
        """Items per lease call: --prefetch N, or with auto about AUTO_BATCH_SECS of work."""
        if self.options.prefetch is not None:
            return self.options.prefetch
        average = self.item_secs
        if average is None or average >= AUTO_BATCH_SECS:
            return 1
        return min(AUTO_BATCH_MAX, int(AUTO_BATCH_SECS / max(average, 1e-6)))

    def leased_locked(self, found: bool, drained: bool, now: float) -> None:
        """A lease call answered: move to the state it says, and reset or back off the poll."""
        if self.ledger.limit_reached() or drained:
            self.phase.to(State.DRAINING)
        else:
            self.phase.to(State.LEASING if found else State.WAITING)
        self.troubled = False
        if found:
            self.wanted = False
            self.poll_secs = MIN_POLL_SECS
        else:
            self.next_poll = now + self.poll_secs
            self.poll_secs = min(self.poll_secs * 2, MAX_POLL_SECS)

    def failed_locked(self, now: float) -> None:
        """A slot's lease call failed: the keeper retries (and reports) until a call succeeds."""
        if self.phase.state is State.LEASING:
            self.phase.to(State.WAITING)
        self.troubled = True
        self.next_poll = now

    def keeper_should_poll_locked(self) -> bool:
        """The keeper leases: nothing was found last time, and a slot is free to run what comes."""
        ledger = self.ledger
        return (
            self.phase.starved
            and not ledger.leasing
            and not ledger.buffer
            and len(ledger.running) < self.options.concurrency
            and not ledger.limit_reached()
        )

    def slot_may_lease_locked(self) -> bool:
        # While starved the keeper polls; a slot still calls at once to complete what it just
        # finished (and to take the next item if one came).
        ledger = self.ledger
        return (
            not ledger.leasing
            and not self.troubled
            and (not self.phase.starved or bool(ledger.done))
            and not ledger.limit_reached()
        )

    def may_lease_now_locked(self) -> bool:
        """The queue flows: a lease call now would likely bring items (for the look-ahead)."""
        return (
            self.phase.state is State.LEASING
            and not (self.ledger.leasing or self.troubled)
            and not self.ledger.limit_reached()
        )


__all__ = [
    "AUTO_BATCH_MAX",
    "AUTO_BATCH_SECS",
    "LOOKAHEAD_MAX_SECS",
    "LOOKAHEAD_MIN_SECS",
    "MAX_POLL_SECS",
    "MIN_POLL_SECS",
    "Pacing",
    "Wakeups",
]
