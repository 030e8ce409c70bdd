"""The worker's one state, and every transition it may take: why a run goes on, and why it ends.

  LEASING   the queue flows: lease calls bring items, the slots run them
  WAITING   the last lease call found nothing (for now): the keeper polls, backing off 50 ms to 0.5 s
  DRAINING  nothing more to lease: the queue said it is drained (and closed, with until="closed"),
            or --max-items leases were taken; the worker finishes and settles what it holds
  STOPPING  a signal or an error: start nothing more (see worker.runtime.stopping)
  STOPPED   the run is over; the slots end

Why a run ends (an Ending; the command turns it into the exit code shown here, worker.work), by the
transition that ends it:
  DRAINING -> STOPPED   0  the queue is drained and this worker holds nothing: the whole queue is done,
                           not just this worker's share; 4 if it holds dead letters (0 all the same
                           without `fail_on_dead`: --allow-dead); 3 if --max-items was reached and
                           the queue is not drained
  WAITING -> STOPPING   7  until="closed" with `max_wait_secs`: this worker held and leased nothing for
                           that long and the queue is still open and empty (worker.runtime.progress)
  * -> STOPPING         3  SIGTERM or SIGINT: unstarted items are given back at once, running ones get
                           --grace-secs to finish, the rest are killed and given back (no attempt is
                           charged), then STOPPING -> STOPPED
                        1  Redis stayed unreachable for `reconnect_secs`, answered with an error, or
                           the queue's state vanished (its keys deleted)
                        2  Redis refused the credentials, or no such queue exists (until="drained")
                        5  an item ran past `item_timeout_secs` and did not stop within
                           LIMIT_GRACE_SECS more (worker.runtime.overruns): a handler's thread cannot
                           be reclaimed, so the item is failed (an attempt charged) and the worker
                           stops as on SIGTERM (unstarted items given back, running ones get
                           --grace-secs) for its pod to be replaced
                        6  the last `stop_after_failures` items all failed with the same error
                           (worker.runtime.streak): the handler or command looks broken, so the
                           worker stops as on SIGTERM instead of spending every item's attempts;
                           a slot moves to STOPPING as it files the last of them, so nothing more
                           starts, and what then fails alike is given back, not charged
A transition not in the table is ignored: a lease call answered after the stop began cannot start
the worker leasing again, and nothing leaves STOPPED.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where the run is; `value` is the name the metrics endpoint shows."""

    LEASING = "leasing"
    WAITING = "waiting"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Ending(enum.Enum):
    """Why a run ended, as the runtime reports it in its Summary; the command maps it to an exit code."""

    DRAINED = "drained"  # 0: the queue is done
    DRAINED_WITH_DEAD = "drained_with_dead"  # 4: done, but dead letters remain (and they count)
    STOPPED = "stopped"  # 3: --max-items reached, or SIGTERM/SIGINT
    ITEM_STUCK = "item_stuck"  # 5: an item overran its time limit and could not be stopped
    HANDLER_BROKEN = "handler_broken"  # 6: the last items all failed alike
    PRODUCER_MISSING = "producer_missing"  # 7: idle past max_wait_secs on an open, empty queue
    FAILED = "failed"  # 1: Redis unreachable or erring, the queue's state vanished, or a bug
    MISCONFIGURED = "misconfigured"  # 2: credentials, no such queue, an evicting Redis, a bad argument


TRANSITIONS: dict[State, frozenset[State]] = {
    State.LEASING: frozenset({State.WAITING, State.DRAINING, State.STOPPING}),
    State.WAITING: frozenset({State.LEASING, State.DRAINING, State.STOPPING}),
    # Drained, yet an item this worker failed comes back (retried after its backoff): lease it.
    State.DRAINING: frozenset({State.LEASING, State.WAITING, State.STOPPING, State.STOPPED}),
    State.STOPPING: frozenset({State.STOPPED}),
    State.STOPPED: frozenset(),
}


class Phase:
    """The current State; read and changed under the ledger's lock (worker.runtime.ledger)."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state = State.LEASING

    def to(self, new: State) -> bool:
        """Move to `new` if the table allows it (staying put is allowed); False if ignored."""
        if new is self.state:
            return True
        if new not in TRANSITIONS[self.state]:
            return False
        self.state = new
        return True

    @property
    def starved(self) -> bool:
        """The last lease call found nothing to lease: the keeper polls, the slots wait."""
        return self.state is State.WAITING or self.state is State.DRAINING

    @property
    def stopping(self) -> bool:
        """Start nothing more."""
        return self.state is State.STOPPING or self.state is State.STOPPED


__all__ = ["TRANSITIONS", "Ending", "Phase", "State"]
