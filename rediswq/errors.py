"""Every error rediswq raises.

RedisWQError
├── ConnectionFailed   Redis cannot be reached or is mid-failover/migration, or the URL is wrong
│   └── AuthenticationFailed   Redis refused us in a way no retry can fix
│       ├── PermissionDenied   the ACL user may not run a command or touch a key (NOPERM)
│       ├── LibraryMismatch    Redis 7+: rediswq's function library is not loaded, or another version
│       └── TLSFailed          the TLS handshake failed: certificate, host name, client certificate
├── ServerError        Redis answered with an error (out of memory, a key of the wrong type)
├── EvictingRedis      Redis may evict queue keys (maxmemory-policy): refused unless allowed
├── LeaseLost          the lease expired and was reclaimed (or was never held): not yours to settle
├── QueueClosed        the queue was closed: no more items may be added
├── NotReplicated      a write was applied but fewer replicas than asked confirmed it in time
├── LeaseTimeout       a blocking lease waited its timeout and found nothing (the queue is not drained)
├── QueueNotFound      the queue was never created, or its state vanished: never "drained"
└── InvalidArgument    a bad queue name, item id or payload, caught before anything is written

An error out of `put_many` carries `added`: how many items went in before it (every error type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rediswq.lease import Lease


class RedisWQError(Exception):
    """Base class of every error rediswq raises.

    `added` is set on an error out of `put_many`: how many items that call put in before the error
    (a batch whose reply was lost with the connection is not counted; it may have gone in).
    """

    added: int = 0


class ConnectionFailed(RedisWQError):
    """Redis could not be reached, refused us, or is mid-change (MOVED, TRYAGAIN, CLUSTERDOWN, READONLY
    after a failover): worth retrying; the message names the URL without its password, and the node."""


class AuthenticationFailed(ConnectionFailed):
    """Redis refused the credentials; retrying will not help."""


class PermissionDenied(AuthenticationFailed):
    """Redis's ACL refused a command or key to this user (NOPERM); the message names which."""


class LibraryMismatch(AuthenticationFailed):
    """Redis 7+: Redis holds another version of rediswq's function library than this client's;
    `rediswq install` (an admin) loads this one. No retry can fix it."""


class LibraryMissing(ConnectionFailed):
    """Redis 7+: rediswq's function library is not loaded there, and this user may not load it. A
    deploy step loads it (`rediswq install`, as an admin), so it is waited for as an outage is: a
    worker started before that step retries within its reconnect window instead of failing at once."""


class TLSFailed(AuthenticationFailed):
    """The TLS handshake failed (certificate, host name, client certificate); retrying will not help."""


class InsecureTLSWarning(UserWarning):
    """A URL or option turned TLS certificate checks off."""


class ServerError(RedisWQError):
    """Redis answered with an error (OOM under noeviction, WRONGTYPE); nothing was done."""


class EvictingRedis(RedisWQError):
    """Redis runs a maxmemory-policy that may evict queue keys (they have no TTL): items would vanish."""


class LeaseLost(RedisWQError):
    """The lease no longer holds: it expired and was reclaimed, or it was settled already.

    `unconfirmed` is True when the settle call was sent again after a dropped connection: the first
    send may have gone through (the item was settled then) or the lease expired meanwhile; nobody
    can tell which, so the item may be done again by another worker.
    """

    def __init__(self, message: str, leases: Sequence[Lease] = (), *, unconfirmed: bool = False) -> None:
        super().__init__(message)
        self.leases: list[Lease] = list(leases)
        self.unconfirmed = unconfirmed


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
    another worker's progress can bring one), for callers that poll with timeout=0. `out_of_memory`:
    items may be pending, but a full Redis grants no new lease until memory is freed.
    """

    def __init__(
        self, message: str, retry_after_secs: float | None = None, *, out_of_memory: bool = False
    ) -> None:
        super().__init__(message)
        self.retry_after_secs = retry_after_secs
        self.out_of_memory = out_of_memory


class QueueNotFound(RedisWQError):
    """No queue of this name exists (`vanished` False), or one seen before lost its state (True).

    A queue nobody has added to is not drained: a typo in a queue name must not look like finished
    work. With until="closed" a lease waits for a producer instead. A queue whose keys were deleted, or
    whose counters are gone while items remain (an evicting Redis, a failover to an empty replica),
    is reported as vanished, never as drained. `similar`: names of existing queues close to this one's
    (a typo's likely target; in the message too), empty when there are none or they could not be listed.
    """

    def __init__(self, message: str, vanished: bool, similar: list[str] | None = None) -> None:
        super().__init__(message)
        self.vanished = vanished
        self.similar = similar or []

    def suggestion(self) -> str:
        """`did you mean 'a'?` for the close names, or "" when there are none."""
        return did_you_mean(self.similar)


def did_you_mean(names: Sequence[str]) -> str:
    """`did you mean 'a' or 'b'?` for the names given (closest first), or "" for none."""
    if not names:
        return ""
    quoted = [repr(name) for name in names]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f"did you mean {listed}?"


class InvalidArgument(RedisWQError):
    """An argument that can never succeed: a bad URL, queue name, item id, payload or duration."""
