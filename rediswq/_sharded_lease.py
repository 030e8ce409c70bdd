"""Leasing from a sharded queue: one lease call per item in the steady state, every shard served.

A worker leases from its *current* shard, at first its home shard (a stable hash of its name, so
workers spread over the shards), with the completions of that shard's leases riding on the same call,
as on a queue of one shard. When the current shard has nothing to lease now it moves on to the next
(a sweep in a rotation); after `ROTATE_CALLS` calls on one shard it moves on anyway, so that workers
never starve a shard while their own ones keep filling. Completions of other shards' leases (a worker
that just moved on, prefetched leases of two shards) are settled first, one call per shard.

The queue is drained when every shard says so in one sweep (with until="closed": drained and
closed; `close` closes shard 0 last): a shard drained and closed stays so, its leases all settled.
While no shard has anything to lease now, the worker sweeps again after the same back-off a queue of
one shard waits (`_waiting.pause`), sooner when a shard says a deadline or retry falls due.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rediswq._waiting import MAX_POLL_SECS, MIN_POLL_SECS, Handoff, Until, check_lease_args, pause
from rediswq.errors import LeaseLost, LeaseTimeout
from rediswq.lease import Lease

if TYPE_CHECKING:
    from rediswq._shards import Shards
    from rediswq.queue import Queue

#: Lease calls on one shard before a worker moves on to the next (one extra call for the completions
#: of the shard it leaves: under 1 % more calls).
ROTATE_CALLS = 128


@dataclass
class _State:
    count: int  # the shard count it was made for
    current: int
    calls: int = 0


@dataclass
class _Sweep:
    """One pass over the shards: the completions lost so far, and what the shards said when none gave
    a lease."""

    lost: list[Lease]
    unconfirmed: bool
    drained: bool = True
    wait_ms: int = -1
    out_of_memory: bool = False

    def nothing_now(self, why: LeaseTimeout) -> None:
        """A shard had nothing to lease now, for the reason `why` (and a hint of when it may)."""
        self.drained = False
        if why.retry_after_secs is not None:
            wait_ms = math.ceil(why.retry_after_secs * 1000)
            self.wait_ms = wait_ms if self.wait_ms < 0 else min(self.wait_ms, wait_ms)
        self.out_of_memory = self.out_of_memory or why.out_of_memory


def home(worker: str, shards: int) -> int:
    """A worker's home shard: a stable hash of its name (the same in every process)."""
    return zlib.crc32(worker.encode()) % shards


def _once(
    queue: Queue, shard: int, done: Sequence[Lease], count: int, lease_ms: int, until: Until, worker: str
) -> tuple[list[Lease] | None, list[Lease], bool, LeaseTimeout | None]:
    """One lease call on one shard: (its leases, [] if drained, None if nothing now; lost completions;
    whether it was sent again; the LeaseTimeout saying why nothing now)."""
    call, reply, lost, resent = queue._first_call(done, count, lease_ms, until, worker)
    try:
        leases = queue._waiter.leases(call, reply, lease_ms, until, 0.0, 0)
    except LeaseTimeout as e:
        return None, lost, resent, e
    for lease in leases:
        lease.shard = shard
    return leases, lost, resent, None


def _settle_elsewhere(shards: Shards, done: Sequence[Lease], current: int) -> tuple[list[Lease], bool]:
    """Complete the leases of shards other than `current`; returns the lost ones, and if unconfirmed."""
    others = [lease for lease in done if lease.shard != current]
    if not others:
        return [], False
    try:
        shards.complete_many(others)
    except LeaseLost as e:
        return list(e.leases), e.unconfirmed
    return [], False


def complete_and_lease(
    shards: Shards,
    done: Sequence[Lease],
    count: int,
    lease_ms: int,
    timeout: float | None,
    until: Until,
    worker: str | None,
) -> Handoff:
    """See `Queue.complete_and_lease`; the sweep is the module docstring's."""
    check_lease_args(count, until)
    owner = shards.owner
    name = worker or owner.worker
    give_up = None if timeout is None else time.monotonic() + timeout
    poll = MIN_POLL_SECS
    state = _state(shards, name)
    mine = [lease for lease in done if lease.shard == state.current]
    sweep = _Sweep(*_settle_elsewhere(shards, done, state.current))
    while True:
        leases = _sweep(shards, state, sweep, mine, count, lease_ms, until, name)
        mine = []
        if leases or sweep.drained:
            return Handoff(leases, sweep.lost, sweep.unconfirmed)
        now = time.monotonic()
        if give_up is not None and now >= give_up:
            raise _timeout(owner, sweep, timeout)
        time.sleep(pause(sweep.wait_ms, poll, give_up, now))
        poll = min(poll * 2, MAX_POLL_SECS)
        sweep = _Sweep(sweep.lost, sweep.unconfirmed)


def _sweep(
    shards: Shards,
    state: _State,
    sweep: _Sweep,
    mine: Sequence[Lease],
    count: int,
    lease_ms: int,
    until: Until,
    worker: str,
) -> list[Lease]:
    """One pass from the current shard on, until one gives leases: those ([]: none did, `sweep` says
    why). `mine`, completions of the current shard's leases, ride on its call."""
    queues = shards.queues() if shards.sharded() else [shards.owner]
    for step in range(len(queues)):
        i = (state.current + step) % len(queues)
        leases, gone, resent, why = _once(queues[i], i, mine, count, lease_ms, until, worker)
        sweep.lost += gone
        sweep.unconfirmed = sweep.unconfirmed or (resent and bool(mine))
        mine = []
        if leases:
            _advance(state, i)
            return leases
        if why is not None:
            sweep.nothing_now(why)
    return []


def _state(shards: Shards, worker: str) -> _State:
    count = shards.count() or 1
    state: _State | None = shards.lease_state
    if state is None or state.count != count:
        state = shards.lease_state = _State(count, home(worker, count))
    if state.calls >= ROTATE_CALLS:
        state.current, state.calls = (state.current + 1) % count, 0
    return state


def _advance(state: _State, shard: int) -> None:
    """A lease call on `shard` gave leases: the worker stays there (until it rotates)."""
    if shard != state.current:
        state.current, state.calls = shard, 0
    state.calls += 1


def _timeout(owner: Queue, sweep: _Sweep, timeout: float | None) -> LeaseLost | LeaseTimeout:
    """Why no lease came within `timeout`: completions lost first, then as a queue of one shard says."""
    if sweep.lost:
        return owner._lost(sweep.lost, sweep.unconfirmed)
    name = owner.name
    hint = None if sweep.wait_ms < 0 else sweep.wait_ms / 1000
    if sweep.out_of_memory:
        return LeaseTimeout(
            f"Redis is out of memory: no new leases from queue {name!r} until memory is freed "
            "(completions, failures and renewals still work)",
            hint,
            out_of_memory=True,
        )
    return LeaseTimeout(f"no item in queue {name!r} within {timeout} s", hint)
