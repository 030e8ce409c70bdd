"""A sharded queue vs an unsharded one on the same Redis Cluster: what sharding costs per item.

One 3-master cluster (no replicas), one client process, the same work on two queues side by side:
  unsharded   a queue of one shard (one slot, one master)
  sharded     the same with `shards` shards (default 12: 4 a master)
For each, four operations, interleaved and repeated (the median counts):
  put           `put` one item a call
  put_many      `put_many` (batches of 2,000; with shards, rounds of one call a shard)
  drain one     `complete_and_lease([lease], 1)` a call: one item a round trip
  drain batched `complete_and_lease(leases, 100)`
Measured per item: Redis server CPU (used_cpu_sys + used_cpu_user, summed over every master, from
INFO before and after) and client round trips (sends on a connection, counted in this process: a
script call, a command, a pipeline each count one). Targets: the sharded queue's server CPU per item
<= 1.15x the unsharded one's, its round trips per item <= 1.05x, for each operation.

What it cannot show on a small machine: the speed-up. Sharding spreads one queue's work over the
masters, so a cluster of M masters can serve up to M times the items per second of one master; here
the masters, the client and everything else share the same few cores. The projected table multiplies
the measured CPU capacity of one master (1 / its server CPU per item) by the masters.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import redis
from _common import Target, base_parser, environment, finish, interleaved, medians, paired_ratio, payloads
from _drain import unique_name
from redis.cluster import RedisCluster
from topologies import Cluster

from rediswq import Queue

NAME = "sharded"
TITLE = "A sharded queue vs an unsharded one on one 3-master Redis Cluster: cost per item"

_sends = 0
_real_send = redis.connection.AbstractConnection.send_packed_command


def _counting_send(self: Any, command: Any, check_health: bool = True) -> None:
    global _sends
    _sends += 1
    _real_send(self, command, check_health)


def server_cpu(masters: list[redis.Redis]) -> float:
    """CPU seconds every master has used so far."""
    total = 0.0
    for node in masters:
        cpu = node.info("cpu")
        total += float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])
    return total


def measure(masters: list[redis.Redis], variant: str, items: int, work: Callable[[], int]) -> dict[str, Any]:
    """Run `work` (it returns the items it handled), with the CPU and sends it cost."""
    global _sends
    cpu_before = server_cpu(masters)
    sends_before = _sends
    began = time.perf_counter()
    done = work()
    seconds = time.perf_counter() - began
    sends = _sends - sends_before
    cpu = server_cpu(masters) - cpu_before
    if done != items:
        raise RuntimeError(f"{variant}: handled {done} of {items} items")
    return {
        "variant": variant,
        "items": items,
        "items/s": items / seconds,
        "server us/item": cpu * 1e6 / items,
        "round trips/item": sends / items,
    }


def _drain(queue: Queue, batch: int) -> int:
    done = 0
    handoff = queue.complete_and_lease([], batch, 60)
    while handoff.leases:
        done += len(handoff.leases)
        handoff = queue.complete_and_lease(handoff.leases, batch, 60)
    return done


def run(client: RedisCluster, masters: list[redis.Redis], op: str, shards: int, items: int) -> dict[str, Any]:
    """One operation on a fresh queue (filled beforehand, out of the measure, for the drains)."""
    kind = "sharded" if shards > 1 else "unsharded"
    variant = f"{kind} {op}"
    name = unique_name(kind)
    Queue(client, name, shards=shards).shard_count()  # made (and its shards' metas) out of the measure
    queue = Queue(client, name)
    data = payloads(items)
    queue.shard_count()
    work: Callable[[], int]
    if op == "put":
        work = lambda: sum(1 for p in data if queue.put(p))  # noqa: E731
    elif op == "put_many":
        work = lambda: queue.put_many(data).added  # noqa: E731
    else:
        queue.put_many(data)
        worker = Queue(client, name, worker=unique_name("w"))
        worker.shard_count()  # its first call (the count, then each shard's first) out of the measure
        worker.stats()
        work = lambda: _drain(worker, 1 if op == "drain one" else 100)  # noqa: E731
    row = measure(masters, variant, items, work)
    queue.purge()
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--shards", type=int, default=12, help="shards of the sharded queue")
    parser.add_argument("--items", type=int, default=10_000, help="items per one-at-a-time run (put, drain)")
    parser.add_argument(
        "--batched-items", type=int, default=100_000, help="items per put_many, batched drain"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (the median counts)")
    args = parser.parse_args(argv)
    redis.connection.AbstractConnection.send_packed_command = _counting_send  # type: ignore[method-assign]
    cluster = Cluster(binary=args.redis_server, replicas=0)
    try:
        client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        masters = [cluster.node(port) for port in cluster.ports[:3]]
        Queue(client, "bench-install").install()
        env = environment(None)
        env["redis_version"] = str(masters[0].info("server")["redis_version"])
        ops = [("put", args.items), ("put_many", args.batched_items)]
        ops += [("drain one", args.items), ("drain batched", args.batched_items)]
        variants = [
            (lambda op=op, n=n, s=s: run(client, masters, op, s, n))
            for op, n in ops
            for s in (1, args.shards)
        ]
        runs = interleaved(variants, args.repeat)
    finally:
        cluster.stop()
    rows = medians(runs, ("items/s", "server us/item", "round trips/item"))

    def ratio(op: str, key: str) -> float:
        return paired_ratio(runs, f"sharded {op}", f"unsharded {op}", key)

    targets = [
        Target(f"{op}: sharded / unsharded {what}", ratio(op, key), "<=", limit, "x")
        for op in ("drain one", "drain batched", "put", "put_many")
        for what, key, limit in (
            ("server CPU per item", "server us/item", 1.15),
            ("round trips per item", "round trips/item", 1.05),
        )
    ]
    per_master = {
        r["variant"]: 1e6 / r["server us/item"] for r in rows if r["variant"].startswith("sharded drain")
    }
    notes = [
        f"{args.shards} shards on 3 masters; one client process; medians of {args.repeat} runs; ratios are "
        "medians of the ratios of runs side by side",
        "server CPU per item is the masters' used_cpu_sys + used_cpu_user (INFO) over the run, idle "
        "time included: noisy on a shared machine, the one-at-a-time runs above all",
        "this machine cannot show the speed-up (every master shares its cores with the client); "
        "projected items/s if each master's CPU is the limit (masters x 1e6 / server us per item): "
        + "; ".join(
            f"{variant}: " + ", ".join(f"{m} masters {m * cap:,.0f}" for m in (1, 3, 6, 12))
            for variant, cap in per_master.items()
        ),
    ]
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["variant", "items", "runs", "items/s", "server us/item", "round trips/item"],
        targets,
        notes=notes,
        extra={"runs": runs},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
