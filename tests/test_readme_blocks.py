"""Every ```python block of README.md runs as written, against the private test Redis.

A block reads the Redis URL from $REDISWQ_URL (the test sets it to the private server). A block the
README calls "safe to run twice" is run twice.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer

from rediswq import Queue

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```\n(.*?)(?=^```|\Z)", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[str, bool]]:
    """(code, safe to run twice) for each python block; the flag is read from the prose after it."""
    return [
        (code, "safe to run twice" in after.strip().split("\n\n")[0])
        for code, after in BLOCK.findall(README.read_text(encoding="utf-8"))
    ]


def test_the_readme_has_python_blocks() -> None:
    assert python_blocks(), "no ```python block found in README.md"


def _queues_of(code: str) -> list[str]:
    return re.findall(r'Queue\.from_url\([^,]+,\s*"([^"]+)"', code)


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_a_readme_python_block_runs_as_written(index: int, redis_server: RedisServer) -> None:
    code, twice = python_blocks()[index]
    client: redis.Redis = redis_server.client()
    for name in _queues_of(code):
        Queue(client, name).purge()
    env = {**os.environ, "REDISWQ_URL": redis_server.url}
    outputs = []
    for _run in range(2 if twice else 1):
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        outputs.append(done.stdout)
    for name in _queues_of(code):
        stats = Queue(client, name).stats()
        assert stats.drained, f"queue {name!r} left with work after the README block"
        assert stats.dead == 0
        Queue(client, name).purge()
    if index == 0:  # the library example: every frame once, none again on the second run
        assert outputs == ["1000 completed; 1000 in all\n", "0 completed; 1000 in all\n"]
