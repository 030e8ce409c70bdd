"""What `rediswq work` does with one item, without Redis: the command and handler runners."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from rediswq import Lease
from rediswq_worker.runners import STDERR_TAIL_BYTES, CommandRunner, HandlerRunner, SetupError, load_handler


def lease(payload: bytes = b"p", item_id: str = "7", attempt: int = 1) -> Lease:
    return Lease(item_id, payload, attempt, deadline_ms=0, lease_ms=30_000, handle=b"h")


def sh(script: str, **options: float) -> CommandRunner:
    return CommandRunner(["sh", "-c", script, "sh", "{}"], queue_name="q", **options)  # type: ignore[arg-type]


def test_a_payload_larger_than_a_pipe_reaches_the_command_whole(tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024).replace(b"\0", b"x")
    out = tmp_path / "out"
    outcome = CommandRunner(["sh", "-c", f"cat > {out}"], queue_name="q").run(lease(payload))
    assert outcome.ok, outcome.error
    assert out.read_bytes() == payload


def test_a_command_that_ignores_a_large_payload_on_stdin_still_completes() -> None:
    outcome = CommandRunner(["true"], queue_name="q").run(lease(b"y" * (4 * 1024 * 1024)))
    assert outcome.ok, outcome.error


def test_the_error_of_a_failed_command_keeps_its_exit_code_and_the_tail_of_its_stderr() -> None:
    outcome = sh("head -c 10000 /dev/zero | tr '\\0' a >&2; echo LAST-LINE >&2; exit 3").run(lease())
    assert not outcome.ok and outcome.retry
    assert outcome.error.startswith("exit code 3; stderr: ")
    assert outcome.error.endswith("LAST-LINE")
    assert len(outcome.error) < STDERR_TAIL_BYTES + 50


def test_a_command_killed_by_a_signal_says_which() -> None:
    outcome = sh("kill -KILL $$").run(lease())
    assert outcome.error == "killed by SIGKILL"


def test_a_background_process_holding_stderr_open_does_not_hold_the_item(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    began = time.monotonic()
    outcome = sh(f"sleep 5 & echo $! > {pidfile}; exit 0").run(lease())
    try:
        assert outcome.ok
        assert time.monotonic() - began < 3
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_kill_ends_the_process_group_of_a_running_item(tmp_path: Path) -> None:
    runner = sh(f"touch {tmp_path}/started; sleep 30")
    item = lease()
    result = []
    thread = threading.Thread(target=lambda: result.append(runner.run(item)))
    thread.start()
    give_up = time.monotonic() + 10
    while not (tmp_path / "started").exists() and time.monotonic() < give_up:
        time.sleep(0.01)
    # The child may touch the file before the runner has filed it as running (the spawning thread
    # is descheduled): a kill then finds nothing to kill, so it is repeated until the item ends.
    give_up = time.monotonic() + 5
    while thread.is_alive() and time.monotonic() < give_up:
        runner.kill([item])
        thread.join(0.2)
    assert not thread.is_alive()
    assert result[0].error == "killed by SIGKILL"


def test_a_missing_command_or_a_non_executable_file_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="not found on PATH"):
        CommandRunner(["no-such-command-rediswq"], queue_name="q")
    plain = tmp_path / "plain"
    plain.write_text("")
    with pytest.raises(SetupError, match="not an executable file"):
        CommandRunner([str(plain)], queue_name="q")


def fails_deep(item: Lease) -> None:
    def inner() -> None:
        raise KeyError(item.id)

    inner()


def test_a_raising_handler_fails_the_item_with_type_message_and_traceback() -> None:
    runner = HandlerRunner(f"{__name__}:fails_deep")
    outcome = runner.run(lease(item_id="abc"))
    assert not outcome.ok
    head, *frames = outcome.error.splitlines()
    assert head == "KeyError: 'abc'"
    assert any("in inner" in line for line in frames)


def exits(item: Lease) -> None:
    sys.exit(4)


def test_a_handler_calling_sys_exit_fails_the_item_instead_of_ending_its_thread() -> None:
    runner = HandlerRunner(f"{__name__}:exits")
    assert runner.run(lease()).error.startswith("SystemExit: 4")


NOT_CALLABLE = 42


def test_a_handler_spec_naming_something_not_callable_is_a_setup_error() -> None:
    with pytest.raises(SetupError, match="is a int, not a callable"):
        load_handler(f"{__name__}:NOT_CALLABLE")


def test_a_command_starts_with_sigpipe_at_its_default_and_no_blocked_signals(tmp_path: Path) -> None:
    """Python ignores SIGPIPE, and an exec would keep it ignored: `yes | head` would then complain."""
    out = tmp_path / "status"
    outcome = CommandRunner(
        ["sh", "-c", f"exec grep -E '^Sig(Ign|Blk)' /proc/self/status > {out}"], queue_name="q"
    ).run(lease())
    assert outcome.ok, outcome.error
    masks = dict(line.split(":\t") for line in out.read_text().splitlines())
    assert int(masks["SigIgn"], 16) & (1 << (signal.SIGPIPE - 1)) == 0
    assert int(masks["SigBlk"], 16) == 0


def test_a_command_runs_in_a_session_of_its_own(tmp_path: Path) -> None:
    out = tmp_path / "ids"
    outcome = CommandRunner(["sh", "-c", f"ps -o sid= -o pgid= -p $$ > {out}"], queue_name="q").run(lease())
    assert outcome.ok, outcome.error
    sid, pgid = out.read_text().split()
    assert int(sid) == int(pgid) != os.getsid(0)
