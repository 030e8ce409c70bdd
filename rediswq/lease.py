"""The lease record: what a worker holds while it processes one item."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class Lease:
    """One item leased to one worker until `deadline_ms` (on Redis's clock).

    `attempt` counts leases of this item, this one included (1 on the first lease). `handle` is the
    ownership token the scripts check: it names this lease and no other, so a worker whose lease
    expired and was re-leased cannot settle the new holder's lease. `shard` says which shard of a
    sharded queue holds it (0 for every queue of one shard), so that settling it goes there.
    """

    id: str
    payload: bytes
    attempt: int
    deadline_ms: int
    lease_ms: int
    handle: bytes = field(repr=False)
    shard: int = 0  # the shard of a sharded queue it came from (rediswq/_keys.py); settles go there
