"""Every error rediswq raises.

RedisWQError
├── ConnectionFailed   Redis cannot be reached, refused the password, or the URL is wrong
│   └── AuthenticationFailed   Redis refused us in a way no retry can fix
│       ├── PermissionDenied   the ACL user may not run a command or touch a key (NOPERM)
│       └── TLSFailed          the TLS handshake failed: certificate, host name, client certificate
├── ServerError        Redis answered with an error (OOM, READONLY, WRONGTYPE)
├── LeaseLost          the lease expired and was reclaimed (or was never held): not yours to settle
├── QueueClosed        the queue was closed: no more items may be added
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
    """Redis could not be reached or refused us; the message names the URL without its password."""


class AuthenticationFailed(ConnectionFailed):
    """Redis refused the credentials; retrying will not help."""


class PermissionDenied(AuthenticationFailed):
    """Redis's ACL refused a command or key to this user (NOPERM); the message names which."""


class TLSFailed(AuthenticationFailed):
    """The TLS handshake failed (certificate, host name, client certificate); retrying will not help."""


class InsecureTLSWarning(UserWarning):
    """A URL or option turned TLS certificate checks off."""


class ServerError(RedisWQError):
    """Redis answered with an error (OOM under noeviction, READONLY replica, WRONGTYPE); nothing was done."""


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
