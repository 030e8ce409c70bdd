"""How a password reaches `rediswq` and what is said about it: --url-file (read once, errors in one line
that never quote the file), a warning when a password sits on the command line, a --url that is
not a URL never echoed, and `job submit --dry-run` hiding secret-looking --env values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from redis_server import RedisServer

from rediswq import Queue
from rediswq_cli.kube.redact import shown_value
from rediswq_cli.main import main

PASSWORD = "Zq1K7q9X-in-a-file"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(password=PASSWORD)
    yield s
    s.stop()


def rediswq(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """The command with none of the caller's Redis variables (the test's own environment may hold some)."""
    cleared: dict[str, str | None] = {
        name: None for name in ("REDISWQ_URL", "REDIS_URL", "REDISWQ_URL_FILE", "REDISWQ_SENTINEL_PASSWORD")
    }
    return CliRunner().invoke(main, list(args), env={**cleared, **(env or {})})


def one_error_line(result: Result) -> str:
    [line] = [line for line in result.output.strip().splitlines() if not line.startswith("Warning: ")]
    assert line.startswith("Error: "), line
    return line


# -- --url-file --------------------------------------------------------------------------------------


def test_the_url_file_is_read_with_its_trailing_newline_stripped(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    Queue(server.client(), queue_name).put(b"one")
    url_file = tmp_path / "url"
    url_file.write_text(server.url + "\n")
    result = rediswq("--url-file", str(url_file), "stats", queue_name)
    assert result.exit_code == 0, result.output
    assert "1 outstanding" in result.output, result.output
    assert PASSWORD not in result.output
    from_env = rediswq("stats", queue_name, env={"REDISWQ_URL_FILE": str(url_file)})
    assert from_env.exit_code == 0, from_env.output


def test_the_url_file_wins_over_redis_url_but_not_silently_over_rediswq_url(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    Queue(server.client(), queue_name).put(b"one")
    url_file = tmp_path / "url"
    url_file.write_text(server.url)
    generic = rediswq(
        "--url-file", str(url_file), "stats", queue_name, env={"REDIS_URL": "redis://nowhere:1/0"}
    )
    assert generic.exit_code == 0, generic.output
    both = rediswq("--url-file", str(url_file), "stats", queue_name, env={"REDISWQ_URL": "redis://other:1/0"})
    assert both.exit_code == 2
    assert "$REDISWQ_URL or with --url-file, not both" in one_error_line(both)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "no such file"),
        ("", "the file is empty"),
        ("  \n\n", "the file is empty"),
        (f"redis://:{PASSWORD}@h:6379/0\nredis://:{PASSWORD}@h:6379/1\n", "more than one line"),
        (b"\xff\xfe" + PASSWORD.encode(), "not UTF-8 text"),
        ("directory", "cannot read it: Is a directory"),
    ],
)
def test_a_bad_url_file_is_one_line_exit_2_naming_the_file_never_its_content(
    tmp_path: Path, content: str | bytes | None, says: str
) -> None:
    path = tmp_path / "url"
    if content == "directory":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    for args, env in (
        (["--url-file", str(path)], {}),
        ([], {"REDISWQ_URL_FILE": str(path)}),
    ):
        result = rediswq(*args, "stats", "q", env=env)
        assert result.exit_code == 2, result.output
        line = one_error_line(result)
        assert says in line and str(path) in line, line
        assert PASSWORD not in result.output


# -- a password on the command line ------------------------------------------------------------------


def test_a_password_in_url_on_the_command_line_is_warned_of_in_one_line_without_it(
    server: RedisServer, queue_name: str
) -> None:
    Queue(server.client(), queue_name).put(b"one")
    result = rediswq("--url", server.url, "stats", queue_name)
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert "--url" in warning and "ps" in warning and "--url-file" in warning
    assert PASSWORD not in result.output
    quiet = rediswq("stats", queue_name, env={"REDISWQ_URL": server.url})
    assert quiet.exit_code == 0 and "Warning" not in quiet.stderr, quiet.output
    no_password = rediswq("--url", f"redis://127.0.0.1:{server.port}/0", "stats", queue_name)
    assert "Warning" not in no_password.stderr


def test_a_sentinel_password_on_the_command_line_is_warned_of_without_it() -> None:
    result = rediswq("--url", "redis+sentinel://127.0.0.1:1/m", "--sentinel-password", PASSWORD, "stats", "q")
    [warning] = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert "--sentinel-password" in warning and "$REDISWQ_SENTINEL_PASSWORD" in warning
    assert PASSWORD not in result.output


# -- not a URL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["Zq1K7q9X", ":Zq1K7q9X", "Zq1K7q9X@redis", "redis:Zq1K7q9X"])
@pytest.mark.parametrize("command", [["stats", "q6"], ["work", "q6", "--", "true"], ["enqueue", "q6", "a"]])
def test_a_url_with_no_scheme_is_never_echoed_and_the_expected_shape_is_said(
    given: str, command: list[str]
) -> None:
    result = rediswq("--url", given, *command)
    assert result.exit_code == 2, result.output
    assert "Zq1K7q9X" not in result.output
    line = one_error_line(result)
    assert line.startswith("Error: bad Redis URL: ") and "expected redis://" in line, line


def test_a_sentinel_password_with_a_url_of_no_scheme_does_not_echo_the_url() -> None:
    result = rediswq("--url", "Zq1K7q9X", "stats", "q", env={"REDISWQ_SENTINEL_PASSWORD": "other-secret"})
    assert result.exit_code == 2 and "Zq1K7q9X" not in result.output and "other-secret" not in result.output


# -- job submit --dry-run ----------------------------------------------------------------------------

SUBMIT = ["job", "submit", "q", "--image", "i", "-p", "1", "--dry-run"]


def worker_env(result: Result) -> dict[str, Any]:
    job = json.loads(result.stdout)
    [worker] = [c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "worker"]
    return {variable["name"]: variable.get("value") for variable in worker["env"]}


def test_submit_dry_run_hides_secret_looking_env_values_and_keeps_the_rest() -> None:
    pytest.importorskip("kubernetes", reason="job submit needs the [kube] extra")
    given = {
        "REDISWQ_URL": f"redis://:{PASSWORD}@r:6379/0",
        "CACHE_URL": "redis://:pw@r:6379/0",  # a password too short to be searched for in free text
        "STORE": f"rediss://r:6379/0?ssl_password={PASSWORD}",
        "GITHUB_TOKEN": "ghp_Zq1K7q9Xabc",
        "AWS_SECRET_ACCESS_KEY": "Zq1K7q9Xdef",
        "DB_PASSWORD": "Zq1K7q9Xghi",
        "BY_REFERENCE": "redis://worker:$(REDIS_PASSWORD)@r:6379/0",
        "API_KEY": "$(MY_API_KEY)",
        "PLAIN_URL": "redis://r:6379/0",
        "MODE": "fast",
    }
    args = [word for name, value in given.items() for word in ("-e", f"{name}={value}")]
    result = rediswq(*SUBMIT, *args, "--", "wc")
    assert result.exit_code == 0, result.output
    assert "Zq1K7q9X" not in result.output and ":pw@" not in result.output
    env = worker_env(result)
    assert env["REDISWQ_URL"] == "redis://:***@r:6379/0"
    assert env["CACHE_URL"] == "redis://:***@r:6379/0"
    assert env["STORE"] == "rediss://r:6379/0?ssl_password=***"
    assert env["GITHUB_TOKEN"] == env["AWS_SECRET_ACCESS_KEY"] == env["DB_PASSWORD"] == "***"
    # References are filled in by the kubelet from elsewhere: no secret in the manifest.
    assert env["BY_REFERENCE"] == given["BY_REFERENCE"] and env["API_KEY"] == "$(MY_API_KEY)"
    assert env["PLAIN_URL"] == "redis://r:6379/0" and env["MODE"] == "fast"


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("REDISWQ_URL", "redis://:$(REDIS_PASSWORD)@rediswq-redis:6379/0", "same"),
        ("REDISWQ_URL", "redis://:abc$(X)@h:6379/0", "redis://:***@h:6379/0"),
        ("NOTIFY", "ops@example.com", "same"),
        ("REDIS_PASSPHRASE", "x", "***"),
        ("my-auth", "x", "***"),
        ("EMPTY_TOKEN", "", "same"),
    ],
)
def test_what_a_dry_run_shows_of_one_env_value(name: str, value: str, shown: str) -> None:
    assert shown_value(name, value) == (value if shown == "same" else shown)


def test_an_env_option_with_no_name_is_refused_without_echoing_it() -> None:
    result = rediswq(*SUBMIT, "-e", PASSWORD, "--", "wc")
    assert result.exit_code == 2 and PASSWORD not in result.output, result.output
    assert "expected NAME=VALUE" in result.output
