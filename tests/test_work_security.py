"""`rediswq work` as an attacker's item would see it: no credentials, no stray imports, no shell code."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer

from rediswq import Queue
from rediswq_worker.runners import shell_script_with_braces

REDISWQ = str(Path(sys.executable).with_name("rediswq"))
PASSWORD = "item-must-not-see-Pw-5521"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(password=PASSWORD)
    yield s
    s.stop()


def _env(server: RedisServer, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS"))}
    return {
        **base,
        "REDISWQ_URL": server.url,
        "REDIS_PASSWORD": PASSWORD,
        "REDISCLI_AUTH": PASSWORD,
        "MY_OWN_COPY": f"pw={PASSWORD}",
        "HARMLESS": "kept",
        **extra,
    }


def _work(
    server: RedisServer, queue: str, cwd: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    Queue(server.client(), queue).put(b"item-1")
    argv = [REDISWQ, "work", queue, "--retry-backoff-secs", "0.05", "--max-attempts", "1", *args]
    return subprocess.run(argv, env=_env(server, **env), cwd=cwd, capture_output=True, text=True, timeout=30)


def test_an_items_command_sees_no_redis_credentials(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    out = tmp_path / "env.txt"
    done = _work(server, queue_name, tmp_path, "--", "sh", "-c", f'env > "{out}"')
    assert done.returncode == 0, done.stderr
    seen = out.read_text()
    assert PASSWORD not in seen
    for name in ("REDISWQ_URL", "REDIS_PASSWORD", "REDISCLI_AUTH", "MY_OWN_COPY"):
        assert f"\n{name}=" not in f"\n{seen}"
    assert "HARMLESS=kept" in seen and "REDISWQ_QUEUE=" in seen


def test_pass_env_hands_a_chosen_variable_on(server: RedisServer, queue_name: str, tmp_path: Path) -> None:
    out = tmp_path / "env.txt"
    done = _work(
        server, queue_name, tmp_path, "--pass-env", "REDIS_PASSWORD", "--", "sh", "-c", f'env > "{out}"'
    )
    assert done.returncode == 0, done.stderr
    seen = out.read_text()
    assert f"REDIS_PASSWORD={PASSWORD}" in seen
    assert "REDISWQ_URL=" not in seen


def test_a_handler_sees_no_redis_credentials_in_os_environ(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    (tmp_path / "peek_env.py").write_text(
        textwrap.dedent(
            """
            import os
            def handle(lease):
                with open("env.txt", "w") as f:
                    f.write(repr(dict(os.environ)))
            """
        )
    )
    done = _work(server, queue_name, tmp_path, "--handler", "peek_env:handle")
    assert done.returncode == 0, done.stderr
    seen = (tmp_path / "env.txt").read_text()
    assert PASSWORD not in seen and "REDISWQ_URL" not in seen and "HARMLESS" in seen


def test_a_module_in_the_working_directory_does_not_shadow_the_standard_library(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    (tmp_path / "statistics.py").write_text("open('pwned-statistics', 'w').close()\nmean = None\n")
    (tmp_path / "h.py").write_text(
        "def handle(lease):\n    import statistics\n    assert statistics.mean([1, 3]) == 2\n"
    )
    done = _work(server, queue_name, tmp_path, "--handler", "h:handle")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "pwned-statistics").exists()


def test_a_handler_that_changes_directory_does_not_import_from_there(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "fractions.py").write_text("open('pwned-fractions', 'w').close()\n")
    (tmp_path / "h.py").write_text(
        "import os\n"
        "def handle(lease):\n"
        "    os.chdir('evil')\n"
        "    import fractions\n"
        "    assert fractions.Fraction(1, 2) * 2 == 1\n"
    )
    done = _work(server, queue_name, tmp_path, "--handler", "h:handle")
    assert done.returncode == 0, done.stderr
    assert not (evil / "pwned-fractions").exists()


def test_a_sibling_module_imported_by_the_handler_module_is_still_found(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    (tmp_path / "helper_mod.py").write_text("VALUE = 42\n")
    (tmp_path / "h.py").write_text(
        "import helper_mod\ndef handle(lease):\n    assert helper_mod.VALUE == 42\n"
    )
    done = _work(server, queue_name, tmp_path, "--handler", "h:handle")
    assert done.returncode == 0, done.stderr


def test_work_warns_once_when_a_shell_script_string_holds_the_payload(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    done = _work(server, queue_name, tmp_path, "--", "sh", "-c", "echo {}")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("holds {}") == 1
    safe = _work(server, queue_name, tmp_path, "--", "sh", "-c", 'echo "$1"', "_", "{}")
    assert safe.returncode == 0 and "holds {}" not in safe.stderr


@pytest.mark.parametrize(
    ("argv", "unsafe"),
    [
        (["sh", "-c", "convert {} out"], True),
        (["/bin/bash", "-ec", "x {}"], True),
        (["env", "sh", "-c", "a {}"], True),
        (["sh", "-c", 'convert "$1"', "_", "{}"], False),
        (["convert", "{}"], False),
        (["sh", "script.sh", "{}"], False),
    ],
)
def test_shell_scripts_with_braces_are_recognised(argv: list[str], unsafe: bool) -> None:
    assert shell_script_with_braces(argv) is unsafe


EVIL_ID = "id\n2026 INFO forged line\x1b[2J"


def test_peek_dead_list_and_text_logs_escape_control_characters(
    redis_url: str, client: object, queue_name: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from rediswq_cli.main import main

    q = Queue.from_url(redis_url, queue_name, max_attempts=1)
    q.put(b"payload\x1b[31m", id=EVIL_ID)
    peek = CliRunner().invoke(main, ["--url", redis_url, "peek", queue_name])
    assert peek.exit_code == 0, peek.output
    assert "\x1b" not in peek.output and "forged" in peek.output
    assert len(peek.output.strip().splitlines()) == 2  # the header and one row
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS"))}
    argv = [
        REDISWQ,
        "--url",
        redis_url,
        "work",
        queue_name,
        "-v",
        "--max-attempts",
        "1",
        "--",
        "sh",
        "-c",
        "exit 3",
    ]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 4, done.stderr  # drained, with dead letters
    assert "\x1b" not in done.stderr
    assert not any(line.startswith("2026 INFO forged") for line in done.stderr.splitlines())
    assert "\\n2026 INFO forged line\\x1b[2J" in done.stderr
    dead = CliRunner().invoke(main, ["--url", redis_url, "dead", "list", queue_name])
    assert dead.exit_code == 0, dead.output
    assert "\x1b" not in dead.output and len(dead.output.strip().splitlines()) == 2


def test_a_variable_holding_the_user_name_only_is_kept(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    out = tmp_path / "env.txt"
    Queue(server.client(), queue_name).put(b"x")
    env = _env(
        server, REDISWQ_URL=f"redis://default:{PASSWORD}@127.0.0.1:{server.port}/0", POD_NAME="default-0"
    )
    argv = [REDISWQ, "work", queue_name, "--", "sh", "-c", f'env > "{out}"']
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "POD_NAME=default-0" in out.read_text() and PASSWORD not in out.read_text()
