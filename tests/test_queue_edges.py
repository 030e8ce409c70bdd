"""Edge cases: big batches past Lua's unpack limit, scans on Redis < 7.4, odd clients and arguments."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis
from redis_server import find_binary

from rediswq import ConnectionFailed, Heartbeat, InvalidArgument, LeaseLost, LeaseTimeout, Queue
from rediswq._keys import LEASED_SENTINEL


def _dead_letter(q: Queue, n: int) -> None:
    q.put_many([b"x"] * n)
    for lease in q.lease_many(n, 30):
        q.fail(lease, "broken", retry=False)


def test_requeue_dead_without_ids_requeues_every_dead_letter(queue: Queue) -> None:
    _dead_letter(queue, 3)
    assert queue.requeue_dead() == 3  # HSCAN ... NOVALUES needs Redis 7.4: "syntax error" on 6.2/7.0
    assert queue.stats().pending == 3


def test_purge_dead_without_ids_purges_every_dead_letter(queue: Queue) -> None:
    _dead_letter(queue, 3)
    assert queue.purge_dead() == 3
    assert queue.stats().dropped == 3


def test_complete_many_of_nine_thousand_leases_completes_them_all(queue: Queue) -> None:
    queue.put_many([b"x"] * 9000)
    leases = queue.lease_many(9000, 60)
    queue.complete_many(leases)  # lease.lua: HDEL payloads unpack(done) -> "too many results to unpack"
    stats = queue.stats()
    # Today: leased=0, completed=0, enqueued=9000, drained=True: 9000 items vanished from the books.
    assert (stats.completed, stats.leased) == (9000, 0)
    assert queue.client.zrange(queue.keys.leased, 0, -1) == [LEASED_SENTINEL]


def test_a_batch_completes_each_held_lease_once_and_names_the_rest(queue: Queue) -> None:
    # One ZMSCORE reads the batch and one ZREM removes it: a handle given twice, a lease completed
    # already, and items with their own ids and with payloads kept apart are settled as one by one.
    queue.put_many([b"a", b"b"], ids=["id-a", "id-b"])
    queue.put_many([b"c", b"x" * 1000])
    a, b, c, big = queue.lease_many(4, 60)
    queue.complete(c)
    with pytest.raises(LeaseLost) as lost:
        queue.complete_many([a, big, a, c, b])
    assert lost.value.leases == [a, c]  # the second `a`, and `c` completed before
    stats = queue.stats()
    assert (stats.completed, stats.leased, stats.pending) == (4, 0, 0)
    assert queue.client.hlen(queue.keys.payloads) == 0
    assert queue.client.scard(queue.keys.ids) == 0
    assert queue.put("again", id="id-a") is not None  # its id is free again


def test_a_batch_of_leases_from_several_calls_renewed_or_lost_completes_exactly_the_held_ones(
    client: redis.Redis, queue: Queue
) -> None:
    # lease.lua finds the leases of the batch's first lease call by their shared deadline, and asks
    # the rest one by one (ZMSCORE): a renewed lease, one of another call, one lost, one given twice.
    queue.put_many([b"%d" % i for i in range(8)])
    first = queue.lease_many(4, 60)
    second = queue.lease_many(3, 60)
    short = queue.lease(0.05)
    assert short is not None
    queue.extend(first[1], 120)  # its deadline moves off the call's
    time.sleep(0.1)
    assert queue.lease_many(1, 60)[0].id == short.id  # `short` expired and was taken over
    batch = [*first, short, second[0], first[2], *second[1:]]
    with pytest.raises(LeaseLost) as lost:
        queue.complete_many(batch)
    assert lost.value.leases == [short, first[2]]
    stats = queue.stats()
    assert (stats.completed, stats.leased) == (7, 1)  # the new holder of `short`'s item holds it


def test_a_forged_handle_whose_deadline_is_no_number_redis_takes_is_only_lost(queue: Queue) -> None:
    # The first handle of a batch names the score lease.lua looks its call's leases up by: one made of
    # a caller's bytes (here a deadline of 1e300 ms, no integer Lua can format) must not fail the
    # call, only be reported lost.
    queue.put_many([b"a", b"b"])
    a, b = queue.lease_many(2, 60)
    forged_handle = (
        msgpack.packb([1, 0, b"a"])
        + msgpack.packb(9)
        + msgpack.packb("w")
        + msgpack.packb(1e300)
        + msgpack.packb(5)
    )
    forged = dataclasses.replace(a, handle=forged_handle)
    with pytest.raises(LeaseLost) as lost:
        queue.complete_many([forged, a, b])
    assert lost.value.leases == [forged]
    assert (queue.stats().completed, queue.stats().leased) == (2, 0)


@pytest.mark.parametrize("ids", [False, True], ids=["assigned ids", "caller ids"])
def test_bytes_that_are_no_handle_in_a_batch_are_only_lost(queue: Queue, ids: bool) -> None:
    # With assigned ids and no payload kept apart, lease.lua takes a batch's handles without reading
    # their headers (none needs cleaning up); with caller ids it reads each. Either way bytes that are
    # no handle are reported lost and the rest complete.
    if ids:
        queue.put(b"a", id="a")
        queue.put(b"b", id="b")
    else:
        queue.put_many([b"a", b"b"])
    a, b = queue.lease_many(2, 60)
    junk = [dataclasses.replace(a, handle=raw) for raw in (b"\xc1", b"", b"\x93" * 3, a.handle[:-1])]
    with pytest.raises(LeaseLost) as lost:
        queue.complete_many([a, *junk, b])
    assert lost.value.leases == junk
    assert (queue.stats().completed, queue.stats().leased) == (2, 0)


def test_a_large_reclaim_limit_does_not_wedge_the_queue(client: redis.Redis, queue_name: str) -> None:
    q = Queue(client, queue_name, reclaim_limit=10000, retry_backoff_secs=0.001, retry_backoff_cap_secs=0.001)
    try:
        q.put_many([b"x"] * 8500)
        for lease in q.lease_many(8500, 60):
            q.fail(lease, "transient")
        time.sleep(0.05)
        # lease.lua: ZREM delayed unpack(due) -> "too many results to unpack", on every call from now on.
        assert q.lease(30) is not None
    finally:
        q.purge()


def test_a_client_that_decodes_responses_is_refused_up_front(redis_server: Any, queue_name: str) -> None:
    decoding = redis.Redis(host="127.0.0.1", port=redis_server.port, decode_responses=True)
    # Today: accepted; put works, lease leases the item in Redis and then raises UnicodeDecodeError.
    with pytest.raises(InvalidArgument):
        Queue(decoding, queue_name)


@pytest.fixture
def unix_redis() -> Iterator[str]:
    d = tempfile.mkdtemp()
    sock = os.path.join(d, "redis.sock")
    p = subprocess.Popen(
        [find_binary(), "--port", "0", "--unixsocket", sock, "--save", "", "--dir", d],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        if os.path.exists(sock):
            break
        time.sleep(0.02)
    yield sock
    p.terminate()
    p.wait()


def test_a_unix_socket_url_works(unix_redis: str, queue_name: str) -> None:
    q = Queue.from_url(f"unix://{unix_redis}", queue_name)  # socket_keepalive -> TypeError today
    q.put(b"x")
    assert q.stats().pending == 1


def test_an_infinite_lease_length_is_refused(queue: Queue) -> None:
    queue.put(b"x")
    with pytest.raises(InvalidArgument):  # OverflowError today
        queue.lease(float("inf"))


def test_peek_and_holders_of_zero_show_nothing(queue: Queue) -> None:
    queue.put_many([b"a", b"b", b"c"])
    queue.lease(30)
    assert queue.peek(0) == []  # LRANGE 0 -1: every pending item today
    assert queue.holders(0) == []  # ZRANGE 0 -1: every lease today


def test_dead_letters_with_a_count_are_the_oldest(client: redis.Redis, queue: Queue) -> None:
    records = {str(i): msgpack.packb([i, 1, b"p", "e", 1_000_000 + (600 - i)]) for i in range(1, 601)}
    client.hset(queue.keys.dead, mapping=records)
    oldest = [d.dead_at_ms for d in queue.dead_letters()][:5]
    assert [d.dead_at_ms for d in queue.dead_letters(5)] == oldest  # HSCAN order today, then sorted


def test_stats_never_reads_drained_while_a_lease_is_held(client: redis.Redis, queue: Queue) -> None:
    """Timeline: stats' MULTI reads pending=leased=delayed=0 and TYPE inbox=list; worker B leases the
    raw item (inbox -> leased); stats' separate LLEN inbox reads 0: drained=True while B holds a lease."""
    other = Queue(client, queue.name, worker="B")
    client.rpush(queue.keys.inbox, b"raw item")
    real_pipeline = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        real_execute = pipe.execute

        def execute(*a: Any, **k: Any) -> Any:
            result = real_execute(*a, **k)
            other.lease(30)
            return result

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe

    client.pipeline = pipeline  # type: ignore[method-assign]
    try:
        stats = queue.stats()
    finally:
        client.pipeline = real_pipeline  # type: ignore[method-assign]
    assert not stats.drained


def test_a_heartbeat_can_be_started_again_after_stop(client: redis.Redis, queue: Queue) -> None:
    queue.put(b"x")
    lease = queue.lease(0.3)
    assert lease is not None
    first_deadline = lease.deadline_ms
    beat = Heartbeat(queue, [lease])
    beat.start()
    beat.stop()
    beat.start()  # today: the stop event stays set, the new thread ends at once
    try:
        time.sleep(0.6)
        score = client.zscore(queue.keys.leased, lease.handle)
        assert score is not None and score > first_deadline + 300  # renewed after the restart
    finally:
        beat.stop()


def test_a_queue_with_no_retries_fails_fast_on_a_refused_connection(queue_name: str) -> None:
    q = Queue.from_url("redis://127.0.0.1:1/0", queue_name, retries=0)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        q.stats()
    assert time.monotonic() - started < 2.0


def test_lease_timeout_says_when_the_next_lease_deadline_falls_due(queue: Queue) -> None:
    queue.put(b"x")
    held = queue.lease(5.0)
    assert held is not None
    with pytest.raises(LeaseTimeout) as caught:
        queue.lease(30, timeout=0)
    assert caught.value.retry_after_secs is not None
    assert 4.0 < caught.value.retry_after_secs <= 5.0


def test_a_heartbeat_does_not_report_a_lease_settled_during_its_renewal_as_lost(queue: Queue) -> None:
    queue.put(b"x")
    lease = queue.lease(30)
    assert lease is not None
    heartbeat = Heartbeat(queue, [lease])
    real_extend = queue.extend_many

    def extend_after_completion(leases: Any, lease_secs: Any = None) -> None:
        # The worker settles the lease while the renewal is on its way.
        heartbeat.discard(lease)
        queue.complete(lease)
        real_extend(leases, lease_secs)

    queue.extend_many = extend_after_completion  # type: ignore[method-assign]
    heartbeat.beat()
    assert heartbeat.lost == []
