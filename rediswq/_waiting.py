"""Waiting for leases: what `Queue.complete_and_lease` does while there is nothing to lease yet.

Apart from `Queue` because it is one loop with concerns of its own: polling with back-off until an
item, the drained state or the caller's timeout comes, telling "nothing yet" from "out of memory",
and deciding when a queue that is missing is an error (never found, or vanished after it was).
A reply that brings leases goes through it in one call and no loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from rediswq._client import QueueClient
from rediswq._keys import Keys
from rediswq._scripts import DAMAGED, DRAINED, LEASED, MISSING, OUT_OF_MEMORY, LeaseReply
from rediswq.errors import InvalidArgument, LeaseLost, LeaseTimeout, QueueNotFound
from rediswq.lease import Lease

Until = Literal["drained", "closed"]

# An idle worker polls at most 20 times a second, backing off to twice a second; it wakes when the
# next lease deadline or retry falls due, since the lease script says when that is.
MIN_POLL_SECS = 0.05
MAX_POLL_SECS = 0.5


@dataclass(frozen=True)
class Handoff:
    """What `complete_and_lease` did: the new leases, and the completions whose lease was lost."""

    leases: list[Lease]
    lost: list[Lease]
    unconfirmed: bool = False  # sent again after a dropped connection: `lost` may have been completed


def ms(secs: float, what: str) -> int:
    if not (secs > 0 and math.isfinite(secs)):
        raise InvalidArgument(f"{what} must be a positive number of seconds, not {secs!r}")
    return max(1, round(secs * 1000))


def check_counts(max_attempts: int, reclaim_limit: int, replicas: int) -> None:
    if max_attempts < 1:
        raise InvalidArgument(f"max_attempts must be at least 1, not {max_attempts}")
    if reclaim_limit < 1:
        raise InvalidArgument(f"reclaim_limit must be at least 1, not {reclaim_limit}")
    if replicas < 0:
        raise InvalidArgument(f"replicas must be 0 or more, not {replicas}")


def lost_error(name: str, lost: Sequence[Lease], unconfirmed: bool) -> LeaseLost:
    """The error naming the leases (the first five) that a settle found no longer held."""
    shown = ", ".join(lease.id for lease in lost[:5]) + (" ..." if len(lost) > 5 else "")
    if not unconfirmed:
        return LeaseLost(
            f"{len(lost)} lease(s) in queue {name!r} no longer held (expired and reclaimed): {shown}",
            lost,
        )
    return LeaseLost(
        f"{len(lost)} settle(s) in queue {name!r} unconfirmed: sent as the connection broke, and "
        f"the retry found the lease gone (settled by the first send, or expired meanwhile): {shown}",
        lost,
        unconfirmed=True,
    )


def check_lease_args(count: int, until: Until) -> None:
    """`InvalidArgument` for a count below 1 or an `until` that is neither "drained" nor "closed"."""
    if count < 1:
        raise InvalidArgument(f"count must be at least 1, not {count}")
    check_until(until)


def check_until(until: Until) -> None:
    """`InvalidArgument` for an `until` that is neither "drained" nor "closed"."""
    if until not in ("drained", "closed"):
        raise InvalidArgument(f"until must be 'drained' or 'closed', not {until!r}")


def pause(wait_ms: int, poll: float, give_up: float | None, now: float) -> float:
    """How long to wait before asking again: `poll`, or less when the script says (`wait_ms`, -1 if it
    does not) that a lease deadline or retry falls due sooner; never past `give_up`, never too busy."""
    pause = poll if wait_ms < 0 else min(poll, wait_ms / 1000)
    if give_up is not None:
        pause = min(pause, give_up - now)
    return max(pause, MIN_POLL_SECS)


class Waiter:
    """The lease calls of one queue: the leases of a reply, or of the calls that follow until some come.

    `seen` says a lease call (or a settle) has found the queue: from then on, a queue missing means
    its state vanished. `not_found` makes the error for a queue that never existed (it names the
    queues of similar names).
    """

    def __init__(
        self, redis: QueueClient, keys: Keys, name: str, not_found: Callable[[str], QueueNotFound]
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._name = name
        self._not_found = not_found
        self.seen = False  # a lease call has found this queue: a later MISSING means it vanished

    def leases(
        self,
        call: Callable[[], LeaseReply],
        reply: LeaseReply,
        lease_ms: int,
        until: Until,
        give_up: float | None,
        timeout: float | None,
    ) -> list[Lease]:
        """The leases `reply` brought, or those of the calls that follow while there is nothing to
        lease yet; [] once drained. `LeaseTimeout` at `give_up` (on time.monotonic())."""
        poll = MIN_POLL_SECS
        while True:
            if self.absent(reply, until):
                reply = LeaseReply(reply.status, -1, 0, [], [])
            if reply.status == LEASED:
                return [
                    Lease(item_id, payload, attempt, reply.deadline_ms, lease_ms, handle)
                    for item_id, attempt, payload, handle in reply.items
                ]
            if reply.status == DRAINED:
                return []
            now = time.monotonic()
            if give_up is not None and now >= give_up:
                raise self._timeout(reply, timeout)
            time.sleep(pause(reply.wait_ms, poll, give_up, now))
            poll = min(poll * 2, MAX_POLL_SECS)
            reply = self._redis.settle_call(call)[0]

    def _timeout(self, reply: LeaseReply, timeout: float | None) -> LeaseTimeout:
        """Why no lease came within `timeout`; `hint`: when one may, if Redis said."""
        hint = None if reply.wait_ms < 0 else reply.wait_ms / 1000
        if reply.status == OUT_OF_MEMORY:
            return LeaseTimeout(
                f"Redis is out of memory: no new leases from queue {self._name!r} until memory "
                "is freed (completions, failures and renewals still work)",
                hint,
                out_of_memory=True,
            )
        return LeaseTimeout(f"no item in queue {self._name!r} within {timeout} s", hint)

    def absent(self, reply: LeaseReply, until: Until) -> bool:
        """Raise `QueueNotFound` for a missing or damaged queue; True: missing, wait as for nothing now.

        A queue missing before this object ever found it is only an error when draining: a worker
        until="closed" waits for its producer. Found once, missing or damaged means its state vanished.
        """
        if reply.status == DAMAGED:
            raise QueueNotFound(
                f"queue {self._name!r} vanished / is damaged: its counters ({self._keys.meta}) are gone "
                "while items remain (an evicting Redis, or keys deleted by hand); nothing was changed",
                vanished=True,
            )
        if reply.status != MISSING:
            self.seen = True
            return False
        if self.seen:
            raise QueueNotFound(
                f"queue {self._name!r} vanished / is damaged: every key of it is gone (deleted, purged, "
                "or a failover to an empty replica)",
                vanished=True,
            )
        if until == "drained":
            raise self._not_found(
                "a worker draining it would finish at once: wait for a producer with until='closed'"
            )
        return True
