"""The worker runtime: `rediswq work` processes against the library's own batched loop, and a fork loop.

handler mode: N `rediswq work QUEUE --handler noop_handler:noop --prefetch B` processes, against N
library workers doing `lease_many(B)` + `complete_and_lease(batch, B)` (the drain_batched loop).
command mode: N `rediswq work QUEUE -- true` processes (default --prefetch auto), against N
processes that just run `subprocess.run(["true"])` in a loop (what the machine can fork and exec).
Rates are steady state: from the first completed item the harness sees (polling the queue's
`completed` counter every 2 ms) to the last; process start-up is shown apart.
Targets (issue 4, #3): handler mode >= 50 % of the library's batched rate; command mode >= 70 % of
the fork loop.
--metrics adds handler mode with `--metrics-port` (each process serving Prometheus metrics, scraped
once a second by the harness, far more often than Prometheus would), run side by side with handler
mode without: the metrics may cost at most 3 % of its rate.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import redis
from _common import (
    BENCH_DIR,
    Target,
    WorkerResult,
    base_parser,
    calls_between,
    client_sent,
    command_calls,
    drain_rate,
    environment,
    finish,
    interleaved,
    load_scripts,
    medians,
    now,
    paired_ratio,
    payloads,
    private_redis,
    run_workers,
    script_commands,
)
from _drain import fill_rediswq, measure, rediswq_batched, rediswq_drained, unique_name

from rediswq import Queue

NAME = "worker_runtime"
TITLE = "Worker runtime"
POLL_SECS = 0.002
LIBRARY = "library batched"
HANDLER = "rediswq work --handler"
FORK = "fork+exec true loop"
COMMAND = "rediswq work -- true"
METRICS = "rediswq work --handler --metrics-port"
SCRAPE_SECS = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(ports: list[int]) -> int:
    """GET /metrics from each worker that answers yet; the bytes read."""
    read = 0
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                read += len(response.read())
        except OSError:
            pass  # not serving yet, or already gone
    return read


def rediswq_command() -> str | None:
    """The `rediswq` entry point beside this Python, else on PATH."""
    beside = Path(sys.executable).parent / "rediswq"
    if beside.exists():
        return str(beside)
    return shutil.which("rediswq")


def work_available(exe: str | None) -> tuple[bool, str]:
    """Whether `rediswq work` exists yet, and if not, what `--help` said."""
    if exe is None:
        return False, "no rediswq command found"
    done = subprocess.run([exe, "work", "--help"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"`rediswq work --help` exited {done.returncode}"
    return True, ""


def run_cli_workers(
    exe: str,
    client: redis.Redis,
    url: str,
    items: int,
    workers: int,
    work_args: list[str],
    variant: str,
    metrics: bool = False,
) -> dict[str, Any]:
    """Fill a queue, drain it with `workers` `rediswq work` processes, time start-up and steady state.

    With `metrics`, each process serves /metrics on a port of its own, scraped every SCRAPE_SECS.
    """
    name = unique_name("cli")
    q = Queue(client, name)
    fill_rediswq(client, name, payloads(items))
    completed_key = q.keys.meta
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH_DIR), os.environ.get("PYTHONPATH")])),
    }
    ports = [free_port() for _ in range(workers)] if metrics else []
    cmds = [[exe, "--url", url, "work", name, *work_args] for _ in range(workers)]
    for cmd, port in zip(cmds, ports, strict=False):
        cmd[5:5] = ["--metrics-port", str(port)]  # before the `--` that may end work_args
    before = command_calls(client)
    started = now()
    procs = [
        subprocess.Popen(cmd, cwd=BENCH_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for cmd in cmds
    ]
    scraped = 0
    next_scrape = started + SCRAPE_SECS
    first: tuple[float, int] | None = None
    last_done = started
    done = 0
    while any(p.poll() is None for p in procs):
        value = client.hget(completed_key, "completed")
        count = int(value) if value else 0
        t = now()
        if count and first is None:
            first = (t, count)
        if count > done:
            done, last_done = count, t
        if done >= items:
            break
        if ports and t >= next_scrape:
            scraped += scrape(ports)
            next_scrape = t + SCRAPE_SECS
        # Sleeping, not spinning: the harness must not take CPU from the workers.
        time.sleep(POLL_SECS)
    outputs = [p.communicate(timeout=600) for p in procs]
    ended = now()
    diff = calls_between(before, command_calls(client))
    codes = [p.returncode for p in procs]
    stats = q.stats()
    q.purge()
    if codes != [0] * workers or stats.completed != items or not stats.drained:
        detail = "; ".join(err.decode(errors="replace").strip()[-500:] for _out, err in outputs)
        raise RuntimeError(f"{variant}: exit codes {codes}, completed {stats.completed} of {items}: {detail}")
    if first is None:
        raise RuntimeError(f"{variant}: never saw an item completed")
    t1, c1 = first
    steady = (items - c1) / (last_done - t1) if last_done > t1 else float("nan")
    sent = client_sent(diff, inside_scripts=script_commands())
    return {
        "variant": variant,
        "items": items,
        "items/s": steady,
        "end-to-end s": ended - started,
        "start-up s": t1 - started,
        "calls/item": sent / items,
        "client calls": sent,
        "commandstats": diff,
        "summary lines": [out.decode(errors="replace").strip() for out, _err in outputs],
        "metrics bytes scraped": scraped,
    }


def fork_true(count: int, ready: Any, go: Any) -> WorkerResult:
    """Run `true` `count` times, one after the other: the machine's fork-and-exec rate."""
    ready.set()
    go.wait()
    started = now()
    for _ in range(count):
        subprocess.run(["true"], stdin=subprocess.DEVNULL, check=True)
    return WorkerResult(count, started, now())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=100_000, help="items for handler mode and the library")
    parser.add_argument("--command-items", type=int, default=3_000, help="items for command mode")
    parser.add_argument(
        "--prefetch", type=int, default=100, help="--prefetch of the worker, batch of the library"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--repeat", type=int, default=4, help="runs of each variant (the median counts)")
    parser.add_argument(
        "--metrics", action="store_true", help="also run handler mode with --metrics-port, beside it without"
    )
    args = parser.parse_args(argv)

    exe = rediswq_command()
    available, why = work_available(exe)
    per_worker = args.command_items // args.workers
    with private_redis(args.redis_server, args.redis_config) as server:
        client = server.client()
        load_scripts(client)
        env = environment(server)
        url = server.url

        def fork_loop() -> dict[str, Any]:
            n, seconds = drain_rate(run_workers(args.workers, fork_true, (per_worker,)))
            return {"variant": FORK, "items": n, "items/s": n / seconds}

        def cli(
            work_args: list[str], items: int, variant: str, metrics: bool = False
        ) -> dict[str, Any] | None:
            if not available or exe is None:
                return None
            return run_cli_workers(exe, client, url, items, args.workers, work_args, variant, metrics)

        handler_args = ["--handler", "noop_handler:noop", "--prefetch", str(args.prefetch)]
        with_metrics = [lambda: cli(handler_args, args.items, METRICS, metrics=True)] if args.metrics else []

        # Each reference next to what is compared with it: (library, handler), (fork loop, command).
        runs = interleaved(
            [
                lambda: measure(
                    client,
                    url,
                    variant=LIBRARY,
                    items=payloads(args.items),
                    workers=args.workers,
                    fill=fill_rediswq,
                    worker=rediswq_batched,
                    worker_args=(args.prefetch, 60.0),
                    scripts=True,
                    check_drained=rediswq_drained,
                ),
                lambda: cli(handler_args, args.items, HANDLER),
                *with_metrics,
                fork_loop,
                lambda: cli(["--", "true"], per_worker * args.workers, COMMAND),
            ],
            args.repeat,
        )

    rows = medians(runs, ("items/s", "calls/item", "start-up s", "end-to-end s"))
    by = {row["variant"]: row for row in rows}
    handler = by.get(HANDLER)
    command = by.get(COMMAND)
    if handler:
        handler["% reference"] = 100 * paired_ratio(runs, HANDLER, LIBRARY)
    if command:
        command["% reference"] = 100 * paired_ratio(runs, COMMAND, FORK)
    metered = by.get(METRICS)
    if metered:
        metered["% reference"] = 100 * paired_ratio(runs, METRICS, HANDLER)
    unavailable = f"`rediswq work` could not run: {why}" if not available else ""
    targets = [
        Target(
            "runtime handler mode / library batched",
            handler["% reference"] if handler else None,
            ">=",
            50.0,
            " %",
            unavailable,
        ),
        Target(
            "runtime command mode / fork+exec loop",
            command["% reference"] if command else None,
            ">=",
            70.0,
            " %",
            unavailable,
        ),
    ]
    if args.metrics:
        targets.append(
            Target(
                "metrics cost: handler mode with --metrics-port, slower than without",
                100 - metered["% reference"] if metered else None,
                "<=",
                3.0,
                " %",
                unavailable,
            )
        )
    notes = [
        f"{args.workers} worker processes, prefetch {args.prefetch}; items/s is the median of {args.repeat} "
        "runs; % reference is the median of the ratios of runs side by side"
    ]
    if unavailable:
        notes.append(unavailable)
    return finish(
        NAME,
        TITLE,
        args,
        env,
        vars(args),
        rows,
        ["variant", "items", "runs", "items/s", "% reference", "calls/item", "start-up s", "end-to-end s"],
        targets,
        notes=notes,
        extra={"runs": runs, "work_available": available},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
