"""`rediswq.RedisWQ` runs the Kubernetes docs example's `worker.py` unchanged, with the fixes underneath.

The worker below is the docs' loop word for word, except that the Redis host and port come from the
environment (the docs' own commented-out alternative) and the work is a short sleep instead of 10 s.
The queue is filled the docs' way: `rpush job2 apple banana ...` onto a plain list.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer

from rediswq import Queue, RedisWQ

DOCS_WORKER = """\
#!/usr/bin/env python

import time
import rediswq

import os
host = os.getenv("REDIS_SERVICE_HOST")
port = int(os.getenv("REDIS_SERVICE_PORT"))

q = rediswq.RedisWQ(name="job2", host=host, port=port)
print("Worker with sessionID: " +  q.sessionID())
print("Initial queue state: empty=" + str(q.empty()))
while not q.empty():
  item = q.lease(lease_secs=10, block=True, timeout=2)
  if item is not None:
    itemstr = item.decode("utf-8")
    print("Working on " + itemstr)
    time.sleep(0.05) # Put your actual work here instead of sleep.
    q.complete(item)
  else:
    print("Waiting for work")
print("Queue empty, exiting")
"""

# A worker that leases one item for a second, says so, and then hangs until it is killed.
HANGING_WORKER = """\
import os, sys, time
import rediswq

host, port = os.getenv("REDIS_SERVICE_HOST"), int(os.getenv("REDIS_SERVICE_PORT"))
q = rediswq.RedisWQ(name="job2", host=host, port=port)
item = q.lease(lease_secs=1, block=True, timeout=5)
print("Working on " + item.decode("utf-8"), flush=True)
time.sleep(60)
"""

DOCS_ITEMS = [b"apple", b"banana", b"cherry", b"date", b"fig", b"grape", b"lemon", b"melon", b"orange"]


@pytest.fixture
def job2(client: redis.Redis) -> Iterator[Queue]:
    """The docs' queue name; cleared before and after, since the name is fixed."""
    q = Queue(client, "job2")
    q.purge()
    yield q
    q.purge()


def _script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _env(redis_server: RedisServer) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_SERVICE_HOST": "127.0.0.1",
        "REDIS_SERVICE_PORT": str(redis_server.port),
        "PYTHONUNBUFFERED": "1",
    }


def _worked_on(output: str) -> list[str]:
    return [
        line.removeprefix("Working on ") for line in output.splitlines() if line.startswith("Working on ")
    ]


def test_the_docs_worker_drains_a_queue_filled_the_docs_way(
    tmp_path: Path, redis_server: RedisServer, client: redis.Redis, job2: Queue
) -> None:
    items = [*DOCS_ITEMS, b"apple"]  # a repeated value is a second item
    client.rpush("job2", *items)
    worker = _script(tmp_path, "worker.py", DOCS_WORKER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker)], env=_env(redis_server), stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=30)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    for output in outputs:
        assert output.splitlines()[0].startswith("Worker with sessionID: ")
        assert output.splitlines()[-1] == "Queue empty, exiting"
    worked = [item for output in outputs for item in _worked_on(output)]
    assert Counter(worked) == Counter(item.decode() for item in items)
    stats = job2.stats()
    assert stats.drained
    assert (stats.enqueued, stats.completed, stats.expired) == (10, 10, 0)
    assert not client.exists("job2")


def test_equal_values_are_separate_items_for_the_compat_class(redis_server: RedisServer, job2: Queue) -> None:
    job2.client.rpush("job2", b"same", b"same", b"other", b"same")
    q = RedisWQ(name="job2", host="127.0.0.1", port=redis_server.port)
    leased = [q.lease(lease_secs=10, block=False) for _ in range(4)]
    assert sorted(leased) == [b"other", b"same", b"same", b"same"]  # type: ignore[type-var]
    assert q.lease(lease_secs=10, block=False) is None  # nothing now (others held), and no waiting
    assert not q.empty()
    for value in (b"same", b"same", b"other"):
        q.complete(value)
    assert job2.stats().leased == 1
    q.complete(b"same")
    q.complete(b"same")  # holds no lease on it any more: logged, no error, nothing changes
    stats = job2.stats()
    assert q.empty()
    assert (stats.enqueued, stats.completed) == (4, 4)
    assert [info.worker for info in job2.holders()] == []


def test_a_killed_compat_workers_item_is_reclaimed_by_the_docs_worker(
    tmp_path: Path, redis_server: RedisServer, client: redis.Redis, job2: Queue
) -> None:
    client.rpush("job2", b"apple", b"banana")
    env = _env(redis_server)
    hanging = subprocess.Popen(
        [sys.executable, str(_script(tmp_path, "hang.py", HANGING_WORKER))],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert hanging.stdout is not None
        assert hanging.stdout.readline().strip() == "Working on apple"
    finally:
        hanging.send_signal(signal.SIGKILL)
        hanging.wait(10)
    assert hanging.returncode == -signal.SIGKILL
    [info] = job2.holders()
    assert info.id == "1"  # the killed worker's lease is still there, until it expires
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(_script(tmp_path, "worker.py", DOCS_WORKER))],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(_worked_on(done.stdout)) == ["apple", "banana"]
    assert time.monotonic() - started < 10
    stats = job2.stats()
    assert stats.drained
    assert (stats.enqueued, stats.completed, stats.expired) == (2, 2, 1)
