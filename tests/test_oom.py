"""A full `noeviction` Redis: no new leases, while held leases are renewed, completed, failed, released.

Each test starts a redis-server of its own (the suite's must not run out of memory) and fills it by
lowering `maxmemory` below what it uses: Redis then refuses every command that may grow memory, as
it does when a queue has grown to its limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer

from rediswq import LeaseTimeout, Queue, ServerError


@pytest.fixture
def full_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A private Redis of the version under test, with `noeviction`."""
    server = RedisServer(redis_server.binary)
    client = server.client()
    client.config_set("maxmemory-policy", "noeviction")
    yield client
    server.stop()


def fill_up(client: redis.Redis) -> None:
    client.config_set("maxmemory", 1)  # used memory is over it: Redis is full
    with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
        client.set("probe", "x")


def test_a_full_redis_grants_no_lease_but_renews_and_settles_held_ones(full_redis: redis.Redis) -> None:
    q = Queue(full_redis, "oom", retry_backoff_secs=0.05, retry_backoff_cap_secs=0.05)
    q.put_many([b"long-1", b"long-2", b"fails", b"given-back", b"waits"])
    long_1, long_2, fails, given_back = q.lease_many(4, 0.5)
    fill_up(full_redis)

    before = full_redis.lrange(q.keys.pending, 0, -1)
    with pytest.raises(LeaseTimeout, match="Redis is out of memory"):
        q.lease(30, timeout=0.2)
    assert full_redis.lrange(q.keys.pending, 0, -1) == before  # nothing taken
    with pytest.raises(ServerError, match="maxmemory"):
        q.put(b"more")

    # Items run three times as long as their lease: renewals keep them.
    started = time.monotonic()
    while time.monotonic() - started < 1.5:
        q.extend_many([long_1, long_2])
        time.sleep(0.15)
    q.fail(fails, "transient")  # retried later
    q.release(given_back)
    q.complete(long_1)
    with pytest.raises(LeaseTimeout, match="out of memory"):
        q.complete_and_lease([long_2], 1, 30, timeout=0.2)  # completes long-2, leases nothing
    assert q.stats().completed == 2

    full_redis.config_set("maxmemory", 0)
    done = []
    while leases := q.lease_many(10, 30):
        q.complete_many(leases)
        done += [lease.payload for lease in leases]
    assert sorted(done) == [b"fails", b"given-back", b"waits"]
    stats = q.stats()
    assert (stats.completed, stats.expired, stats.dead, stats.pending) == (5, 0, 0, 0)


def test_a_lease_call_on_a_full_redis_still_completes_what_it_was_sent(full_redis: redis.Redis) -> None:
    q = Queue(full_redis, "oom2")
    q.put_many([b"a", b"b"])
    [a] = q.lease_many(1, 30)
    fill_up(full_redis)
    handoff_error = None
    try:
        q.complete_and_lease([a], 1, 30, timeout=0)
    except LeaseTimeout as e:
        handoff_error = e
    assert handoff_error is not None and "out of memory" in str(handoff_error)
    full_redis.config_set("maxmemory", 0)
    stats = q.stats()
    assert (stats.completed, stats.pending, stats.leased) == (1, 1, 0)


SLOW_HANDLER = """
import os, time

def handle(lease):
    time.sleep(0.9)  # three times the lease: only renewals keep it
    with open(os.environ["OUT"], "a") as f:
        f.write(lease.payload.decode() + "\\n")
"""


def test_rediswq_work_on_a_full_redis_renews_its_items_and_redoes_none(
    full_redis: redis.Redis, tmp_path: Path
) -> None:
    (tmp_path / "slowhandler.py").write_text(SLOW_HANDLER)
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL", "POD_NAME"))}
    env.update(PYTHONPATH=str(tmp_path), OUT=str(out))
    q = Queue(full_redis, "oom-work")
    q.put_many([b"item-1", b"item-2", b"item-3", b"item-4"])
    port = full_redis.connection_pool.connection_kwargs["port"]
    argv = [str(Path(sys.executable).with_name("rediswq")), "--url", f"redis://127.0.0.1:{port}/0", "work"]
    argv += ["oom-work", "--handler", "slowhandler:handle", "--lease-secs", "0.3", "--concurrency", "2"]
    argv += ["--prefetch", "1"]
    worker = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        give_up = time.monotonic() + 10
        while q.stats().leased < 2:
            assert time.monotonic() < give_up, "the worker leased nothing"
            time.sleep(0.02)
        fill_up(full_redis)
        time.sleep(1.5)  # the two items held finish; nothing new is leased meanwhile
        assert sorted(out.read_text().split()) == ["item-1", "item-2"]
        full_redis.config_set("maxmemory", 0)
        _, stderr = worker.communicate(timeout=20)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, stderr
    # Why it stopped leasing is said once, and that it went on once.
    assert stderr.count("Redis is out of memory") == 1, stderr
    assert stderr.count("Redis has memory again") == 1, stderr
    assert sorted(out.read_text().split()) == ["item-1", "item-2", "item-3", "item-4"]  # none redone
    stats = q.stats()
    assert (stats.completed, stats.expired, stats.dead) == (4, 0, 0)
