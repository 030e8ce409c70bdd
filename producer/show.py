"""How the admin commands show payloads, times and JSON: one place, so every command agrees.

Payloads are bytes. To a terminal, one is shown as text when it is printable UTF-8, else as a Python
bytes literal (``b'\\x00\\x01'``), so binary data and control characters can never garble the
screen or split a line; long ones are cut unless --full. In JSON, an item carries ``payload`` (the
text when the bytes are valid UTF-8, else null) and ``payload_base64`` (always, lossless).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    import rediswq

SHORT_CHARS = 100


def payload_text(data: bytes, full: bool = False) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
        shown = repr(data)
    else:
        shown = text if text.isprintable() else repr(data)
    if not full and len(shown) > SHORT_CHARS:
        shown = f"{shown[:SHORT_CHARS]}... ({len(data)} bytes)"
    return shown


def payload_json(data: bytes) -> dict[str, Any]:
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"payload": text, "payload_base64": base64.b64encode(data).decode("ascii")}


def utc(ms: int) -> str:
    """A Redis timestamp (ms since the epoch) as ISO 8601 UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False))


def table(rows: list[list[str]]) -> list[str]:
    """Rows as left-aligned columns two spaces apart (the last column unpadded)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    ]


def absent(stats: rediswq.Stats) -> bool:
    """Nothing was ever added to the queue and nothing is in it. (A queue whose counters are gone
    while items remain is damaged, not absent: the admin commands still show and mend it.)"""
    return not stats.exists and not (stats.pending or stats.leased or stats.delayed or stats.dead)


def require_queue(q: rediswq.Queue, stats: rediswq.Stats, advice: str = "") -> None:
    """Refuse a queue nothing was ever added to (`rediswq.QueueNotFound`: exit 1 under `queue_errors`),
    naming the existing queues whose names are close: a typo'd name must not look like an empty queue."""
    if absent(stats):
        raise q.not_found(advice)
