"""Redis Cluster vs one server, side by side in one run; and what --min-replicas (WAIT) costs.

The same drains (one item per call, and batches) with the same worker count on four set-ups on this
machine, like against like:
  single            one private redis-server
  cluster           three masters (no replicas): a cluster's own cost, the client path above all
                    (the lease call goes straight to the node owning the queue's slot: rediswq/_direct.py)
  single+replica    one server feeding a replica
  cluster+replicas  three masters, each feeding a replica (the usual production cluster)
A replica applies every write its master makes, on the same cores as everything else here: that is
why each cluster is compared with the single server that has as many copies of the data.
enqueue: `put` one item a call and `put_many`, on the cluster with replicas, with replicas=0 and 1.
Targets (issue 11), for both pairs: per-call cost on the cluster <= 1.2x one server's (the inverse
ratio of the one-at-a-time drain rates); batched drain on the cluster >= 0.8x one server's.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from typing import Any

from _common import (
    Target,
    base_parser,
    drain_rate,
    environment,
    finish,
    interleaved,
    load_scripts,
    medians,
    paired_ratio,
    payloads,
    private_redis,
    run_workers,
)
from _drain import fill_rediswq, rediswq_batched, rediswq_drained, rediswq_one, unique_name
from redis.cluster import RedisCluster
from topologies import Cluster, SentinelSet

from rediswq import Queue

NAME = "cluster"
TITLE = "Redis Cluster vs one server; the cost of --min-replicas"


def drain(
    client: Any, url: str, variant: str, items: int, workers: int, worker: Any, args: tuple[Any, ...]
) -> dict[str, Any]:
    """Fill a fresh queue, drain it with `workers` processes; the rate from first start to last item."""
    name = unique_name(variant.split()[0])
    fill_rediswq(client, name, payloads(items))
    done, seconds = drain_rate(run_workers(workers, worker, (url, name, *args)))
    if done != items or not rediswq_drained(client, name):
        raise RuntimeError(f"{variant}: drained {done} of {items} items, or items are left over")
    return {"variant": variant, "items": done, "seconds": seconds, "items/s": done / seconds}


def enqueue(
    client: RedisCluster, variant: str, items: int, replicas: int, one_by_one: bool
) -> dict[str, Any]:
    """Time `put` per item or one `put_many`, with `replicas` replicas confirming each write."""
    queue = Queue(client, unique_name("put"), replicas=replicas)
    data = payloads(items)
    began = time.perf_counter()
    if one_by_one:
        for payload in data:
            queue.put(payload)
    else:
        queue.put_many(data)
    seconds = time.perf_counter() - began
    if queue.stats().pending != items:
        raise RuntimeError(f"{variant}: not every item went in")
    queue.purge()
    return {"variant": variant, "items": items, "seconds": seconds, "items/s": items / seconds}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=20_000, help="items per one-at-a-time drain")
    parser.add_argument("--batched-items", type=int, default=200_000, help="items per batched drain")
    parser.add_argument("--batch", type=int, default=100, help="items per lease call in batched drains")
    parser.add_argument("--put-items", type=int, default=5_000, help="items put one by one")
    parser.add_argument("--put-many-items", type=int, default=200_000, help="items put with put_many")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each variant (the median counts)")
    args = parser.parse_args(argv)

    cluster = Cluster(replicas=0)
    replicated_cluster = Cluster(replicas=1)
    replicated = SentinelSet()  # its master and replica; the sentinels only watch
    try:
        with private_redis(args.redis_server, args.redis_config) as server:
            single = server.client()
            load_scripts(single)
            paired = replicated.node(replicated.master_port)
            paired_url = f"redis://127.0.0.1:{replicated.master_port}/0"
            load_scripts(paired)
            clustered = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
            load_scripts(clustered)  # type: ignore[arg-type]  # SCRIPT LOAD goes to every master
            copied = RedisCluster(host="127.0.0.1", port=replicated_cluster.ports[0])
            load_scripts(copied)  # type: ignore[arg-type]
            env = environment(server)
            one, batched = (
                (rediswq_one, (60.0,), args.items),
                (rediswq_batched, (args.batch, 60.0), args.batched_items),
            )
            setups = [
                ("single", single, server.url),
                ("cluster", clustered, cluster.url),
                ("single+replica", paired, paired_url),
                ("cluster+replicas", copied, replicated_cluster.url),
            ]
            drains = [
                partial(drain, client, url, f"{where} {how}", items, args.workers, worker, worker_args)
                for how, (worker, worker_args, items) in (("one-at-a-time", one), ("batched", batched))
                for where, client, url in setups
            ]
            puts = [
                lambda: enqueue(copied, "put, replicas=0", args.put_items, 0, True),
                lambda: enqueue(copied, "put, replicas=1", args.put_items, 1, True),
                lambda: enqueue(copied, "put_many, replicas=0", args.put_many_items, 0, False),
                lambda: enqueue(copied, "put_many, replicas=1", args.put_many_items, 1, False),
            ]
            runs = interleaved([*drains, *puts], args.repeat)
    finally:
        cluster.stop()
        replicated_cluster.stop()
        replicated.stop()

    rows = medians(runs, ("items/s",))
    for row in rows:
        row["us/item"] = 1e6 / row["items/s"]

    def cost(slow: str, fast: str) -> float:
        """The per-call cost of `slow` over `fast`: the inverse ratio of their one-at-a-time rates."""
        return paired_ratio(runs, f"{fast} one-at-a-time", f"{slow} one-at-a-time")

    def speed(slow: str, fast: str) -> float:
        return paired_ratio(runs, f"{slow} batched", f"{fast} batched")

    put_cost = paired_ratio(runs, "put, replicas=0", "put, replicas=1")
    put_many_cost = paired_ratio(runs, "put_many, replicas=0", "put_many, replicas=1")
    targets = [
        Target("cluster per-call cost / single's", cost("cluster", "single"), "<=", 1.2, "x"),
        Target("cluster batched drain / single's", speed("cluster", "single"), ">=", 0.8, "x"),
        Target(
            "cluster+replicas per-call cost / single+replica's",
            cost("cluster+replicas", "single+replica"),
            "<=",
            1.2,
            "x",
        ),
        Target(
            "cluster+replicas batched drain / single+replica's",
            speed("cluster+replicas", "single+replica"),
            ">=",
            0.8,
            "x",
        ),
    ]
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["variant", "items", "runs", "items/s", "us/item"],
        targets,
        notes=[
            f"{args.workers} worker processes; items/s is the median of {args.repeat} runs; the ratios "
            "are medians of the ratios of runs side by side",
            "what replication costs here: single+replica's per-call cost "
            f"{cost('single+replica', 'single'):.3f}x single's, batched drain "
            f"{speed('single+replica', 'single'):.3f}x; cluster+replicas against single: per-call "
            f"{cost('cluster+replicas', 'single'):.3f}x, batched {speed('cluster+replicas', 'single'):.3f}x",
            f"replicas=1 costs {put_cost:.2f}x per put and {put_many_cost:.2f}x per put_many item "
            f"(batches of 2,000) on this machine",
        ],
        extra={"runs": runs},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
