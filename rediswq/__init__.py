"""rediswq: a Redis-backed, lease-based work queue for Kubernetes batch Jobs."""

from __future__ import annotations

from rediswq._connection import url_secrets
from rediswq.acl import ROLES, acl_rules
from rediswq.compat import RedisWQ
from rediswq.consume import Consumer
from rediswq.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    EvictingRedis,
    InsecureTLSWarning,
    InvalidArgument,
    LeaseLost,
    LeaseTimeout,
    LibraryMismatch,
    NotReplicated,
    PermissionDenied,
    QueueClosed,
    QueueNotFound,
    RedisWQError,
    ServerError,
    TLSFailed,
)
from rediswq.heartbeat import Heartbeat
from rediswq.lease import Lease
from rediswq.queue import DeadLetter, Enqueued, Handoff, Item, LeaseInfo, Queue, Stats

__all__ = [
    "ROLES",
    "AuthenticationFailed",
    "ConnectionFailed",
    "Consumer",
    "DeadLetter",
    "Enqueued",
    "EvictingRedis",
    "Handoff",
    "Heartbeat",
    "InsecureTLSWarning",
    "InvalidArgument",
    "Item",
    "Lease",
    "LeaseInfo",
    "LeaseLost",
    "LeaseTimeout",
    "LibraryMismatch",
    "NotReplicated",
    "PermissionDenied",
    "Queue",
    "QueueClosed",
    "QueueNotFound",
    "RedisWQ",
    "RedisWQError",
    "ServerError",
    "Stats",
    "TLSFailed",
    "acl_rules",
    "url_secrets",
]
