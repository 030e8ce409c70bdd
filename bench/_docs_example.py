"""The baseline: the Kubernetes docs example's work queue algorithm, rewritten from its description.

Issue 4 describes it as "BRPOPLPUSH + SETEX, LREM + DEL, two LLEN per loop". The example
("Fine Parallel Processing Using a Work Queue") keeps a main list and a processing list:
lease = BRPOPLPUSH main -> processing, then SETEX of a per-item lease key (named by a SHA-224 of the
item); complete = LREM of the item from the processing list, then DEL of the lease key; and its worker
loops `while not q.empty()`, where empty() reads LLEN of both lists. Six calls per item, each its own
round trip, which is what the example does. (The example never reclaims expired leases itself; that
needs more calls still, so leaving it out only flatters the baseline.)
"""

from __future__ import annotations

import hashlib
import uuid

import redis


class DocsExampleQueue:
    """The docs example's queue, call for call."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self._db = client
        self._session = str(uuid.uuid4())
        self._main_q_key = name
        self._processing_q_key = name + ":processing"
        self._lease_key_prefix = name + ":leased_by_session:"

    def empty(self) -> bool:
        """Both lists empty: two LLEN calls."""
        main = int(self._db.llen(self._main_q_key))
        processing = int(self._db.llen(self._processing_q_key))
        return main == 0 and processing == 0

    def _itemkey(self, item: bytes) -> str:
        return hashlib.sha224(item).hexdigest()

    def lease(self, lease_secs: int = 60, timeout: int = 2) -> bytes | None:
        """BRPOPLPUSH main -> processing, then SETEX the item's lease key."""
        item: bytes | None = self._db.brpoplpush(  # type: ignore[assignment]
            self._main_q_key, self._processing_q_key, timeout=timeout
        )
        if item:
            self._db.setex(self._lease_key_prefix + self._itemkey(item), lease_secs, self._session)
        return item

    def complete(self, item: bytes) -> None:
        """LREM the item from the processing list, then DEL its lease key."""
        self._db.lrem(self._processing_q_key, 0, item)  # type: ignore[arg-type]
        self._db.delete(self._lease_key_prefix + self._itemkey(item))

    def keys(self) -> list[str]:
        return [self._main_q_key, self._processing_q_key]
