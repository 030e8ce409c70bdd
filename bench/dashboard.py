"""Dashboard: what `rediswq dashboard` costs Redis with 100 queues and browser tabs polling it.

A private redis-server gets N queues (a few items each, some done, some dead); `rediswq dashboard`
(the installed command, --interval 2) serves them while T threads act as browser tabs, each fetching
the overview JSON every second and one queue's page every other second. Redis's CPU is the change
in `used_cpu_sys + used_cpu_user` (INFO cpu) over S seconds, as a percentage of one core; the same
figure with no dashboard running is the idle baseline.
Target (issue "See every queue at once"): Redis under 1 % of a core with 100 queues.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
from _common import Target, base_parser, environment, finish, private_redis

import rediswq

NAME = "dashboard"
TITLE = "Dashboard: Redis CPU with every queue shown and tabs polling"
RQ = str(Path(sys.executable).parent / "rediswq")


def redis_cpu_secs(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def fill(url: str, queues: int) -> None:
    for i in range(queues):
        q = rediswq.Queue.from_url(url, f"q{i:03d}", max_attempts=1)
        q.put_many(f"item {j}" for j in range(5))
        q.complete(q.lease(30))  # type: ignore[arg-type]
        q.fail(q.lease(30), "boom", retry=False)  # type: ignore[arg-type]


def cpu_percent(client: redis.Redis, secs: float) -> float:
    before, began = redis_cpu_secs(client), time.monotonic()
    time.sleep(secs)
    return 100 * (redis_cpu_secs(client) - before) / (time.monotonic() - began)


def tab(base: str, stop: threading.Event, counts: list[int]) -> None:
    """A browser tab: the overview every second, a queue's page every other second."""
    n = 0
    while not stop.wait(1.0):
        urllib.request.urlopen(base + "api/queues", timeout=10).read()
        if n % 2 == 0:
            urllib.request.urlopen(base + "api/queue?name=q000", timeout=10).read()
        n += 1
        counts.append(1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--tabs", type=int, default=2)
    parser.add_argument("--secs", type=float, default=30.0, help="how long Redis's CPU is measured")
    parser.add_argument("--interval", type=float, default=2.0, help="the dashboard's --interval")
    args = parser.parse_args(argv)

    with private_redis(args.redis_server, args.redis_config) as server:
        env = environment(server)
        client = server.client()
        fill(server.url, args.queues)
        idle = cpu_percent(client, min(args.secs, 10.0))
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"rediswq-bench-dashboard-{os.getpid()}.log"
        with open(log, "wb") as sink:
            dash = subprocess.Popen(
                [RQ, "dashboard", "--port", "0", "--interval", str(args.interval)],
                env={**os.environ, "REDISWQ_URL": server.url},
                stderr=sink,
            )
        try:
            while not (found := re.search(r"serving (http://\S+)", log.read_text())):
                if dash.poll() is not None:
                    raise SystemExit(f"the dashboard did not start: {log.read_text()}")
                time.sleep(0.05)
            base = found.group(1)
            stop, requests = threading.Event(), [0]
            counts: list[int] = []
            tabs = [threading.Thread(target=tab, args=(base, stop, counts)) for _ in range(args.tabs)]
            for t in tabs:
                t.start()
            time.sleep(args.interval * 2)  # the first cycles and the script load out of the way
            counts.clear()
            busy = cpu_percent(client, args.secs)
            requests[0] = len(counts)
            stop.set()
            for t in tabs:
                t.join()
            shown = len(json.loads(urllib.request.urlopen(base + "api/queues").read())["queues"])
        finally:
            dash.terminate()
            dash.wait(15)
            log.unlink(missing_ok=True)
    rows = [
        {"measure": "idle Redis (no dashboard)", "cpu %": idle},
        {"measure": f"dashboard, {args.queues} queues, {args.tabs} tabs", "cpu %": busy},
    ]
    targets = [Target(f"dashboard: Redis CPU, {args.queues} queues (% of a core)", busy, "<=", 1.0, "%")]
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["measure", "cpu %"],
        targets,
        notes=[
            f"{shown} queues on the page; {requests[0]} tab polls in {args.secs:g}s, every one served from "
            f"the dashboard's cache (one Redis read cycle per {args.interval:g}s)",
            "cpu %: (used_cpu_sys + used_cpu_user) change from INFO cpu over the window / wall time",
        ],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
