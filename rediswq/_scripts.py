"""The one typed façade in front of the Lua scripts: callers never see KEYS, ARGV or a script by name.

On Redis 7+ each operation is an FCALL of rediswq's function library (rediswq/_library.py), so ACL
users need no SCRIPT LOAD or EVALSHA; `prepare` (a queue's first call) finds out which applies, and
loads the library when it is missing and this user may. On Redis 6.2 (or for a user granted scripts,
not functions) each script is registered once with `register_script`, so redis-py sends EVALSHA and
reloads the script by itself after a Redis restart empties the script cache (NOSCRIPT).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from rediswq import _library, _topology
from rediswq._direct import DirectScript
from rediswq._keys import Keys
from rediswq._topology import Client
from rediswq._wire import envelope, new_leases, pack_array
from rediswq.errors import LibraryMismatch

#: Use the function library where Redis has functions (tests turn it off to run the scripts on 7).
FUNCTIONS = True

# Status codes of lease.lua (see its header).
LEASED, NOTHING_NOW, DRAINED, MISSING, DAMAGED, OUT_OF_MEMORY = 0, 1, 2, 3, 4, 5


@dataclass(frozen=True)
class LeaseReply:
    status: int
    wait_ms: int
    deadline_ms: int
    lost: list[int]  # 0-based positions of the completions whose lease no longer held
    items: list[tuple[str, int, bytes, bytes]]  # (id, attempt, payload, handle)


# A script's own error (rediswq/lua/README.md), inside what Redis wraps it in: 6.2 says "Error running
# script (call to f_...): @user_script:9: user_script:9: key ...", 7 "ERR user_script:9: key ... script: ...",
# and a function "ERR user_function:9: key ... script: rediswq_lease, on @user_function:9.".
_NAMED_KEY = re.compile(r"(key \S+ (?:holds|field) .*?)(?: script: \S+, on @\S+)?$", re.S)


@contextmanager
def _named_key_errors() -> Iterator[None]:
    """A script's error about one of its keys, as one line without Redis's wrapping; a library of
    another version as `LibraryMismatch`."""
    try:
        yield
    except redis.exceptions.ResponseError as e:
        text = str(e)
        if text.startswith(_library.MISMATCH):
            loaded, _, wanted = text.removeprefix(_library.MISMATCH).strip().partition(" ")
            raise LibraryMismatch(
                f"Redis holds rediswq's function library version {loaded}, this rediswq is version "
                f"{wanted}: {_library.INSTALL}"
            ) from None
        found = _NAMED_KEY.search(text)
        if found is None:
            raise
        raise redis.exceptions.ResponseError(found.group(1)) from e


class _Operation:
    """One operation: its registered script (EVALSHA), or after `use_function` an FCALL of its function."""

    def __init__(self, client: Client, operation: str, *, function: str | None = None) -> None:
        self._client = client
        self._operation = function or operation  # the function's name, when it is not the file's
        self._script = client.register_script(_library.script(operation))
        self._function = False

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    def use_function(self) -> None:
        self._function = True

    def __call__(self, *, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if not self._function:
            return self._script(keys=keys, args=args)
        command = "FCALL_RO" if self._operation in _library.READ_ONLY else "FCALL"
        name = _library.function_name(self._operation)
        call = (command, name, len(keys), *keys, _library.library().version, *args)
        try:
            return self._client.execute_command(*call)  # type: ignore[no-untyped-call]
        except redis.exceptions.ResponseError as e:
            if not _library.is_missing(e):
                raise
        # A server without the library (a new cluster node, a flushed one): load it there, call again.
        _library.load(_topology.node_client(self._client, keys[-1]))
        return self._client.execute_command(*call)  # type: ignore[no-untyped-call]


def functions_on(node: redis.Redis) -> bool:
    """Whether to call rediswq's function library on this server (loading it when it is missing and
    this user may): False on Redis 6.2 ("unknown command") and for a user given the scripts' rules
    (NOPERM), who keep the scripts; `LibraryMismatch` when another version is loaded, or it is missing
    and this user may not load it."""
    if not FUNCTIONS:
        return False
    try:
        loaded = node.execute_command("FCALL_RO", _library.function_name("version"), 0)  # type: ignore[no-untyped-call]
    except redis.exceptions.ResponseError as e:
        text = str(e)
        if "unknown command" in text or "NOPERM" in text or isinstance(e, redis.exceptions.NoPermissionError):
            return False
        if not _library.is_missing(e):
            raise
        loaded = _library.load(node)
    loaded = loaded.decode() if isinstance(loaded, bytes) else str(loaded)
    wanted = _library.library().version
    if loaded != wanted:
        raise LibraryMismatch(
            f"Redis holds rediswq's function library version {loaded}, this rediswq is version "
            f"{wanted}: {_library.INSTALL}"
        )
    return True


def wrong_type(client: Client, key: str, kind: str) -> str | None:
    """The scripts' words for `key` holding another type than `kind` (None: it does not)."""
    held = client.type(key)
    held_text = held.decode() if isinstance(held, bytes) else str(held)
    return None if held_text == kind else f"key {key} holds a {held_text}, not a {kind}"


def _positions(one_based: Sequence[int]) -> list[int]:
    return [int(i) - 1 for i in one_based]


class Scripts:
    """One method per script, with named parameters; the scripts' contracts are in their headers."""

    def __init__(self, client: Client, keys: Keys) -> None:
        self._keys = keys.all()
        self._client = client
        self._meta = keys.meta
        # On one connection, so that WAIT can follow it; checked first, since a put may not be retried.
        self._put = DirectScript(client, _library.script("put"), check=True)
        self._lease = DirectScript(client, _library.script("lease"))  # once per item: the lean path
        self._fail = _Operation(client, "fail")
        self._extend = _Operation(client, "extend")
        self._release = _Operation(client, "release")
        self._requeue_dead = _Operation(client, "requeue_dead")
        self._purge_dead = _Operation(client, "purge_dead")
        self._purge = _Operation(client, "purge")
        self._reopen = _Operation(client, "reopen")
        self._settle = _Operation(client, "lease", function=_library.SETTLE)  # functions only
        self._stats = _Operation(client, "stats")
        self.functions = False

    def prepare(self) -> None:
        """Use the function library where Redis has functions and this user may call them; load it
        when it is missing (`LibraryMismatch` if this user may not, or another version is loaded).

        Redis 6.2 has no FCALL_RO ("unknown command"), and a user given the scripts' rules is refused
        it (NOPERM): both keep the scripts. Asked of the server holding the queue.
        """
        if not functions_on(_topology.node_client(self._client, self._meta)):
            return
        for operation in (self._fail, self._extend, self._release, self._requeue_dead, self._purge_dead):
            operation.use_function()
        for operation in (self._purge, self._reopen, self._stats, self._settle):
            operation.use_function()
        self._put.use_function(_library.function_name("put"))
        self._lease.use_function(_library.function_name("lease"))
        self.functions = True

    def put(
        self,
        payloads: Sequence[bytes],
        ids: Sequence[str] | None,
        checkpoint: tuple[str, str] | None = None,
        wait: tuple[int, int] | None = None,
        stride: tuple[int, int] = (1, 0),
        reserved: int | None = None,
    ) -> tuple[bool, int, int, int | None]:
        """Add payloads (with caller-given ids, or ids the queue assigns when `ids` is None).

        `checkpoint` (name, value) is written in the same call, unless the queue is closed.
        `stride` (shards, shard): how a shard of a sharded queue numbers the items it assigns ids to;
        `reserved`: the first of the ids HINCRBY meta seq reserved for them beforehand (None: now).

        Returns (closed, first assigned id, how many were skipped as live already, and with
        `wait=(replicas, timeout_ms)` how many replicas confirmed the write, else None). Assigned ids are
        reserved first (one HINCRBY, a second round trip) so the envelopes are built here: msgpack in
        C costs a fraction of what building them in Lua does.
        """
        if ids is None:
            # A shard i of S numbers its items i+1, S+i+1, 2S+i+1...: ids unique over the shards.
            every, offset = stride
            first = reserved if reserved is not None else self._reserve(len(payloads)) if payloads else 1
            first_id = (first - 1) * every + offset + 1 if payloads else 0
            envelopes = [envelope(first_id + i * every, p) for i, p in enumerate(payloads)]
            args: list[bytes | str] = [pack_array(envelopes), b""]
        else:
            first_id = 0
            envelopes = [envelope(i, p) for i, p in zip(ids, payloads, strict=True)]
            args = [pack_array(envelopes), pack_array(ids)]
        args += list(checkpoint) if checkpoint is not None else ["", ""]
        with _named_key_errors():
            if wait is None:
                status, skipped = self._put(self._keys, args)
                return int(status) == 1, first_id, int(skipped), None
            (status, skipped), acked = self._put(self._keys, args, wait=wait)
        return int(status) == 1, first_id, int(skipped), int(acked)

    def _reserve(self, n: int) -> int:
        """The first of `n` ids reserved for a put; Redis's error, if any, names the meta key."""
        try:
            return int(self._client.hincrby(self._meta, "seq", n)) - n + 1
        except redis.exceptions.ResponseError as e:
            wrong = wrong_type(self._client, self._meta, "hash")
            raise redis.exceptions.ResponseError(wrong or f"key {self._meta} field seq: {e}") from e

    def lease(
        self,
        *,
        count: int,
        lease_ms: int,
        max_attempts: int,
        reclaim_limit: int,
        worker: str,
        until_closed: bool,
        complete: Sequence[bytes] = (),
    ) -> LeaseReply:
        """Complete the leases of the `complete` handles, then lease up to `count` items."""
        args = (count, lease_ms, max_attempts, reclaim_limit, worker, 1 if until_closed else 0, *complete)
        with _named_key_errors():
            try:
                reply = self._lease(self._keys, args)
            except redis.exceptions.OutOfMemoryError:
                if not self.functions:
                    raise
                # Redis 7 refused the function whole (a script is refused only its first write):
                # do the completions alone, and answer what lease.lua answers then.
                reply = list(self._settle(keys=self._keys, args=args))
                reply[0] = OUT_OF_MEMORY
        n_lost, n_kept = reply[3], reply[4]
        lost = _positions(reply[5 : 5 + n_lost])
        end = len(reply) - 2 * n_kept
        handles = reply[5 + n_lost : end]
        kept = {reply[i] - 1: reply[i + 1] for i in range(end, len(reply), 2)}
        items = new_leases(handles, kept)
        return LeaseReply(reply[0], reply[1], int(reply[2]), lost, items)

    def fail(
        self,
        *,
        handle: bytes,
        error: str,
        retry: bool,
        max_attempts: int,
        backoff_ms: int,
        backoff_cap_ms: int,
    ) -> tuple[bool, bool, int]:
        """Returns (held, dead_lettered, due_ms)."""
        with _named_key_errors():
            status, outcome, due_ms = self._fail(
                keys=self._keys,
                args=[handle, error, 1 if retry else 0, max_attempts, backoff_ms, backoff_cap_ms],
            )
        return int(status) == 0, int(outcome) == 1, int(due_ms)

    def extend(self, *, handles: Sequence[bytes], lease_ms: int) -> tuple[int, list[int]]:
        """Returns (new deadline_ms, 0-based positions of the handles that no longer held)."""
        with _named_key_errors():
            deadline_ms, lost = self._extend(keys=self._keys, args=[lease_ms, *handles])
        return int(deadline_ms), _positions(lost)

    def release(self, *, handles: Sequence[bytes]) -> list[int]:
        """Returns the 0-based positions of the handles that no longer held."""
        with _named_key_errors():
            return _positions(self._release(keys=self._keys, args=list(handles)))

    def requeue_dead(self, *, ids: Sequence[str]) -> int:
        with _named_key_errors():
            return int(self._requeue_dead(keys=self._keys, args=list(ids)))

    def purge_dead(self, *, ids: Sequence[str]) -> int:
        with _named_key_errors():
            return int(self._purge_dead(keys=self._keys, args=list(ids)))

    def purge(self) -> int:
        with _named_key_errors():
            return int(self._purge(keys=self._keys, args=[]))

    def reopen(self) -> bool:
        """Undo close and forget the checkpoints; True if the queue was closed."""
        with _named_key_errors():
            return bool(self._reopen(keys=self._keys, args=[]))

    def stats(self) -> StatsReply:
        """Returns (pending with the inbox, leased, delayed, dead, meta hash, inbox alone, ms to the
        next retry or -1)."""
        with _named_key_errors():
            return stats_reply(self._stats(keys=self._keys, args=[]), self._meta)


StatsReply = tuple[int, int, int, int, dict[str, int], int, int]


def stats_reply(reply: Sequence[Any], meta_key: str) -> StatsReply:
    """stats.lua's raw reply as `Scripts.stats` returns it; a meta field that is no integer is an
    error naming it (also for `rediswq._survey`, which sends the script itself, pipelined)."""
    pending, leased, delayed, dead, flat, inbox, next_retry = reply
    meta = {}
    for name, value in zip(flat[::2], flat[1::2], strict=True):
        try:
            meta[name.decode(errors="replace")] = int(value)
        except ValueError:
            raise redis.exceptions.ResponseError(
                f"key {meta_key} field {name!r} holds {value[:40]!r}, not an integer"
            ) from None
    return int(pending), int(leased), int(delayed), int(dead), meta, int(inbox), int(next_retry)
