"""`rediswq ls` and the shell completion of queue names, against a real Redis.

The numbers `ls` shows are `rediswq.survey`'s (tests/test_survey.py checks those against `stats()`);
here: the table, the glob, the sort, --json's fields, the exit codes, --watch as a real process
stopped by SIGINT, and completion run as the installed command (COMP_WORDS), against a live Redis
and a dead port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner
from redis_server import free_port
from test_survey import make_queues_in_every_state

from rediswq import Queue
from rediswq_cli.main import main

REDISWQ = shutil.which("rediswq", path=str(Path(sys.executable).parent)) or "rediswq"


@pytest.fixture
def prefix() -> str:
    return f"ls{uuid.uuid4().hex[:8]}-"


def run(redis_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["ls", *args], env={"REDISWQ_URL": redis_url})
    return result.exit_code, result.stdout, result.stderr


def test_ls_prints_one_line_per_queue_with_its_counts(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    names = make_queues_in_every_state(client, prefix)
    code, out, err = run(redis_url, prefix + "*")
    assert code == 0 and err == ""
    header, *lines = out.splitlines()
    assert header.split() == [
        "QUEUE",
        "STATE",
        "PENDING",
        "LEASED",
        "DELAYED",
        "DONE",
        "DEAD",
        "RATE",
        "DRAINS",
        "IN",
    ]
    assert [line.split()[0] for line in lines] == names
    for line in lines:
        name, state, pending, leased, delayed, done, dead, *_ = line.split()
        s = Queue(client, name).stats()
        assert state == ("closed" if s.closed else "open")
        assert [int(pending), int(leased), int(delayed), int(done), int(dead)] == [
            s.pending, s.leased, s.delayed, s.completed, s.dead
        ]  # fmt: skip


def test_ls_filters_by_glob_and_sorts_by_pending_or_dead(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    for name, items in (("a", 1), ("b", 5), ("c", 3)):
        Queue(client, prefix + name).put_many([b"x"] * items)
    Queue(client, prefix + "other-z").put(b"x")
    q = Queue(client, prefix + "a", max_attempts=1)
    q.fail(q.lease(30) or pytest.fail("nothing leased"), "boom")

    def names(*args: str) -> list[str]:
        code, out, _ = run(redis_url, *args)
        assert code == 0, out
        return [line.split()[0] for line in out.splitlines()[1:]]

    assert names(prefix + "[a-c]") == [prefix + "a", prefix + "b", prefix + "c"]
    assert names(prefix + "[a-c]", "--sort", "pending") == [prefix + "b", prefix + "c", prefix + "a"]
    assert names(prefix + "[a-c]", "--sort", "dead")[0] == prefix + "a"


def test_ls_json_is_one_list_of_objects_with_stable_fields(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    Queue(client, prefix + "a").put_many([b"x", b"y"])
    Queue(client, prefix + "b").close()
    code, out, _ = run(redis_url, prefix + "*", "--json")
    assert code == 0
    a, b = json.loads(out)
    assert list(a) == list(b)
    assert {"name", "closed", "pending", "leased", "delayed", "completed", "failed", "dead", "error"} <= set(
        a
    )
    assert {"read_at_ms", "rate_per_sec", "drain_eta_secs", "drained", "outstanding"} <= set(a)
    assert (a["name"], a["pending"], a["closed"], a["error"]) == (prefix + "a", 2, False, None)
    assert (b["name"], b["pending"], b["closed"]) == (prefix + "b", 0, True)


def test_ls_exits_1_naming_a_queue_it_cannot_read(client: redis.Redis, redis_url: str, prefix: str) -> None:
    Queue(client, prefix + "bad").put(b"x")
    client.delete(f"rediswq:{{{prefix}bad}}:pending")
    client.set(f"rediswq:{{{prefix}bad}}:pending", "x")
    code, out, err = run(redis_url, prefix + "*")
    assert code == 1
    assert out.splitlines()[1].split()[:2] == [prefix + "bad", "error"]
    assert (
        err
        == f"rediswq ls: queue {prefix}bad: key rediswq:{{{prefix}bad}}:pending holds a string, not a list\n"
    )
    code, out, _ = run(redis_url, prefix + "*", "--json")
    assert code == 1
    (bad,) = json.loads(out)
    assert bad["pending"] is None and "holds a string" in bad["error"]


def test_ls_says_when_nothing_matches_and_when_the_list_is_partial(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    code, out, _ = run(redis_url, prefix + "*")
    assert (code, out) == (0, f"no queues match '{prefix}*'\n")
    for i in range(3):
        Queue(client, f"{prefix}{i}").put(b"x")
    code, out, err = run(redis_url, prefix + "*", "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3
    assert "the list may be partial" in err


def test_ls_on_an_unreachable_redis_is_one_line_and_exit_1() -> None:
    code, out, err = run(f"redis://127.0.0.1:{free_port()}/0")
    assert code == 1
    (line,) = (out + err).strip().splitlines()
    assert line.startswith("Error: ")


def test_ls_watch_redraws_with_rates_until_sigint_then_exits_0(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    q = Queue(client, prefix + "a")
    q.put_many([b"x"] * 100)
    watcher = subprocess.Popen(
        [REDISWQ, "ls", prefix + "*", "--watch", "0.2", "--json"],
        env={**os.environ, "REDISWQ_URL": redis_url},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    frames = [json.loads(watcher.stdout.readline())]
    for lease in q.lease_many(10, 30):
        q.complete(lease)
    deadline = time.monotonic() + 30
    while frames[-1][0]["completed"] < 10 and time.monotonic() < deadline:
        frames.append(json.loads(watcher.stdout.readline()))
    watcher.send_signal(signal.SIGINT)
    assert watcher.wait(timeout=30) == 0
    assert frames[0][0]["rate_per_sec"] is None  # one reading: no rate yet
    assert frames[-1][0]["completed"] == 10 and frames[-1][0]["rate_per_sec"] > 0
    assert frames[-1][0]["drain_eta_secs"] > 0


def test_ls_watch_stops_after_its_iterations(redis_url: str, client: redis.Redis, prefix: str) -> None:
    Queue(client, prefix + "a").put(b"x")
    code, out, _ = run(redis_url, prefix + "*", "--watch", "0.1", "--iterations", "2")
    assert code == 0
    assert out.count("QUEUE") == 2


def complete(env: dict[str, str], words: str) -> tuple[list[str], float]:
    """The installed command's bash completions of the last of `words`, and the seconds it took."""
    env = {**{k: v for k, v in os.environ.items() if "URL" not in k}, **env}
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env.update(_REDISWQ_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword))
    began = time.monotonic()
    done = subprocess.run([REDISWQ], env=env, capture_output=True, text=True, timeout=60, check=True)
    return [line.split(",", 1)[1] for line in done.stdout.splitlines() if line], time.monotonic() - began


def test_queue_arguments_complete_the_queue_names_of_the_redis_at_hand(
    client: redis.Redis, redis_url: str, prefix: str
) -> None:
    for name in ("jobs-a", "jobs-b", "mail"):
        Queue(client, prefix + name).put(b"x")
    env = {"REDISWQ_URL": redis_url}
    for command in ("stats", "work", "peek", "close", "reopen", "purge", "dead list", "ls", "enqueue"):
        found, _ = complete(env, f"rediswq {command} {prefix}jo")
        assert found == [prefix + "jobs-a", prefix + "jobs-b"], command
    found, _ = complete({}, f"rediswq --url {redis_url} stats {prefix}")
    assert found == [prefix + "jobs-a", prefix + "jobs-b", prefix + "mail"]


def test_completion_without_a_url_or_against_a_dead_redis_is_empty_and_quick() -> None:
    without, baseline = complete({}, "rediswq stats j")
    assert without == []
    for url in (f"redis://127.0.0.1:{free_port()}/0", "redis://10.255.255.1:6379/0"):  # refused; no answer
        found, took = complete({"REDISWQ_URL": url}, "rediswq stats j")
        assert found == []
        assert took < baseline + 3.0, (url, took, baseline)  # the walk's budget is 0.8 s
