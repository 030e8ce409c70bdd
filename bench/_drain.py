"""Draining workloads shared by the drain benches: filling a queue, and the worker loops of each variant.

Every worker loop has the signature `(url, name, ..., ready, go) -> WorkerResult` that
`_common.run_workers` expects: connect, set `ready`, wait for `go`, drain, report.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from _common import (
    WorkerResult,
    calls_between,
    client_sent,
    command_calls,
    drain_rate,
    now,
    run_workers,
    script_commands,
    server_usec,
)
from _docs_example import DocsExampleQueue

from rediswq import Queue

LIST_CHUNK = 2000  # values per RPUSH: the same batch size put_many uses by default
CHUNKS_PER_PIPELINE = 10


def unique_name(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


def fill_list(client: redis.Redis, key: str, items: Sequence[bytes]) -> None:
    """RPUSH the items, LIST_CHUNK values per command, CHUNKS_PER_PIPELINE commands per round trip."""
    pipe = client.pipeline(transaction=False)
    queued = 0
    for start in range(0, len(items), LIST_CHUNK):
        pipe.rpush(key, *items[start : start + LIST_CHUNK])
        queued += 1
        if queued == CHUNKS_PER_PIPELINE:
            pipe.execute()
            queued = 0
    if queued:
        pipe.execute()


def fill_rediswq(client: redis.Redis, name: str, items: Sequence[bytes]) -> None:
    Queue(client, name).put_many(items)


# -- worker loops ---------------------------------------------------------------------------------


def rediswq_one(url: str, name: str, lease_secs: float, ready: Any, go: Any) -> WorkerResult:
    """One item per call: lease, then complete_and_lease(previous, 1) until drained."""
    q = Queue.from_url(url, name)
    q.client.ping()
    ready.set()
    go.wait()
    started = last = now()
    n = 0
    lease = q.lease(lease_secs)
    while lease is not None:
        handoff = q.complete_and_lease([lease], 1, lease_secs)
        n += 1
        last = now()
        lease = handoff.leases[0] if handoff.leases else None
    return WorkerResult(n, started, last)


def rediswq_consume(url: str, name: str, lease_secs: float, ready: Any, go: Any) -> WorkerResult:
    """The library loop: `with q.consume(lease_secs) as leases: for lease in leases: ...`."""
    q = Queue.from_url(url, name)
    q.client.ping()
    ready.set()
    go.wait()
    started = last = now()
    n = 0
    with q.consume(lease_secs) as leases:
        for _lease in leases:
            n += 1
            last = now()
    return WorkerResult(n, started, last)


def rediswq_batched(url: str, name: str, batch: int, lease_secs: float, ready: Any, go: Any) -> WorkerResult:
    """lease_many(batch), then complete_and_lease(batch, batch) until drained: one call per batch."""
    q = Queue.from_url(url, name)
    q.client.ping()
    ready.set()
    go.wait()
    started = last = now()
    n = 0
    leases = q.lease_many(batch, lease_secs)
    while leases:
        handoff = q.complete_and_lease(leases, batch, lease_secs)
        n += len(leases)
        last = now()
        leases = handoff.leases
    return WorkerResult(n, started, last)


def rediswq_lease_then_complete(
    url: str, name: str, batch: int, lease_secs: float, ready: Any, go: Any
) -> WorkerResult:
    """lease_many(batch), then complete_many(batch) in a separate call: two calls per batch."""
    q = Queue.from_url(url, name)
    q.client.ping()
    ready.set()
    go.wait()
    started = last = now()
    n = 0
    while leases := q.lease_many(batch, lease_secs):
        q.complete_many(leases)
        n += len(leases)
        last = now()
    return WorkerResult(n, started, last)


def docs_example(url: str, name: str, ready: Any, go: Any) -> WorkerResult:
    """The docs example's worker loop: `while not q.empty(): lease; complete`."""
    q = DocsExampleQueue(redis.Redis.from_url(url), name)
    q.empty()
    ready.set()
    go.wait()
    started = last = now()
    n = 0
    while not q.empty():
        item = q.lease(lease_secs=10, timeout=2)
        if item is not None:
            q.complete(item)
            n += 1
            last = now()
    return WorkerResult(n, started, last)


def floor_drain(url: str, name: str, batch: int, ready: Any, go: Any) -> WorkerResult:
    """The floor: `batch` RPOP commands per pipeline (one round trip), no lease at all."""

    def take(client: redis.Redis) -> int:
        pipe = client.pipeline(transaction=False)
        for _ in range(batch):
            pipe.rpop(name)
        return sum(1 for item in pipe.execute() if item is not None)

    return _pop_until_short(url, batch, take, ready, go)


def bulk_floor_drain(url: str, name: str, count: int, ready: Any, go: Any) -> WorkerResult:
    """The bulk floor: `RPOP key count` (Redis 6.2+), one command takes `count` items, no lease at all."""
    return _pop_until_short(url, count, lambda client: len(client.rpop(name, count) or []), ready, go)


def _pop_until_short(
    url: str, want: int, take: Callable[[redis.Redis], int], ready: Any, go: Any
) -> WorkerResult:
    """Call `take` (items it popped) until it pops fewer than `want`: the list is empty."""
    client = redis.Redis.from_url(url)
    client.ping()
    ready.set()
    go.wait()
    started = last = now()
    n = 0
    while True:
        got = take(client)
        if got:
            n += got
            last = now()
        if got < want:
            break
    return WorkerResult(n, started, last)


# -- one measured drain ---------------------------------------------------------------------------


def measure(
    client: redis.Redis,
    url: str,
    *,
    variant: str,
    items: Sequence[bytes],
    workers: int,
    fill: Callable[[redis.Redis, str, Sequence[bytes]], None],
    worker: Callable[..., WorkerResult],
    worker_args: tuple[Any, ...] = (),
    scripts: bool,
    check_drained: Callable[[redis.Redis, str], bool],
) -> dict[str, Any]:
    """Fill a fresh queue, drain it with `workers` processes, and count the calls the clients sent."""
    name = unique_name(variant.split()[0])
    fill(client, name, items)
    before = command_calls(client)
    results = run_workers(workers, worker, (url, name, *worker_args))
    diff = calls_between(before, command_calls(client))
    done, seconds = drain_rate(results)
    if done != len(items) or not check_drained(client, name):
        raise RuntimeError(f"{variant}: drained {done} of {len(items)} items, or items are left over")
    inside = script_commands() if scripts else frozenset()
    sent = client_sent(diff, inside_scripts=inside)
    return {
        "variant": variant,
        "items": done,
        "seconds": seconds,
        "items/s": done / seconds,
        "calls/item": sent / done,
        "client calls": sent,
        "server us/item": server_usec(diff, inside_scripts=inside) / done,
        "commandstats": diff,
        "queue": name,
    }


def rediswq_drained(client: redis.Redis, name: str) -> bool:
    q = Queue(client, name)
    stats = q.stats()
    q.purge()
    return stats.drained


def list_drained(client: redis.Redis, name: str) -> bool:
    return int(client.llen(name)) == 0


def docs_example_drained(client: redis.Redis, name: str) -> bool:
    q = DocsExampleQueue(client, name)
    return q.empty() and not client.keys(name + ":leased_by_session:*")
