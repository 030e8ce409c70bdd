"""Exactly-once restarts of `rediswq enqueue --unique`: how far each input source got into the queue.

With each batch, in the same script call (put.lua), the queue records for the batch's source
`COUNT:DIGEST`: the source's first COUNT items are in, and DIGEST (BLAKE2b-128) hashes them. A run
killed at any point leaves a checkpoint that matches exactly what went in; a re-run over the same
input hashes its first COUNT items, checks DIGEST (a different input is refused, not skipped) and
adds only the items after them, even if workers have completed and forgotten the earlier ones.
The cost in Redis is one hash field of about 50 bytes per source, not per item.

Timeline of a kill:
  run 1  batch k (items 2000k+1 .. 2000k+2000) and checkpoint "2000k+2000:..." go in atomically
  run 1  SIGKILL while batch k+1 is on its way: it went in whole with its checkpoint, or not at all
  run 2  reads the checkpoint, skips that many items (hashing them), adds the rest
"""

from __future__ import annotations

import hashlib

from rediswq_producer.sources import InputError

_SEPARATOR = b"\0"


class InputChanged(InputError):
    """The input's first items are not those an earlier run put in: not the same input."""


class SourceProgress:
    """One source's count and running digest; `skip` replays a checkpoint, `mark` writes the next."""

    def __init__(self, source: str, queue: str) -> None:
        self.source = source
        self.queue = queue
        self.count = 0
        self._hash = hashlib.blake2b(digest_size=16)
        self._wanted: tuple[int, str] | None = None

    def expect(self, checkpoint: str | None) -> None:
        """Resume after `checkpoint` (None: from the start)."""
        if checkpoint is None:
            return
        count, _, digest = checkpoint.partition(":")
        if not count.isdigit():
            raise InputChanged(f"{self.source}: unreadable checkpoint {checkpoint!r} in queue {self.queue!r}")
        self._wanted = (int(count), digest)

    @property
    def resumed(self) -> int:
        """Items an earlier run put in, skipped by this one."""
        return self._wanted[0] if self._wanted else 0

    def skip(self, items: list[bytes]) -> list[bytes]:
        """The items of `items` not yet in the queue (after the checkpoint); checks the digest."""
        if self._wanted is None or self.count >= self._wanted[0]:
            return items
        take = min(len(items), self._wanted[0] - self.count)
        self._advance(items[:take])
        if self.count == self._wanted[0]:
            self._check()
        return items[take:]

    def finish(self) -> None:
        """The source ended: it must have been at least as long as the checkpoint says."""
        if self._wanted is not None and self.count < self._wanted[0]:
            raise self._changed()

    def mark(self, batch: list[bytes], taken: int, before: int) -> str:
        """The checkpoint for `before` items of this source plus the first `taken` of `batch`."""
        self._advance(batch[self.count - before : taken])
        return f"{self.count}:{self._hash.hexdigest()}"

    def _advance(self, items: list[bytes]) -> None:
        if items:
            self._hash.update(_SEPARATOR.join(items) + _SEPARATOR)
            self.count += len(items)

    def _check(self) -> None:
        assert self._wanted is not None
        if self._hash.hexdigest() != self._wanted[1]:
            raise self._changed()

    def _changed(self) -> InputChanged:
        assert self._wanted is not None
        return InputChanged(
            f"{self.source}: its first {self._wanted[0]} items are not those an earlier run put into queue "
            f"{self.queue!r}, so it is not the same input; `rediswq reopen {self.queue}` forgets the "
            "checkpoints (items still live are skipped all the same)"
        )
