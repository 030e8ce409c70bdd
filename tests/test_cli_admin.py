"""The admin commands (`stats`, `dead`, `peek`, `close`, `reopen`, `purge`) and the error contract every
`rediswq` subcommand shares: one clear line, the documented exit code, no traceback, no password."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis_server import RedisServer, free_port

from rediswq import Queue, Stats
from rediswq_cli.main import main
from rediswq_producer.stats import text_view

ENTRY_POINT = Path(sys.executable).with_name("rediswq")
COMMAND = (
    [str(ENTRY_POINT)]
    if ENTRY_POINT.exists()
    else [sys.executable, "-c", "from rediswq_cli.main import main; main()"]
)
PASSWORD = "s3cret-Pa55word"


def invoke(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """In process, for what needs no process boundary (faster than a subprocess)."""
    result = CliRunner().invoke(main, ["--url", url, *args], env={"REDISWQ_URL": None})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def spawn(url: str, *args: str) -> subprocess.Popen[str]:
    """The command with the URL in $REDISWQ_URL, as a pod gives it (on the command line, a password
    adds a warning line of its own: tests/test_secret_inputs.py)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDISWQ_URL", "REDIS_URL")}
    return subprocess.Popen(
        [*COMMAND, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "REDISWQ_URL": url},
    )


def finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def busy(queue: Queue) -> Queue:
    """A queue with a bit of everything: 2 pending (one binary), 1 leased by pod-a, 2 dead letters."""
    queue.put_many([b"one", b"two", b"three", b"four", b"\x00\xffbin"])
    for lease in queue.lease_many(3, 60, worker="pod-x"):
        if lease.payload == b"three":
            queue.release(lease)
        else:
            queue.fail(lease, f"boom on {lease.payload.decode()}\nsecond line", retry=False)
    queue.lease(60, worker="pod-a")  # "three" again: a released item goes back to the head
    return queue


def test_stats_shows_counts_counters_and_who_holds_the_leases(redis_url: str, busy: Queue) -> None:
    result = invoke(redis_url, "stats", busy.name)
    assert result.returncode == 0
    text = result.stdout
    assert f"queue {busy.name}: open, 3 outstanding, 2 dead letters (rediswq dead list {busy.name})" in text
    for name, value in [("pending", 2), ("leased", 1), ("dead", 2), ("enqueued", 5), ("dead_lettered", 2)]:
        assert any(line.split() == [name, str(value)] for line in text.splitlines()), (name, text)
    holder = next(line for line in text.splitlines() if "pod-a" in line)
    assert holder.split()[:3] == ["3", "1", "pod-a"]


def test_stats_json_has_every_count_and_counter(redis_url: str, busy: Queue) -> None:
    result = invoke(redis_url, "stats", busy.name, "--json", "--holders")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    expected = {"pending": 2, "leased": 1, "delayed": 0, "dead": 2, "closed": False, "enqueued": 5}
    expected |= {"completed": 0, "failed": 2, "released": 1, "drained": False, "outstanding": 3}
    assert {k: data[k] for k in expected} == expected
    [holder] = data["holders"]
    assert (holder["id"], holder["worker"]) == ("3", "pod-a")
    assert 0 < holder["expires_in_secs"] <= 60


def test_stats_watch_prints_one_json_line_per_refresh_with_rate_and_eta(redis_url: str, busy: Queue) -> None:
    result = invoke(
        redis_url, "stats", busy.name, "--watch", "--json", "--interval", "0.1", "--iterations", "3"
    )
    assert result.returncode == 0
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3
    assert lines[0]["rate_per_sec"] is None  # one sample is no rate yet
    assert lines[2]["rate_per_sec"] == 0.0 and lines[2]["drain_eta_secs"] is None  # nothing settles


def test_stats_watch_to_a_pipe_appends_one_line_per_refresh(redis_url: str, queue: Queue) -> None:
    queue.put(b"x")
    queue.complete(queue.lease(30) or pytest.fail("no lease"))
    result = invoke(redis_url, "stats", queue.name, "--watch", "-n", "0.1", "--iterations", "2")
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all(f"queue={queue.name} pending=0" in line for line in lines)
    assert lines[1].endswith("rate=0.0/s eta=0s")  # an empty queue is drained


def test_dead_list_shows_id_attempts_error_and_payload(redis_url: str, busy: Queue) -> None:
    text = invoke(redis_url, "dead", "list", busy.name).stdout.splitlines()
    assert text[0].split()[:2] == ["ID", "ATTEMPTS"]
    rows = sorted(line.split() for line in text[1:])
    assert [(r[0], r[1], r[-1]) for r in rows] == [("1", "1", "one"), ("2", "1", "two")]
    assert "boom on one second line" in " ".join(text)  # the error, on one line


def test_dead_list_json_gives_payloads_as_text_and_base64(redis_url: str, busy: Queue) -> None:
    letters = json.loads(invoke(redis_url, "dead", "list", busy.name, "--json").stdout)
    assert sorted((d["id"], d["payload"], d["payload_base64"]) for d in letters) == [
        ("1", "one", base64.b64encode(b"one").decode()),
        ("2", "two", base64.b64encode(b"two").decode()),
    ]
    assert all(d["error"].startswith("boom on") and d["attempts"] == 1 for d in letters)


def test_dead_requeue_by_id_then_all(redis_url: str, busy: Queue) -> None:
    assert invoke(redis_url, "dead", "requeue", busy.name, "1", "nope").stdout == (
        "requeued 1 dead letters of 2 ids given\n"
    )
    assert busy.stats().dead == 1
    assert invoke(redis_url, "dead", "requeue", busy.name).stdout == "requeued 1 dead letters\n"
    s = busy.stats()
    assert (s.dead, s.pending) == (0, 4)


def test_dead_purge_of_all_needs_yes(redis_url: str, busy: Queue) -> None:
    refused = invoke(redis_url, "dead", "purge", busy.name)
    assert refused.returncode == 2
    assert (
        refused.stderr
        == f"Error: refusing to delete all 2 dead letters of queue {busy.name!r} without --yes\n"
    )
    assert (
        invoke(redis_url, "dead", "purge", busy.name, "2").stdout == "deleted 1 dead letters of 1 ids given\n"
    )
    assert invoke(redis_url, "dead", "purge", busy.name, "--yes").stdout == "deleted 1 dead letters\n"
    s = busy.stats()
    assert (s.dead, s.dropped) == (0, 2)


def test_peek_shows_the_next_items_and_binary_as_a_bytes_literal(redis_url: str, busy: Queue) -> None:
    lines = invoke(redis_url, "peek", busy.name).stdout.splitlines()
    assert [line.split() for line in lines] == [
        ["ID", "ATTEMPTS", "PAYLOAD"],
        ["4", "0", "four"],
        ["5", "0", r"b'\x00\xffbin'"],
    ]
    items = json.loads(invoke(redis_url, "peek", busy.name, "--count", "1", "--json").stdout)
    assert items == [{"id": "4", "attempts": 0, "payload": "four", "payload_base64": "Zm91cg=="}]
    binary = json.loads(invoke(redis_url, "peek", busy.name, "--json").stdout)[1]
    assert (binary["payload"], base64.b64decode(binary["payload_base64"])) == (None, b"\x00\xffbin")


def test_close_then_reopen(redis_url: str, queue: Queue) -> None:
    queue.put(b"first")
    assert invoke(redis_url, "close", queue.name).stdout == f"closed queue {queue.name!r}\n"
    assert queue.stats().closed
    assert invoke(redis_url, "enqueue", queue.name, "x").returncode == 1
    assert invoke(redis_url, "reopen", queue.name).returncode == 0
    assert invoke(redis_url, "enqueue", queue.name, "x").returncode == 0


def test_purge_refuses_without_yes_and_deletes_with_it(redis_url: str, busy: Queue) -> None:
    refused = invoke(redis_url, "purge", busy.name)
    assert refused.returncode == 2
    assert "without --yes" in refused.stderr and "2 pending, 1 leased, 0 delayed, 2 dead" in refused.stderr
    assert busy.stats().enqueued == 5
    assert invoke(redis_url, "purge", busy.name, "--yes").returncode == 0
    assert busy.stats().enqueued == 0 and busy.stats().outstanding == 0


def test_every_command_has_help_with_examples() -> None:
    commands = [["enqueue"], ["stats"], ["dead"], ["dead", "list"], ["dead", "requeue"], ["dead", "purge"]]
    commands += [["peek"], ["close"], ["reopen"], ["purge"]]
    for command in commands:
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Usage: main " + " ".join(command) in result.stdout, command
        assert "Example" in result.stdout and f"rediswq {' '.join(command)} " in result.stdout, command


# -- errors, as real processes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD)
    yield server
    server.stop()


def test_connection_errors_give_one_line_the_documented_code_and_no_password(
    password_server: RedisServer,
) -> None:
    wrong = f"redis://:not-{PASSWORD}@127.0.0.1:{password_server.port}/0"
    refused = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    cases = [
        # (url, command, exit code, what the line says)
        (f"http://:{PASSWORD}@127.0.0.1/0", ["stats", "q"], 2, "bad Redis URL"),
        (f"redis://:{PASSWORD}@127.0.0.1:port/0", ["enqueue", "q", "a"], 2, "bad Redis URL"),
        (wrong, ["enqueue", "q", "a"], 2, "refused the credentials"),
        (wrong, ["dead", "list", "q"], 2, "refused the credentials"),
        (f"redis://127.0.0.1:{password_server.port}/0", ["peek", "q"], 2, "Redis needs a password"),
        (refused, ["enqueue", "q", "a"], 1, "cannot reach Redis"),
        (refused, ["stats", "q"], 1, "cannot reach Redis"),
    ]
    # Side by side, as each may take a second or two.
    procs = [spawn(url, *command) for url, command, _, _ in cases]
    for (url, command, code, says), proc in zip(cases, procs, strict=True):
        result = finish(proc)
        assert result.returncode == code, (command, url, result)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], (
            command,
            result.stderr,
        )
        assert PASSWORD not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr


def test_the_right_password_works(password_server: RedisServer) -> None:
    result = finish(spawn(password_server.url, "enqueue", "pw-queue", "a"))
    assert result.returncode == 0 and result.stdout == "enqueued 1, skipped 0 duplicates\n"
    assert PASSWORD not in result.stdout + result.stderr
    Queue(password_server.client(), "pw-queue").purge()


def test_a_password_in_the_environment_is_not_shown_by_help() -> None:
    env = {**os.environ, "REDISWQ_URL": f"redis://:{PASSWORD}@127.0.0.1:1/0"}
    result = subprocess.run(
        [*COMMAND, "stats", "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    top = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and top.returncode == 0
    assert PASSWORD not in result.stdout + result.stderr + top.stdout + top.stderr


def test_stats_watch_measures_the_rate_items_settle_at_and_the_time_to_drain(
    redis_url: str, queue: Queue
) -> None:
    queue.put_many([b"%d" % i for i in range(1000)])
    stop = threading.Event()

    def drain_slowly() -> None:
        while not stop.is_set() and (lease := queue.lease(60, timeout=0)) is not None:
            queue.complete(lease)
            time.sleep(0.01)

    worker = threading.Thread(target=drain_slowly)
    worker.start()
    try:
        result = invoke(redis_url, "stats", queue.name, "--watch", "--json", "-n", "0.2", "--iterations", "4")
    finally:
        stop.set()
        worker.join()
    last = json.loads(result.stdout.splitlines()[-1])
    assert last["rate_per_sec"] > 0
    assert last["drain_eta_secs"] == pytest.approx(last["outstanding"] / last["rate_per_sec"])


def test_the_watch_view_on_a_terminal_says_rate_and_time_to_drain() -> None:
    counts = dict.fromkeys(("pending", "leased", "delayed", "dead", "enqueued", "completed"), 0)
    counters = dict.fromkeys(("failed", "retried", "expired", "dead_lettered", "released", "dropped"), 0)
    s = Stats(**{**counts, **counters, "pending": 300, "enqueued": 400, "completed": 100}, closed=True)
    lines = text_view("jobs", s, None, 0, rate=10.0, interval=2.0)
    assert lines[:2] == [
        "queue jobs: closed, 300 outstanding",
        "settling 10.0/s, drains in ~30.0s  (every 2s; Ctrl-C stops)",
    ]
    assert "  completed      100" in lines


def test_a_refused_connection_on_loopback_is_reported_at_once_naming_where_the_url_came_from() -> None:
    """Nothing listens there: the retries (over 3 s of backoff) would only hide a wrong port."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = {k: v for k, v in os.environ.items() if k not in ("REDISWQ_URL", "REDIS_URL")}
    for args, env_extra, origin in (
        (["stats", "q", "--url", url], {}, "(URL from --url)"),
        (["peek", "q"], {"REDIS_URL": url}, "(URL from $REDIS_URL)"),
        (["enqueue", "q", "a"], {"REDISWQ_URL": url, "REDIS_URL": "redis://x"}, "(URL from $REDISWQ_URL)"),
    ):
        began = time.monotonic()
        result = subprocess.run(
            [*COMMAND, *args], capture_output=True, text=True, env={**env, **env_extra}, timeout=60
        )
        took = time.monotonic() - began
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith(f"Error: cannot reach Redis at {url}: "), result.stderr
        assert origin in result.stderr, result.stderr
        assert took < 2.5, f"{args} took {took:.1f}s: retried"


def test_the_default_url_is_named_as_the_default_nobody_chose() -> None:
    from rediswq_kit import DEFAULT_URL, Settings

    assert Settings(DEFAULT_URL).url_origin() == "the default: no --url, $REDISWQ_URL or $REDIS_URL given"
    assert Settings(DEFAULT_URL, url_from="$REDIS_URL").url_origin() == "from $REDIS_URL"


def test_global_options_may_follow_the_subcommand_but_never_a_double_dash() -> None:
    command = ["job", "submit", "q", "--image", "i", "-p", "1", "--dry-run", "--allow-eviction"]
    result = CliRunner().invoke(main, [*command, "--url", "redis://h:1/0", "--", "run", "--url", "x"])
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-4:] == ["--", "run", "--url", "x"]
    missing = CliRunner().invoke(main, ["stats", "q", "--url"])
    assert missing.exit_code == 2 and "Option '--url' requires an argument." in missing.output


# -- a typo'd name: which queue was meant, and nothing made by mistake (the installed command) ----------

# The commands that act on a queue: on a name nothing was ever added to, each exits 1 and makes nothing.
ACTING = [
    ["close"],
    ["reopen"],
    ["dead", "requeue"],
    ["dead", "requeue", "--", "id-1"],
    ["dead", "purge", "--yes"],
    ["dead", "purge"],
    ["purge", "--yes"],
    ["purge"],
]


def keys_of(client: redis.Redis, name: str) -> list[bytes]:
    return [key for key in client.keys("*") if name.encode() in key]


@pytest.mark.parametrize("command", ACTING, ids=" ".join)
def test_an_admin_command_on_a_typod_name_exits_1_names_the_close_queue_and_makes_nothing(
    client: redis.Redis, redis_url: str, queue: Queue, command: list[str]
) -> None:
    queue.put(b"x")
    typo = queue.name + "2"
    dashdash = command.index("--") if "--" in command else len(command)
    result = finish(spawn(redis_url, *command[:dashdash], typo, *command[dashdash + 1 :]))
    assert result.returncode == 1, result
    line = f"Error: no such queue '{typo}' (nothing was ever added to it); did you mean '{queue.name}'"
    assert result.stderr.startswith(line), result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    assert keys_of(client, typo) == []
    assert queue.stats().pending == 1


def test_close_create_makes_a_closed_empty_queue_that_work_reports_drained(
    client: redis.Redis, redis_url: str, queue_name: str
) -> None:
    made = finish(spawn(redis_url, "close", "--create", queue_name))
    assert (made.returncode, made.stdout) == (0, f"closed queue '{queue_name}' (made it: it did not exist)\n")
    stats = Queue(client, queue_name).stats()
    assert stats.exists and stats.closed and stats.drained and stats.enqueued == 0
    again = finish(spawn(redis_url, "close", "--create", queue_name))
    assert (again.returncode, again.stdout) == (0, f"closed queue '{queue_name}'\n")
    worked = finish(spawn(redis_url, "work", queue_name, "--", "true"))
    assert worked.returncode == 0, worked
    assert f"queue '{queue_name}' drained" in worked.stderr
    Queue(client, queue_name).purge()
