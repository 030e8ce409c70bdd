"""Dead letters are loud: the summary line says how many, and `work` exits 4 unless --allow-dead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import rediswq_kit as clikit
from rediswq import Queue
from rediswq_cli.main import main

REDISWQ = str(Path(sys.executable).with_name("rediswq"))
# Fails the item whose payload is "bad", completes the others.
COMMAND = ["--", "sh", "-c", 'test "$1" != bad', "sh", "{}"]


@pytest.fixture
def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL", "POD_NAME"))}


def work(redis_url: str, queue: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [REDISWQ, "--url", redis_url, "work", queue, "--max-attempts", "1", *args, *COMMAND]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)


def summary_line(result: subprocess.CompletedProcess[str]) -> str:
    return next(line for line in reversed(result.stderr.splitlines()) if "items/s" in line)


def test_a_queue_drained_with_dead_letters_exits_4_by_default(
    redis_url: str, queue: Queue, env: dict[str, str]
) -> None:
    queue.put_many(["ok1", "bad", "ok2"])
    result = work(redis_url, queue.name, env)
    assert result.returncode == clikit.EXIT_DEAD == 4, result.stderr
    line = summary_line(result)
    assert "drained with 1 dead letters: 2 done, 1 failed, 1 dead-lettered" in line
    assert f"the queue holds 1 dead letters (rediswq dead list {queue.name})" in line
    stats = queue.stats()
    assert (stats.drained, stats.completed, stats.dead) == (True, 2, 1)


def test_it_is_the_queue_that_counts_a_worker_that_dead_lettered_nothing_exits_4_too(
    redis_url: str, queue: Queue, env: dict[str, str]
) -> None:
    queue.put_many(["bad"])
    assert work(redis_url, queue.name, env).returncode == 4
    queue.put_many(["ok"])
    result = work(redis_url, queue.name, {**env, "REDISWQ_FAIL_ON_DEAD": "true"})
    assert result.returncode == 4, result.stderr
    assert "1 done, 0 failed, 0 dead-lettered" in summary_line(result)
    # Dealt with (purged, or requeued and done): the next run exits 0.
    assert queue.purge_dead() == 1
    result = work(redis_url, queue.name, env, "--fail-on-dead")
    assert result.returncode == 0, result.stderr
    assert "dead letters" not in summary_line(result)


@pytest.mark.parametrize(
    ("option", "variable"), [("--allow-dead", None), (None, "false"), ("--allow-dead", "true")]
)
def test_allow_dead_exits_0_with_dead_letters_and_still_says_so(
    redis_url: str, queue: Queue, env: dict[str, str], option: str | None, variable: str | None
) -> None:
    queue.put_many(["bad", "ok"])
    if variable is not None:
        env = {**env, "REDISWQ_FAIL_ON_DEAD": variable}  # the option wins over the variable
    result = work(redis_url, queue.name, env, *filter(None, [option]))
    assert result.returncode == 0, result.stderr
    line = summary_line(result)
    assert "drained: 1 done, 1 failed, 1 dead-lettered" in line
    assert "the queue holds 1 dead letters" in line


def test_exit_code_4_is_documented_where_the_exit_codes_are() -> None:
    help_text = CliRunner().invoke(main, ["work", "--help"]).output
    assert "4  the queue drained, but it holds dead letters" in help_text
    assert "--fail-on-dead / --allow-dead" in help_text and "REDISWQ_FAIL_ON_DEAD" in help_text
    assert "4  `work`: the queue drained, but its dead letters are not empty" in (clikit.__doc__ or "")
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "| `4` | `work`: the queue drained, but it holds dead letters" in readme
