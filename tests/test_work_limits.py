"""Every run ends: a hung item, a prefetched item behind it, and a broken handler, through `rediswq work`.

Real worker processes of the installed command on the fixtures' Redis; then the runtime in-process,
where that is cheaper.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from rediswq import Lease, Queue
from rediswq_worker.runners import OK, HandlerRunner, Outcome
from rediswq_worker.runtime import Ending, Options, Runtime

REDISWQ = str(Path(sys.executable).with_name("rediswq"))

HANDLERS = """
import os
import time

def note(what, lease):
    with open(os.environ["OUT"], "a") as f:
        f.write(f"{what} {lease.payload.decode()} {lease.attempt} {os.getpid()} {time.time()}\\n")

def hang(lease):
    note("start", lease)
    if lease.payload == b"2" and lease.attempt == 1:
        time.sleep(3600)  # blocked in C: an exception raised in this thread cannot reach it
    note("done", lease)

def slow(lease):
    time.sleep(float(lease.payload))

def wrong_signature(payload):  # the README's handler written for a payload, given a Lease
    if payload.startswith(b"x"):
        return
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The test's environment without REDISWQ_* settings, with the handlers importable."""
    (tmp_path / "limits_handlers.py").write_text(textwrap.dedent(HANDLERS))
    drop = ("REDISWQ_", "REDIS_URL", "POD_NAME")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**clean, "PYTHONPATH": str(tmp_path), "OUT": str(tmp_path / "out")}


@pytest.fixture
def work(redis_url: str, queue_name: str) -> Callable[..., list[str]]:
    def argv(*args: str) -> list[str]:
        options = ["--retry-backoff-secs", "0.05", "--retry-backoff-cap-secs", "0.2", "--log-format", "json"]
        return [REDISWQ, "--url", redis_url, "work", queue_name, *options, *args]

    return argv


def start(procs: list[subprocess.Popen[str]], argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def notes(path: Path) -> list[tuple[str, str, int, int, float]]:
    """The handler's lines: (start|done, payload, attempt, pid, time)."""
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines()]
    return [(what, payload, int(attempt), int(pid), float(at)) for what, payload, attempt, pid, at in rows]


def log_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def seconds(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


def test_a_hung_handler_is_failed_at_its_time_limit_the_item_behind_it_runs_elsewhere_and_the_worker_exits_5(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str], tmp_path: Path, procs: list[Any]
) -> None:
    lease_secs, limit = 2.0, 3.0
    queue.put_many(["1", "2", "3"])
    queue.close()
    options = ["--handler", "limits_handlers:hang", "--lease-secs", "2", "--item-timeout", "3"]
    stuck = start(procs, work(*options, "--prefetch", "3"), env)  # leases 1, 2 and 3 at once
    out = tmp_path / "out"
    wait_for(lambda: any(n[:2] == ("start", "2") for n in notes(out)), timeout=15)
    other = start(procs, work(*options), env)
    _, stuck_err = stuck.communicate(timeout=30)
    _, other_err = other.communicate(timeout=30)
    assert stuck.returncode == 5, stuck_err
    assert other.returncode == 0, other_err

    ran = notes(out)
    [hung_at] = [at for what, payload, attempt, _, at in ran if (what, payload, attempt) == ("start", "2", 1)]
    # Item 3, prefetched behind the hung item, is given back after half a lease and runs on the other
    # worker, within a lease and a second of when that worker is there to take it.
    [(pid, done_at)] = [(pid, at) for what, payload, _, pid, at in ran if (what, payload) == ("done", "3")]
    assert pid == other.pid
    [other_start] = [line for line in log_lines(other_err) if line.get("event") == "start"]
    assert done_at - max(hung_at, seconds(other_start)) <= lease_secs + 1.0
    # Item 2 failed on the stuck worker at its limit plus the 2 s grace, then ran again on the other.
    stuck_lines = log_lines(stuck_err)
    [failed] = [
        line for line in stuck_lines if line.get("item") and "time limit of 3 s exceeded" in line["message"]
    ]
    # The log's times are whole milliseconds, and the handler notes its start after the worker's clock
    # for the item began: 20 ms of slack below (the limit alone, 3 s, would be 2 s short).
    assert limit + 2.0 - 0.02 <= seconds(failed) - hung_at <= limit + 2.0 + 2.0
    assert [(payload, attempt) for what, payload, attempt, *_ in ran if what == "done"].count(("2", 2)) == 1
    assert "ran past --item-timeout 3 s and did not stop" in stuck_lines[-1]["message"]
    stats = queue.stats()
    assert stats.drained and stats.completed == 3 and stats.dead == 0


def test_without_a_time_limit_a_long_item_is_reported_once_per_lease_period(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str]
) -> None:
    queue.put("4.5")
    result = subprocess.run(
        work("--handler", "limits_handlers:slow", "--lease-secs", "1"),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in log_lines(result.stderr) if line.get("event") == "long_running"]
    # At about 1, 2, 3 and 4 s of its 4.5 s: each with its id, attempt and running time.
    assert 3 <= len(warnings) <= 5, warnings
    gaps = [seconds(b) - seconds(a) for a, b in itertools.pairwise(warnings)]
    assert all(0.8 <= gap <= 1.8 for gap in gaps), gaps
    assert all(line["attempt"] == 1 and line["running_secs"] >= 0.9 for line in warnings)
    assert "has been running for" in warnings[0]["message"]


def test_a_handler_with_the_wrong_signature_stops_the_run_in_seconds_with_exit_6_and_no_dead_letters(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str]
) -> None:
    queue.put_many(f"x{i}" for i in range(2000))
    began = time.monotonic()
    result = subprocess.run(
        [*work("--handler", "limits_handlers:wrong_signature"), "--log-format", "text"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    took = time.monotonic() - began
    assert result.returncode == 6, result.stderr
    assert took < 5
    error = "AttributeError: 'Lease' object has no attribute 'startswith'"
    [verdict] = [
        line for line in result.stderr.splitlines() if "items all failed with the same error" in line
    ]
    assert (
        "the last 10 items all failed with the same error" in verdict
        and "ERROR" in verdict
        and error in verdict
    )
    assert "Traceback" not in result.stderr
    stats = queue.stats()
    # Ten items were charged one attempt each and come back; none is dead, none is held.
    assert (stats.failed, stats.dead, stats.leased) == (10, 0, 0)
    assert stats.pending + stats.delayed == 2000


def test_a_command_that_fails_every_item_alike_stops_the_run_with_exit_6(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str]
) -> None:
    queue.put_many(f"n{i}" for i in range(50))
    result = subprocess.run(
        work("--stop-after-failures", "3", "--", "sh", "-c", "echo 'config.yaml: missing' >&2; exit 3"),
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 6, result.stderr
    assert "exit code 3; config.yaml: missing" in log_lines(result.stderr)[-1]["message"]
    stats = queue.stats()
    assert (stats.failed, stats.dead, stats.leased) == (3, 0, 0)


# -- the runtime in-process -------------------------------------------------------------------------


def loops_on_first_attempt(lease: Lease) -> None:
    """Busy in Python code (where an exception can land) on its first attempt; swallows Exceptions."""
    while lease.payload == b"loops" and lease.attempt == 1:
        with contextlib.suppress(Exception):
            time.sleep(0.02)


def test_a_handler_interrupted_at_its_time_limit_fails_its_item_and_the_worker_goes_on(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    queue.put_many(["loops", "next"])
    runner = HandlerRunner(f"{__name__}:loops_on_first_attempt")
    options = Options(lease_secs=2, item_timeout_secs=0.5, install_signals=False)
    with caplog.at_level(logging.WARNING):
        summary = Runtime(queue, runner, options).run()
    assert (summary.ending, summary.done, summary.failed) == (Ending.DRAINED, 2, 1)
    assert "time limit of 0.5 s exceeded; retrying" in caplog.text
    assert "did not stop" not in caplog.text


class FailAlike:
    """A runner whose items fail, each with `error(payload)` as its error and cause."""

    def __init__(self, error: Callable[[str], str | None], secs: float = 0.0) -> None:
        self.error = error
        self.secs = secs

    def run(self, lease: Lease) -> Outcome:
        time.sleep(self.secs)
        error = self.error(lease.payload.decode())
        return OK if error is None else Outcome(False, f"{error}\n  traceback line {lease.id}", cause=error)

    def kill(self, leases: Sequence[Lease]) -> None:
        pass

    def describe(self) -> str:
        return "fail alike"


def test_a_broken_handler_with_several_slots_charges_no_more_than_the_limit(queue: Queue) -> None:
    queue.put_many(f"n{i}" for i in range(200))
    runner = FailAlike(lambda _payload: "KeyError: 'config'", secs=0.01)
    options = Options(concurrency=4, prefetch=8, stop_after_failures=5, install_signals=False)
    summary = Runtime(queue, runner, options).run()
    assert summary.ending is Ending.HANDLER_BROKEN
    assert "KeyError: 'config'" in summary.error
    stats = queue.stats()
    # The other slots' items that failed alike after the fifth were given back, not charged.
    assert (stats.failed, stats.dead, stats.leased) == (5, 0, 0)
    assert stats.pending + stats.delayed == 200


@pytest.mark.parametrize(
    "error",
    [
        lambda payload: "ValueError: odd" if int(payload) % 2 else None,  # a success between
        lambda payload: f"FileNotFoundError: {payload}.png",  # a message that names its item
    ],
    ids=["success between", "different messages"],
)
def test_failures_that_are_not_all_alike_do_not_stop_the_run(
    client: redis.Redis, queue_name: str, error: Callable[[str], str | None]
) -> None:
    queue = Queue(client, queue_name, max_attempts=1)
    queue.put_many(str(n) for n in range(20))
    try:
        summary = Runtime(
            queue, FailAlike(error), Options(stop_after_failures=2, install_signals=False)
        ).run()
        # Drained (each failure dead-lettered at its one attempt: exit 4), not stopped early (6).
        assert summary.ending is Ending.DRAINED_WITH_DEAD, summary.error
        assert summary.done + summary.dead == 20
    finally:
        queue.purge()
