"""`rediswq stats`: a queue's counts and counters, once or as a live view with rate and time to drain."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import Any

import click

import rediswq
from rediswq_cli.kit import open_queue, queue_errors
from rediswq_cli.progress import Rate, duration, eta_secs, settled
from rediswq_producer.show import echo_json, require_queue, table

# Below this many leases the text view lists who holds them; --holders lists them anyway.
SHOW_HOLDERS_UP_TO = 10
HOLDERS_LIMIT = 1000


def stats_dict(s: rediswq.Stats) -> dict[str, Any]:
    return {**asdict(s), "drained": s.drained, "outstanding": s.outstanding}


def holder_dicts(holders: list[rediswq.LeaseInfo], now_ms: int) -> list[dict[str, Any]]:
    return [
        {
            **asdict(h),
            "held_secs": (now_ms - h.leased_at_ms) / 1000,
            "expires_in_secs": (h.deadline_ms - now_ms) / 1000,
        }
        for h in holders
    ]


def redis_now_ms(q: rediswq.Queue) -> int:
    """Redis's clock, which lease deadlines are on (the local clock may disagree)."""
    with queue_errors():
        secs, micros = q.client.time()
    return int(secs) * 1000 + int(micros) // 1000


def text_view(
    name: str,
    s: rediswq.Stats,
    holders: list[rediswq.LeaseInfo] | None,
    now_ms: int,
    rate: float | None = None,
    interval: float | None = None,
) -> list[str]:
    """The human view; with `interval` (watching), a line of rate and time to drain too."""
    state = "closed" if s.closed else "open"
    progress = "drained" if s.drained else f"{s.outstanding} outstanding"
    # Dead letters are work not done: said in the first line, not only in the table below.
    dead = f", {s.dead} dead letters (rediswq dead list {name})" if s.dead else ""
    lines = [f"queue {name}: {state}, {progress}{dead}"]
    if interval is not None:
        eta = eta_secs(s, rate)
        shown_rate = "-" if rate is None else f"{rate:.1f}/s"
        shown_eta = "" if s.drained else ", drains in " + ("?" if eta is None else f"~{duration(eta)}")
        lines.append(f"settling {shown_rate}{shown_eta}  (every {interval:g}s; Ctrl-C stops)")
    counts = [["pending", str(s.pending)], ["leased", str(s.leased)], ["delayed", str(s.delayed)]]
    counts.append(["dead", str(s.dead)])
    counters = [[field, str(getattr(s, field))] for field in rediswq.Stats.COUNTERS]
    lines += ["", *("  " + row for row in table(counts)), "", "since the queue was made:"]
    lines += ["  " + row for row in table(counters)]
    if holders:
        rows = [["ID", "ATTEMPT", "WORKER", "HELD", "EXPIRES IN"]]
        for h in holders:
            left = (h.deadline_ms - now_ms) / 1000
            rows.append(
                [
                    h.id,
                    str(h.attempt),
                    h.worker,
                    duration(max(0, now_ms - h.leased_at_ms) / 1000),
                    duration(left) if left >= 0 else "expired",
                ]
            )
        more = f" (first {len(holders)} of {s.leased})" if len(holders) < s.leased else ""
        lines += ["", f"leases{more}:", *("  " + row for row in table(rows))]
    return lines


def log_line(name: str, s: rediswq.Stats, rate: float | None) -> str:
    """One line per refresh when --watch output is not a terminal (a log, a pipe)."""
    eta = eta_secs(s, rate)
    fields = [
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        f"queue={name}",
        *(f"{k}={getattr(s, k)}" for k in ("pending", "leased", "delayed", "dead", "completed")),
        f"closed={int(s.closed)}",
        "rate=-" if rate is None else f"rate={rate:.1f}/s",
        "eta=-" if eta is None else f"eta={eta:.0f}s",
    ]
    return " ".join(fields)


@click.command()
@click.argument("queue")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (with --watch, one per line).")
@click.option(
    "--holders", is_flag=True, help=f"List every live lease (up to {HOLDERS_LIMIT}) and its worker."
)
@click.option("-w", "--watch", is_flag=True, help="Refresh until interrupted, with rate and time to drain.")
@click.option(
    "-n",
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    metavar="SECS",
    help="Seconds between refreshes with --watch.",
)
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --watch, stop after N refreshes.",
)
def stats(
    queue: str, as_json: bool, holders: bool, watch: bool, interval: float, iterations: int | None
) -> None:
    """Show QUEUE's counts and lifetime counters.

    Counts: pending (ready to lease), leased (held by a worker), delayed (failed, waiting out a retry
    backoff), dead (dead letters). Counters, since the queue was made: enqueued, completed, failed
    (attempts that failed), retried, expired (leases that ran out and were taken back),
    dead_lettered, released (given back without charging an attempt), dropped (dead letters purged
    or replaced), quarantined (entries that did not decode, moved to the dead letters). The queue is
    drained when it exists and nothing is pending, delayed or leased. Without --watch, exit 1 if no
    such queue exists (nothing was ever added to it).

    The text view lists the live leases and their workers when there are at most 10 (--holders: up
    to 1000). --json prints one object with every count and counter, `drained` and `outstanding`
    (and `holders` with --holders). With --watch the view is redrawn every --interval seconds with
    the rate at which items are settled (completed or dead-lettered, over the last 30 s) and an
    estimate of the time to drain; when stdout is not a terminal, one line is appended per refresh
    instead (with --json, one JSON object per line). Ctrl-C ends it with exit 0.

    \b
    Examples:
      rediswq stats jobs
      rediswq stats jobs --json | jq .pending
      rediswq stats jobs --watch --interval 5
    """
    q = open_queue(queue, one_shot=True)
    rate = Rate()
    redraw = watch and not as_json and sys.stdout.isatty()
    shown = 0
    try:
        while True:
            with queue_errors():
                s = q.stats()
            if not watch:
                require_queue(queue, s)
            now = time.monotonic()
            current = rate.add(now, settled(s)) if watch else None
            listed = None
            if holders or (not as_json and 0 < s.leased <= SHOW_HOLDERS_UP_TO):
                with queue_errors():
                    listed = q.holders(HOLDERS_LIMIT)
            now_ms = redis_now_ms(q) if listed else 0
            if as_json:
                out = stats_dict(s)
                if listed is not None:
                    out["holders"] = holder_dicts(listed, now_ms)
                if watch:
                    out["rate_per_sec"] = current
                    out["drain_eta_secs"] = eta_secs(s, current)
                echo_json(out)
            elif watch and not redraw:
                click.echo(log_line(queue, s, current))
            else:
                lines = text_view(queue, s, listed, now_ms, current, interval if watch else None)
                if redraw:
                    # Home and clear, then the view: a terminal shows it in place.
                    click.echo("\x1b[H\x1b[2J", nl=False)
                click.echo("\n".join(lines))
            shown += 1
            if not watch or (iterations is not None and shown >= iterations):
                return
            time.sleep(max(0.0, interval - (time.monotonic() - now)))
    except KeyboardInterrupt:
        return
