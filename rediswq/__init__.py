"""rediswq: a Redis-backed, lease-based work queue for Kubernetes batch Jobs."""

from __future__ import annotations

from rediswq._connection import redact, url_secrets
from rediswq._survey import QueueSummary, Survey, survey
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
    "NotReplicated",
    "PermissionDenied",
    "Queue",
    "QueueClosed",
    "QueueNotFound",
    "QueueSummary",
    "RedisWQ",
    "RedisWQError",
    "ServerError",
    "Stats",
    "Survey",
    "TLSFailed",
    "acl_rules",
    "redact",
    "survey",
    "url_secrets",
]
