"""Enqueue: `Queue.put_many` against the floor's fill rate, and `rediswq enqueue --file` end to end.

put_many: one process adds N payloads with `put_many` (default batches of 2,000 items per script call).
floor: one process RPUSHes the same payloads, 2,000 values per RPUSH and 10 RPUSHes per pipeline.
rediswq enqueue: `rediswq enqueue QUEUE --file F` for an F of N lines, timed from process start to exit.
Targets (issue 4, #4): put_many >= 30 % of the floor; the 1,000,000-line file in under 5 s.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis
from _common import (
    Target,
    base_parser,
    environment,
    finish,
    interleaved,
    load_scripts,
    medians,
    now,
    paired_ratio,
    payloads,
    private_redis,
)
from _drain import fill_list, fill_rediswq, unique_name
from worker_runtime import rediswq_command

from rediswq import Queue

NAME = "enqueue"
TITLE = "Enqueue"
PUT_MANY = "put_many"
FLOOR = "floor (pipelined RPUSH)"


def timed_fill(client: redis.Redis, variant: str, items: list[bytes]) -> dict[str, Any]:
    name = unique_name("fill")
    fill = fill_rediswq if variant == PUT_MANY else fill_list
    started = now()
    fill(client, name, items)
    seconds = now() - started
    if variant == PUT_MANY:
        q = Queue(client, name)
        count = q.stats().pending
        q.purge()
    else:
        count = int(client.llen(name))
        client.delete(name)
    if count != len(items):
        raise RuntimeError(f"{variant}: {count} of {len(items)} items went in")
    return {"variant": variant, "items": len(items), "seconds": seconds, "items/s": len(items) / seconds}


def enqueue_available(exe: str | None) -> tuple[bool, str]:
    if exe is None:
        return False, "no rediswq command found"
    done = subprocess.run([exe, "enqueue", "--help"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return False, lines[-1] if lines else f"`rediswq enqueue --help` exited {done.returncode}"
    return True, ""


def timed_cli(exe: str, client: redis.Redis, url: str, path: Path, lines: int) -> dict[str, Any]:
    name = unique_name("cli")
    started = now()
    done = subprocess.run([exe, "--url", url, "enqueue", name, "--file", str(path)], capture_output=True)
    seconds = now() - started
    q = Queue(client, name)
    count = q.stats().pending
    q.purge()
    if done.returncode != 0 or count != lines:
        raise RuntimeError(
            f"rediswq enqueue exited {done.returncode} with {count} of {lines} items in: "
            + done.stderr.decode(errors="replace").strip()[-500:]
        )
    return {
        "variant": "rediswq enqueue --file",
        "items": lines,
        "seconds": seconds,
        "items/s": lines / seconds,
        "summary line": done.stdout.decode(errors="replace").strip(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--items", type=int, default=1_000_000, help="payloads put_many and the floor add")
    parser.add_argument("--file-lines", type=int, default=1_000_000, help="lines in the file for the CLI")
    parser.add_argument("--payload-bytes", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=4, help="runs of each variant (the median counts)")
    args = parser.parse_args(argv)

    exe = rediswq_command()
    available, why = enqueue_available(exe)
    with private_redis(args.redis_server, args.redis_config) as server, tempfile.TemporaryDirectory() as tmp:
        client = server.client()
        load_scripts(client)
        env = environment(server)
        items = payloads(args.items, args.payload_bytes)
        path = Path(tmp) / "items.txt"
        with path.open("wb") as f:
            f.writelines(b"item-%09d\n" % i for i in range(args.file_lines))
        url = server.url
        runs = interleaved(
            [
                lambda: timed_fill(client, PUT_MANY, items),
                lambda: timed_fill(client, FLOOR, items),
                lambda: timed_cli(exe, client, url, path, args.file_lines) if available and exe else None,
            ],
            args.repeat,
        )

    rows = medians(runs, ("seconds", "items/s"))
    for row in rows:
        row["worst s"] = max(r["seconds"] for r in runs if r["variant"] == row["variant"])
    by = {row["variant"]: row for row in rows}
    for row in rows:
        row["% floor"] = 100 * paired_ratio(runs, row["variant"], FLOOR)
    cli = by.get("rediswq enqueue --file")
    unavailable = "" if available else f"`rediswq enqueue` could not run: {why}"
    targets = [
        Target("enqueue: put_many / floor fill", by[PUT_MANY]["% floor"], ">=", 30.0, " %"),
        Target(
            f"enqueue: rediswq enqueue of {args.file_lines:,} lines, end to end (worst run)",
            cli["worst s"] if cli else None,
            "<=",
            5.0,
            " s",
            unavailable,
        ),
    ]
    notes = [
        f"{args.payload_bytes}-byte payloads; items/s is the median of {args.repeat} runs; % floor the "
        "median of the ratios of runs side by side; the CLI's target is its worst run"
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
        ["variant", "items", "runs", "seconds", "worst s", "items/s", "% floor"],
        targets,
        notes=notes,
        extra={"runs": runs, "enqueue_available": available},
    )


if __name__ == "__main__":
    main(sys.argv[1:])
