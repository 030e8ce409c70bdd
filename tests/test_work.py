"""`rediswq work` as a user runs it: real worker processes, real child commands, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from rediswq import Queue
from rediswq_cli.main import main

REDISWQ = str(Path(sys.executable).with_name("rediswq"))


@pytest.fixture
def env() -> dict[str, str]:
    """The test's environment without any REDISWQ_* or pod setting that could change the worker."""
    drop = ("REDISWQ_", "REDIS_URL", "POD_NAME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture
def work(redis_url: str, queue_name: str, env: dict[str, str]) -> Callable[..., list[str]]:
    """The argv of `rediswq work` on the test queue, with small retry backoffs."""

    def argv(*args: str) -> list[str]:
        options = ["--retry-backoff-secs", "0.05", "--retry-backoff-cap-secs", "0.2"]
        return [REDISWQ, "--url", redis_url, "work", queue_name, *options, *args]

    return argv


def run(argv: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def start(procs: list[subprocess.Popen[str]], argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for its reaper counts: it runs no more)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# -- command mode -----------------------------------------------------------------------------------


def test_command_gets_each_payload_on_stdin_and_in_braces_with_item_env_then_exits_0_when_drained(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    payloads = ["alpha", "two words", "ünïcode", "$HOME; echo no"]
    ids = [queue.put(p) for p in payloads]
    script = 'printf "%s|%s|%s|%s|%s\\n" "$1" "$(cat)" "$REDISWQ_QUEUE" "$REDISWQ_ITEM_ID" "$REDISWQ_ATTEMPT"'
    result = run(work("--", "sh", "-c", f"{script} >> {out}", "sh", "{}"), env)
    assert result.returncode == 0, result.stderr
    lines = sorted(out.read_text().splitlines())
    assert lines == sorted(f"{p}|{p}|{queue.name}|{i}|1" for p, i in zip(payloads, ids, strict=True))
    stats = queue.stats()
    assert stats.drained and stats.completed == 4
    assert "4 done, 0 failed" in last_line(result.stderr)


def test_payload_bytes_that_are_not_utf8_reach_the_argument_unchanged_and_a_nul_is_dead_lettered_at_once(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str], tmp_path: Path
) -> None:
    binary = b"\xff\xfe raw \x80"
    queue.put(binary)
    nul_id = queue.put(b"a\0b")
    out = tmp_path / "arg"
    result = run(work("--max-attempts", "3", "--", "sh", "-c", f'printf %s "$1" > {out}', "sh", "{}"), env)
    assert result.returncode == 4, result.stderr  # drained, with dead letters
    assert out.read_bytes() == binary
    [dead] = queue.dead_letters()
    assert dead.id == nul_id and dead.attempts == 1  # not retried: it can never succeed
    assert "NUL byte" in dead.error


def test_failing_command_is_retried_then_dead_lettered_with_its_exit_code_and_stderr_tail(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str], tmp_path: Path
) -> None:
    queue.put("ok")
    bad = queue.put("bad")
    attempts = tmp_path / "attempts"
    script = (
        f'echo "$REDISWQ_ATTEMPT" >> {attempts}.$1; [ "$1" = ok ] || {{ echo "cannot do $1" >&2; exit 7; }}'
    )
    result = run(
        work("--max-attempts", "3", "--log-format", "json", "--", "sh", "-c", script, "sh", "{}"), env
    )
    assert result.returncode == 4, result.stderr  # drained, with dead letters
    assert (tmp_path / "attempts.bad").read_text().split() == ["1", "2", "3"]
    [dead] = queue.dead_letters()
    assert dead.id == bad and dead.attempts == 3
    assert "exit code 7" in dead.error and "cannot do bad" in dead.error
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    summary = records[-1]
    assert (summary["event"], summary["done"], summary["failed"], summary["dead_lettered"]) == (
        "summary",
        1,
        3,
        1,
    )
    # The child's own stderr passes through; every line the worker writes itself is JSON.
    assert all(line.startswith("{") or line == "cannot do bad" for line in result.stderr.splitlines())


def test_timeout_kills_the_whole_process_group_of_an_overrunning_item_and_fails_it(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str], tmp_path: Path
) -> None:
    pidfile = tmp_path / "grandchild"
    queue.put("slow")
    began = time.monotonic()
    result = run(
        work(
            "--timeout", "0.5", "--max-attempts", "1",
            "--", "sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait",
        ),
        env,
    )  # fmt: skip
    assert result.returncode == 4, result.stderr  # drained, with dead letters
    assert time.monotonic() - began < 10
    [dead] = queue.dead_letters()
    assert "time limit of 0.5 s exceeded" in dead.error
    grandchild = int(pidfile.read_text())
    wait_for(lambda: gone(grandchild), timeout=3)


def test_command_not_found_is_a_configuration_error(
    work: Callable[..., list[str]], env: dict[str, str]
) -> None:
    result = run(work("--", "no-such-command-rediswq"), env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: command 'no-such-command-rediswq' not found on PATH"
    ]


# -- handler mode -----------------------------------------------------------------------------------

HANDLER = """
import os

def handle(lease):
    if lease.payload.startswith(b"bad"):
        raise ValueError(f"cannot handle {lease.payload.decode()}")
    with open(os.environ["OUT"], "a") as f:
        f.write(f"{lease.id} {lease.payload.decode()} {lease.attempt}\\n")
"""


@pytest.fixture
def handler_env(env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    (tmp_path / "myhandlers.py").write_text(textwrap.dedent(HANDLER))
    return {**env, "PYTHONPATH": str(tmp_path), "OUT": str(tmp_path / "out")}


def test_handler_gets_each_lease_and_a_raising_handler_is_retried_then_dead_lettered(
    queue: Queue, work: Callable[..., list[str]], handler_env: dict[str, str], tmp_path: Path
) -> None:
    good = [queue.put(f"item-{n}") for n in range(3)]
    bad = queue.put("bad-1")
    result = run(work("--handler", "myhandlers:handle", "--max-attempts", "2"), handler_env)
    assert result.returncode == 4, result.stderr  # drained, with dead letters
    lines = sorted((tmp_path / "out").read_text().splitlines())
    assert lines == sorted(f"{i} item-{n} 1" for n, i in enumerate(good))
    [dead] = queue.dead_letters()
    assert dead.id == bad and dead.attempts == 2
    assert dead.error.startswith("ValueError: cannot handle bad-1")
    assert "myhandlers.py" in dead.error  # the traceback's last frames are kept too
    assert "3 done, 2 failed, 1 dead-lettered" in last_line(result.stderr)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuchmodule_rediswq:handle", "cannot import handler module 'nosuchmodule_rediswq'"),
        ("myhandlers:nothere", "module 'myhandlers' has no 'nothere'"),
        ("myhandlers", "--handler must look like module:function"),
    ],
)
def test_a_handler_that_cannot_be_loaded_exits_2_with_one_line(
    work: Callable[..., list[str]], handler_env: dict[str, str], spec: str, message: str
) -> None:
    result = run(work("--handler", spec), handler_env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and message in line


def test_concurrency_and_prefetch_drain_every_item_exactly_once(
    queue: Queue, work: Callable[..., list[str]], handler_env: dict[str, str], tmp_path: Path
) -> None:
    ids = queue.put_many(f"n{i}" for i in range(300))
    assert ids.added == 300
    result = run(
        work("--handler", "myhandlers:handle", "--concurrency", "4", "--prefetch", "25"), handler_env
    )
    assert result.returncode == 0, result.stderr
    seen = [line.split()[1] for line in (tmp_path / "out").read_text().splitlines()]
    assert sorted(seen) == sorted(f"n{i}" for i in range(300))
    stats = queue.stats()
    assert stats.drained and stats.completed == 300 and stats.expired == 0


def test_command_mode_with_concurrency_runs_items_side_by_side(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str], tmp_path: Path
) -> None:
    queue.put_many(f"n{i}" for i in range(6))
    marks = tmp_path / "marks"
    marks.mkdir()
    # Each item waits (up to 5 s) until three items are running at once: only true concurrency passes.
    script = (
        f"touch {marks}/$1; i=0; while [ $(ls {marks} | wc -l) -lt 3 ] && [ $i -lt 250 ]; "
        "do sleep 0.02; i=$((i+1)); done; [ $i -lt 250 ]"
    )
    began = time.monotonic()
    result = run(work("--concurrency", "3", "--prefetch", "2", "--", "sh", "-c", script, "sh", "{}"), env)
    assert result.returncode == 0, result.stderr
    assert queue.stats().completed == 6 and queue.stats().dead == 0
    assert time.monotonic() - began < 8


def test_a_short_lease_is_renewed_while_items_run_and_while_prefetched_items_wait(
    queue: Queue,
    work: Callable[..., list[str]],
    env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    queue.put_many(f"n{i}" for i in range(3))
    log = tmp_path / "log"
    script = f'echo "$1 $REDISWQ_ATTEMPT" >> {log}; sleep 0.9'
    a = start(
        procs, work("--lease-secs", "0.8", "--prefetch", "3", "--", "sh", "-c", script, "sh", "{}"), env
    )
    wait_for(log.exists)
    # A second worker keeps calling lease, which would take over any lease that expired.
    b = start(procs, work("--lease-secs", "0.8", "--", "sh", "-c", script, "sh", "{}"), env)
    for proc in (a, b):
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    assert sorted(log.read_text().splitlines()) == ["n0 1", "n1 1", "n2 1"]
    stats = queue.stats()
    # Renewed while they waited, no lease expired; a prefetched item that waited half a lease for
    # the busy slot was given back uncharged (and B, or A, ran it at its first attempt).
    assert (stats.completed, stats.expired) == (3, 0)


# -- stopping -------------------------------------------------------------------------------------


def test_sigterm_mid_item_lets_it_finish_gives_back_unstarted_items_and_exits_3(
    queue: Queue,
    work: Callable[..., list[str]],
    env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    queue.put_many(f"n{i}" for i in range(5))
    started = tmp_path / "started"
    script = f"touch {started}; sleep 0.8; echo $1 >> {tmp_path}/done"
    proc = start(procs, work("--prefetch", "5", "--", "sh", "-c", script, "sh", "{}"), env)
    wait_for(started.exists)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err
    assert (tmp_path / "done").read_text().split() == ["n0"]  # the running item finished
    stats = queue.stats()
    assert (stats.completed, stats.pending, stats.released, stats.leased) == (1, 4, 4, 0)
    assert "stopped by SIGTERM: 1 done" in last_line(err)
    assert [item.attempts for item in queue.peek(4)] == [0, 0, 0, 0]  # no attempt charged


def test_sigterm_past_the_grace_kills_the_item_and_gives_its_lease_back_for_another_worker(
    queue: Queue,
    work: Callable[..., list[str]],
    env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    queue.put("long")
    pidfile = tmp_path / "pid"
    log = tmp_path / "log"
    # The first attempt hangs; any later run records its attempt number and succeeds.
    script = (
        f'echo "$REDISWQ_ATTEMPT" >> {log}; '
        f"if [ ! -e {pidfile} ]; then sleep 30 & echo $! > {pidfile}; wait; fi"
    )
    proc = start(procs, work("--grace-secs", "0.5", "--", "sh", "-c", script), env)
    wait_for(pidfile.exists)
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err
    assert time.monotonic() - began < 5
    wait_for(lambda: gone(int(pidfile.read_text())), timeout=3)
    stats = queue.stats()
    assert (stats.pending, stats.released, stats.failed, stats.leased) == (1, 1, 0, 0)
    result = run(work("--", "sh", "-c", script), env)
    assert result.returncode == 0, result.stderr
    assert log.read_text().split() == ["1", "1"]  # the give-back charged no attempt
    assert queue.stats().completed == 1 and queue.dead_letters() == []


def test_a_second_signal_ends_the_grace_period_at_once(
    queue: Queue,
    work: Callable[..., list[str]],
    env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    queue.put("long")
    started = tmp_path / "started"
    proc = start(procs, work("--grace-secs", "60", "--", "sh", "-c", f"touch {started}; exec sleep 30"), env)
    wait_for(started.exists)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert proc.poll() is None  # still in its grace period
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 3, err
    assert time.monotonic() - began < 5
    assert queue.stats().released == 1


def test_max_items_stops_after_that_many_items_with_exit_3(
    queue: Queue, work: Callable[..., list[str]], env: dict[str, str], tmp_path: Path
) -> None:
    queue.put_many(f"n{i}" for i in range(5))
    result = run(work("--max-items", "2", "--prefetch", "10", "--", "true"), env)
    assert result.returncode == 3, result.stderr
    stats = queue.stats()
    assert (stats.completed, stats.pending, stats.leased) == (2, 3, 0)
    assert "stopped after --max-items 2" in last_line(result.stderr)


def test_until_closed_waits_for_the_close_before_exiting_0(
    queue: Queue,
    work: Callable[..., list[str]],
    env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    out = tmp_path / "out"
    proc = start(procs, work("--until", "closed", "--", "sh", "-c", f"cat >> {out}; echo >> {out}"), env)
    time.sleep(1.0)
    assert proc.poll() is None  # empty but not closed: it waits
    queue.put("late")
    wait_for(lambda: out.exists() and "late" in out.read_text())
    time.sleep(0.3)
    assert proc.poll() is None  # drained but still not closed
    queue.close()
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert out.read_text().split() == ["late"]


def test_a_worker_takes_over_the_expired_lease_of_a_killed_worker_and_exits_0_when_all_is_done(
    queue: Queue,
    work: Callable[..., list[str]],
    env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    queue.put("slow")
    queue.put_many(f"n{i}" for i in range(10))
    pidfile = tmp_path / "slowpid"
    script = (
        f'if [ "$1" = slow ] && [ "$REDISWQ_ATTEMPT" = 1 ]; then echo $$ > {pidfile}; exec sleep 60; fi; '
        f'echo "$1 $REDISWQ_ATTEMPT" >> {tmp_path}/done.$WHO'
    )
    argv = work("--lease-secs", "1", "--", "sh", "-c", script, "sh", "{}")
    a = start(procs, argv, {**env, "WHO": "a"})
    try:
        wait_for(pidfile.exists)
        b = start(procs, argv, {**env, "WHO": "b"})
        a.kill()  # SIGKILL: no chance to give anything back
        a.wait()
        _, err = b.communicate(timeout=20)
        assert b.returncode == 0, err
        done_b = (tmp_path / "done.b").read_text().splitlines()
        assert "slow 2" in done_b  # taken over once a's lease expired
        assert len(done_b) == 11 and not (tmp_path / "done.a").exists()
        stats = queue.stats()
        assert stats.drained and stats.completed == 11 and stats.expired == 1
    finally:
        # Outside Kubernetes, a SIGKILLed worker's child lives on: end it.
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


# -- errors ---------------------------------------------------------------------------------------


def test_refused_connection_exits_1_with_one_clear_line_and_no_traceback(
    env: dict[str, str], queue_name: str
) -> None:
    from redis_server import free_port

    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    result = run([REDISWQ, "--url", url, "work", queue_name, "--reconnect-secs", "0.5", "--", "true"], env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    assert "cannot reach Redis at" in last_line(result.stderr)
    assert "gave up after" in last_line(result.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give a COMMAND after --"),
        (("--handler", "m:f", "--", "true"), "not both"),
        (("--concurrency", "0", "--", "true"), "--concurrency"),
        (("--until", "forever", "--", "true"), "--until"),
        (("--prefetch", "0", "--", "true"), "--prefetch"),
        (("--prefetch", "many", "--", "true"), "neither a whole number nor 'auto'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: tuple[str, ...], message: str) -> None:
    result = CliRunner().invoke(main, ["work", "q", *args])
    assert result.exit_code == 2
    assert message in last_line(result.output) and last_line(result.output).startswith("Error: ")


def test_a_bad_url_exits_2() -> None:
    result = CliRunner().invoke(main, ["--url", "http://example.com", "work", "q", "--", "true"])
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: bad Redis URL http://example.com")


def test_options_come_from_the_environment_and_the_worker_name_shows_as_lease_holder(
    queue: Queue,
    work: Callable[..., list[str]],
    env: dict[str, str],
    tmp_path: Path,
    procs: list[subprocess.Popen[str]],
) -> None:
    queue.put("x")
    started = tmp_path / "started"
    settings = {"POD_NAME": "job-abc-123", "REDISWQ_MAX_ATTEMPTS": "1", "REDISWQ_GRACE_SECS": "0"}
    proc = start(procs, work("--", "sh", "-c", f"touch {started}; exec sleep 30"), {**env, **settings})
    wait_for(started.exists)
    assert [holder.worker for holder in queue.holders()] == ["job-abc-123"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 3, err  # grace 0 from the environment: killed at once


def test_a_worker_rides_out_a_redis_restart_mid_run_and_completes_everything(
    work: Callable[..., list[str]], env: dict[str, str], queue_name: str, tmp_path: Path
) -> None:
    from redis_server import find_binary, free_port

    port = free_port()
    args = [find_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning"]

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        wait_for(lambda: _answers(client), timeout=5)
        return proc

    server = start_redis()
    try:
        url = f"redis://127.0.0.1:{port}/0"
        queue = Queue.from_url(url, queue_name)
        queue.put_many(f"n{i}" for i in range(8))
        done = tmp_path / "done"
        argv = [
            REDISWQ,
            "--url",
            url,
            *work()[3:],
            "--",
            "sh",
            "-c",
            f'sleep 0.2; echo "$1" >> {done}',
            "sh",
            "{}",
        ]
        worker = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: done.exists())
        server.terminate()
        server.wait()
        time.sleep(1.0)
        server = start_redis()
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == 0, err
        assert "retrying for up to 60 s" in err and "Redis answers again" in err
        assert sorted(set(done.read_text().split())) == sorted(f"n{i}" for i in range(8))
        stats = queue.stats()
        assert stats.drained and stats.completed == 8
    finally:
        server.kill()
        server.wait()


def test_sigterm_ends_the_worker_in_time_even_when_redis_stops_answering(
    work: Callable[..., list[str]], env: dict[str, str], queue_name: str, tmp_path: Path
) -> None:
    from redis_server import RedisServer

    server = RedisServer()  # its own: it is frozen with SIGSTOP
    try:
        Queue.from_url(server.url, queue_name).put("long")
        pidfile = tmp_path / "pid"
        argv = [REDISWQ, "--url", server.url, *work()[3:], "--grace-secs", "0.5"]
        script = f"echo $$ > {pidfile}; exec sleep 30"
        worker = subprocess.Popen(
            [*argv, "--", "sh", "-c", script], env=env, stderr=subprocess.PIPE, text=True
        )
        wait_for(pidfile.exists)
        server.process.send_signal(signal.SIGSTOP)  # a partition: no reset, no reply
        began = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=20)
        # The give-back after the grace period hangs (redis-py waits 5 s for a reply): the process
        # ends anyway, --grace-secs + 3 s after the signal, as a Kubernetes grace period needs.
        assert worker.returncode == 3, err
        assert time.monotonic() - began < 0.5 + 3.0 + 1.0
        assert "Redis did not answer in time to give back 1 leases" in err, err
        wait_for(lambda: gone(int(pidfile.read_text())), timeout=3)
    finally:
        server.process.send_signal(signal.SIGCONT)
        server.stop()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


def test_a_wrong_password_exits_2_with_one_line_that_hides_the_password(
    env: dict[str, str], queue_name: str
) -> None:
    from redis_server import RedisServer

    server = RedisServer(password="right-one")
    try:
        url = f"redis://:wrong-one@127.0.0.1:{server.port}/0"
        result = run([REDISWQ, "--url", url, "work", queue_name, "--", "true"], env)
    finally:
        server.stop()
    assert result.returncode == 2, result.stderr
    assert "refused the credentials" in last_line(result.stderr)
    assert "wrong-one" not in result.stderr and "Traceback" not in result.stderr
    assert "retrying" not in result.stderr  # retrying cannot help


def test_an_error_answer_from_redis_exits_1_with_one_line(
    queue: Queue, client: redis.Redis, work: Callable[..., list[str]], env: dict[str, str]
) -> None:
    queue.put(b"x")
    client.set(queue.keys.pending, "not a list")  # what a stray `SET` by someone else would do
    result = run(work("--", "true"), env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "ERROR rediswq.work: " in last_line(result.stderr)
    assert f"key {queue.keys.pending} holds a string, not a list" in last_line(result.stderr)
