"""Memory: what a pending item costs in Redis, against the same payload in a bare Redis list.

Each case fills one key (or one queue) of a fresh server with N payloads of B bytes and reads
`used_memory` from `INFO memory` before and after: the difference over N is the cost per item.
bare list: RPUSH of the payloads. rediswq: `put_many` of the same payloads (pending items are msgpack
envelopes [id, attempts, payload] in one list). Also shown, not a target: what a leased item costs
(its handle in the leased zset, its payload in the payloads hash), measured by leasing the queue's first
L items. And what `enqueue --unique`'s checkpoints cost: one hash field per input source (its
count and digest, `COUNT:32-hex-digit BLAKE2b`), whatever the number of items, measured with
MEMORY USAGE of the checkpoints hash after S sources have each put a batch.
Target (issue 4, #6): a pending item <= 2x the bare list's cost per item.
"""

from __future__ import annotations

import sys
from typing import Any

import redis
from _common import (
    RedisServer,
    Target,
    base_parser,
    environment,
    finish,
    load_scripts,
    payloads,
    private_redis,
)
from _drain import fill_list

from rediswq import Queue

NAME = "memory"
TITLE = "Memory per pending item"


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def measure(server: RedisServer, items: list[bytes], leased: int) -> list[dict[str, Any]]:
    client = server.client()
    load_scripts(client)
    n = len(items)

    before = used_memory(client)
    fill_list(client, "bare", items)
    bare = used_memory(client) - before
    client.delete("bare")

    q = Queue(client, "mem")
    before = used_memory(client)
    q.put_many(items)
    pending = used_memory(client) - before
    if q.stats().pending != n:
        raise RuntimeError("put_many did not add every item")

    rows = [
        {"case": "bare list (RPUSH)", "items": n, "bytes": bare, "bytes/item": bare / n},
        {"case": "rediswq pending", "items": n, "bytes": pending, "bytes/item": pending / n},
    ]
    if leased:
        before = used_memory(client)
        got = 0
        while got < leased:
            got += len(q.lease_many(min(1000, leased - got), 3600, timeout=0))
        # Leasing moved `leased` items out of the pending list: charge the change to them alone.
        delta = used_memory(client) - before
        rows.append(
            {
                "case": "rediswq leased (extra)",
                "items": leased,
                "bytes": delta,
                "bytes/item": delta / leased,
            }
        )
    q.purge()
    return rows


def checkpoint_cost(server: RedisServer, sources: int) -> dict[str, Any]:
    """Bytes of the checkpoints hash per source, as `enqueue --unique` writes it (1,000,000 items each)."""
    client = server.client()
    q = Queue(client, "mem-checkpoints")
    for i in range(sources):
        q.put_many([b"x"], checkpoint=(f"file:/data/items-{i:05d}.txt", lambda _n: f"1000000:{'f' * 32}"))
    size = int(client.memory_usage(q.keys.checkpoints) or 0)
    q.purge()
    return {
        "case": "enqueue checkpoint (per source)",
        "items": sources,
        "bytes": size,
        "bytes/item": size / sources,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=1_000_000, help="pending items")
    parser.add_argument("--payload-bytes", type=int, default=16)
    parser.add_argument("--leased", type=int, default=100_000, help="items leased for the leased-cost row")
    parser.add_argument("--sources", type=int, default=1000, help="input sources for the checkpoint row")
    args = parser.parse_args(argv)

    with private_redis(args.redis_server, args.redis_config) as server:
        env = environment(server)
        rows = measure(server, payloads(args.items, args.payload_bytes), min(args.leased, args.items))
        rows.append(checkpoint_cost(server, args.sources))
    bare, pending = rows[0]["bytes/item"], rows[1]["bytes/item"]
    for row in rows[:2]:
        row["x bare"] = row["bytes/item"] / bare
    targets = [Target("memory: pending item / bare list item", pending / bare, "<=", 2.0, "x")]
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["case", "items", "bytes", "bytes/item", "x bare"],
        targets,
        notes=[
            f"{args.payload_bytes}-byte payloads; used_memory from INFO memory, before and after each fill",
            "leased (extra): used_memory change when that many pending items are leased, per item",
            "enqueue checkpoint: MEMORY USAGE of the checkpoints hash over the sources (items: sources)",
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
