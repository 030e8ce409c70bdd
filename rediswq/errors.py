"""Every error rediswq raises.

RedisWQError
├── ConnectionFailed   Redis cannot be reached or is mid-failover/migration, or refused the password
├── LeaseLost          the lease expired and was reclaimed (or was never held): not yours to settle
├── QueueClosed        the queue was closed: no more items may be added
├── NotReplicated      a write was applied but fewer replicas than asked confirmed it in time
├── LeaseTimeout       a blocking lease waited its timeout and found nothing (the queue is not drained)
└── InvalidArgument    a bad queue name, item id or payload, caught before anything is written
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rediswq.lease import Lease


class RedisWQError(Exception):
    """Base class of every error rediswq raises."""


class ConnectionFailed(RedisWQError):
    """Redis could not be reached, refused us, or is mid-change (MOVED, TRYAGAIN, CLUSTERDOWN, READONLY
    after a failover): worth retrying; the message names the URL without its password, and the node."""


class AuthenticationFailed(ConnectionFailed):
    """Redis refused the credentials; retrying will not help."""


class ServerError(RedisWQError):
    """Redis answered with an error (OOM under noeviction, WRONGTYPE); nothing was done."""


class LeaseLost(RedisWQError):
    """The lease no longer holds: it expired and was reclaimed, or it was settled already."""

    def __init__(self, message: str, leases: Sequence[Lease] = ()) -> None:
        super().__init__(message)
        self.leases: list[Lease] = list(leases)


class QueueClosed(RedisWQError):
    """The queue is closed; `added` says how many items this call put in before it saw that."""

    def __init__(self, message: str, added: int = 0) -> None:
        super().__init__(message)
        self.added = added


class NotReplicated(RedisWQError):
    """The write went in on the master, but fewer than `Queue.replicas` replicas confirmed it in time.

    It is not lost yet; it would be if the master failed before a replica copied it. `added` says
    how many items the call put in (all of them, replicated or not).
    """

    def __init__(self, message: str, added: int = 0) -> None:
        super().__init__(message)
        self.added = added


class LeaseTimeout(RedisWQError):
    """A blocking lease waited its whole timeout for an item; the queue is not drained.

    `retry_after_secs` is when the next lease deadline or retry falls due (None: only new items or
    another worker's progress can bring one), for callers that poll with timeout=0.
    """

    def __init__(self, message: str, retry_after_secs: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_secs = retry_after_secs


class InvalidArgument(RedisWQError):
    """An argument that can never succeed: a bad URL, queue name, item id, payload or duration."""
