"""A Redis that may evict is refused; settles survive a lost reply; put_many errors say what went in.

Each test that needs a Redis configured otherwise than the session's starts a private one.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_server import RedisServer, needs_redis7

import rediswq
from rediswq import EvictingRedis, LeaseLost, Queue, ServerError

RQ = str(Path(sys.executable).parent / "rediswq")


@pytest.fixture(scope="module")
def evicting() -> Iterator[RedisServer]:
    server = RedisServer(extra_args=["--maxmemory", "50mb", "--maxmemory-policy", "allkeys-lru"])
    yield server
    server.stop()


@pytest.fixture
def small_noeviction() -> Iterator[RedisServer]:
    server = RedisServer(extra_args=["--maxmemory", "3mb", "--maxmemory-policy", "noeviction"])
    yield server
    server.stop()


def test_a_queue_on_an_evicting_redis_refuses_its_first_call(evicting: RedisServer) -> None:
    q = Queue(evicting.client(), "ev")
    with pytest.raises(EvictingRedis, match="allkeys-lru") as refused:
        q.put("x")
    assert evicting.client().exists(q.keys.pending) == 0
    # The library names its own parameter, not the command line's option.
    assert "allow_eviction=True" in str(refused.value) and "--" not in str(refused.value)


def test_allow_eviction_lets_a_queue_use_an_evicting_redis(evicting: RedisServer) -> None:
    q = Queue(evicting.client(), "ev-allowed", allow_eviction=True)
    q.put("x")
    assert q.stats().pending == 1
    q.purge()


def test_noeviction_and_volatile_policies_are_accepted(redis_server: RedisServer) -> None:
    client = redis_server.client()
    for policy in ("noeviction", "volatile-lru"):
        client.config_set("maxmemory-policy", policy)
        q = Queue(redis_server.client(), "policy-ok")
        q.put("x")
        q.purge()
    client.config_set("maxmemory-policy", "noeviction")


def test_the_policy_is_read_once_per_client(redis_server: RedisServer, monkeypatch: Any) -> None:
    client = redis_server.client()
    reads: list[int] = []
    import rediswq._policy as policy

    real = policy.read_policy
    monkeypatch.setattr(policy, "read_policy", lambda c: reads.append(1) or real(c))
    for name in ("once-a", "once-b"):
        Queue(client, name).stats()
    assert reads == [1]


def test_an_acl_without_info_or_config_warns_once_and_goes_on(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    admin = redis_server.client()
    admin.acl_setuser(
        "noinfo", enabled=True, passwords=["+pw"], keys=["*"], commands=["+@all", "-info", "-config"]
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=redis_server.port, username="noinfo", password="pw")
        with caplog.at_level(logging.WARNING, logger="rediswq"):
            q = Queue(client, "noinfo-q")
            q.put("x")
            Queue(client, "noinfo-q2").stats()
        warnings = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert len(warnings) == 1
        assert q.stats().pending == 1
        q.purge()
    finally:
        admin.acl_deluser("noinfo")


def test_the_cli_exits_2_on_an_evicting_redis_unless_allowed(evicting: RedisServer) -> None:
    run = [RQ, "--url", evicting.url, "enqueue", "cli-ev", "a", "b"]
    refused = subprocess.run(run, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2, refused.stderr
    assert "maxmemory-policy allkeys-lru" in refused.stderr
    assert "on the command line: rediswq --allow-eviction or REDISWQ_ALLOW_EVICTION=1" in refused.stderr
    assert "Traceback" not in refused.stderr
    allowed = subprocess.run([RQ, "--allow-eviction", *run[1:]], capture_output=True, text=True, timeout=30)
    assert allowed.returncode == 0, allowed.stderr
    by_env = subprocess.run(
        run, capture_output=True, text=True, timeout=30, env={**os.environ, "REDISWQ_ALLOW_EVICTION": "1"}
    )
    assert by_env.returncode == 0, by_env.stderr
    assert Queue(evicting.client(), "cli-ev", allow_eviction=True).stats().enqueued == 4
    work = subprocess.run(
        [RQ, "--url", evicting.url, "work", "cli-ev", "--", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert work.returncode == 2 and "maxmemory-policy allkeys-lru" in work.stderr, work.stderr
    assert "rediswq --allow-eviction" in work.stderr, work.stderr


# -- settles after a lost reply ---------------------------------------------------------------


def _lose_first_reply(monkeypatch: Any, q: Queue, script: str) -> None:
    """The first call of `script` reaches Redis and runs, but its reply is lost (the connection drops)."""
    real = getattr(q._scripts, script)
    calls = []

    def lossy(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not calls:
            calls.append(1)
            raise redis.exceptions.ConnectionError("connection dropped after the call went through")
        return result

    monkeypatch.setattr(q._scripts, script, lossy)


def test_a_completion_whose_reply_was_lost_is_retried_and_reported_unconfirmed(
    queue: Queue, monkeypatch: Any
) -> None:
    queue.put("a")
    lease = queue.lease(30)
    assert lease is not None
    _lose_first_reply(monkeypatch, queue, "lease")
    with pytest.raises(LeaseLost) as caught:
        queue.complete(lease)
    assert caught.value.unconfirmed
    assert "unconfirmed" in str(caught.value)
    assert queue.stats().completed == 1


def test_a_failure_whose_reply_was_lost_is_retried_and_reported_unconfirmed(
    queue: Queue, monkeypatch: Any
) -> None:
    queue.put("a")
    lease = queue.lease(30)
    assert lease is not None
    _lose_first_reply(monkeypatch, queue, "fail")
    with pytest.raises(LeaseLost) as caught:
        queue.fail(lease, "boom")
    assert caught.value.unconfirmed
    assert queue.stats().failed == 1


def test_a_completion_sent_on_a_killed_connection_goes_through_on_the_retry(
    queue: Queue, client: redis.Redis
) -> None:
    queue.put("a")
    lease = queue.lease(30)
    assert lease is not None
    client.client_kill_filter(_type="normal", skipme=True)
    queue.complete(lease)  # no LeaseLost: the first send never reached Redis
    assert queue.stats().completed == 1


def test_a_plain_lost_lease_is_not_unconfirmed(queue: Queue) -> None:
    queue.put("a")
    lease = queue.lease(30)
    assert lease is not None
    queue.release(lease)
    with pytest.raises(LeaseLost) as caught:
        queue.complete(lease)
    assert not caught.value.unconfirmed


# -- put_many's count on every error ----------------------------------------------------------


def test_put_many_on_a_full_redis_says_how_many_went_in(small_noeviction: RedisServer) -> None:
    q = Queue(small_noeviction.client(), "full")
    with pytest.raises(ServerError) as caught:
        q.put_many(b"%09d" % n + b"x" * 200 for n in range(200_000))
    added = caught.value.added
    assert 0 < added < 200_000
    assert "OOM" in str(caught.value) or "maxmemory" in str(caught.value)
    assert q.stats().pending == added


def test_put_many_bad_payload_and_closed_queue_carry_the_count(queue: Queue) -> None:
    with pytest.raises(rediswq.InvalidArgument) as bad:
        queue.put_many([b"a"] * 4500 + [123], batch_size=1000)  # type: ignore[list-item]
    assert bad.value.added == 4000  # whole batches: the one with the bad payload is refused whole
    assert queue.stats().pending == 4000
    queue.close()
    with pytest.raises(rediswq.QueueClosed) as closed:
        queue.put_many([b"b"])
    assert closed.value.added == 0


def test_put_many_on_a_lost_connection_carries_the_count(queue: Queue, monkeypatch: Any) -> None:
    real = queue._scripts.put
    sent: list[int] = []

    def put(payloads: Any, ids: Any, mark: Any, **options: Any) -> Any:
        sent.append(len(payloads))
        if len(sent) == 3:
            raise redis.exceptions.ConnectionError("gone")
        return real(payloads, ids, mark, **options)

    monkeypatch.setattr(queue._scripts, "put", put)
    with pytest.raises(rediswq.ConnectionFailed) as caught:
        queue.put_many([b"x"] * 5000, batch_size=1000)
    assert caught.value.added == 2000


def test_a_checkpoint_goes_in_with_each_batch_and_not_after_a_refused_one(queue: Queue) -> None:
    marks: list[int] = []

    def value_of(n: int) -> str:
        marks.append(n)
        return f"{n}"

    queue.put_many([b"x"] * 2500, batch_size=1000, checkpoint=("in", value_of))
    assert marks == [1000, 2000, 2500]
    assert queue.checkpoint("in") == "2500"
    queue.close()
    with pytest.raises(rediswq.QueueClosed):
        queue.put_many([b"y"] * 10, checkpoint=("in", value_of))
    assert queue.checkpoint("in") == "2500"
    queue.reopen()
    assert queue.checkpoint("in") is None


def test_a_checkpoint_key_of_the_wrong_type_adds_nothing(queue: Queue, client: redis.Redis) -> None:
    client.set(queue.keys.checkpoints, "garbage")
    with pytest.raises(ServerError, match="WRONGTYPE"):
        queue.put_many([b"x"] * 10, checkpoint=("in", str))
    assert queue.stats().pending == 0


@needs_redis7()
def test_install_checks_the_eviction_policy_the_roles_cannot_read_and_exits_2_unless_allowed(
    evicting: RedisServer,
) -> None:
    """Worker and producer users may not run INFO or CONFIG GET: `rediswq install`, an admin's, checks."""
    evicting.client().execute_command("FUNCTION", "FLUSH")  # earlier tests' queues loaded it
    refused = subprocess.run(
        [RQ, "--url", evicting.url, "install"], capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "maxmemory-policy allkeys-lru, which may evict queue keys" in line and "--allow-eviction" in line
    assert evicting.client().execute_command("FUNCTION", "LIST") == []  # checked before anything loads
    allowed = subprocess.run(
        [RQ, "--url", evicting.url, "--allow-eviction", "install"], capture_output=True, text=True, timeout=30
    )
    assert allowed.returncode == 0, allowed.stderr
    assert "function library version" in allowed.stdout
