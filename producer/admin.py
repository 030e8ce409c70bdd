"""The admin commands: `dead list|requeue|purge`, `peek`, `close`, `reopen`, `purge`."""

from __future__ import annotations

import click

import rediswq
from rediswq_kit import CONTEXT_SETTINGS, ConfigError, escape_controls, open_queue, queue_errors
from rediswq_kit.complete import complete_queue
from rediswq_producer.show import absent, echo_json, payload_json, payload_text, require_queue, table, utc

_full = click.option("--full", is_flag=True, help="Show whole payloads (cut at 100 characters otherwise).")
_json = click.option(
    "--json", "as_json", is_flag=True, help="A JSON array of objects (payloads as text and base64)."
)


@click.group(context_settings=CONTEXT_SETTINGS)
def dead() -> None:
    """Look at dead letters: items that spent their attempts, or failed without retry.

    \b
    Examples:
      rediswq dead list jobs
      rediswq dead requeue jobs              # every dead letter back on the queue
      rediswq dead purge jobs 17 c:3f9a...   # delete two of them
    """


@dead.command("list")
@click.argument("queue", shell_complete=complete_queue)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    metavar="N",
    help="Show at most N dead letters (0: all).",
)
@_json
@_full
def dead_list(queue: str, limit: int, as_json: bool, full: bool) -> None:
    """List QUEUE's dead letters, oldest first: id, attempts, when, last error, payload.

    Exit 1 if no such queue exists (nothing was ever added to it), naming existing queues with a
    close name.

    Payloads are shown as text when they are printable UTF-8, else as a Python bytes literal; in JSON
    as `payload` (text, or null when not UTF-8) and `payload_base64`.

    \b
    Examples:
      rediswq dead list jobs --limit 10
      rediswq dead list jobs --json | jq -r '.[].error' | sort | uniq -c
    """
    q = open_queue(queue, one_shot=True)
    with queue_errors():
        stats = q.stats()
        require_queue(q, stats)
        letters = q.dead_letters(limit or None)
        total = stats.dead if limit and len(letters) >= limit else len(letters)
    if as_json:
        echo_json([_dead_json(d) for d in letters])
        return
    if not letters:
        click.echo(f"queue {queue}: no dead letters")
        return
    rows = [["ID", "ATTEMPTS", "DEAD AT (UTC)", "ERROR", "PAYLOAD"]]
    rows += [_dead_row(d, full) for d in letters]
    click.echo("\n".join(table(rows)))
    if total > len(letters):
        click.echo(f"({len(letters)} of {total} dead letters shown; --limit 0 shows all)")


@dead.command("requeue")
@click.argument("queue", shell_complete=complete_queue)
@click.argument("ids", nargs=-1)
def dead_requeue(queue: str, ids: tuple[str, ...]) -> None:
    """Put dead letters of QUEUE (those with the given IDS, or all) back on the queue, attempts reset.

    Ids that are not dead letters are ignored (the count printed says how many were requeued).
    A dead letter whose id was enqueued again meanwhile is dropped instead: the live item stays.
    Quarantined entries (ids malformed:SHA1: bytes that did not decode) and records that do not
    decode stay: they are no item to run; `dead purge` deletes them. Exit 1 if no such queue exists
    (nothing was ever added to it), naming existing queues with a close name; nothing is created.

    \b
    Examples:
      rediswq dead requeue jobs          # all of them
      rediswq dead requeue jobs 17 42    # two of them
    """
    q = _existing(queue)
    with queue_errors():
        n = q.requeue_dead(list(ids) if ids else None)
    click.echo(f"requeued {n} dead letters" + (f" of {len(ids)} ids given" if ids else ""))


@dead.command("purge")
@click.argument("queue", shell_complete=complete_queue)
@click.argument("ids", nargs=-1)
@click.option("--yes", is_flag=True, help="Needed to delete all of them (no IDS given).")
def dead_purge(queue: str, ids: tuple[str, ...], yes: bool) -> None:
    """Delete dead letters of QUEUE: those with the given IDS, or all of them with --yes.

    Deleted dead letters are counted as `dropped` in the stats. Exit 2 if no IDS and no --yes; exit 1
    if no such queue exists (nothing was ever added to it), naming existing queues with a close name.

    \b
    Examples:
      rediswq dead purge jobs 17 42      # two of them
      rediswq dead purge jobs --yes      # all of them
    """
    q = _existing(queue)
    if not ids and not yes:
        with queue_errors():
            n = q.stats().dead
        raise ConfigError(f"refusing to delete all {n} dead letters of queue {queue!r} without --yes")
    with queue_errors():
        n = q.purge_dead(list(ids) if ids else None)
    click.echo(f"deleted {n} dead letters" + (f" of {len(ids)} ids given" if ids else ""))


def _dead_json(d: rediswq.DeadLetter) -> dict[str, object]:
    return {
        "id": d.id,
        "attempts": d.attempts,
        "error": d.error,
        "dead_at_ms": d.dead_at_ms,
        **payload_json(d.payload),
    }


def _dead_row(d: rediswq.DeadLetter, full: bool) -> list[str]:
    """A table row; the error on one line, cut at 60 characters unless `full`."""
    error = escape_controls(" ".join(d.error.split()))
    if not full and len(error) > 60:
        error = error[:60] + "..."
    return [escape_controls(d.id), str(d.attempts), utc(d.dead_at_ms), error, payload_text(d.payload, full)]


def _existing(name: str, advice: str = "") -> rediswq.Queue:
    """The queue `name`, opened; exit 1 if nothing was ever added to it, naming queues with a close
    name: an admin command on a typo'd name must neither create it nor look like it did its work."""
    queue = open_queue(name, one_shot=True)
    with queue_errors():
        require_queue(queue, queue.stats(), advice)
    return queue


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue", shell_complete=complete_queue)
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    metavar="N",
    help="Show N items.",
)
@_json
@_full
def peek(queue: str, count: int, as_json: bool, full: bool) -> None:
    """Show the first items pending in QUEUE (the next to be leased) without leasing them.

    Items pushed raw with `redis-cli rpush QUEUE ...` have no id until a worker's lease call takes
    them in (shown as `-`, or null in JSON). Payloads are shown as in `dead list`. An entry that does
    not decode shows its raw bytes under the id it gets once quarantined (malformed:SHA1). Exit 1 if
    no such queue exists (nothing was ever added to it), naming existing queues with a close name.

    \b
    Examples:
      rediswq peek jobs
      rediswq peek jobs --count 1 --json | jq -r '.[0].payload'
    """
    q = open_queue(queue, one_shot=True)
    with queue_errors():
        require_queue(q, q.stats())
        items = q.peek(count)
    if as_json:
        echo_json(
            [
                {
                    "id": i.id or None,
                    "attempts": i.attempts,
                    **payload_json(i.payload),
                    **({"error": i.error} if i.error else {}),
                }
                for i in items
            ]
        )
        return
    if not items:
        click.echo(f"queue {queue}: nothing pending")
        return
    rows = [["ID", "ATTEMPTS", "PAYLOAD"]]
    rows += [[escape_controls(i.id) or "-", str(i.attempts), payload_text(i.payload, full)] for i in items]
    click.echo("\n".join(table(rows)))


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue", shell_complete=complete_queue)
@click.option(
    "--create",
    is_flag=True,
    help="Close QUEUE even if nothing was ever added to it: it is made, empty and closed.",
)
def close(queue: str, create: bool) -> None:
    """Close QUEUE: no more items may be added (`enqueue` then fails with exit 1).

    Workers started with `--until closed` exit once the queue is closed and drained; `reopen` undoes it.
    Exit 1 if no such queue exists (nothing was ever added to it), naming existing queues with a close
    name, and nothing is created; with --create it is made, empty and closed: workers of a run that
    had nothing to do (a producer that found no input, say) then exit 0 at once, drained.

    \b
    Examples:
      rediswq close jobs
      rediswq close --create jobs    # no producer this time: let the workers finish
    """
    if create:
        q = open_queue(queue, one_shot=True)
        with queue_errors():
            made = absent(q.stats())
    else:
        q, made = _existing(queue, f"`rediswq close --create {queue}` makes it, empty and closed"), False
    with queue_errors():
        q.close()
    click.echo(f"closed queue {queue!r}" + (" (made it: it did not exist)" if made else ""))


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue", shell_complete=complete_queue)
def reopen(queue: str) -> None:
    """Reopen a closed QUEUE so items may be added again (e.g. for a queue a CronJob refills).

    It also forgets the checkpoints of `enqueue --unique`, so the same input may be enqueued anew.
    Exit 1 if no such queue exists (nothing was ever added to it), naming existing queues with a close
    name (a queue nobody made needs no reopening: `enqueue` makes it).

    \b
    Example:
      rediswq reopen jobs
    """
    q = _existing(queue)
    with queue_errors():
        q.reopen()
    click.echo(f"reopened queue {queue!r}")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue", shell_complete=complete_queue)
@click.option("--yes", is_flag=True, help="Really delete (required).")
def purge(queue: str, yes: bool) -> None:
    """Delete QUEUE entirely: pending, leased and delayed items, dead letters, counters, closed flag.

    Refuses (exit 2) without --yes. Workers holding leases will find them lost. Exit 1 if no such
    queue exists (nothing was ever added to it), naming existing queues with a close name.

    \b
    Example:
      rediswq purge jobs --yes
    """
    q = open_queue(queue, one_shot=True)
    with queue_errors():
        s = q.stats()
        require_queue(q, s)
    what = f"{s.pending} pending, {s.leased} leased, {s.delayed} delayed, {s.dead} dead"
    if not yes:
        raise ConfigError(f"refusing to delete queue {queue!r} ({what}) without --yes")
    with queue_errors():
        q.purge()
    click.echo(f"deleted queue {queue!r} ({what})")
