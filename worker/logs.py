"""Log lines of `rediswq work`: plain text for people, one JSON object a line for log collectors.

Everything goes to standard error (standard output belongs to the items' commands). The root logger
is configured, so a handler's own `logging` calls come out in the same format. Structured fields
travel in `extra={"fields": {...}}`: text lines carry them in the message already, JSON lines get them
as keys of their own. With `context` (the queue and the worker's name), every line carries those
too, so a line about an item has queue, item, attempt and worker, the keys metrics are labelled by.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Literal

from rediswq_kit import escape_controls

LogFormat = Literal["text", "json"]

LOGGER = "rediswq.work"


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # One record, one line: an id or error text with a newline or an escape sequence is escaped.
        record.message = escape_controls(record.message)
        return super().formatMessage(record)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _Context(logging.Filter):
    """Adds the worker's own fields to every record; a record's own fields win."""

    def __init__(self, fields: dict[str, Any]) -> None:
        super().__init__()
        self.fields = fields

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        record.fields = {**self.fields, **fields} if isinstance(fields, dict) else dict(self.fields)
        return True


def _utc(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


_installed: logging.Handler | None = None


def setup(
    log_format: LogFormat = "text", *, verbose: bool = False, context: dict[str, Any] | None = None
) -> logging.Logger:
    """Send log lines to stderr in `log_format`; with `verbose`, the worker logs every item too.

    `context`: fields every line carries (e.g. queue and worker), the handler's own lines included.
    """
    global _installed
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    if context:
        handler.addFilter(_Context(context))
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    _installed = handler
    log = logging.getLogger(LOGGER)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    return log
