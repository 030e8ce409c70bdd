"""Waiting is visible and bounded: `rediswq work` logs progress at an interval, says what it waits
for, and with --until closed --max-wait exits 7 on a queue nobody closes. Through the installed
command, against the private test Redis."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import rediswq_kit as clikit
from rediswq import Queue, Stats
from rediswq_worker.runtime.progress import waiting_for

REDISWQ = str(Path(sys.executable).with_name("rediswq"))


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL", "POD_NAME"))}


def work(redis_url: str, queue: str, *args: str) -> list[str]:
    return [REDISWQ, "--url", redis_url, "work", queue, *args, "--", "true"]


def json_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_max_wait_ends_a_worker_on_a_queue_never_closed_with_exit_7_and_one_line_why(
    redis_url: str, queue: Queue, env: dict[str, str]
) -> None:
    queue.put_many(["a"])  # the producer started, then vanished without closing the queue
    began = time.monotonic()
    result = subprocess.run(
        work(redis_url, queue.name, "--until", "closed", "--max-wait", "1", "--progress-secs", "0"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - began
    assert result.returncode == clikit.EXIT_IDLE == 7, result.stderr
    assert 1.0 <= took < 30, took
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr
    assert (
        f"nothing to lease for 1 s (--max-wait) and queue {queue.name!r} is still open and empty" in errors[0]
    )
    assert f"rediswq close {queue.name}" in errors[0]
    assert "1 done" in result.stderr and queue.stats().completed == 1


def test_max_wait_does_not_end_a_worker_while_other_workers_hold_leases(
    redis_url: str, queue: Queue, env: dict[str, str]
) -> None:
    queue.put_many(["a"])
    held = queue.lease_many(1, lease_secs=60)
    worker = subprocess.Popen(
        work(redis_url, queue.name, "--until", "closed", "--max-wait", "0.5", "--progress-secs", "0"),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # six idle limits: each check finds an item leased, so the wait starts again
        assert worker.poll() is None
        queue.complete_many(held)
        queue.close()
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        worker.wait()


def test_progress_lines_come_at_the_interval_with_the_counts_and_what_the_worker_waits_for(
    redis_url: str, queue: Queue, env: dict[str, str]
) -> None:
    queue.put_many(["a", "b", "c", "d", "e"])
    held = queue.lease_many(2, lease_secs=60)  # another worker's, still running
    worker = subprocess.Popen(
        work(redis_url, queue.name, "--until", "closed", "--progress-secs", "0.5", "--log-format", "json"),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    progress: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 30
        while len(progress) < 4 and time.monotonic() < deadline:
            line = worker.stderr.readline()
            if line.startswith("{") and json.loads(line).get("event") == "progress":
                progress.append(json.loads(line))
        queue.complete_many(held)
        queue.close()
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        worker.wait()
    assert len(progress) == 4, progress
    times = [datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp() for line in progress]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 0.5 s apart: never sooner, and the typical gap well under twice that (room for a loaded machine).
    assert min(gaps) >= 0.45 and statistics.median(gaps) < 0.9, gaps
    last = progress[-1]
    assert (last["done"], last["failed"], last["running"], last["pending"], last["leased"]) == (3, 0, 0, 0, 2)
    assert last["closed"] is False and last["queue"] == queue.name
    assert last["waiting_for"] == "waiting for 2 items leased by other workers and the queue to be closed"
    assert last["message"] == (
        f"progress: 3 done, 0 failed, 0 running, {last['items_per_sec']:.1f} items/s; "
        "queue: 0 pending, 2 leased; waiting for 2 items leased by other workers and the queue to be closed"
    )


def test_a_text_progress_line_says_what_the_worker_waits_for(
    redis_url: str, queue: Queue, env: dict[str, str]
) -> None:
    queue.put_many(["a"])
    worker = subprocess.Popen(
        work(redis_url, queue.name, "--until", "closed", "--progress-secs", "0.5"),
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "progress:" not in line and time.monotonic() < deadline:
            line = worker.stderr.readline()
        queue.close()
        assert worker.wait(timeout=30) == 0
    finally:
        worker.kill()
        worker.wait()
    assert " INFO rediswq.work: progress: 1 done, 0 failed, 0 running, " in line, line
    assert line.rstrip().endswith("items/s; queue: 0 pending, 0 leased; waiting for the queue to be closed")


def test_progress_secs_0_logs_no_progress_line(redis_url: str, queue: Queue, env: dict[str, str]) -> None:
    queue.put_many(["a"])
    queue.close()
    result = subprocess.run(
        work(redis_url, queue.name, "--progress-secs", "0", "--log-format", "json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not [line for line in json_lines(result.stderr) if line.get("event") == "progress"]


def test_the_queue_says_when_its_next_retry_is_due_and_the_worker_says_it_waits_for_it(
    queue_name: str, client: Any
) -> None:
    queue = Queue(client, queue_name, retry_backoff_secs=12, retry_backoff_cap_secs=12)
    try:
        queue.put_many(["a", "b", "c"])
        for lease in queue.lease_many(3, lease_secs=30):
            queue.fail(lease, "not yet")
        stats = queue.stats()
        assert stats.delayed == 3
        assert stats.next_retry_in_ms is not None and 10_000 < stats.next_retry_in_ms <= 12_000
        assert waiting_for(stats, held=0, running=0, until="drained") == "waiting for 3 retries due in 12 s"
        assert queue.stats() == stats  # a moment's reading, not a count: snapshots still compare
    finally:
        queue.purge()
    assert Queue(client, queue_name).stats().next_retry_in_ms is None


def test_a_worker_running_items_waits_for_nothing() -> None:
    stats = Stats(3, 2, 1, 0, False, 0, 0, 0, 0, 0, 0, 0, 0)
    assert waiting_for(stats, held=1, running=1, until="closed") == ""
    idle = Stats(0, 2, 0, 0, True, 0, 0, 0, 0, 0, 0, 0, 0)
    assert (
        waiting_for(idle, held=0, running=0, until="closed") == "waiting for 2 items leased by other workers"
    )


def test_an_argument_over_the_system_limit_is_dead_lettered_at_once_with_a_hint(
    redis_url: str, queue: Queue, env: dict[str, str]
) -> None:
    queue.put_many([b"x" * 300_000])  # one argument of 300 KB: over Linux's 128 KiB per argument
    queue.close()
    argv = [REDISWQ, "--url", redis_url, "work", queue.name, "--max-attempts", "5", "--", "echo", "{}"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == clikit.EXIT_DEAD, result.stderr[-2000:]
    stats = queue.stats()
    assert (stats.failed, stats.retried, stats.dead_lettered) == (1, 0, 1)  # not retried 4 times
    (letter,) = queue.dead_letters()
    assert "Argument list too long" in letter.error
    assert "read the payload from standard input instead of {}" in letter.error
