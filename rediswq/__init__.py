"""rediswq: a Redis-backed, lease-based work queue for Kubernetes batch Jobs.

What a user of the library meets, and nothing more:

- `Queue`, the one entry point, and `Lease`, what a lease call hands out; `Client`, the redis-py
  client a Queue talks to (of one server or of a cluster), and `Node`, one of the masters
  `Queue.scan_nodes` names (None for one server): the types of the calls that take a client;
- the result types its calls return: `Enqueued` (put_many), `Stats` (stats), `Item` (peek),
  `LeaseInfo` (holders), `DeadLetter` (dead_letters), `Handoff` (complete_and_lease), `Consumer`
  (consume: iterated, with counts), and `Until`, the type of every `until=` parameter;
- `Heartbeat`, which keeps a custom worker's leases alive in the background, and `RetryPolicy`, the
  library's one retry policy, for a retry loop of one's own;
- `RedisWQ`, the Kubernetes docs example's interface (`rediswq.RedisWQ(name, host=...)` runs its
  `worker.py` unchanged);
- every error (the tree is drawn in rediswq.errors) and `InsecureTLSWarning`, which callers catch.

Helpers for code built around the library live in public submodules, imported from there:
`rediswq.urls` (`redact`, `url_secrets`: showing a URL without its secrets) and `rediswq.acl`
(`acl_rules`, `ROLES`: least-privilege Redis ACL users). Every other module is private.
"""

from __future__ import annotations

from rediswq._retry import RetryPolicy
from rediswq._survey import QueueSummary, Survey, survey
from rediswq._topology import Client, Node
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
    LibraryMissing,
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
from rediswq.queue import DeadLetter, Enqueued, Handoff, Item, LeaseInfo, Queue, Stats, Until

__all__ = [
    "AuthenticationFailed",
    "Client",
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
    "LibraryMissing",
    "Node",
    "NotReplicated",
    "PermissionDenied",
    "Queue",
    "QueueClosed",
    "QueueNotFound",
    "QueueSummary",
    "RedisWQ",
    "RedisWQError",
    "RetryPolicy",
    "ServerError",
    "Stats",
    "Survey",
    "TLSFailed",
    "Until",
    "survey",
]
