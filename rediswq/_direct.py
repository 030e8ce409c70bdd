"""A Lua script called straight on a redis-py connection of its own: the per-item call, made lean.

For every command, redis-py's client checks a connection out of its pool (with a poll of the socket),
runs the call through its retry and observability layers, and checks the connection back in: about
50 us of client CPU on a 2-core machine, as much again as the round trip itself. A worker calls the
lease script once per item, so that script keeps one connection (per process) and sends EVALSHA on it
with redis-py's own `Connection.send_packed_command` and `read_response` (packed by hiredis, as
redis-py packs it). Those close the connection on any error or interruption, so a reply is never
left unread for the next call; the next call reconnects, through the connection's own `connect()`, as
the pool does (a Sentinel-managed connection asks the sentinels where the master is now).

Everything else about the call stays redis-py's: the connection (TLS, auth, socket options) comes
from the client's pool (and goes back to it when this object is dropped, so queues made and dropped by
the thousand leak nothing). On a cluster, the pool is that of the node owning the keys' slot, read
from the cluster client's slot map: a MOVED updates the map and the call goes to the new owner, an
ASK goes once to the node it names (with ASKING), and a node that stops answering has the map re-read
before the next call. A NOSCRIPT (a restarted Redis) loads the script on the same connection and runs
it again. After `use_function` (Redis 7+) the call is an FCALL of the library's function instead; a node
without the library (a new cluster node, a flushed server) has it loaded there, as a script would be.
When another thread is using the connection, the call takes a pooled connection instead of
waiting, so threads sharing a queue still run side by side.

`wait=(replicas, timeout_ms)` sends Redis's WAIT right after the script, on the same connection (WAIT
counts only the writes of its own connection), and returns the script's reply with the replica count.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

from redis.connection import ConnectionInterface, ConnectionPool
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from rediswq import _library, _topology
from rediswq._topology import Client

try:
    import hiredis
except ImportError:  # redis[hiredis] installs it; redis-py works without it, and so does this
    hiredis = None  # type: ignore[assignment]

Arg = str | bytes | int
Command = tuple[Arg, ...]
# A slot moves once per resharding step; more MOVED replies in a row mean the map is in flux.
_MAX_MOVED = 3


def _packed(connection: ConnectionInterface, commands: Sequence[Command]) -> list[bytes]:
    """The commands in RESP: hiredis packs them in C, as redis-py's packer does behind a slower wrapper."""
    if hiredis is None:
        return [part for command in commands for part in connection.pack_command(*command)]
    # hiredis's stub declares the argument a 1-tuple.
    return [hiredis.pack_command(command) for command in commands]  # type: ignore[arg-type]


def _replies(connection: ConnectionInterface, count: int) -> list[Any]:
    """Read `count` replies, an error reply as its exception: none is left unread for the next call."""
    if count == 1:
        try:
            return [connection.read_response()]
        except ResponseError as e:
            return [e]
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except ResponseError as e:
            replies.append(e)
    return replies


def _drop_if_stale(connection: ConnectionInterface) -> None:
    """Close a kept connection that has data or an EOF waiting (the server closed it); the call reconnects."""
    try:
        stale = connection.can_read()
    except (RedisConnectionError, RedisTimeoutError, OSError):
        stale = True
    if stale:
        connection.disconnect()  # type: ignore[no-untyped-call]


class DirectScript:
    """Calls one registered script with EVALSHA, on a connection this object keeps for itself."""

    def __init__(self, client: Client, source: str, *, check: bool = False) -> None:
        """`check`: poll the kept connection before each call, as the pool does when it hands one out,
        so a call that must not be retried blindly is not sent on a socket the server has closed."""
        self._client = client
        self._topology = _topology.of(client)  # asked to route, and after a MOVED, ASK or lost node
        self._check = check
        self._source = source
        self._sha: str = client.register_script(source).sha
        self._lock = threading.Lock()
        self._route: ConnectionPool | None = None  # the pool of the server that owns the keys
        self._stale = False  # a node stopped answering: re-read the cluster's slot map first
        self._own: ConnectionInterface | None = None
        self._own_pool: ConnectionPool | None = None
        self._give_back: weakref.finalize[Any, Any] | None = None
        self._pid = os.getpid()
        self._function: str | None = None

    def use_function(self, name: str) -> None:
        """Call the library function `name` (rediswq/_library.py) instead of the script."""
        self._function = name

    @property
    def sha(self) -> str:
        return self._sha

    def __call__(
        self, keys: Sequence[str], args: Sequence[Arg], *, wait: tuple[int, int] | None = None
    ) -> Any:
        if self._function is None:
            commands: list[Command] = [("EVALSHA", self._sha, len(keys), *keys, *args)]
        else:
            version = _library.library().version
            commands = [("FCALL", self._function, len(keys), *keys, version, *args)]
        if wait is not None:
            commands.append(("WAIT", *wait))
        mine = self._lock.acquire(blocking=False)
        try:
            replies = self._followed(keys, commands, mine)
        finally:
            if mine:
                self._lock.release()
        return replies[0] if wait is None else (replies[0], replies[1])

    def _followed(self, keys: Sequence[str], commands: list[Command], mine: bool) -> list[Any]:
        """The replies from the server owning the keys, following MOVED and ASK as a cluster client does."""
        for _ in range(_MAX_MOVED):
            try:
                return self._on_owner(keys, commands, mine)
            except MovedError as e:
                if not self._topology.refresh(e):
                    raise
                self._route = None
            except AskError as e:
                return self._asked(e, commands)
        return self._on_owner(keys, commands, mine)

    def _pool(self, keys: Sequence[str]) -> ConnectionPool:
        """The pool of the server owning `keys`, looked up anew (after a MOVED or a lost node)."""
        if self._stale:
            self._topology.refresh()
            self._stale = False
        self._route = self._topology.node_client(keys[0]).connection_pool
        return self._route

    def _on_owner(self, keys: Sequence[str], commands: list[Command], mine: bool) -> list[Any]:
        pool = self._route if self._route is not None and not self._stale else self._pool(keys)
        if not mine:
            connection = pool.get_connection()
            try:
                return self._run(connection, commands)
            finally:
                pool.release(connection)
        own = self._connection(pool)
        if self._check:
            _drop_if_stale(own)
        try:
            return self._run(own, commands)
        except (RedisConnectionError, RedisTimeoutError) as e:
            self._stale = True  # a cluster re-reads its slot map first; one server has nothing to learn
            # Names the node in the error, as redis-py's cluster client does.
            e.connection = own  # type: ignore[union-attr]
            raise

    def _asked(self, error: AskError, commands: list[Command]) -> list[Any]:
        """Run once on the node an ASK names (the slot is migrating there), preceded by ASKING."""
        node = self._topology.asked(error)
        if node is None:
            raise error
        pool = node.connection_pool
        connection = pool.get_connection()
        try:
            return self._run(connection, [("ASKING",), *commands])[1:]
        finally:
            pool.release(connection)

    def _connection(self, pool: ConnectionPool) -> ConnectionInterface:
        """This object's own connection from `pool`, taken anew after a fork or a change of node."""
        own = self._own
        if own is None or self._pid != os.getpid() or self._own_pool is not pool:
            if self._give_back is not None:
                if self._pid != os.getpid():
                    self._give_back.detach()  # the parent's connection is not ours (the pool forgets it too)
                else:
                    self._give_back()  # the slot moved: the old node's pool gets its connection back
            own = self._own = pool.get_connection()
            self._own_pool = pool
            self._pid = os.getpid()
            self._give_back = weakref.finalize(self, pool.release, own)
        return own

    def _run(self, connection: ConnectionInterface, commands: list[Command]) -> list[Any]:
        replies = self._send(connection, commands)
        if not any(isinstance(reply, ResponseError) for reply in replies):
            return replies
        if self._load_missing(connection, replies):
            replies = self._send(connection, commands)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    def _load_missing(self, connection: ConnectionInterface, replies: list[Any]) -> bool:
        """Load the script or the library on this very server if a reply says it is not there (a
        restart emptied the script cache, a new node has no library); True: run the calls again."""
        if any(isinstance(reply, NoScriptError) for reply in replies):
            self._send(connection, [("SCRIPT", "LOAD", self._source)])
            return True
        if any(_library.is_missing(reply) for reply in replies):
            (loaded,) = self._send(connection, [("FUNCTION", "LOAD", _library.library().code)])
            if isinstance(loaded, ResponseError):
                raise _library.not_loaded(loaded)
            return True
        return False

    @staticmethod
    def _send(connection: ConnectionInterface, commands: list[Command]) -> list[Any]:
        if not connection.is_connected:
            # The pool's way of connecting (a Sentinel-managed connection asks for the master), which
            # send_packed_command's own reconnect skips.
            connection.connect()  # type: ignore[no-untyped-call]
        connection.send_packed_command(_packed(connection, commands))  # type: ignore[no-untyped-call]
        return _replies(connection, len(commands))
