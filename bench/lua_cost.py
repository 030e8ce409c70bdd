"""Redis-side time of one lease.lua call, by variant: where the Lua time of the hot path goes.

One process, one private Redis, no workers: each round fills a queue, leases `--batch` items, then
calls lease.lua `--calls` times, each completing the previous batch and leasing the next (the
`complete_and_lease` loop), and reads the time Redis spent in EVALSHA from `INFO commandstats` (usec
of the script call, commands inside it included), reset before each round. Wall clock is not used:
the machine is shared, and commandstats counts only the server's own time.

Variants are lease.lua texts: `now` (the shipped one, with the prelude), and any `--variant
NAME=FILE` (a scratch copy with a part switched off, or an older lease.lua; a file without
`local function checked` gets the prelude joined in front, as rediswq does). Rounds take turns, the
order reversed every other round; the table shows each variant's median us per call and per item.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from _common import base_parser, private_redis

from rediswq import Queue, _library


def _source(path: str) -> str:
    text = Path(path).read_text(encoding="utf-8")
    return text if "local function checked(" in text else _library.source(_library.PRELUDE) + text


def _round(client: Any, sha: str, batch: int, calls: int, name: str) -> float:
    """us of Redis time per lease.lua call over `calls` complete-and-lease calls of `batch` items."""
    queue = Queue(client, name)
    queue.purge()
    queue.put_many([b"%016d" % i for i in range(batch * (calls + 1))])
    keys = queue.keys.all()
    args: list[Any] = [batch, 60_000, 5, 100, "w", 0]
    reply = client.evalsha(sha, len(keys), *keys, *args)
    client.config_resetstat()
    for _ in range(calls):
        handles = reply[4 + int(reply[3]) :: 2]
        reply = client.evalsha(sha, len(keys), *keys, *args, *handles)
        assert reply[0] == 0 and int(reply[3]) == 0, reply[:4]
    stats = client.info("commandstats")["cmdstat_evalsha"]
    queue.purge()
    return int(stats["usec"]) / int(stats["calls"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--batch", type=int, default=1, help="items a call completes and leases")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each variant")
    parser.add_argument("--variant", action="append", default=[], help="NAME=FILE, a lease.lua to compare")
    args = parser.parse_args(argv)
    sources = {"now": _library.script("lease")}
    for spec in args.variant:
        name, _, path = spec.partition("=")
        sources[name] = _source(path)
    results: dict[str, list[float]] = {name: [] for name in sources}
    with private_redis(args.redis_server, args.redis_config) as server:
        client = server.client()
        shas = {name: client.script_load(text) for name, text in sources.items()}
        order = list(sources)
        for r in range(args.repeat):
            for name in order if r % 2 == 0 else reversed(order):
                results[name].append(_round(client, shas[name], args.batch, args.calls, f"cost-{name}"))
    print(f"lease.lua, {args.batch} item(s) a call, {args.calls} calls a round, {args.repeat} rounds")
    print(f"{'variant':<24} {'us/call':>9} {'us/item':>9}   runs")
    for name, runs in results.items():
        median = statistics.median(runs)
        shown = " ".join(f"{x:.1f}" for x in runs)
        print(f"{name:<24} {median:>9.2f} {median / args.batch:>9.3f}   {shown}")
    return {name: statistics.median(runs) for name, runs in results.items()}


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
