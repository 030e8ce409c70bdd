"""Helpers for the core library's tests: read a queue's raw Redis state, and run a redis-server of our own.

The script tests assert the exact Redis state a script leaves behind, so they read the keys the way
the schema in `rediswq/_keys.py` documents them, independently of the library's own readers.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from typing import Any

import msgpack
import redis
from redis_server import find_binary

from rediswq._keys import LEASED_SENTINEL, Keys


def redis_now_ms(client: redis.Redis) -> int:
    """Redis's clock (TIME) in milliseconds: the clock every deadline is kept on."""
    secs, micros = client.time()
    return int(secs) * 1000 + int(micros) // 1000


def unpack(data: Any) -> Any:
    """A msgpack value as Lua's cmsgpack wrote it (strings stay bytes: payloads need not be UTF-8)."""
    return msgpack.unpackb(data, raw=True)


def pending(client: redis.Redis, keys: Keys) -> list[list[Any]]:
    """The pending list, each envelope decoded to [id, attempts, payload]."""
    return [unpack(e) for e in client.lrange(keys.pending, 0, -1)]


def handle_fields(handle: bytes) -> list[Any]:
    """A handle as [token, id, attempt, worker, leased_at_ms], read as rediswq/_keys.py documents it.

    A handle is the envelope the item was leased from ([id, attempts before, payload], or [id,
    attempts before] with the payload in the payloads hash) followed by token, worker, leased_at_ms,
    lease_ms.
    """
    unpacker = msgpack.Unpacker(raw=True)
    unpacker.feed(handle)
    envelope, token, worker, leased_at_ms, _lease_ms = unpacker
    return [token, envelope[0], envelope[1] + 1, worker, leased_at_ms]


def leased(client: redis.Redis, keys: Keys) -> list[tuple[list[Any], int]]:
    """The leased zset as ([token, id, attempt, worker, leased_at_ms], deadline_ms), soonest first.

    The sentinel member (score +inf, see rediswq/_keys.py) is left out: it is not a lease.
    """
    rows: Any = client.zrange(keys.leased, 0, -1, withscores=True)
    return [(handle_fields(h), int(score)) for h, score in rows if h != LEASED_SENTINEL]


def delayed(client: redis.Redis, keys: Keys) -> list[tuple[list[Any], int]]:
    """The delayed zset as ([id, attempts, payload], due_ms), soonest first."""
    rows: Any = client.zrange(keys.delayed, 0, -1, withscores=True)
    return [(unpack(e), int(score)) for e, score in rows]


def dead(client: redis.Redis, keys: Keys) -> dict[bytes, list[Any]]:
    """The dead hash: id -> [id, attempts, payload, error, dead_at_ms]."""
    raw: dict[bytes, bytes] = client.hgetall(keys.dead)  # type: ignore[assignment]
    return {k: unpack(v) for k, v in raw.items()}


def meta(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The meta hash with every field as an int."""
    raw: dict[bytes, bytes] = client.hgetall(keys.meta)  # type: ignore[assignment]
    return {k.decode(): int(v) for k, v in raw.items()}


def counters(client: redis.Redis, keys: Keys) -> dict[str, int]:
    """The meta hash without the sequences and the closed flag: only the lifetime counters."""
    return {k: v for k, v in meta(client, keys).items() if k not in ("seq", "token", "closed")}


def existing_keys(client: redis.Redis, keys: Keys) -> set[str]:
    """Which of the queue's keys exist, as their role names (pending, leased, ...)."""
    names = ("inbox", "pending", "leased", "payloads", "delayed", "dead", "ids", "meta")
    return {name for name in names if client.exists(getattr(keys, name))}


def evalsha_calls(client: redis.Redis) -> int:
    """How many script and function calls (EVALSHA, EVAL, FCALL, FCALL_RO) the server has run since its
    start."""
    stats = client.info("commandstats")
    commands = ("evalsha", "eval", "fcall", "fcall_ro")
    return sum(int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in commands)


class PortRedis:
    """A redis-server on a port we choose, so a test can stop it and start a fresh one on the same port."""

    def __init__(self, port: int, password: str | None = None) -> None:
        self.port = port
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="rediswq-test-port-redis-")
        args = [find_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"]
        if password:
            args += ["--requirepass", password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        probe = redis.Redis(host="127.0.0.1", port=port, password=password)
        deadline = time.monotonic() + 5
        while True:
            try:
                probe.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.02)
            finally:
                probe.close()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
