"""`Queue.consume()`: the library loop completes, fails, releases and survives dropped connections."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import RedisServer, find_binary, free_port

from rediswq import Heartbeat, LeaseTimeout, Queue


def _calls(queue: Queue, monkeypatch: Any) -> list[int]:
    """Counts the lease script's calls (each completes and leases in one round trip)."""
    real = queue._scripts.lease
    calls: list[int] = []

    def counted(**kwargs: Any) -> Any:
        calls.append(len(kwargs.get("complete", ())))
        return real(**kwargs)

    monkeypatch.setattr(queue._scripts, "lease", counted)
    return calls


def test_consume_completes_every_item_in_one_call_per_item(queue: Queue, monkeypatch: Any) -> None:
    queue.put_many(b"%d" % n for n in range(50))
    calls = _calls(queue, monkeypatch)
    seen = []
    with queue.consume(lease_secs=30) as leases:
        for lease in leases:
            seen.append(lease.payload)
    assert sorted(seen) == sorted(b"%d" % n for n in range(50))
    stats = queue.stats()
    assert (stats.completed, stats.outstanding) == (50, 0)
    assert len(calls) == 51  # one per item, plus the call that finds the queue drained
    assert leases.completed == 50


def test_consume_without_with_completes_every_item(queue: Queue) -> None:
    queue.put_many([b"a", b"b", b"c"])
    assert [lease.payload for lease in queue.consume(30)] == [b"a", b"b", b"c"]
    assert queue.stats().completed == 3


def test_consume_with_prefetch_leases_in_batches(queue: Queue, monkeypatch: Any) -> None:
    queue.put_many(b"%d" % n for n in range(100))
    calls = _calls(queue, monkeypatch)
    with queue.consume(30, prefetch=10) as leases:
        n = sum(1 for _ in leases)
    assert n == 100
    assert len(calls) == 11
    assert queue.stats().completed == 100


def test_an_exception_in_the_body_fails_the_item_with_its_traceback_and_propagates(
    client: redis.Redis, queue_name: str
) -> None:
    q = Queue(client, queue_name, max_attempts=1)
    q.put_many([b"ok", b"bad", b"later-1", b"later-2"])

    def render(payload: bytes) -> None:
        if payload == b"bad":
            raise ValueError("cannot render")

    with pytest.raises(ValueError), q.consume(30, prefetch=2) as leases:
        for lease in leases:
            render(lease.payload)
    stats = q.stats()
    assert (stats.completed, stats.dead, stats.pending, stats.leased) == (1, 1, 2, 0)
    letter = q.dead_letters()[0]
    assert letter.payload == b"bad"
    assert "ValueError: cannot render" in letter.error
    assert "Traceback" in letter.error and "in render" in letter.error
    q.purge()


def test_failing_through_the_loop_lets_it_go_on(client: redis.Redis, queue_name: str) -> None:
    q = Queue(client, queue_name, max_attempts=1)
    q.put_many([b"a", b"bad", b"c"])
    with q.consume(30) as leases:
        for lease in leases:
            try:
                if lease.payload == b"bad":
                    raise RuntimeError("no")
            except RuntimeError as error:
                leases.fail(lease, error)
    stats = q.stats()
    assert (stats.completed, stats.dead, stats.outstanding) == (2, 1, 0)
    q.purge()


def test_keyboard_interrupt_releases_the_item_without_charging_it(queue: Queue) -> None:
    queue.put_many([b"a", b"b", b"c"])
    with pytest.raises(KeyboardInterrupt), queue.consume(30, prefetch=2) as leases:
        for lease in leases:
            if lease.payload == b"b":
                raise KeyboardInterrupt
    stats = queue.stats()
    assert (stats.completed, stats.released, stats.pending, stats.leased) == (1, 1, 2, 0)
    assert [item.attempts for item in queue.peek(5)] == [0, 0]


def test_break_without_with_releases_the_current_item(queue: Queue) -> None:
    queue.put_many([b"a", b"b", b"c"])
    for lease in queue.consume(30):
        if lease.payload == b"b":
            break
    del lease
    stats = queue.stats()
    assert (stats.completed, stats.pending, stats.leased) == (1, 2, 0)


def test_a_long_item_is_kept_alive(queue: Queue, client: redis.Redis, queue_name: str) -> None:
    queue.put("slow")
    other = Queue(client, queue_name)
    with queue.consume(lease_secs=0.3) as leases:
        for _lease in leases:
            time.sleep(1.0)  # three lease lengths: only renewals keep it
            with pytest.raises(LeaseTimeout):
                other.lease(0.3, timeout=0)  # the lease call that would reclaim an expired lease
    assert leases.lost == []
    stats = queue.stats()
    assert (stats.completed, stats.expired) == (1, 0)


def test_consume_survives_dropped_connections(redis_server: RedisServer, queue_name: str) -> None:
    queue = Queue.from_url(redis_server.url, queue_name)  # rediswq's retries alone, not redis-py's
    queue.put_many(b"%d" % n for n in range(300))
    stop = threading.Event()
    admin = redis_server.client()

    def killer() -> None:
        while not stop.wait(0.2):
            admin.client_kill_filter(_type="normal", skipme=True)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        # A lease reply lost with its connection leaves that item leased to nobody until its lease
        # expires (then it is leased again): a short lease keeps that wait short.
        with queue.consume(2) as leases:
            for _lease in leases:
                time.sleep(0.005)
    finally:
        stop.set()
        thread.join()
    stats = queue.stats()
    assert stats.outstanding == 0
    assert stats.completed == 300  # every item completed once in the counters
    assert leases.lost == []
    assert leases.completed + len(leases.unconfirmed) == 300


def test_consume_until_closed_waits_for_the_close(queue: Queue) -> None:
    def producer() -> None:
        time.sleep(0.3)
        queue.put("late")
        queue.close()

    thread = threading.Thread(target=producer)
    thread.start()
    got = [lease.payload for lease in queue.consume(30, until="closed")]
    thread.join()
    assert got == [b"late"]


def _redis_process(binary: str, port: int, directory: str) -> subprocess.Popen[bytes]:
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory, "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))
    for _ in range(200):
        try:
            if probe.ping():
                return process
        except redis.exceptions.ConnectionError:
            time.sleep(0.025)
    raise RuntimeError("redis-server did not start")


def test_consume_survives_a_redis_restart(tmp_path: Path) -> None:
    binary, port = find_binary(), free_port()
    servers = [_redis_process(binary, port, str(tmp_path))]

    def restart() -> None:  # Redis goes away for a second (connections refused), then comes back
        servers[0].terminate()
        servers[0].wait(10)
        time.sleep(1.0)
        servers.append(_redis_process(binary, port, str(tmp_path)))

    restarter = threading.Thread(target=restart)
    try:
        q = Queue.from_url(f"redis://127.0.0.1:{port}/0", "restarted")
        q.put_many(b"%d" % n for n in range(200))
        # A lease whose reply the restart cut off is taken back only once it expires: a short lease
        # keeps that wait short (with 30 s leases, one suite run spent 30.5 s in this test).
        with q.consume(3) as leases:
            for n, _lease in enumerate(leases):
                if n == 50:
                    restarter.start()
                time.sleep(0.005)
        restarter.join()
        stats = q.stats()
        assert (stats.completed, stats.outstanding) == (200, 0)
        assert leases.completed + len(leases.unconfirmed) == 200
    finally:
        for server in servers:
            server.kill()
            server.wait()


def test_a_heartbeat_says_once_per_outage_that_renewals_fail(
    queue: Queue, caplog: pytest.LogCaptureFixture
) -> None:
    queue.put("a")
    lease = queue.lease(30)
    assert lease is not None
    dead = Queue.from_url(f"redis://127.0.0.1:{free_port()}/0", queue.name, retries=0)
    beat = Heartbeat(dead, [lease])
    with caplog.at_level(logging.WARNING, logger="rediswq"):
        for _ in range(3):
            beat.beat()
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "could not renew leases (retrying every beat)"
    ]


@pytest.mark.parametrize("ending", ["break inside with", "error inside with", "break without with"])
def test_prefetched_leases_are_given_back_at_once_when_the_loop_ends_early(queue: Queue, ending: str) -> None:
    queue.put_many([b"a", b"b", b"c"])
    if ending == "break without with":
        for _lease in queue.consume(30, prefetch=3):
            break
        del _lease
    else:
        with pytest.raises(RuntimeError) if ending == "error inside with" else nullcontext():  # noqa: SIM117
            with queue.consume(30, prefetch=3) as leases:
                for _lease in leases:
                    if ending == "error inside with":
                        raise RuntimeError("boom")
                    break
    stats = queue.stats()
    # b and c were leased with a but never started: released at once, not left to expire.
    assert (stats.leased, stats.released) == (0, {"break without with": 3}.get(ending, 2))
    assert [item.attempts for item in queue.peek(5)][-2:] == [0, 0]
