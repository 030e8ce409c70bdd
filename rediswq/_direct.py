"""A Lua script called straight on a redis-py connection of its own: the per-item call, made lean.

For every command, redis-py's client checks a connection out of its pool (with a poll of the socket),
runs the call through its retry and observability layers, and checks the connection back in: about
50 us of client CPU on a 2-core machine, as much again as the round trip itself. A worker calls the
lease script once per item, so that script keeps one connection (per process) and sends EVALSHA on it
with redis-py's own `Connection.send_packed_command` and `read_response` (packed by hiredis, as
redis-py packs it). Those close the connection on any error or interruption, so a reply is never
left unread for the next call; the next call reconnects.

Everything else about the call stays redis-py's: the connection (TLS, auth, socket options) comes
from the client's pool (and goes back to it when this object is dropped, so queues made and dropped by
the thousand leak nothing), and a NOSCRIPT (a restarted Redis) goes through `register_script`'s
object, which loads the script and runs it again. When another thread is using the connection, the call
takes a pooled connection instead of waiting, so threads sharing a queue still run side by side.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.connection import ConnectionInterface
from redis.exceptions import NoScriptError

try:
    import hiredis
except ImportError:  # redis[hiredis] installs it; redis-py works without it, and so does this
    hiredis = None  # type: ignore[assignment]

Arg = str | bytes | int


def _packed(connection: ConnectionInterface, command: tuple[Arg, ...]) -> list[bytes]:
    """The command in RESP: hiredis packs it in C, as redis-py's packer does behind a slower wrapper."""
    if hiredis is None:
        packed: list[bytes] = connection.pack_command(*command)
        return packed
    # hiredis's stub declares the argument a 1-tuple.
    return [hiredis.pack_command(command)]  # type: ignore[arg-type]


class DirectScript:
    """Calls one registered script with EVALSHA, on a connection this object keeps for itself."""

    def __init__(self, client: redis.Redis, source: str) -> None:
        self._script = client.register_script(source)
        self._pool = client.connection_pool
        self._lock = threading.Lock()
        self._own: ConnectionInterface | None = None
        self._give_back: weakref.finalize[Any, Any] | None = None
        self._pid = os.getpid()

    @property
    def sha(self) -> str:
        return self._script.sha

    def __call__(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        if not self._lock.acquire(blocking=False):
            return self._pooled(keys, args)
        try:
            own = self._own
            if own is None or self._pid != os.getpid():
                own = self._take()
            return self._run(own, keys, args)
        finally:
            self._lock.release()

    def _take(self) -> ConnectionInterface:
        # After a fork the parent's connection is not ours (the pool forgets it too): take a new one.
        if self._give_back is not None:
            self._give_back.detach()
        own = self._own = self._pool.get_connection()
        self._pid = os.getpid()
        self._give_back = weakref.finalize(self, self._pool.release, own)
        return own

    def _pooled(self, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        connection = self._pool.get_connection()
        try:
            return self._run(connection, keys, args)
        finally:
            self._pool.release(connection)

    def _run(self, connection: ConnectionInterface, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        packed = _packed(connection, ("EVALSHA", self._script.sha, len(keys), *keys, *args))
        try:
            connection.send_packed_command(packed)  # type: ignore[no-untyped-call]
            return connection.read_response()
        except NoScriptError:
            # The script did not run; redis-py's Script loads it and runs it (this once, pooled).
            return self._script(keys=keys, args=args)
