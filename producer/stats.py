"""`rediswq stats`: a queue's counts and counters, once or as a live view with rate and time to drain."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import click

import rediswq
from rediswq_kit import CONTEXT_SETTINGS, open_queue, queue_errors
from rediswq_kit.complete import complete_queue
from rediswq_kit.progress import Rate, duration, eta_secs, settled
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
    lines = [_first_line(name, s)]
    if interval is not None:
        lines.append(_settling_line(s, rate, interval))
    counts = [[counter, str(getattr(s, counter))] for counter in ("pending", "leased", "delayed", "dead")]
    counters = [[counter, str(getattr(s, counter))] for counter in rediswq.Stats.COUNTERS]
    lines += ["", *("  " + row for row in table(counts)), "", "since the queue was made:"]
    lines += ["  " + row for row in table(counters)]
    if holders:
        more = f" (first {len(holders)} of {s.leased})" if len(holders) < s.leased else ""
        lines += ["", f"leases{more}:", *("  " + row for row in table(_holder_rows(holders, now_ms)))]
    return lines


def _first_line(name: str, s: rediswq.Stats) -> str:
    state = ("closed" if s.closed else "open") + (f", {s.shards} shards" if s.shards > 1 else "")
    progress = "drained" if s.drained else f"{s.outstanding} outstanding"
    # Dead letters are work not done: said in the first line, not only in the table below.
    dead = f", {s.dead} dead letters (rediswq dead list {name})" if s.dead else ""
    return f"queue {name}: {state}, {progress}{dead}"


def _settling_line(s: rediswq.Stats, rate: float | None, interval: float) -> str:
    eta = eta_secs(s, rate)
    shown_rate = "-" if rate is None else f"{rate:.1f}/s"
    shown_eta = "" if s.drained else ", drains in " + ("?" if eta is None else f"~{duration(eta)}")
    return f"settling {shown_rate}{shown_eta}  (every {interval:g}s; Ctrl-C stops)"


def _holder_rows(holders: list[rediswq.LeaseInfo], now_ms: int) -> list[list[str]]:
    rows = [["ID", "ATTEMPT", "WORKER", "HELD", "EXPIRES IN"]]
    for h in holders:
        left = (h.deadline_ms - now_ms) / 1000
        held = duration(max(0, now_ms - h.leased_at_ms) / 1000)
        rows.append([h.id, str(h.attempt), h.worker, held, duration(left) if left >= 0 else "expired"])
    return rows


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


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue", shell_complete=complete_queue)
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
@click.option(
    "--per-shard", is_flag=True, help="A sharded queue's counts shard by shard too (one call per shard)."
)
def stats(
    queue: str,
    as_json: bool,
    holders: bool,
    watch: bool,
    interval: float,
    iterations: int | None,
    per_shard: bool,
) -> None:
    """Show QUEUE's counts and lifetime counters.

    Counts: pending (ready to lease), leased (held by a worker), delayed (failed, waiting out a retry
    backoff), dead (dead letters). Counters, since the queue was made: enqueued, completed, failed
    (attempts that failed), retried, expired (leases that ran out and were taken back),
    dead_lettered, released (given back without charging an attempt), dropped (dead letters purged
    or replaced), quarantined (entries that did not decode, moved to the dead letters). The queue is
    drained when it exists and nothing is pending, delayed or leased. Without --watch, exit 1 if no
    such queue exists (nothing was ever added to it), naming existing queues with a close name.

    The text view lists the live leases and their workers when there are at most 10 (--holders: up
    to 1000). --json prints one object with every count and counter, `drained` and `outstanding`
    (and `holders` with --holders). With --watch the view is redrawn every --interval seconds with
    the rate at which items are settled (completed or dead-lettered, over the last 30 s) and an
    estimate of the time to drain; when stdout is not a terminal, one line is appended per refresh
    instead (with --json, one JSON object per line). Ctrl-C ends it with exit 0.

    A sharded queue (`enqueue --shards`) is shown as one: its counts and counters are its shards'
    sums, and the first line says how many shards it has; --per-shard adds each shard's counts
    (--json: `per_shard`, a list of objects, shard 0 first).

    \b
    Examples:
      rediswq stats jobs
      rediswq stats jobs --json | jq .pending
      rediswq stats jobs --watch --interval 5
    """
    view = _View(open_queue(queue, one_shot=True), queue, as_json, holders, watch, interval, per_shard)
    shown = 0
    try:
        while True:
            began = time.monotonic()
            view.show()
            shown += 1
            if not watch or (iterations is not None and shown >= iterations):
                return
            time.sleep(max(0.0, interval - (time.monotonic() - began)))
    except KeyboardInterrupt:
        return


@dataclass
class _View:
    """One refresh of `rediswq stats`: JSON, a log line (--watch into a pipe), or the text view."""

    q: rediswq.Queue
    name: str
    as_json: bool
    holders: bool
    watch: bool
    interval: float
    per_shard: bool = False
    rate: Rate = field(default_factory=Rate)

    def show(self) -> None:
        with queue_errors():
            s = self.q.stats()
            if not self.watch:
                require_queue(self.q, s)
        current = self.rate.add(time.monotonic(), settled(s)) if self.watch else None
        listed = self._holders(s)
        now_ms = redis_now_ms(self.q) if listed else 0
        shards = self._shards()
        if self.as_json:
            echo_json({**self._json(s, listed, now_ms, current), **_per_shard_json(shards)})
        elif not self.watch:
            click.echo("\n".join(text_view(self.name, s, listed, now_ms) + _per_shard_lines(shards)))
        elif sys.stdout.isatty():
            lines = text_view(self.name, s, listed, now_ms, current, self.interval)
            # Home and clear, then the view: a terminal shows it in place.
            click.echo("\x1b[H\x1b[2J" + "\n".join(lines))
        else:
            click.echo(log_line(self.name, s, current))

    def _shards(self) -> list[rediswq.Stats] | None:
        """Each shard's stats, when asked for."""
        if not self.per_shard:
            return None
        with queue_errors():
            return self.q.shard_stats()

    def _holders(self, s: rediswq.Stats) -> list[rediswq.LeaseInfo] | None:
        """The live leases, when asked for, or when the text view has few enough to list."""
        if not (self.holders or (not self.as_json and 0 < s.leased <= SHOW_HOLDERS_UP_TO)):
            return None
        with queue_errors():
            return self.q.holders(HOLDERS_LIMIT)

    def _json(
        self, s: rediswq.Stats, listed: list[rediswq.LeaseInfo] | None, now_ms: int, rate: float | None
    ) -> dict[str, Any]:
        out = stats_dict(s)
        if listed is not None:
            out["holders"] = holder_dicts(listed, now_ms)
        if self.watch:
            out["rate_per_sec"] = rate
            out["drain_eta_secs"] = eta_secs(s, rate)
        return out


_SHARD_COUNTS = ("pending", "leased", "delayed", "dead")


def _per_shard_json(shards: list[rediswq.Stats] | None) -> dict[str, Any]:
    return {} if shards is None else {"per_shard": [stats_dict(s) for s in shards]}


def _per_shard_lines(shards: list[rediswq.Stats] | None) -> list[str]:
    """The --per-shard table of the text view: each shard's counts, and whether it is closed."""
    if shards is None:
        return []
    rows = [["SHARD", *(c.upper() for c in _SHARD_COUNTS), "CLOSED"]]
    rows += [
        [str(i), *(str(getattr(s, c)) for c in _SHARD_COUNTS), "yes" if s.closed else "no"]
        for i, s in enumerate(shards)
    ]
    return ["", "shards:", *("  " + row for row in table(rows))]
