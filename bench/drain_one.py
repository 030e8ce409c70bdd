"""Drain one item at a time with N worker processes: rediswq vs the docs example vs the floor.

rediswq: `lease`, then `complete_and_lease([lease], 1)` per item (one script call per item).
rediswq consume(): the library loop, `for lease in queue.consume(...)`, beside it in the same run.
baseline: the Kubernetes docs example's algorithm (BRPOPLPUSH + SETEX, LREM + DEL, two LLEN a loop).
floor: pipelined RPOP (100 per round trip), no lease at all: what Redis and a Python client can move.
Targets: rediswq >= 4x the baseline; <= 1.05 client calls per item; consume() >= 0.9x rediswq.
"""

from __future__ import annotations

import sys
from typing import Any

from _common import (
    Target,
    base_parser,
    environment,
    finish,
    interleaved,
    load_scripts,
    paired_ratio,
    payloads,
    private_redis,
    summarize,
)
from _drain import (
    docs_example,
    docs_example_drained,
    fill_list,
    fill_rediswq,
    floor_drain,
    list_drained,
    measure,
    rediswq_consume,
    rediswq_drained,
    rediswq_one,
)

NAME = "drain_one"
TITLE = "Drain, one item at a time"
MAIN = "rediswq"
CONSUME = "rediswq consume()"
BASELINE = "baseline (docs example)"
FLOOR = "floor (pipelined RPOP)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument(
        "--items",
        type=int,
        default=20_000,
        help="items rediswq drains per run (about as long as the baseline's)",
    )
    parser.add_argument("--baseline-items", type=int, default=4_000, help="items the baseline drains")
    parser.add_argument("--floor-items", type=int, default=100_000, help="items the floor drains")
    parser.add_argument("--floor-batch", type=int, default=100, help="RPOPs per pipeline for the floor")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--repeat", type=int, default=6, help="runs of each variant (the median counts)")
    parser.add_argument("--payload-bytes", type=int, default=16)
    args = parser.parse_args(argv)

    with private_redis(args.redis_server, args.redis_config) as server:
        client = server.client()
        load_scripts(client)
        env = environment(server)
        url = server.url
        runs = interleaved(
            [
                lambda: measure(
                    client,
                    url,
                    variant=MAIN,
                    items=payloads(args.items, args.payload_bytes),
                    workers=args.workers,
                    fill=fill_rediswq,
                    worker=rediswq_one,
                    worker_args=(60.0,),
                    scripts=True,
                    check_drained=rediswq_drained,
                ),
                lambda: measure(
                    client,
                    url,
                    variant=CONSUME,
                    items=payloads(args.items, args.payload_bytes),
                    workers=args.workers,
                    fill=fill_rediswq,
                    worker=rediswq_consume,
                    worker_args=(60.0,),
                    scripts=True,
                    check_drained=rediswq_drained,
                ),
                lambda: measure(
                    client,
                    url,
                    variant=BASELINE,
                    items=payloads(args.baseline_items, args.payload_bytes),
                    workers=args.workers,
                    fill=fill_list,
                    worker=docs_example,
                    scripts=False,
                    check_drained=docs_example_drained,
                ),
                lambda: measure(
                    client,
                    url,
                    variant=FLOOR,
                    items=payloads(args.floor_items, args.payload_bytes),
                    workers=args.workers,
                    fill=fill_list,
                    worker=floor_drain,
                    worker_args=(args.floor_batch,),
                    scripts=False,
                    check_drained=list_drained,
                ),
            ],
            args.repeat,
        )

    rows = summarize(runs)
    by = {row["variant"]: row for row in rows}
    for row in rows:
        row["x baseline"] = paired_ratio(runs, row["variant"], BASELINE)
        row["% floor"] = 100 * paired_ratio(runs, row["variant"], FLOOR)
        row["x rediswq"] = paired_ratio(runs, row["variant"], MAIN)
    targets = [
        Target("drain one: rediswq / baseline", by[MAIN]["x baseline"], ">=", 4.0, "x"),
        Target("drain one: client calls per item", by[MAIN]["calls/item"], "<=", 1.05),
        Target("drain one: consume() / complete_and_lease", by[CONSUME]["x rediswq"], ">=", 0.9, "x"),
        Target("drain one: consume() client calls per item", by[CONSUME]["calls/item"], "<=", 1.05),
    ]
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        [
            "variant",
            "items",
            "runs",
            "items/s",
            "x baseline",
            "x rediswq",
            "% floor",
            "calls/item",
            "server us/item",
        ],
        targets,
        notes=[
            f"{args.workers} worker processes; items/s is the median of {args.repeat} runs per variant; "
            "the ratios are medians of the ratios of runs side by side"
        ],
        extra={"runs": runs},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
