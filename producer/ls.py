"""`rediswq ls`: every queue on the Redis, one line each, once or as a live view with rates."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import click

import rediswq
from rediswq_kit import CONTEXT_SETTINGS, ConfigError, open_queue, queue_errors
from rediswq_kit.complete import complete_queue
from rediswq_kit.progress import Rate, eta_secs, eta_text, settled
from rediswq_producer.show import echo_json, table

DEFAULT_LIMIT = 10_000
DEFAULT_WATCH_SECS = 2.0
# The queue opened for its client alone; nothing is read from it.
_PROBE = "rediswq-ls"
_STATS_FIELDS = tuple(f.name for f in fields(rediswq.Stats))


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("glob", default="*", shell_complete=complete_queue)
@click.option(
    "--sort",
    type=click.Choice(["name", "pending", "dead"]),
    default="name",
    show_default=True,
    help="Order of the lines: by name, or the most pending (dead letters) first.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON list of objects (with --watch, one per line)."
)
@click.option(
    "-w",
    "--watch",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=DEFAULT_WATCH_SECS,
    metavar="[SECS]",
    help=f"Redraw every SECS seconds (default {DEFAULT_WATCH_SECS:g}) with each queue's rate and time "
    "to drain, until interrupted.",
)
@click.option(
    "--iterations", type=click.IntRange(min=1), metavar="N", help="With --watch, stop after N refreshes."
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    metavar="N",
    help="List at most N queues.",
)
def ls(glob: str, sort: str, as_json: bool, watch: float | None, iterations: int | None, limit: int) -> None:
    """List every queue (on every master of a cluster) whose name matches GLOB (a Redis glob: * ? [..]).

    One line per queue: its name, open or closed, pending, leased, delayed, done (completed), dead
    (dead letters), the rate at which items are settled (completed or dead-lettered; with --watch,
    over the last 30 s) and the time to drain at that rate. Read in a bounded walk: a few SCAN calls
    per master for the names, then one pipeline of one script call per queue; a queue whose name
    the walk did not reach (over --limit, or a keyspace too large to walk at once) is left out with
    a warning on stderr. Queues this Redis user may not read are left out too, counted on stderr.

    Listing needs SCAN, which shows every queue's name: the admin role of `rediswq acl` grants it,
    the producer and worker roles do not (exit 2, one line). A queue that cannot be read (a key of
    another type) is shown as `error`, its error on stderr, and the command exits 1 (without
    --watch). --json prints one list of objects with every count and counter of `rediswq stats
    --json`, `name`, `error` (null, or why it could not be read: its numbers are then null),
    `read_at_ms` (Redis's clock), `rate_per_sec` and `drain_eta_secs` (null until two refreshes of
    --watch). With --watch [SECS] the table is redrawn every SECS seconds (give GLOB before it, or
    --watch=SECS); when stdout is not a terminal, each table is appended instead. Ctrl-C ends it
    with exit 0.

    \b
    Examples:
      rediswq ls
      rediswq ls 'jobs-*' --sort pending
      rediswq ls --json | jq '.[] | select(.dead > 0) | .name'
      rediswq ls 'jobs-*' --watch 5
    """
    view = _View(open_queue(_PROBE, one_shot=True), glob, sort, as_json, watch, limit)
    shown = 0
    try:
        while True:
            began = time.monotonic()
            unreadable = view.show()
            shown += 1
            if watch is None:
                if unreadable:
                    raise click.exceptions.Exit(1)
                return
            if iterations is not None and shown >= iterations:
                return
            time.sleep(max(0.0, watch - (time.monotonic() - began)))
    except KeyboardInterrupt:
        return


@dataclass
class _View:
    """One refresh of `rediswq ls`: a survey, then JSON, the table, or the table appended."""

    q: rediswq.Queue
    glob: str
    sort: str
    as_json: bool
    watch: float | None
    limit: int = DEFAULT_LIMIT
    rates: dict[str, Rate] = field(default_factory=dict)
    warned: str = ""

    def show(self) -> int:
        """Show one survey; returns how many queues could not be read."""
        found = self._survey()
        rates = {s.name: self._rate(s) for s in found.queues}
        queues = sorted(found.queues, key=self._order)
        self._warn(found, queues)
        if self.as_json:
            echo_json([summary_dict(s, rates[s.name]) for s in queues])
        else:
            lines = table(rows(queues, rates)) if queues else [f"no queues match {self.glob!r}"]
            if self.watch is not None and sys.stdout.isatty():
                # Home and clear, then the view: a terminal shows it in place.
                click.echo("\x1b[H\x1b[2J" + "\n".join(lines))
            else:
                if self.watch is not None:
                    click.echo(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                click.echo("\n".join(lines))
        return sum(1 for s in queues if s.stats is None)

    def _survey(self) -> rediswq.Survey:
        with queue_errors():
            client = self.q.client
            try:
                return rediswq.survey(client, pattern=self.glob, limit=self.limit)
            except rediswq.PermissionDenied as e:
                raise ConfigError(
                    f"listing queues needs SCAN, which only the admin role grants (rediswq acl): {e}"
                ) from e

    def _rate(self, s: rediswq.QueueSummary) -> float | None:
        if self.watch is None or s.stats is None:
            return None
        return self.rates.setdefault(s.name, Rate()).add(s.read_at_ms / 1000, settled(s.stats))

    def _order(self, s: rediswq.QueueSummary) -> tuple[int, str]:
        if self.sort == "name" or s.stats is None:
            return (0 if self.sort == "name" else 1, s.name)
        return (-getattr(s.stats, self.sort), s.name)

    def _warn(self, found: rediswq.Survey, queues: list[rediswq.QueueSummary]) -> None:
        """Say on stderr what is left out and what could not be read: once per change with --watch."""
        lines = [f"rediswq ls: queue {s.name}: {s.error}" for s in queues if s.stats is None]
        if found.refused:
            lines.append(f"rediswq ls: {found.refused} queue(s) not shown: this Redis user may not read them")
        if not found.complete:
            lines.append(
                f"rediswq ls: the list may be partial: the walk stopped at {len(queues)} queue(s) "
                "(--limit, or a keyspace too large to walk at once; narrow it with GLOB)"
            )
        text = "\n".join(lines)
        if text and text != self.warned:
            click.echo(text, err=True)
        self.warned = text if self.watch is not None else ""


HEADER = ["QUEUE", "STATE", "PENDING", "LEASED", "DELAYED", "DONE", "DEAD", "RATE", "DRAINS IN"]


def rows(queues: list[rediswq.QueueSummary], rates: dict[str, float | None]) -> list[list[str]]:
    out = [HEADER]
    for summary in queues:
        s = summary.stats
        if s is None:
            out.append([summary.name, "error", *["-"] * (len(HEADER) - 2)])
            continue
        rate = rates.get(summary.name)
        counts = (s.pending, s.leased, s.delayed, s.completed, s.dead)
        shown_rate = "-" if rate is None else f"{rate:.1f}/s"
        drains = "drained" if s.drained else eta_text(s.outstanding, rate)
        out.append([summary.name, "closed" if s.closed else "open", *map(str, counts), shown_rate, drains])
    return out


def summary_dict(summary: rediswq.QueueSummary, rate: float | None) -> dict[str, Any]:
    """One queue in --json: the same field names whether or not it could be read."""
    s = summary.stats
    numbers: dict[str, Any] = (
        {**asdict(s), "drained": s.drained, "outstanding": s.outstanding}
        if s is not None
        else {**dict.fromkeys(_STATS_FIELDS), "drained": None, "outstanding": None}
    )
    return {
        "name": summary.name,
        **numbers,
        "error": summary.error or None,
        "read_at_ms": summary.read_at_ms,
        "rate_per_sec": rate,
        "drain_eta_secs": eta_secs(s, rate) if s is not None else None,
    }
