"""Every ```python block of README.md and docs/*.md runs as written, against the private test Redis.

A block reads the Redis URL from $REDISWQ_URL (the test sets it to the private server). A block the
text after it calls "safe to run twice" is run twice.
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

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = (README, *sorted((REPO / "docs").glob("*.md")))
BLOCK = re.compile(r"^```python\n(.*?)^```\n(.*?)(?=^```|\Z)", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[str, bool]]:
    """(code, safe to run twice) for each python block; the flag is read from the prose after it."""
    return [
        (code, "safe to run twice" in after.strip().split("\n\n")[0])
        for doc in DOCS
        for code, after in BLOCK.findall(doc.read_text(encoding="utf-8"))
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
    if "leases.completed" in code:  # the library example: every frame once, none again on the second run
        assert outputs == ["1000 completed; 1000 in all\n", "0 completed; 1000 in all\n"]


QUICKSTART = re.compile(r"<!-- BEGIN quickstart -->(.*?)<!-- END quickstart -->", re.DOTALL)
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
REDISWQ = str(Path(sys.executable).with_name("rediswq"))


def quickstart() -> str:
    found = QUICKSTART.search(README.read_text(encoding="utf-8"))
    assert found, "no quickstart section in README.md"
    return found.group(1)


def quickstart_commands(*starts: str) -> list[str]:
    """The Quick start's shell lines that begin with one of `starts`, comments cut off."""
    block = SH_BLOCK.search(quickstart())
    assert block, "no ```sh block in the Quick start"
    lines = [line.split("  #", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line.startswith(starts)]


def test_the_quickstart_handler_runs_through_rediswq_work_to_completion(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The Quick start's enqueue lines, its handler module and its `work --handler` line, as written:
    every item is completed, none fails, exit 0 (a handler written for the payload, not the Lease,
    fails every item, and the worker exits 4)."""
    handler = next(code for code, _twice in python_blocks() if code.startswith("# mymod.py\n"))
    (tmp_path / "mymod.py").write_text(handler, encoding="utf-8")
    fill = quickstart_commands("seq ", "rediswq enqueue ")
    work = quickstart_commands("rediswq work frames --handler")
    assert len(fill) == 2 and len(work) == 1, (fill, work)
    client: redis.Redis = redis_server.client()
    Queue(client, "frames").purge()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL"))}
    env["REDISWQ_URL"] = redis_server.url
    env["PATH"] = f"{Path(REDISWQ).parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        for line in [*fill, *work]:
            done = subprocess.run(
                ["sh", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
            )
            assert done.returncode == 0, (line, done.stderr[-2000:])
            assert "Traceback" not in done.stderr
        stats = Queue(client, "frames").stats()
        assert (stats.drained, stats.closed, stats.completed, stats.failed, stats.dead) == (
            True,
            True,
            20000,
            0,
            0,
        )
        assert "queue 'frames' drained: 20000 done, 0 failed" in done.stderr
    finally:
        Queue(client, "frames").purge()
