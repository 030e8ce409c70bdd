"""A frozen worker, a stalled Redis, dropped connections: what `rediswq work` runs and what it logs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers_own_redis import OwnRedis

import rediswq
from rediswq import Lease, Queue
from rediswq_worker.outage import Outage
from rediswq_worker.runners import OK, Outcome
from rediswq_worker.runtime import Ending, Options, Runtime
from rediswq_worker.work import socket_timeout_secs

REDISWQ = str(Path(sys.executable).with_name("rediswq"))


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL", "POD_NAME"))}


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not met in time"
        time.sleep(0.01)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def worker(
    redis_url: str, queue: str, log: Path, env: dict[str, str], *options: str
) -> subprocess.Popen[str]:
    """`rediswq work` whose item command logs the item's payload to `log`, then takes 0.3 s."""
    argv = [
        REDISWQ,
        "--url",
        redis_url,
        "work",
        queue,
        *options,
        "--",
        "sh",
        "-c",
        'echo "$1" >> "$LOG"; sleep 0.3',
    ]
    return subprocess.Popen(
        [*argv, "sh", "{}"], env={**env, "LOG": str(log)}, stderr=subprocess.PIPE, text=True
    )


# -- a frozen worker ---------------------------------------------------------------------------------


def test_a_worker_frozen_past_its_leases_does_not_start_its_buffered_items_when_it_resumes(
    redis_url: str, queue: Queue, env: dict[str, str], tmp_path: Path
) -> None:
    items = [f"i{n}" for n in range(8)]
    queue.put_many(items)
    a_log, b_log = tmp_path / "a", tmp_path / "b"
    # A leases 4 items at once (1 s leases) and runs them one by one.
    a = worker(redis_url, queue.name, a_log, env, "--lease-secs", "1", "--prefetch", "4")
    b: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: len(lines(a_log)) >= 1)
        a.send_signal(signal.SIGSTOP)  # frozen with its first item running and 3 more buffered
        time.sleep(0.1)
        started_before = lines(a_log)
        assert len(started_before) == 1
        # B takes A's leases over as they expire and drains the queue while A is frozen.
        b = worker(redis_url, queue.name, b_log, env, "--lease-secs", "1", "--concurrency", "2")
        _, b_err = b.communicate(timeout=20)
        assert b.returncode == 0, b_err
    finally:
        a.send_signal(signal.SIGCONT)
        if b is not None and b.poll() is None:
            b.kill()
    _, a_err = a.communicate(timeout=20)

    assert a.returncode == 0, a_err
    assert lines(a_log) == started_before, "the resumed worker started items whose leases it had lost"
    runs = Counter(lines(a_log) + lines(b_log))
    assert sorted(runs) == sorted(items)
    # Only the item that was running when A froze ran twice: at-least-once for a stalled worker.
    assert [item for item, n in runs.items() if n > 1] == started_before
    stats = queue.stats()
    assert (stats.drained, stats.completed, stats.dead) == (True, 8, 0)
    assert "3 leased items were not started" in a_err or "lease of item" in a_err, a_err


# -- the outage log ----------------------------------------------------------------------------------


class Flaky(Queue):
    """A queue whose lease calls fail before reaching Redis on the calls numbered in `fail`."""

    def __init__(self, *args: Any, fail: dict[int, BaseException], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fail = fail
        self.calls = 0

    def complete_and_lease(self, done: Sequence[Lease], *args: Any, **kwargs: Any) -> rediswq.Handoff:
        self.calls += 1
        error = self.fail.get(self.calls)
        if error is not None:
            raise rediswq.ConnectionFailed(f"cannot reach Redis: {error}") from error
        return super().complete_and_lease(done, *args, **kwargs)


class Record:
    def __init__(self) -> None:
        self.ran: list[str] = []

    def run(self, lease: Lease) -> Outcome:
        self.ran.append(lease.payload.decode())
        return OK

    def kill(self, leases: Sequence[Lease]) -> None:
        pass

    def describe(self) -> str:
        return "record"


def outage_lines(caplog: pytest.LogCaptureFixture) -> tuple[int, int]:
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    return (
        sum("retrying for up to" in m for m in messages),
        sum(m.startswith("Redis answers again") for m in messages),
    )


@pytest.mark.parametrize(
    ("fail", "expected"),
    [
        # Ten dropped connections, each opened again by the next try: nothing to report.
        ({n: ConnectionResetError("reset by peer") for n in range(2, 40, 3)}, (0, 0)),
        # Two failures in a row (Redis restarting): one outage, one line when it ends.
        ({5: ConnectionRefusedError("refused"), 6: ConnectionRefusedError("refused")}, (1, 1)),
        # A call that timed out: Redis stalled, an outage at once.
        ({5: redis.exceptions.TimeoutError("Timeout reading from socket")}, (1, 1)),
    ],
    ids=["dropped-connections", "two-failures", "a-stall"],
)
def test_one_line_per_outage_and_one_when_it_ends_never_one_per_dropped_connection(
    client: redis.Redis,
    queue_name: str,
    caplog: pytest.LogCaptureFixture,
    fail: dict[int, BaseException],
    expected: tuple[int, int],
) -> None:
    queue = Flaky(client, queue_name, fail=fail)
    queue.put_many(f"n{i}" for i in range(40))
    runner = Record()
    try:
        with caplog.at_level(logging.INFO):
            summary = Runtime(queue, runner, Options(lease_secs=5, prefetch=1, install_signals=False)).run()
        assert summary.ending is Ending.DRAINED, summary
        assert queue.calls > max(fail)
        assert outage_lines(caplog) == expected
        assert sorted(runner.ran) == sorted(f"n{i}" for i in range(40))
    finally:
        queue.purge()


def test_the_outage_tracker_keeps_its_first_error_and_time_until_redis_answers() -> None:
    log = logging.getLogger("test.outage")
    outage = Outage(log, 60)
    reset = rediswq.ConnectionFailed("cannot reach Redis: reset")
    outage.failed(reset, 10.0)
    outage.failed(rediswq.ConnectionFailed("cannot reach Redis: refused"), 11.0)
    assert (outage.since, outage.error) == (10.0, "cannot reach Redis: reset")
    outage.answered()
    assert (outage.since, outage.error) == (None, "")


@pytest.mark.parametrize(("lease", "timeout"), [(0.3, 0.5), (3, 1), (30, 10), (300, 30)])
def test_socket_timeout_is_a_third_of_the_lease_within_bounds(lease: float, timeout: float) -> None:
    assert socket_timeout_secs(lease) == timeout


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


def test_a_redis_stall_shorter_than_the_lease_is_one_outage_and_no_item_runs_twice(
    own_redis: OwnRedis, queue_name: str, env: dict[str, str], tmp_path: Path
) -> None:
    queue = Queue.from_url(own_redis.url, queue_name)
    queue.put_many(f"s{i}" for i in range(16))
    log = tmp_path / "log"
    # Lease 3 s: every call waits at most 1 s for a reply; Redis then stalls for 1.5 s. (A lease call
    # whose reply timed out granted leases nobody received: those items wait for them to expire.)
    w = worker(own_redis.url, queue.name, log, env, "--lease-secs", "3", "--concurrency", "2")
    try:
        wait_for(lambda: len(lines(log)) >= 4)
        own_redis.client().execute_command("DEBUG", "SLEEP", "1.5")
        _, err = w.communicate(timeout=40)
    finally:
        if w.poll() is None:
            w.kill()
    assert w.returncode == 0, err
    runs = Counter(lines(log))
    once, twice = sum(n == 1 for n in runs.values()), sum(n > 1 for n in runs.values())
    print(f"stall: {once} items ran once, {twice} twice, {16 - len(runs)} never")
    assert (once, twice, len(runs)) == (16, 0, 16)
    assert err.count("retrying for up to") == 1, err
    assert err.count("Redis answers again") == 1, err
    stats = queue.stats()
    assert stats.drained and stats.completed == 16 and stats.dead == 0
