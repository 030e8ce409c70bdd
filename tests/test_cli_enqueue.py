"""`rediswq enqueue` as users run it: real processes against the private test Redis."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from rediswq import Queue
from rediswq_cli.main import main
from rediswq_producer.enqueue import unique_id

ENTRY_POINT = Path(sys.executable).with_name("rediswq")
COMMAND = (
    [str(ENTRY_POINT)]
    if ENTRY_POINT.exists()
    else [sys.executable, "-c", "from rediswq_cli.main import main; main()"]
)


def run(
    url: str, *args: str, input: bytes | None = None, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDISWQ_URL", "REDIS_URL")}
    result = subprocess.run(
        [*COMMAND, "--url", url, *args],
        input=input,
        capture_output=True,
        env=env,
        timeout=60,
        **kwargs,  # type: ignore[call-overload]
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )


def invoke(url: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """In process, for what needs no process boundary (faster than a subprocess)."""
    result = CliRunner().invoke(main, ["--url", url, *args], input=input, env={"REDISWQ_URL": None})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def payloads(queue: Queue) -> list[bytes]:
    return [item.payload for item in queue.peek(100_000)]


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_items_from_arguments_are_enqueued_in_order(redis_url: str, queue: Queue) -> None:
    result = run(redis_url, "enqueue", queue.name, "a", "b c", "a")
    assert result.returncode == 0, result
    assert result.stdout == "enqueued 3, skipped 0 duplicates\n"
    assert result.stderr == ""  # no progress line when stderr is not a terminal
    assert payloads(queue) == [b"a", b"b c", b"a"]


def test_lines_of_a_file_lose_their_newline_and_crlf_and_blank_lines_are_skipped(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    path = tmp_path / "items.txt"
    path.write_bytes(b"one\r\ntwo\n\n\xff\xfebinary\nlast without newline")
    result = run(redis_url, "enqueue", queue.name, "--file", str(path))
    assert result.returncode == 0, result
    assert result.stdout == "enqueued 4, skipped 0 duplicates\n"
    assert payloads(queue) == [b"one", b"two", b"\xff\xfebinary", b"last without newline"]


def test_keep_blank_enqueues_empty_lines_too(redis_url: str, queue: Queue) -> None:
    result = invoke(redis_url, "enqueue", queue.name, "--keep-blank", input=b"a\n\n\nb\n")
    assert result.returncode == 0, result
    assert payloads(queue) == [b"a", b"", b"", b"b"]


def test_standard_input_is_read_when_no_items_are_named(redis_url: str, queue: Queue) -> None:
    lines = b"".join(b"item-%d\n" % i for i in range(5000))
    result = run(redis_url, "enqueue", queue.name, input=lines)
    assert result.returncode == 0, result
    assert result.stdout == "enqueued 5000, skipped 0 duplicates\n"
    assert payloads(queue) == lines.splitlines()


def test_an_empty_input_warns_and_exits_0(redis_url: str, queue: Queue) -> None:
    result = run(redis_url, "enqueue", queue.name, input=b"")
    assert result.returncode == 0, result
    assert result.stderr == "Warning: nothing to enqueue: the input held no items\n"
    assert result.stdout == "enqueued 0, skipped 0 duplicates\n"
    assert run(redis_url, "enqueue", queue.name, input=b"x\n").stderr == ""


def test_null_separated_input_keeps_newlines_inside_items(redis_url: str, queue: Queue) -> None:
    result = invoke(redis_url, "enqueue", queue.name, "--null", input=b"a\nb\0c\r\n\0\0d")
    assert result.returncode == 0, result
    assert payloads(queue) == [b"a\nb", b"c\r\n", b"d"]


def test_arguments_ranges_and_files_with_dash_for_stdin_go_in_that_order(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    (tmp_path / "f1").write_bytes(b"f1-a\nf1-b\n")
    args = [
        "enqueue",
        queue.name,
        "x",
        "--range",
        "0:3",
        "-f",
        str(tmp_path / "f1"),
        "-f",
        "-",
        "--range",
        "10:4:-3",
    ]
    result = invoke(redis_url, *args, input=b"stdin-a\n")
    assert result.returncode == 0, result
    assert payloads(queue) == [b"x", b"0", b"1", b"2", b"10", b"7", b"f1-a", b"f1-b", b"stdin-a"]


def test_a_bad_range_is_a_usage_error(redis_url: str, queue: Queue) -> None:
    result = invoke(redis_url, "enqueue", queue.name, "--range", "1-10")
    assert result.returncode == 2
    assert "START:END" in result.stderr and "Traceback" not in result.stderr


def test_unique_gives_content_ids_so_a_rerun_adds_nothing(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    path = tmp_path / "items.txt"
    path.write_bytes(b"a\nb\na\nc\n")
    first = run(redis_url, "enqueue", "--unique", queue.name, "-f", str(path))
    assert first.stdout == "enqueued 3, skipped 1 duplicates\n", first
    again = run(redis_url, "enqueue", "--unique", queue.name, "-f", str(path))
    expected = "enqueued 0, skipped 0 duplicates, 4 put in by an earlier run\n"
    assert again.returncode == 0 and again.stdout == expected, again
    assert queue.stats().enqueued == 3
    assert [item.id for item in queue.peek(10)] == [unique_id(b"a"), unique_id(b"b"), unique_id(b"c")]


def test_unique_ids_are_hashes_of_the_bytes_and_never_all_digits() -> None:
    assert unique_id(b"1") != unique_id(b"2")
    assert unique_id(b"x") == unique_id(b"x")
    for payload in (b"", b"0", b"123", b"\xff"):
        assert not unique_id(payload).isdigit()
        assert len(unique_id(payload)) > 32


def test_close_flag_closes_the_queue_and_a_later_enqueue_fails_with_exit_1(
    redis_url: str, queue: Queue
) -> None:
    result = run(redis_url, "enqueue", "--close", queue.name, "a")
    assert result.returncode == 0 and "closed queue" in result.stdout, result
    assert queue.stats().closed
    line = assert_one_error_line(run(redis_url, "enqueue", queue.name, "b"), 1)
    assert "is closed" in line and "enqueued 0" in line
    assert payloads(queue) == [b"a"]


def test_a_queue_closed_part_way_says_how_many_items_went_in(
    redis_url: str, client: redis.Redis, queue: Queue
) -> None:
    # The first 300 lines go in as they arrive; then the queue is closed under the producer.
    proc = subprocess.Popen(
        [*COMMAND, "--url", redis_url, "enqueue", queue.name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    proc.stdin.write(b"".join(b"%d\n" % i for i in range(300)))
    proc.stdin.flush()
    deadline = time.monotonic() + 20
    while queue.stats().enqueued < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    queue.close()
    out, err = proc.communicate(b"more\n" * 10, timeout=30)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(), err.decode())
    line = assert_one_error_line(result, 1)
    assert "is closed; enqueued 300, skipped 0 duplicates before that" in line
    assert queue.stats().enqueued == 300


@pytest.mark.parametrize("name", ["missing.txt", "a-directory"])
def test_an_unreadable_file_fails_before_anything_goes_in(
    redis_url: str, queue: Queue, tmp_path: Path, name: str
) -> None:
    (tmp_path / "good.txt").write_bytes(b"a\n")
    (tmp_path / "a-directory").mkdir()
    result = run(
        redis_url, "enqueue", queue.name, "-f", str(tmp_path / "good.txt"), "-f", str(tmp_path / name)
    )
    line = assert_one_error_line(result, 2)
    assert f"cannot read {tmp_path / name}" in line
    assert queue.stats().enqueued == 0


def test_an_item_over_the_limit_fails_after_the_items_before_it(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    path = tmp_path / "items.txt"
    path.write_bytes(b"".join(b"%d\n" % i for i in range(3000)) + b"x" * 101 + b"\nafter\n")
    result = run(redis_url, "enqueue", queue.name, "--max-item-bytes", "100", "-f", str(path))
    line = assert_one_error_line(result, 2)
    assert f"{path}, line 3001: an item of 101 bytes is over the limit of 100 bytes" in line
    assert "enqueued 3000, skipped 0 duplicates before that" in line
    assert queue.stats().enqueued == 3000
    # Fixed input, re-run with --unique: only what is missing goes in (the first run had no ids).
    path.write_bytes(b"".join(b"%d\n" % i for i in range(3000)) + b"x" * 100 + b"\nafter\n")
    rerun = run(redis_url, "enqueue", "--unique", queue.name, "--max-item-bytes", "100", "-f", str(path))
    assert rerun.returncode == 0, rerun


def test_a_line_longer_than_the_limit_fails_without_reading_it_whole(redis_url: str, queue: Queue) -> None:
    result = run(
        redis_url, "enqueue", queue.name, "--max-item-bytes", "1000", input=b"ok\n" + b"y" * 5_000_000
    )
    line = assert_one_error_line(result, 2)
    assert "standard input, line 2: an item is over the limit of 1000 bytes" in line
    assert "enqueued 1, skipped 0 duplicates" in line


def test_the_progress_line_is_drawn_on_a_terminal_and_cleared(redis_url: str, queue: Queue) -> None:
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [*COMMAND, "--url", redis_url, "enqueue", queue.name],
            input=b"a\nb\n",
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal is closed and read out
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert result.returncode == 0
    assert b"enqueued" in drawn and drawn.endswith(b"\r\x1b[K")
    assert result.stdout == b"enqueued 2, skipped 0 duplicates\n"


def test_no_items_and_stdin_on_a_terminal_is_a_usage_error(redis_url: str, queue: Queue) -> None:
    leader, follower = pty.openpty()
    try:
        result = subprocess.run(
            [*COMMAND, "--url", redis_url, "enqueue", queue.name],
            stdin=follower,
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert b"no items" in result.stderr


def test_quiet_prints_nothing(redis_url: str, queue: Queue) -> None:
    result = invoke(redis_url, "enqueue", "-q", queue.name, "a")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert payloads(queue) == [b"a"]
