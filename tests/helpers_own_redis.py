"""A redis-server a test owns outright: DEBUG allowed, append-only, killed and restarted at will.

The session's shared server (tests/redis_server.py) is neither stalled nor killed by any test; a test
that injects those faults starts one of these on a free loopback port and its own directory.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import redis
from redis_server import find_binary, free_port, version_of


class OwnRedis:
    """One redis-server; `restart()` after `kill()` keeps the port and the append-only file."""

    def __init__(self, directory: Path) -> None:
        self.binary = find_binary()
        self.port = free_port()
        self.args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        self.args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning"]
        if int(version_of(self.binary).removeprefix("redis").split(".")[0]) >= 7:
            self.args += ["--enable-debug-command", "local"]  # off by default since Redis 7
        self.process: subprocess.Popen[bytes] | None = None
        self.restart()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=1)

    def restart(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        give_up = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if time.monotonic() > give_up or self.process.poll() is not None:
                    raise RuntimeError(f"{self.binary} did not start on port {self.port}") from None
                time.sleep(0.02)
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final write; what survives is what the append-only file holds."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait()
