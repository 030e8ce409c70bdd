"""Redis-side time of one lease.lua call, by variant and by path: where the Lua time of the hot path goes.

One process, one private Redis, no workers: each round fills a queue, leases `--batch` items, then
calls lease.lua `--calls` times, each completing the previous batch and leasing the next (the
`complete_and_lease` loop), and reads the time Redis spent in the call from `INFO commandstats` (usec
of EVALSHA, or of FCALL; commands inside it included), reset before each round. Wall clock is not
used: the machine is shared, and commandstats counts only the server's own time.

Two paths, as users get them: `scripts` (EVALSHA of the prelude joined to lease.lua: Redis 6.2, or a
user given the scripts' rules) and `functions` (FCALL of `rediswq_lease` in the function library:
Redis 7+; the variant's library is loaded with FUNCTION LOAD REPLACE before each of its rounds).
`--path both` (the default) runs each variant both ways on a Redis with functions.

Variants are lease.lua texts: `now` (the shipped one), and any `--variant NAME=FILE[,PRELUDE]` (a
scratch copy with a part switched off, or an older lease.lua; the shipped prelude is joined in front
unless a PRELUDE file is given, as rediswq does). Rounds take turns, the order reversed every other
round; the table shows each variant's median us per call and per item.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from _common import base_parser, private_redis

from rediswq import Queue, _library, _scripts


@dataclass(frozen=True)
class Variant:
    name: str
    lease: str  # lease.lua's text
    prelude: str  # prelude.lua's text


def _variant(spec: str) -> Variant:
    name, _, files = spec.partition("=")
    lease_file, _, prelude_file = files.partition(",")
    prelude = _library.source(_library.PRELUDE)
    if prelude_file:
        prelude = Path(prelude_file).read_text(encoding="utf-8")
    return Variant(name, Path(lease_file).read_text(encoding="utf-8"), prelude)


class Caller:
    """Calls one variant of lease.lua on one path; the commandstats entry that times it."""

    def __init__(self, client: Any, variant: Variant, path: str) -> None:
        self.client = client
        self.path = path
        self.stat = "cmdstat_fcall" if path == "functions" else "cmdstat_evalsha"
        if path == "functions":
            texts = {name: _library.source(name) for name in _library.OPERATIONS}
            texts.update({"lease": variant.lease, _library.PRELUDE: variant.prelude})
            self.library = _library.build(texts)
        else:
            self.sha = client.script_load(variant.prelude + variant.lease)

    def prepare(self) -> None:
        if self.path == "functions":
            self.client.execute_command("FUNCTION", "LOAD", "REPLACE", self.library.code)

    def __call__(self, keys: list[str], args: list[Any]) -> Any:
        if self.path == "functions":
            name = _library.function_name("lease")
            return self.client.execute_command("FCALL", name, len(keys), *keys, self.library.version, *args)
        return self.client.evalsha(self.sha, len(keys), *keys, *args)


def new_handles(reply: list[Any]) -> list[bytes]:
    """The handles a lease.lua reply leased, in either layout: {status, wait, deadline, n_lost, n_kept,
    lost..., handles..., kept...} (now), or {status, wait, deadline, n_lost, lost..., handle, payload...}
    (before 2026-12; a variant may be an older text)."""
    n_lost = int(reply[3])
    if isinstance(reply[4], int):
        return reply[5 + n_lost : len(reply) - 2 * reply[4]]
    return reply[4 + n_lost :: 2]


def _round(call: Caller, batch: int, calls: int, name: str) -> float:
    """us of Redis time per lease.lua call over `calls` complete-and-lease calls of `batch` items."""
    client = call.client
    call.prepare()
    queue = Queue(client, name)
    queue.purge()
    queue.put_many([b"%016d" % i for i in range(batch * (calls + 1))])
    keys = queue.keys.all()
    args: list[Any] = [batch, 60_000, 5, 100, "w", 0]
    reply = call(keys, args)
    client.config_resetstat()
    for _ in range(calls):
        handles = new_handles(reply)
        reply = call(keys, [*args, *handles])
        assert reply[0] == 0 and int(reply[3]) == 0, reply[:4]
    stats = client.info("commandstats")[call.stat]
    queue.purge()
    return int(stats["usec"]) / int(stats["calls"])


def _has_functions(client: Any) -> bool:
    try:
        client.execute_command("FUNCTION", "LIST")
    except redis.exceptions.ResponseError:
        return False
    return True


def parser_with_variants(description: str, calls: int, calls_help: str) -> argparse.ArgumentParser:
    """The options of a tool that runs lease.lua's loop for each variant (this one, lua_instructions.py)."""
    parser = base_parser(description)
    parser.add_argument("--batch", type=int, default=1, help="items a call completes and leases")
    parser.add_argument("--calls", type=int, default=calls, help=calls_help)
    parser.add_argument(
        "--variant", action="append", default=[], help="NAME=FILE[,PRELUDE], a lease.lua to compare"
    )
    parser.add_argument("--path", choices=["both", "functions", "scripts"], default="both")
    return parser


def variants_of(args: argparse.Namespace) -> list[Variant]:
    """The shipped lease.lua ("now") and the --variant ones. The queue is filled and purged through
    the scripts from here on: the function library loaded may be a variant's."""
    _scripts.FUNCTIONS = False
    prelude = _library.source(_library.PRELUDE)
    return [Variant("now", _library.source("lease"), prelude), *map(_variant, args.variant)]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = parser_with_variants(__doc__ or "", 20_000, "calls per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each variant")
    args = parser.parse_args(argv)
    variants = variants_of(args)
    results: dict[str, list[float]] = {}
    with private_redis(args.redis_server, args.redis_config) as server:
        client = server.client()
        paths = ["functions", "scripts"] if args.path == "both" else [args.path]
        if not _has_functions(client):
            paths = [p for p in paths if p == "scripts"] or ["scripts"]
        callers = {f"{v.name} ({p})": Caller(client, v, p) for p in paths for v in variants}
        order = list(callers)
        results = {name: [] for name in order}
        for r in range(args.repeat):
            for name in order if r % 2 == 0 else reversed(order):
                results[name].append(_round(callers[name], args.batch, args.calls, "cost"))
        version = client.info("server")["redis_version"]
    print(
        f"lease.lua on Redis {version}, {args.batch} item(s) a call, {args.calls} calls a round, "
        f"{args.repeat} rounds"
    )
    print(f"{'variant (path)':<32} {'us/call':>9} {'us/item':>9}   runs")
    for name, runs in results.items():
        median = statistics.median(runs)
        shown = " ".join(f"{x:.1f}" for x in runs)
        print(f"{name:<32} {median:>9.2f} {median / args.batch:>9.3f}   {shown}")
    return {name: statistics.median(runs) for name, runs in results.items()}


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
