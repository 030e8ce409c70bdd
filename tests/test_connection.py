"""The boundary with Redis: clear errors naming a redacted URL, retries, and a Redis that restarts.

These tests start redis-servers of their own (stopping and restarting one), never the session's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from importlib import resources

import pytest
import redis
from helpers_core import PortRedis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import RedisServer, free_port

from rediswq import AuthenticationFailed, ConnectionFailed, InvalidArgument, Queue

PASSWORD = "s3cret-Pw-4711"


@pytest.fixture(scope="module")
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password=PASSWORD)
    yield server
    server.stop()


def test_a_refused_connection_raises_connection_failed_naming_the_url(queue_name: str) -> None:
    port = free_port()  # nothing listens there
    url = f"redis://127.0.0.1:{port}/0"
    q = Queue.from_url(url, queue_name)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as caught:
        q.put(b"x")  # not idempotent: tried once
    assert url in str(caught.value)
    assert not isinstance(caught.value, AuthenticationFailed)
    assert time.monotonic() - started < 2


def test_a_refused_connection_hides_the_password_of_the_url(queue_name: str) -> None:
    port = free_port()
    q = Queue.from_url(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", queue_name)
    with pytest.raises(ConnectionFailed) as caught:
        q.put(b"x")
    assert f"redis://:***@127.0.0.1:{port}/0" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_an_idempotent_call_is_retried_with_backoff_then_raises_connection_failed(queue_name: str) -> None:
    port = free_port()
    q = Queue.from_url(f"redis://127.0.0.1:{port}/0", queue_name)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match=f"127.0.0.1:{port}"):
        q.stats()
    # Five retries backing off 0.2, 0.4, 0.8, 1.6 and 2 s: it did wait, and it did give up.
    assert 3 < time.monotonic() - started < 10


def test_an_idempotent_call_succeeds_once_redis_comes_back_during_its_retries(queue_name: str) -> None:
    port = free_port()
    q = Queue.from_url(f"redis://127.0.0.1:{port}/0", queue_name)
    servers: list[PortRedis] = []
    starter = threading.Timer(0.5, lambda: servers.append(PortRedis(port)))
    starter.start()
    try:
        started = time.monotonic()
        assert q.stats().pending == 0
        assert time.monotonic() - started >= 0.5
    finally:
        starter.join()
        for server in servers:
            server.stop()


def test_a_wrong_password_raises_authentication_failed_without_showing_it(
    password_server: RedisServer, queue_name: str
) -> None:
    wrong = "not-the-Pw-0815"
    url = f"redis://:{wrong}@127.0.0.1:{password_server.port}/0"
    q = Queue.from_url(url, queue_name)
    started = time.monotonic()
    for call in (lambda: q.put(b"x"), q.stats):  # stats is idempotent, but a bad password is not retried
        with pytest.raises(AuthenticationFailed) as caught:
            call()
        message = str(caught.value)
        assert f"redis://:***@127.0.0.1:{password_server.port}/0" in message
        assert wrong not in message and PASSWORD not in message
        assert isinstance(caught.value, ConnectionFailed)
    assert time.monotonic() - started < 2


def test_a_missing_password_raises_authentication_failed(
    password_server: RedisServer, queue_name: str
) -> None:
    q = Queue.from_url(f"redis://127.0.0.1:{password_server.port}/0", queue_name)
    with pytest.raises(AuthenticationFailed, match=f"127.0.0.1:{password_server.port}"):
        q.put(b"x")


def test_the_right_password_works(password_server: RedisServer, queue_name: str) -> None:
    q = Queue.from_url(password_server.url, queue_name)
    try:
        q.put(b"x")
        lease = q.lease(30)
        assert lease is not None
        q.complete(lease)
        assert q.is_drained()
    finally:
        q.purge()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/0",
        "localhost:1",
        "",
        "redis://127.0.0.1:notaport/0",
        f"http://:{PASSWORD}@127.0.0.1:1/0",
    ],
)
def test_a_bad_url_raises_invalid_argument_without_showing_a_password(url: str, queue_name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Queue.from_url(url, queue_name)
    assert PASSWORD not in str(caught.value)


def test_scripts_reload_by_themselves_after_a_redis_restart(queue_name: str) -> None:
    port = free_port()
    server = PortRedis(port)
    try:
        q = Queue.from_url(server.url, queue_name)
        q.put(b"before")
        lease = q.lease(30)
        assert lease is not None
        q.complete(lease)
        # One script per file (settle, lease's twin on Redis 7's functions, shares lease's).
        shas = sorted({script.sha for script in vars(q._scripts).values() if hasattr(script, "sha")})
        packaged = [f for f in resources.files("rediswq.lua").iterdir() if f.name.endswith(".lua")]
        assert len(shas) == len(packaged) - 1  # the prelude is joined to each, no script of its own
        server.stop()
        server = PortRedis(port)  # a fresh Redis on the same port: its script cache is empty
        assert q.client.script_exists(*shas) == [False] * len(shas)
        assert q.put(b"after") == "1"  # a new, empty Redis: the id sequence starts again
        lease = q.lease(30)
        assert lease is not None
        assert lease.payload == b"after"
        q.complete(lease)
        assert q.stats().completed == 1
        if q._scripts.functions:
            # Redis 7: the function library, gone with the restart, was loaded again on first use.
            (library,) = q.client.function_list()  # RESP2: [b"library_name", b"rediswq", ...]
            assert library[library.index(b"library_name") + 1] == b"rediswq"
        else:
            # Only the scripts used since the restart were loaded again, by redis-py on NOSCRIPT.
            loaded = dict(zip(shas, q.client.script_exists(*shas), strict=True))
            assert loaded[q._scripts._put.sha] and loaded[q._scripts._lease.sha]
    finally:
        server.stop()


def test_a_queue_on_a_plain_client_names_its_server_in_errors(queue_name: str) -> None:
    port = free_port()
    client = redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, retry=Retry(NoBackoff(), 0))
    q = Queue(client, queue_name)
    with pytest.raises(ConnectionFailed) as caught:
        q.put(b"x")
    assert f"redis://127.0.0.1:{port}/0" in str(caught.value)
    assert PASSWORD not in str(caught.value)
