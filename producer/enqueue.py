"""`rediswq enqueue`: put items into a queue from arguments, ranges, files or standard input."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

import rediswq
from rediswq_kit import CONTEXT_SETTINGS, ConfigError, open_queue, queue_errors
from rediswq_kit.complete import complete_queue
from rediswq_producer.checkpoint import SourceProgress
from rediswq_producer.signals import DeferredSignals, Interrupted
from rediswq_producer.sources import InputError, IntRange, ReadProgress, Sources

UNIQUE_PREFIX = "c:"


def unique_id(payload: bytes) -> str:
    """The id `--unique` gives an item: a hash of its bytes (prefixed, so never all digits)."""
    return UNIQUE_PREFIX + hashlib.blake2b(payload, digest_size=16).hexdigest()


@dataclass
class Tally:
    added: int = 0
    skipped: int = 0
    resumed: int = 0  # items an earlier run put in, after which this one went on (--unique)
    sent: bool = False  # a batch was sent (its reply may be lost if the connection drops)

    def summary(self) -> str:
        text = f"enqueued {self.added}, skipped {self.skipped} duplicates"
        return text + (f", {self.resumed} put in by an earlier run" if self.resumed else "")


class Stopped(click.ClickException):
    """The run was stopped by a signal: one line (no "Error:"), exit 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, interrupted: Interrupted, tally: Tally, unique: bool) -> None:
        text = f"interrupted by {interrupted.name}: {tally.summary()}"
        if interrupted.unsure:
            text += " (stopped again mid-call: more may have gone in)"
        if unique:
            text += "; the same command adds exactly the rest"
        super().__init__(text)
        self.exit_code = interrupted.exit_code  # type: ignore[misc]  # click reads it per instance

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


class ProgressLine:
    """One line on a terminal's stderr, redrawn in place at most five times a second; nothing otherwise."""

    def __init__(self, queue: str, reading: ReadProgress, enabled: bool) -> None:
        self.queue = queue
        self.reading = reading
        self.enabled = enabled
        self.started = time.monotonic()
        self.shown_at = 0.0

    def update(self, tally: Tally) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.shown_at < 0.2:
            return
        self.shown_at = now
        rate = (tally.added + tally.skipped) / max(now - self.started, 1e-9)
        line = f"{self.queue}: {tally.added:,} enqueued, {tally.skipped:,} skipped, {rate:,.0f}/s"
        r = self.reading
        if r.total_bytes:
            line += f", {100 * r.done_bytes / r.total_bytes:.0f}% of {r.source}"
        click.echo(f"\r\x1b[K{line}", nl=False, err=True)

    def clear(self) -> None:
        if self.enabled and self.shown_at:
            click.echo("\r\x1b[K", nl=False, err=True)


def _ints(values: tuple[str, ...]) -> list[IntRange]:
    try:
        return [IntRange.parse(v) for v in values]
    except InputError as e:
        raise click.BadParameter(str(e), param_hint="--range") from e


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue", shell_complete=complete_queue)
@click.argument("items", nargs=-1, metavar="[ITEM]...")
@click.option(
    "-f",
    "--file",
    "files",
    multiple=True,
    metavar="PATH",
    help="Read items from PATH, one per line ('-' is standard input). Repeatable.",
)
@click.option(
    "--range",
    "ranges",
    multiple=True,
    metavar="START:END[:STEP]",
    help="Enqueue the integers START, START+STEP, ... up to END excluded (Python's range). Repeatable.",
)
@click.option("-0", "--null", is_flag=True, help="Items in files and stdin end with NUL, not newline.")
@click.option("--keep-blank", is_flag=True, help="Enqueue empty items too (skipped by default).")
@click.option(
    "-u",
    "--unique",
    is_flag=True,
    help="Give each item an id hashed from its bytes (an item equal to a live one is skipped), and "
    "checkpoint each source's progress: a re-run over the same input adds only what is missing.",
)
@click.option("--close", "close_after", is_flag=True, help="Close the queue once every item is in.")
@click.option(
    "--max-item-bytes",
    type=click.IntRange(min=1),
    metavar="BYTES",
    help="Refuse items larger than this (default: the library's limit, 64 MiB).",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1, max=1024),
    metavar="S",
    help="Make the queue with S shards, each under a hash tag of its own, spread over a Redis "
    "Cluster's masters; fixed when the queue is made: with an existing queue S must be its count "
    "(leave it out to use the queue's). Default: one (an ordinary queue).",
)
@click.option("-q", "--quiet", is_flag=True, help="No summary line.")
def enqueue(
    queue: str,
    items: tuple[str, ...],
    files: tuple[str, ...],
    ranges: tuple[str, ...],
    null: bool,
    keep_blank: bool,
    unique: bool,
    close_after: bool,
    max_item_bytes: int | None,
    shards: int | None,
    quiet: bool,
) -> None:
    """Put items into QUEUE: each ITEM argument, each integer of each --range, then each line of each
    --file; with none of these, each line of standard input.

    Items are bytes, taken verbatim: a line's trailing newline (and a \\r before it) is dropped, and
    blank lines are skipped unless --keep-blank. They go in batches of up to 2,000 items, each batch
    atomically, so when something fails the error line says exactly how many items went in.

    With --unique, each item's id is `c:` and the hex BLAKE2b-128 digest of its bytes, so an item
    equal to one still live in the queue (pending, waiting for a retry, or leased) is skipped; and
    each batch records, in the same atomic call, how far its source got (a checkpoint per argument
    list, range, file path or stdin: the count of items in and a digest of them, one small hash field
    per source). A run killed at any point and re-run over the same input adds exactly the items not
    yet added, even when workers have completed and forgotten the earlier ones; a re-run over an
    input whose first items differ from those checkpointed fails with exit 2, and `rediswq reopen`
    forgets the checkpoints. A queue closed by a finished run accepts such a re-run (nothing to add).

    On a terminal a progress line is drawn on stderr. At the end the summary `enqueued N, skipped M
    duplicates` goes to stdout (--quiet drops it). Exit codes: 0 every item is in; 1 a runtime
    error (Redis unreachable, the queue is closed); 2 bad usage or input (unreadable file, an item
    over the size limit, bad URL or password); 130 stopped by SIGINT (Ctrl-C), 143 by SIGTERM. An
    error is one line on stderr, with the count of items that went in before it. A signal stops the
    run after the reply to the batch in flight, and its one line on stderr (`interrupted by SIGINT:
    enqueued N, skipped M duplicates`) counts exactly the items that went in; with --unique the same
    command adds exactly the rest. An input with no items at all (an empty stdin or file) is no
    error, as a scheduled producer may find nothing new: it warns on stderr and exits 0.

    \b
    Examples:
      rediswq enqueue jobs a b c                     # three items
      rediswq enqueue jobs --file urls.txt --close   # one item a line, then close the queue
      find /data -name '*.csv' -print0 | rediswq enqueue jobs --null
      rediswq enqueue --unique jobs -f urls.txt      # re-runnable: adds only what is missing
      rediswq enqueue jobs --range 0:10000           # the items 0, 1, ..., 9999
    """
    with DeferredSignals().installed() as signals:
        _enqueue(
            queue, items, files, ranges, null, keep_blank, unique, close_after, max_item_bytes, quiet,
            signals, shards,
        )  # fmt: skip


def _enqueue(
    queue: str,
    items: tuple[str, ...],
    files: tuple[str, ...],
    ranges: tuple[str, ...],
    null: bool,
    keep_blank: bool,
    unique: bool,
    close_after: bool,
    max_item_bytes: int | None,
    quiet: bool,
    signals: DeferredSignals,
    shards: int | None = None,
) -> None:
    tally = Tally()
    try:
        int_ranges = _ints(ranges)
        files = _files_or_stdin(bool(items or int_ranges), files)
        options: dict[str, Any] = {"max_payload_bytes": max_item_bytes} if max_item_bytes else {}
        if shards is not None:
            options["shards"] = shards
        q = open_queue(queue, one_shot=True, **options)
    except Interrupted as e:
        raise Stopped(e, tally, unique) from None
    progress = ReadProgress()
    sources = Sources(
        args=items,
        ranges=int_ranges,
        files=files,
        separator=b"\0" if null else b"\n",
        keep_blank=keep_blank,
        max_item_bytes=q.max_payload_bytes,
        progress=progress,
    )
    line = ProgressLine(queue, progress, enabled=sys.stderr.isatty())
    try:
        _fill(q, sources, unique, close_after, tally, line, signals, shards)
    except click.ClickException as e:
        line.clear()
        # The same class keeps the exit code: ConfigError (2) for bad input, 1 for runtime errors.
        raise type(e)(f"{e.message}; {_before(tally, e.__cause__)}") from e.__cause__
    except Interrupted as e:
        line.clear()
        raise Stopped(e, tally, unique) from None
    line.clear()
    _finish(tally, quiet, f"; closed queue {q.name!r}" if close_after else "")


def _files_or_stdin(other_sources: bool, files: tuple[str, ...]) -> tuple[str, ...]:
    """With no ITEM, --range or --file, standard input ("-"), unless it is a terminal."""
    if other_sources or files:
        return files
    if sys.stdin.isatty():
        raise click.UsageError("no items: give ITEM arguments, --file, --range, or pipe them to stdin")
    return ("-",)


def _finish(tally: Tally, quiet: bool, closed: str) -> None:
    """The summary line; an input with no items at all warns (a typo'd path, an empty pipe)."""
    if not (tally.added or tally.skipped or tally.resumed):
        click.echo("Warning: nothing to enqueue: the input held no items", err=True)
    if not quiet:
        click.echo(tally.summary() + closed)


def _fill(
    q: rediswq.Queue,
    sources: Sources,
    unique: bool,
    close_after: bool,
    tally: Tally,
    line: ProgressLine,
    signals: DeferredSignals,
    shards: int | None = None,
) -> None:
    """Put every source's items (then close the queue, if asked); errors as one line and a code."""
    with queue_errors():
        try:
            sources.check_files()
            if shards is not None:
                q.shard_count()  # made now with that count, or a one-line error if it has another
            # Fail fast, before reading any input (a checkpointed re-run may have nothing to add).
            if not unique and q.stats().closed:
                raise rediswq.QueueClosed(f"queue {q.name!r} is closed")
            for name, chunks in sources.streams():
                _put_source(q, name, chunks, unique, tally, line, signals)
            if close_after:
                with signals.deferred():
                    q.close()
        except InputError as e:
            raise ConfigError(str(e)) from e
        except rediswq.QueueClosed as e:
            raise click.ClickException(f"queue {q.name!r} is closed") from e


def _put_source(
    q: rediswq.Queue,
    name: str,
    chunks: Iterator[list[bytes]],
    unique: bool,
    tally: Tally,
    line: ProgressLine,
    signals: DeferredSignals,
) -> None:
    """Put one source's items, one `put_many` call per list read (a pipe's trickle goes in as it comes).

    put_many cuts each list into batches itself and sends them from a background thread. A signal
    during the call stops it after the batch in flight (signals.py), and the tally counts that batch.
    """
    progress = SourceProgress(name, q.name)
    if unique:
        progress.expect(q.checkpoint(name))
        tally.resumed += progress.resumed
    for read in chunks:
        items = progress.skip(read) if unique else read
        if not items:
            continue
        tally.sent = True
        with signals.deferred():
            try:
                if unique:
                    before = progress.count
                    done = q.put_many(
                        items,
                        ids=[unique_id(item) for item in items],
                        checkpoint=(name, lambda taken: progress.mark(items, taken, before)),  # noqa: B023
                        stop=signals.stop,
                    )
                else:
                    done = q.put_many(items, stop=signals.stop)
            except rediswq.RedisWQError as e:
                tally.added += e.added
                raise
            tally.added += done.added
            tally.skipped += done.skipped
        line.update(tally)
    progress.finish()


def _before(tally: Tally, cause: BaseException | None) -> str:
    """How many items went in before a failure; after a lost reply, the batch in flight is unknown."""
    text = f"{tally.summary()} before that"
    lost_reply = isinstance(cause, rediswq.ConnectionFailed) and not isinstance(
        cause, rediswq.AuthenticationFailed
    )
    if lost_reply and tally.sent:
        text += " (a batch in flight may have gone in too)"
    return text
