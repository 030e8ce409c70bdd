"""Where `rediswq enqueue` gets its items: arguments, integer ranges, files and standard input.

Everything is read as bytes and streamed a block at a time, so a file of any length costs one block
of memory (plus the batch being sent). Items come out in lists (one list per block) because a
million one-at-a-time generator steps would cost more than sending them to Redis.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

BLOCK_BYTES = 1 << 20
RANGE_CHUNK = 10_000


class InputError(Exception):
    """Input that cannot be enqueued: an unreadable file, an item over the size limit, a bad range."""


@dataclass
class ReadProgress:
    """How far through the input the readers are, for the progress line (bytes of regular files)."""

    source: str = ""
    done_bytes: int = 0
    total_bytes: int | None = None


@dataclass(frozen=True)
class IntRange:
    """`--range START:END[:STEP]`: the integers of Python's range(START, END, STEP), END excluded."""

    start: int
    end: int
    step: int = 1

    @classmethod
    def parse(cls, text: str) -> IntRange:
        parts = text.split(":")
        try:
            numbers = [int(p) for p in parts]
        except ValueError:
            numbers = []
        if len(numbers) not in (2, 3):
            raise InputError(f"bad range {text!r}: expected START:END or START:END:STEP (integers)")
        if len(numbers) == 3 and numbers[2] == 0:
            raise InputError(f"bad range {text!r}: STEP must not be 0")
        return cls(*numbers)

    def __len__(self) -> int:
        return len(range(self.start, self.end, self.step))


@dataclass
class Sources:
    """The items of one `enqueue` run, in order: arguments, then ranges, then files (or stdin)."""

    args: Sequence[str] = ()
    ranges: Sequence[IntRange] = ()
    files: Sequence[str] = ()  # "-" is standard input
    separator: bytes = b"\n"
    keep_blank: bool = False
    max_item_bytes: int = 64 * 1024 * 1024
    progress: ReadProgress = field(default_factory=ReadProgress)

    def check_files(self) -> None:
        """Fail before anything is enqueued if a named file cannot be opened."""
        for path in self.files:
            if path != "-":
                with _open(path):
                    pass

    def streams(self) -> Iterator[tuple[str, Iterator[list[bytes]]]]:
        """(name, lists of items) per source, in input order; a stream raises `InputError` when it
        meets an item it cannot take (after the items before it).

        The name says which source it is (`args`, `range:0:10:1`, `file:PATH`, `stdin`; `#2` ... on a
        repeat), so a checkpoint of how far a source got is found again by a re-run over the same input.
        """
        seen: dict[str, int] = {}

        def named(name: str) -> str:
            seen[name] = seen.get(name, 0) + 1
            return name if seen[name] == 1 else f"{name}#{seen[name]}"

        if self.args:
            yield named("args"), self._args()
        for r in self.ranges:
            yield named(f"range:{r.start}:{r.end}:{r.step}"), self._range(r)
        for path in self.files:
            yield named("stdin" if path == "-" else f"file:{path}"), self._file(path)

    def _args(self) -> Iterator[list[bytes]]:
        items = [os.fsencode(arg) for arg in self.args]
        if not self.keep_blank:
            items = [item for item in items if item]
        for i, item in enumerate(items):
            if len(item) > self.max_item_bytes:
                raise InputError(f"argument {i + 1}: {_too_big(len(item), self.max_item_bytes)}")
        yield items

    @staticmethod
    def _range(r: IntRange) -> Iterator[list[bytes]]:
        numbers = range(r.start, r.end, r.step)
        for i in range(0, len(numbers), RANGE_CHUNK):
            yield [b"%d" % n for n in numbers[i : i + RANGE_CHUNK]]

    def _file(self, path: str) -> Iterator[list[bytes]]:
        if path == "-":
            yield from self._read(sys.stdin.buffer, "standard input")
        else:
            with _open(path) as stream:
                yield from self._read(stream, path)

    def _read(self, stream: BinaryIO, name: str) -> Iterator[list[bytes]]:
        progress = self.progress
        progress.source, progress.done_bytes, progress.total_bytes = name, 0, _regular_size(stream)
        splitter = _Splitter(name, self.separator, self.keep_blank, self.max_item_bytes)
        read = getattr(stream, "read1", stream.read)
        while True:
            try:
                # read1: what is there now (a pipe's trickle goes in as it comes), up to a block.
                block = read(BLOCK_BYTES)
            except OSError as e:
                raise InputError(f"cannot read {name}: {e.strerror or e}") from e
            items = splitter.feed(block) if block else splitter.finish()
            progress.done_bytes += len(block)
            if items:
                yield items
            # The items before a bad one go in first, so "N went in" means the first N.
            if splitter.error:
                raise splitter.error
            if not block:
                return


class _Splitter:
    """Splits a byte stream into items at `separator`, dropping a `\\r` before a newline separator.

    On an item over the limit it returns the items before it and sets `error`.
    """

    def __init__(self, name: str, separator: bytes, keep_blank: bool, max_bytes: int) -> None:
        self.name = name
        self.separator = separator
        self.keep_blank = keep_blank
        self.max_bytes = max_bytes
        self.strip_cr = separator == b"\n"
        self.tail = b""
        self.line = 0  # lines (items, blank ones included) before the current block
        self.error: InputError | None = None

    def feed(self, block: bytes) -> list[bytes]:
        data = self.tail + block if self.tail else block
        parts = data.split(self.separator)
        self.tail = parts.pop()
        items = self._items(parts, self.strip_cr and b"\r" in data)
        # A line still unfinished past the limit can only be too big: fail now, not at its end.
        if not self.error and len(self.tail) > self.max_bytes + self.strip_cr:
            self.error = InputError(f"{self._where(0)}: {_too_big(None, self.max_bytes)}")
        return items

    def finish(self) -> list[bytes]:
        # A last line without a separator is an item too (but not the nothing after a final one).
        parts = [self.tail] if self.tail else []
        self.tail = b""
        return self._items(parts, self.strip_cr and parts[0].endswith(b"\r") if parts else False)

    def _items(self, parts: list[bytes], has_cr: bool) -> list[bytes]:
        if has_cr:
            parts = [p[:-1] if p.endswith(b"\r") else p for p in parts]
        parts = self._up_to_too_big(parts)
        self.line += len(parts)
        if not self.keep_blank:
            parts = [p for p in parts if p]
        return parts

    def _up_to_too_big(self, parts: list[bytes]) -> list[bytes]:
        """The parts before the first one over the limit, which becomes the error."""
        at = next((i for i, p in enumerate(parts) if len(p) > self.max_bytes), None)
        if at is None:
            return parts
        self.error = InputError(f"{self._where(at)}: {_too_big(len(parts[at]), self.max_bytes)}")
        return parts[:at]

    def _where(self, index: int) -> str:
        unit = "line" if self.separator == b"\n" else "item"
        return f"{self.name}, {unit} {self.line + index + 1}"


def _too_big(size: int | None, limit: int) -> str:
    """`size` None: an item not yet read to its end, but already past the limit."""
    what = "an item" if size is None else f"an item of {size} bytes"
    return f"{what} is over the limit of {limit} bytes (--max-item-bytes)"


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e


def _regular_size(stream: BinaryIO) -> int | None:
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
