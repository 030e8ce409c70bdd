"""Flat cost: the per-item drain cost does not grow with the queue, with the leases held, or with reclaim.

queue length: one process drains a sample one item at a time (`lease`, then `complete_and_lease` per
item) in rounds of R items from a queue of 10^3 items and from one of 10^7 (filled with `put_many`);
after each round the harness puts R items back (untimed), so each queue keeps its length. Rounds of the
two queues alternate, so both see the same machine; the per-item cost is the median over rounds.
leases held: the same, from a queue whose 10 (resp. 10^4) other leases are held all along.
reclaim: 10^4 leases of a queue expire; one process then drains it one item at a time while every call
also reclaims up to `reclaim_limit` (100) of them: the slowest single call, timed by the client and, from
SLOWLOG, by the server. For contrast, the same with reclaim_limit 10^4 (everything in one call).
Targets (issue 4, #5): 10^7 / 10^3 and 10^4 / 10 within 1.2x; no lease call over 10 ms while reclaiming.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from _common import (
    Target,
    base_parser,
    environment,
    finish,
    load_scripts,
    median,
    payloads,
    private_redis,
    table,
)
from _drain import unique_name

from rediswq import Queue

NAME = "flat_cost"
TITLE = "Flat cost"
LONG_LEASE_SECS = 3600.0


def drain_round(q: Queue, items: int) -> float:
    """Drain `items` items one at a time (items + 1 calls); returns the seconds per item."""
    started = time.perf_counter()
    lease = q.lease(60)
    if lease is None:
        raise RuntimeError(f"queue {q.name} ran dry")
    for _ in range(items - 1):
        leases = q.complete_and_lease([lease], 1, 60).leases
        if not leases:
            raise RuntimeError(f"queue {q.name} ran dry")
        lease = leases[0]
    q.complete(lease)
    return (time.perf_counter() - started) / items


def alternate(
    queues: dict[str, Queue], rounds: int, round_items: int, refill: Callable[[Queue], None]
) -> dict[str, list[float]]:
    """Per-item costs (microseconds) of `rounds` rounds on each queue, the queues taking turns.

    The order flips every round (A B, B A, A B, ...), so neither queue always goes first.
    """
    costs: dict[str, list[float]] = {label: [] for label in queues}
    order = list(queues.items())
    for _ in range(rounds):
        for label, q in order:
            costs[label].append(drain_round(q, round_items) * 1e6)
            refill(q)
        order.reverse()
    return costs


def paired_ratio(costs: list[float], reference: list[float]) -> float:
    """The median over rounds of cost / reference cost, round by round."""
    return median([c / r for c, r in zip(costs, reference, strict=True)])


def fill(client: redis.Redis, name: str, count: int, payload_bytes: int, chunk: int = 200_000) -> Queue:
    """A queue of `count` items, put in with put_many a chunk at a time (to bound the harness's memory)."""
    q = Queue(client, name)
    for start in range(0, count, chunk):
        q.put_many(payloads(min(chunk, count - start), payload_bytes, start))
    return q


def hold(q: Queue, count: int) -> None:
    """Lease `count` items of `q` for an hour and never settle them."""
    while count > 0:
        got = q.lease_many(min(count, 1000), LONG_LEASE_SECS, timeout=0)
        count -= len(got)


def schedstat(pid: int) -> tuple[float, float]:
    """(ms on a CPU, ms waiting for one) of a process so far, from Linux's /proc/PID/schedstat."""
    try:
        on_cpu, waiting, _slices = Path(f"/proc/{pid}/schedstat").read_text().split()
    except (OSError, ValueError):
        return (float("nan"), float("nan"))
    return int(on_cpu) / 1e6, int(waiting) / 1e6


def reclaim_latencies(
    client: redis.Redis, redis_pid: int, expired: int, reclaim_limit: int, payload_bytes: int, sample: int
) -> dict[str, Any]:
    """Let `expired` leases expire, then time each call of a one-at-a-time drain until all are back.

    Each call is timed three ways: by the client (what a worker sees), by SLOWLOG (Redis's wall clock
    for the script), and by the kernel's account of the redis-server process during the call: its
    time on a CPU, and its time runnable but waiting for a CPU (another process had it). On a busy
    shared machine the last one explains the outliers the first two show.
    """
    name = unique_name("reclaim")
    q = fill(client, name, expired + sample, payload_bytes)
    # Leases of 1 s: long enough that none expires while the harness is still taking them.
    while (leased := q.stats().leased) < expired:
        q.lease_many(min(1000, expired - leased), 1.0, timeout=0)
    expired_before = q.stats().expired
    time.sleep(1.2)  # every lease is past its deadline now
    worker = Queue(client, name, reclaim_limit=reclaim_limit)
    client.slowlog_reset()
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 100_000)
    latencies: list[float] = []
    per_call: list[dict[str, float]] = []
    lease = None
    calls = 0
    while calls < sample:
        cpu0, wait0 = schedstat(redis_pid)
        started = time.perf_counter()
        got = worker.lease_many(1, 60) if lease is None else worker.complete_and_lease([lease], 1, 60).leases
        latency = (time.perf_counter() - started) * 1000
        cpu1, wait1 = schedstat(redis_pid)
        latencies.append(latency)
        per_call.append({"ms": latency, "redis cpu ms": cpu1 - cpu0, "redis wait ms": wait1 - wait0})
        calls += 1
        lease = got[0] if got else None
        if worker.stats().expired - expired_before >= expired and calls >= expired // reclaim_limit + 10:
            break
    if lease is not None:
        worker.complete(lease)
    stats = worker.stats()
    server_ms = [
        entry["duration"] / 1000
        for entry in client.slowlog_get(100_000)
        if entry["command"].split(b" ")[0].upper() == b"EVALSHA"
    ]
    client.config_set("slowlog-log-slower-than", 10_000)
    client.slowlog_reset()
    q.purge()
    if stats.expired - expired_before < expired:
        raise RuntimeError(
            f"reclaim: only {stats.expired - expired_before} of {expired} expired leases were reclaimed"
        )
    latencies.sort()
    slowest = max(per_call, key=lambda c: c["ms"])
    return {
        "variant": f"reclaim {expired:,} expired, reclaim_limit {reclaim_limit:,}",
        "calls": len(latencies),
        "max ms": latencies[-1],
        "p99 ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "median ms": median(latencies),
        "server max ms": max(server_ms) if server_ms else None,
        "max redis cpu ms": max(c["redis cpu ms"] for c in per_call),
        "slowest: redis wait ms": slowest["redis wait ms"],
        "per_call": per_call,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--small", type=int, default=1_000, help="items in the short queue")
    parser.add_argument("--big", type=int, default=10_000_000, help="items in the long queue")
    parser.add_argument("--few-leases", type=int, default=10, help="leases held in the first case")
    parser.add_argument("--many-leases", type=int, default=10_000, help="leases held in the second case")
    parser.add_argument("--expired", type=int, default=10_000, help="expired leases to reclaim")
    parser.add_argument("--sample", type=int, default=20_000, help="items drained per case")
    parser.add_argument("--round", type=int, default=500, help="items per timed round")
    parser.add_argument("--payload-bytes", type=int, default=16)
    args = parser.parse_args(argv)
    rounds = max(1, args.sample // args.round)
    if args.round > args.small:
        parser.error("--round must not exceed --small: the short queue must keep its length")

    with private_redis(args.redis_server, args.redis_config) as server:
        client = server.client()
        load_scripts(client)
        env = environment(server)

        def refill(q: Queue) -> None:
            q.put_many(payloads(args.round, args.payload_bytes))

        small = fill(client, unique_name("small"), args.small, args.payload_bytes)
        load_started = time.perf_counter()
        big = fill(client, unique_name("big"), args.big, args.payload_bytes)
        load_secs = time.perf_counter() - load_started
        by_length = alternate({"small": small, "big": big}, rounds, args.round, refill)
        small.purge()
        big.purge()

        few = fill(client, unique_name("few"), args.few_leases + args.sample + args.round, args.payload_bytes)
        many = fill(
            client, unique_name("many"), args.many_leases + args.sample + args.round, args.payload_bytes
        )
        hold(few, args.few_leases)
        hold(many, args.many_leases)
        by_leases = alternate({"few": few, "many": many}, rounds, args.round, lambda q: None)
        few.purge()
        many.purge()

        pid = server.process.pid
        bounded = reclaim_latencies(client, pid, args.expired, 100, args.payload_bytes, args.sample)
        unbounded = reclaim_latencies(
            client, pid, args.expired, args.expired, args.payload_bytes, args.sample
        )

    rows: list[dict[str, Any]] = [
        {"case": f"{args.small:,} queued", "us/item": median(by_length["small"])},
        {"case": f"{args.big:,} queued", "us/item": median(by_length["big"])},
        {"case": f"{args.few_leases:,} leases held", "us/item": median(by_leases["few"])},
        {"case": f"{args.many_leases:,} leases held", "us/item": median(by_leases["many"])},
    ]
    # Each round of one queue is paired with the other's next to it in time, so a pair sees one state
    # of the (shared, noisy) machine: the figure is the median of the pairs' ratios.
    rows[1]["x"] = paired_ratio(by_length["big"], by_length["small"])
    rows[3]["x"] = paired_ratio(by_leases["many"], by_leases["few"])
    reclaim_rows = [bounded, unbounded]
    targets = [
        Target(f"flat: cost at {args.big:,} / {args.small:,} queued", rows[1]["x"], "<=", 1.2, "x"),
        Target(
            f"flat: cost with {args.many_leases:,} / {args.few_leases:,} leases held",
            rows[3]["x"],
            "<=",
            1.2,
            "x",
        ),
        Target(
            f"flat: slowest lease call while reclaiming {args.expired:,}",
            bounded["max ms"],
            "<=",
            10.0,
            " ms",
        ),
    ]
    result = finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["case", "us/item", "x"],
        targets,
        notes=[
            f"one process, rounds of {args.round} items, {rounds} rounds per case: us/item is the median "
            "round; x is the median of the ratios of rounds run side by side",
            f"loading {args.big:,} items with put_many took {load_secs:.1f} s",
        ],
        extra={"rounds_us_per_item": {**by_length, **by_leases}, "reclaim": reclaim_rows},
    )
    print()
    print(
        table(
            reclaim_rows,
            [
                "variant",
                "calls",
                "median ms",
                "p99 ms",
                "max ms",
                "server max ms",
                "max redis cpu ms",
                "slowest: redis wait ms",
            ],
        )
    )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
