"""A password never shows, whatever the URL's shape and whatever goes wrong: a property test.

Generated passwords (with / ? # @ : & = % + and spaces in them) go into URLs of every shape (raw
or percent-encoded userinfo, query parameters, no scheme, unknown parameters) and through every
error path: a bad URL, an unreachable Redis, refused credentials, a failed TLS handshake. Neither
the password nor any piece of it may appear in stdout, stderr, text or JSON logs, an exception's
str or repr, or a traceback with its chained causes.
"""

from __future__ import annotations

import io
import logging
import traceback
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_server import RedisServer, free_port
from test_tls import TLSRedis, pki, tls  # noqa: F401  (fixtures)

import rediswq
from rediswq._topology import describe
from rediswq_cli.main import main
from rediswq_worker import logs

# Pieces no message contains by chance (uncommon capitals), joined by the characters that break
# URL parsers. A leak of any piece of 4 or more characters is a failure.
_PIECE = st.text(alphabet="QXZJKWV", min_size=4, max_size=8)
_SEPARATOR = st.sampled_from(list("/?#@:&=%+ ;[]!$'()*,~"))
PASSWORDS = st.builds(
    lambda first, rest: first + "".join(sep + piece for sep, piece in rest),
    _PIECE,
    st.lists(st.tuples(_SEPARATOR, _PIECE), min_size=0, max_size=4),
)

SHAPES = {
    "raw userinfo": "redis://:{raw}@127.0.0.1:{port}/0",
    "user and raw password": "redis://worker:{raw}@127.0.0.1:{port}/0",
    "encoded userinfo": "redis://:{quoted}@127.0.0.1:{port}/0",
    "query password": "redis://127.0.0.1:{port}/0?password={quoted}",
    "query password raw": "redis://127.0.0.1:{port}/0?password={raw}",
    "no scheme": ":{raw}@127.0.0.1:{port}",
    "unknown parameter": "redis://:{quoted}@127.0.0.1:{port}/0?cluster=true",
    "bad number": "redis://:{quoted}@127.0.0.1:{port}/0?db=x{quoted}",
    "secret parameter of ours": "redis://127.0.0.1:{port}/0?token={quoted}",
    "bad port": "redis://:{quoted}@127.0.0.1:{quoted}/0",
}
TLS_SHAPES = {
    "tls encoded": "rediss://:{quoted}@localhost:{port}/0",
    "tls query": "rediss://localhost:{port}/0?password={quoted}&ssl_password={quoted}",
}


def pieces(password: str) -> list[str]:
    out, piece = [], ""
    for c in password:
        if c in "QXZJKWV":
            piece += c
        else:
            out.append(piece)
            piece = ""
    return [p for p in [*out, piece] if len(p) >= 4]


def assert_hidden(password: str, *texts: str) -> None:
    shown = "\n".join(texts)
    encoded = {urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)}
    for secret in {password, *encoded, *pieces(password)}:
        assert secret not in shown, f"{secret!r} leaked in:\n{shown}"


def url_for(shape: str, password: str, port: int) -> str:
    return shape.format(raw=password, quoted=urllib.parse.quote(password, safe=""), port=port)


@pytest.fixture(scope="module")
def auth_server() -> Iterator[RedisServer]:
    server = RedisServer(password="the-real-one-Pw-1")
    yield server
    server.stop()


def _logged(error: BaseException) -> str:
    """The error as the worker logs it, in text and JSON, traceback included."""
    out = io.StringIO()
    for fmt in ("text", "json"):
        handler = logging.StreamHandler(out)
        handler.setFormatter(logs._JsonFormatter() if fmt == "json" else logs._TextFormatter())
        record = logging.LogRecord(
            "t", logging.ERROR, __file__, 1, "%s", (error,), (type(error), error, error.__traceback__)
        )
        handler.emit(record)
    return out.getvalue()


def error_outputs(error: BaseException) -> str:
    """Everything an error may show: its str and repr, its traceback with the chained causes, and the
    worker's text and JSON log lines of it."""
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error)), _logged(error)])


def library_outputs(url: str, **options: Any) -> str:
    try:
        q = rediswq.Queue.from_url(url, "redaction", retries=0, tls_ca=None, **options)
        q.stats()
    except rediswq.RedisWQError as e:
        return error_outputs(e)
    pytest.fail(f"no error for {url!r}")


@pytest.mark.slow  # about 6 s: 2,000 generated URLs
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS, shape=st.sampled_from(sorted(SHAPES)), reachable=st.booleans())
def test_the_library_never_shows_a_password(
    password: str, shape: str, reachable: bool, auth_server: RedisServer
) -> None:
    port = auth_server.port if reachable else free_port()
    assert_hidden(password, library_outputs(url_for(SHAPES[shape], password, port)))


@pytest.mark.slow  # about 3 s: a TLS handshake each
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS, shape=st.sampled_from(sorted(TLS_SHAPES)))
def test_a_failed_tls_handshake_never_shows_a_password(password: str, shape: str, tls: TLSRedis) -> None:  # noqa: F811
    url = url_for(TLS_SHAPES[shape], password, tls.port)
    try:
        rediswq.Queue.from_url(url, "redaction", retries=0).stats()  # the system's CAs: verify fails
    except rediswq.RedisWQError as e:
        assert isinstance(e, (rediswq.TLSFailed, rediswq.InvalidArgument)), e
        assert_hidden(password, error_outputs(e))
    else:
        pytest.fail("TLS with an unknown CA succeeded")


# The CLI's paths: a bad URL and refused credentials. (An unreachable Redis is retried for seconds by
# every command; its message is the library's, tested above, and a real worker's, tested below.)
@pytest.mark.slow  # about 6 s: 250 CLI runs
@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    password=PASSWORDS,
    shape=st.sampled_from(sorted(SHAPES)),
    command=st.sampled_from(["stats", "work-text", "work-json", "enqueue", "peek"]),
)
def test_the_cli_never_shows_a_password_and_exits_with_one_line(
    password: str, shape: str, command: str, auth_server: RedisServer
) -> None:
    url = url_for(SHAPES[shape], password, auth_server.port)
    argv = {
        "stats": ["stats", "q"],
        "enqueue": ["enqueue", "q", "x"],
        "peek": ["peek", "q"],
        "work-text": ["work", "q", "--reconnect-secs", "0", "--", "true"],
        "work-json": ["work", "q", "--reconnect-secs", "0", "--log-format", "json", "--", "true"],
    }[command]
    result = CliRunner().invoke(main, ["--url", url, *argv])
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert_hidden(password, result.output)


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_real_worker_process_never_shows_a_password(
    shape: str, tmp_path: Path, auth_server: RedisServer
) -> None:
    import os
    import subprocess
    import sys

    password = "QXZJ/KWVQ?XZJK#WVQX@ZJKW"
    url = url_for(SHAPES[shape], password, auth_server.port)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS"))}
    env["REDISWQ_URL"] = url
    rediswq_bin = str(Path(sys.executable).with_name("rediswq"))
    for fmt in ("text", "json"):
        done = subprocess.run(
            [rediswq_bin, "work", "q", "--reconnect-secs", "0", "--log-format", fmt, "--", "true"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode in (1, 2), done.stderr
        assert "Traceback" not in done.stderr
        assert_hidden(password, done.stdout, done.stderr)


@pytest.mark.slow
def test_a_real_worker_never_shows_a_password_while_redis_is_unreachable(tmp_path: Path) -> None:
    """About 5 s: the first stats call is retried with backoff before the worker gives up."""
    import os
    import subprocess
    import sys

    password = "QXZJ/KWVQ?XZJK#WVQX@ZJKW"
    url = url_for(SHAPES["encoded userinfo"], password, free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS"))}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("rediswq")), "--url", url, "work", "q", "--reconnect-secs", "0",
         "--log-format", "json", "--", "true"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "cannot reach Redis at redis://:***@127.0.0.1" in done.stderr
    assert "Traceback" not in done.stderr
    assert_hidden(password, done.stdout, done.stderr)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis://h:6379/0?foo=bar", "unknown parameter 'foo'"),
        ("redis://h:6379/0?cluster=true", "unknown parameter 'cluster'"),
        ("redis://h:6379/0?db=two", "parameter 'db' must be a whole number"),
        ("redis://h:6379/0?socket_timeout=-1", "parameter 'socket_timeout' must be a positive number"),
        ("redis://h:6379/0?db", "parameter 'db' has no value"),
        ("redis://h:6379/0?ssl_cert_reqs=none", "parameter 'ssl_cert_reqs' needs a rediss:// URL"),
        (
            "rediss://h:6379/0?ssl_cert_reqs=maybe",
            "parameter 'ssl_cert_reqs' must be none, optional or required",
        ),
        ("redis://h:99999/0", "port"),
        ("redis://h:6379/zero", "the path must be a database number"),
        ("http://h:6379/0", "it must start with redis://, rediss:// or unix://"),
        ("h:6379", "has no scheme:// and may be a password; expected redis://"),
    ],
)
def test_every_url_mistake_exits_2_with_one_line_naming_it(url: str, named: str) -> None:
    result = CliRunner().invoke(main, ["--url", url, "stats", "q"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines


# The sentinels' own password comes apart from the URL (sentinel_password=, $REDISWQ_SENTINEL_PASSWORD):
# it is held as well on every path that can see it. Sentinels that refuse it: test_sentinel_tls.py.
SENTINEL_SHAPES = {
    "unreachable sentinels": "redis+sentinel://127.0.0.1:{port},127.0.0.1:{port}/mymaster/0",
    "bad sentinel URL": "redis+sentinel://127.0.0.1:{port}/",
    "cluster URL": "redis+cluster://127.0.0.1:{port}/",
    "plain URL": "redis://127.0.0.1:{port}/0",
}


@pytest.mark.slow  # about 1.5 s
@settings(max_examples=300, deadline=None)
@given(password=PASSWORDS, shape=st.sampled_from(sorted(SENTINEL_SHAPES)), user=st.booleans())
def test_the_library_never_shows_a_sentinel_password(password: str, shape: str, user: bool) -> None:
    url = SENTINEL_SHAPES[shape].format(port=free_port())
    username = "sentinel-user" if user else None
    assert_hidden(password, library_outputs(url, sentinel_password=password, sentinel_username=username))


@settings(max_examples=200, deadline=None)
@given(password=PASSWORDS)
def test_an_error_quoting_a_password_the_client_holds_is_redacted(password: str) -> None:
    queue = rediswq.Queue.from_url("redis+sentinel://127.0.0.1:1/mymaster", "q", sentinel_password=password)
    error = queue._conn.wrap(redis.exceptions.ConnectionError(f"AUTH {password} was refused"))
    assert "was refused" in str(error)
    assert_hidden(password, error_outputs(error))
    assert_hidden(password, describe(queue.client), queue._conn.url)


@settings(max_examples=100, deadline=None)  # well under a second: each fails before connecting
@given(
    password=PASSWORDS,
    shape=st.sampled_from(["bad sentinel URL", "cluster URL", "plain URL"]),
    command=st.sampled_from(["stats", "work", "enqueue"]),
)
def test_the_cli_never_shows_a_sentinel_password_and_exits_2_with_one_line(
    password: str, shape: str, command: str
) -> None:
    url = SENTINEL_SHAPES[shape].format(port=free_port())
    argv = {"stats": ["stats", "q"], "enqueue": ["enqueue", "q", "x"], "work": ["work", "q", "--", "true"]}
    result = CliRunner().invoke(
        main, ["--url", url, *argv[command]], env={"REDISWQ_SENTINEL_PASSWORD": password}
    )
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert_hidden(password, result.output)
