"""rediswq: a Redis-backed, lease-based work queue for Kubernetes batch Jobs."""

from __future__ import annotations

from rediswq.compat import RedisWQ
from rediswq.consume import Consumer
from rediswq.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    EvictingRedis,
    InvalidArgument,
    LeaseLost,
    LeaseTimeout,
    QueueClosed,
    QueueNotFound,
    RedisWQError,
    ServerError,
)
from rediswq.heartbeat import Heartbeat
from rediswq.lease import Lease
from rediswq.queue import DeadLetter, Enqueued, Handoff, Item, LeaseInfo, Queue, Stats

__all__ = [
    "AuthenticationFailed",
    "ConnectionFailed",
    "Consumer",
    "DeadLetter",
    "Enqueued",
    "EvictingRedis",
    "Handoff",
    "Heartbeat",
    "InvalidArgument",
    "Item",
    "Lease",
    "LeaseInfo",
    "LeaseLost",
    "LeaseTimeout",
    "Queue",
    "QueueClosed",
    "QueueNotFound",
    "RedisWQ",
    "RedisWQError",
    "ServerError",
    "Stats",
]
