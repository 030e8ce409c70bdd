"""Listing many queues: `rediswq ls` (the installed command, end to end) and `rediswq.survey`.

N queues (1,000) are made on a private redis-server, each with a few items, some closed, some with
leases. Then, alternating, timed R times each: the library call `rediswq.survey(client)` (a SCAN walk
plus one pipeline of stats.lua calls), one `Queue.stats()` call per queue (what a loop over the
queues costs, without the process starts a shell loop of `rediswq stats` adds) and the command
`rediswq ls --json` as a subprocess (Python's start-up included; `rediswq --version` alone is timed
too, to tell start-up from listing). Target: 1,000 queues listed in under 1 s, by the library call
and by the command end to end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import Target, base_parser, environment, finish, median, private_redis

import rediswq
from rediswq import Queue

NAME = "ls"
TITLE = "Listing queues"


def fill(client: Any, queues: int) -> None:
    for i in range(queues):
        q = Queue(client, f"bench-ls-{i:05d}")
        q.put_many([b"x"] * (i % 5 + 1))
        if i % 7 == 0:
            q.close()
        if i % 11 == 0:
            q.lease(600)


def timed(fn: Any) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--queues", type=int, default=1000, help="queues to make and list")
    parser.add_argument("--repeat", type=int, default=5, help="timings of each variant")
    args = parser.parse_args(argv)
    command = shutil.which("rediswq", path=str(Path(sys.executable).parent)) or "rediswq"

    with private_redis(args.redis_server, args.redis_config) as server:
        env = environment(server)
        client = server.client()
        fill(client, args.queues)
        run_env = {**os.environ, "REDISWQ_URL": server.url}

        def cli(*words: str) -> None:
            done = subprocess.run([command, *words], env=run_env, capture_output=True, check=False)
            if done.returncode != 0:
                raise SystemExit(
                    f"{command} {' '.join(words)}: exit {done.returncode}: {done.stderr[-500:]!r}"
                )

        found = rediswq.survey(client)
        assert len(found.queues) == args.queues and found.complete, (len(found.queues), found.complete)
        times: dict[str, list[float]] = {"survey": [], "stats loop": [], "ls": [], "start-up": []}
        queues = [Queue(client, s.name, allow_eviction=True) for s in found.queues]
        for _ in range(args.repeat):
            times["survey"].append(timed(lambda: rediswq.survey(client)))
            times["stats loop"].append(timed(lambda: [q.stats() for q in queues]))
            times["ls"].append(timed(lambda: cli("ls", "--json")))
            times["start-up"].append(timed(lambda: cli("--version")))
    rows = [
        {"variant": "rediswq.survey(client)", "queues": args.queues, "median s": median(times["survey"])},
        {
            "variant": "Queue.stats() per queue",
            "queues": args.queues,
            "median s": median(times["stats loop"]),
        },
        {"variant": "rediswq ls --json (process)", "queues": args.queues, "median s": median(times["ls"])},
        {"variant": "rediswq --version (start-up)", "queues": 0, "median s": median(times["start-up"])},
    ]
    targets = [
        Target(f"ls: rediswq.survey of {args.queues} queues", rows[0]["median s"], "<=", 1.0, "s"),
        Target(f"ls: rediswq ls of {args.queues} queues, end to end", rows[2]["median s"], "<=", 1.0, "s"),
    ]
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["variant", "queues", "median s"],
        targets,
        notes=[
            f"median of {args.repeat} runs each, interleaved; the command's figure includes Python's start-up"
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
