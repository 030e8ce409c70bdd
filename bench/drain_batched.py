"""Drain in batches with N worker processes: rediswq vs the floor.

rediswq: `lease_many(B)`, then `complete_and_lease(batch, B)` per batch (one script call per batch);
also shown: `lease_many(B)` then `complete_many(batch)`, two calls per batch.
floor: B RPOP commands per pipeline (one round trip per batch), no lease at all.
bulk floor: `RPOP key --bulk` (one command takes that many items), no lease at all: Redis's floor.
Targets (issue 4, #2): rediswq >= 60 % of the floor; <= 0.03 client calls per item; and (the issue
"The per-item cost back down") >= 25 % of the bulk floor, <= 2.0 us of Redis time per item.
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
    bulk_floor_drain,
    fill_list,
    fill_rediswq,
    floor_drain,
    list_drained,
    measure,
    rediswq_batched,
    rediswq_drained,
    rediswq_lease_then_complete,
)

NAME = "drain_batched"
TITLE = "Drain, batched"
MAIN = "rediswq complete_and_lease"
FLOOR = "floor (pipelined RPOP)"
BULK = "bulk floor (RPOP key count)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=100_000, help="items each variant drains per run")
    parser.add_argument("--batch", type=int, default=100, help="items per lease call / RPOPs per pipeline")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--repeat", type=int, default=6, help="runs of each variant (the median counts)")
    parser.add_argument("--payload-bytes", type=int, default=16)
    parser.add_argument("--bulk", type=int, default=500, help="items per RPOP for the bulk floor")
    parser.add_argument("--bulk-items", type=int, default=200_000, help="items the bulk floor drains")
    args = parser.parse_args(argv)

    with private_redis(args.redis_server, args.redis_config) as server:
        client = server.client()
        load_scripts(client)
        env = environment(server)
        url = server.url
        items = payloads(args.items, args.payload_bytes)
        common: dict[str, Any] = {"items": items, "workers": args.workers}
        runs = interleaved(
            [
                lambda: measure(
                    client,
                    url,
                    variant=MAIN,
                    fill=fill_rediswq,
                    worker=rediswq_batched,
                    worker_args=(args.batch, 60.0),
                    scripts=True,
                    check_drained=rediswq_drained,
                    **common,
                ),
                lambda: measure(
                    client,
                    url,
                    variant=FLOOR,
                    fill=fill_list,
                    worker=floor_drain,
                    worker_args=(args.batch,),
                    scripts=False,
                    check_drained=list_drained,
                    **common,
                ),
                lambda: measure(
                    client,
                    url,
                    variant=BULK,
                    items=payloads(args.bulk_items, args.payload_bytes),
                    workers=args.workers,
                    fill=fill_list,
                    worker=bulk_floor_drain,
                    worker_args=(args.bulk,),
                    scripts=False,
                    check_drained=list_drained,
                ),
                lambda: measure(
                    client,
                    url,
                    variant="rediswq lease_many + complete_many",
                    fill=fill_rediswq,
                    worker=rediswq_lease_then_complete,
                    worker_args=(args.batch, 60.0),
                    scripts=True,
                    check_drained=rediswq_drained,
                    **common,
                ),
            ],
            args.repeat,
        )

    rows = summarize(runs)
    by = {row["variant"]: row for row in rows}
    for row in rows:
        row["% floor"] = 100 * paired_ratio(runs, row["variant"], FLOOR)
        row["% bulk floor"] = 100 * paired_ratio(runs, row["variant"], BULK)
    targets = [
        Target("drain batched: rediswq / floor", by[MAIN]["% floor"], ">=", 60.0, " %"),
        Target("drain batched: client calls per item", by[MAIN]["calls/item"], "<=", 0.03),
        Target("drain batched: rediswq / bulk floor", by[MAIN]["% bulk floor"], ">=", 25.0, " %"),
        Target("drain batched: server us per item", by[MAIN]["server us/item"], "<=", 2.0, " us"),
    ]
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["variant", "items", "runs", "items/s", "% floor", "% bulk floor", "calls/item", "server us/item"],
        targets,
        notes=[
            f"batch {args.batch}; {args.workers} worker processes; items/s is the median of {args.repeat} "
            "runs; % floor is the median of the ratios of runs side by side"
        ],
        extra={"runs": runs},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
