"""The queue's behaviour as workers and producers see it, against a real Redis.

The lifecycle of an item, ownership of leases after expiry, closing and draining, blocking leases and
how often an idle worker calls Redis, heartbeats, stats, and the arguments that are refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from helpers_core import counters, evalsha_calls, existing_keys, leased, meta, redis_now_ms

from rediswq import (
    Heartbeat,
    InvalidArgument,
    Lease,
    LeaseLost,
    LeaseTimeout,
    Queue,
    QueueClosed,
    Stats,
)

MakeQueue = Callable[..., Queue]


@pytest.fixture
def make_queue(client: redis.Redis, queue_name: str) -> Iterator[MakeQueue]:
    """Handles on the test's queue (one per simulated worker), with fast retries unless told otherwise."""
    made: list[Queue] = []

    def make(**options: Any) -> Queue:
        options.setdefault("retry_backoff_secs", 0.05)
        options.setdefault("retry_backoff_cap_secs", 0.2)
        q = Queue(client, queue_name, **options)
        made.append(q)
        return q

    yield make
    if made:
        made[0].purge()


def held(q: Queue, lease_secs: float = 30, **options: Any) -> Lease:
    lease = q.lease(lease_secs, **options)
    assert lease is not None
    return lease


# -- the lifecycle ------------------------------------------------------------------------------


def test_an_item_is_put_leased_completed_and_the_queue_drains(make_queue: MakeQueue) -> None:
    q = make_queue()
    item_id = q.put(b"frame-1")
    assert not q.is_drained()
    lease = held(q)
    assert (lease.id, lease.payload, lease.attempt) == (item_id, b"frame-1", 1)
    assert not q.is_drained()
    q.complete(lease)
    assert q.is_drained()
    assert q.lease(30, timeout=5) is None
    stats = q.stats()
    assert (stats.enqueued, stats.completed, stats.outstanding) == (1, 1, 0)


def test_a_failing_item_is_retried_dead_lettered_requeued_and_completed(make_queue: MakeQueue) -> None:
    q = make_queue(max_attempts=3)
    item_id = q.put(b"flaky")
    assert item_id is not None
    for attempt in (1, 2, 3):
        lease = held(q, timeout=5)  # waits out the backoff of the previous failure
        assert (lease.id, lease.attempt) == (item_id, attempt)
        assert q.fail(lease, f"ValueError: attempt {attempt}") is (attempt == 3)
    # A dead letter is out of the way: the queue is drained.
    assert q.is_drained()
    assert q.lease(30, timeout=5) is None
    [letter] = q.dead_letters()
    assert (letter.id, letter.attempts, letter.payload, letter.error) == (
        item_id,
        3,
        b"flaky",
        "ValueError: attempt 3",
    )
    assert q.requeue_dead([item_id]) == 1
    lease = held(q)
    assert (lease.id, lease.attempt) == (item_id, 1)
    q.complete(lease)
    stats = q.stats()
    assert stats.drained
    counts = {
        k: getattr(stats, k) for k in ("enqueued", "completed", "failed", "retried", "dead_lettered", "dead")
    }
    assert counts == {"enqueued": 1, "completed": 1, "failed": 3, "retried": 2, "dead_lettered": 1, "dead": 0}


def test_a_closed_queue_refuses_puts_and_drains_for_workers_waiting_on_close(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put_many([b"a", b"b"])
    q.close()
    with pytest.raises(QueueClosed):
        q.put(b"late")
    seen = []
    while (lease := q.lease(30, until="closed", timeout=5)) is not None:
        seen.append(lease.payload)
        q.complete(lease)
    assert seen == [b"a", b"b"]
    assert q.stats().closed
    q.reopen()
    assert q.put(b"next run") is not None


def test_several_workers_drain_a_queue_each_item_completed_once(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put_many([f"item-{n}".encode() for n in range(60)])
    done: list[list[bytes]] = [[] for _ in range(3)]

    def work(n: int) -> None:
        worker = make_queue(worker=f"thread-{n}")
        while (lease := worker.lease(30, timeout=10)) is not None:
            done[n].append(lease.payload)
            worker.complete(lease)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    everything = [payload for part in done for payload in part]
    assert sorted(everything) == sorted(f"item-{n}".encode() for n in range(60))
    stats = q.stats()
    assert stats.drained
    assert (stats.enqueued, stats.completed) == (60, 60)


def test_equal_payloads_are_independent_items(make_queue: MakeQueue) -> None:
    q = make_queue(max_attempts=2)
    ids = [q.put(b"same"), q.put(b"same"), q.put(b"same")]
    assert len(set(ids)) == 3
    one, two, three = q.lease_many(3, 30)
    assert {one.id, two.id, three.id} == set(ids)
    q.complete(one)
    assert q.fail(two, "broken", retry=False) is True
    # The third is still leased, untouched by what happened to its twins.
    assert q.stats().leased == 1
    q.extend(three, 30)
    q.complete(three)
    stats = q.stats()
    assert (stats.completed, stats.dead, stats.drained) == (2, 1, True)


# -- ownership after expiry ---------------------------------------------------------------------


def test_a_stale_holder_gets_lease_lost_while_the_new_holder_completes(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    a = make_queue(worker="worker-a")
    b = make_queue(worker="worker-b")
    a.put(b"contested")
    stale = held(a, 0.1)
    time.sleep(0.15)
    fresh = held(b, 30)
    assert (fresh.id, fresh.attempt) == (stale.id, 2)
    state = (leased(client, b.keys), client.hgetall(b.keys.payloads), meta(client, b.keys))
    for settle in (a.complete, a.extend, a.release, lambda lease: a.fail(lease, "late")):
        with pytest.raises(LeaseLost) as caught:
            settle(stale)
        assert caught.value.leases == [stale]
        assert (leased(client, b.keys), client.hgetall(b.keys.payloads), meta(client, b.keys)) == state
    assert [info.worker for info in b.holders()] == ["worker-b"]
    b.complete(fresh)
    stats = b.stats()
    assert stats.drained
    assert (stats.completed, stats.failed, stats.expired, stats.released) == (1, 0, 1, 0)


def test_a_stale_holders_complete_and_lease_keeps_its_lost_completion_apart(make_queue: MakeQueue) -> None:
    a = make_queue(worker="worker-a")
    b = make_queue(worker="worker-b")
    a.put_many([b"first", b"second"])
    stale = held(a, 0.1)
    time.sleep(0.15)
    fresh = held(b, 30)
    handoff = a.complete_and_lease([stale], count=1, lease_secs=30)
    assert handoff.lost == [stale]
    assert [lease.payload for lease in handoff.leases] == [b"second"]
    b.complete(fresh)
    assert b.stats().completed == 1


# -- put racing close ---------------------------------------------------------------------------


def test_every_put_racing_close_either_lands_or_raises_queue_closed(make_queue: MakeQueue) -> None:
    q = make_queue()
    landed_ids: list[set[str]] = [set() for _ in range(4)]
    landed_counts = [0] * 4
    outcomes: list[str] = ["running"] * 4
    start = threading.Barrier(5)

    def put_one_by_one(n: int) -> None:
        producer = make_queue()
        start.wait()
        i = 0
        try:
            while True:
                item_id = producer.put(f"{n}-{i}".encode())
                assert item_id is not None
                landed_ids[n].add(item_id)
                i += 1
        except QueueClosed:
            outcomes[n] = "closed"
        except Exception as e:  # anything else is a failure of the test
            outcomes[n] = repr(e)

    def put_in_batches(n: int) -> None:
        producer = make_queue()
        start.wait()
        try:
            while True:
                landed_counts[n] += producer.put_many((b"x" for _ in range(20)), batch_size=5).added
        except QueueClosed as e:
            landed_counts[n] += e.added
            outcomes[n] = "closed"
        except Exception as e:
            outcomes[n] = repr(e)

    threads = [threading.Thread(target=put_one_by_one, args=(n,)) for n in (0, 1)]
    threads += [threading.Thread(target=put_in_batches, args=(n,)) for n in (2, 3)]
    for t in threads:
        t.start()
    start.wait()
    time.sleep(0.3)
    q.close()
    for t in threads:
        t.join(10)
    assert outcomes == ["closed"] * 4
    singles = landed_ids[0] | landed_ids[1]
    total = len(singles) + sum(landed_counts)
    assert len(singles) > 0 and sum(landed_counts) > 0  # both kinds of put were racing
    stats = q.stats()
    assert stats.enqueued == stats.pending == total
    # Every id a put returned is in the queue.
    queued_ids = {item.id for item in q.peek(total + 10)}
    assert singles <= queued_ids
    assert len(queued_ids) == total


# -- draining and blocking leases ---------------------------------------------------------------


def test_is_drained_is_false_while_anyone_holds_a_lease(make_queue: MakeQueue) -> None:
    q = make_queue()
    other = make_queue(worker="other")
    q.put(b"x")
    lease = held(other)
    assert q.stats().pending == 0
    assert not q.is_drained()
    other.complete(lease)
    assert q.is_drained()


def test_a_blocking_lease_returns_none_at_once_on_a_drained_queue(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put(b"x")
    q.complete(q.lease(30) or pytest.fail("no lease"))
    started = time.monotonic()
    assert q.lease(30, timeout=5) is None
    assert q.lease_many(5, 30) == []
    assert time.monotonic() - started < 1.0


def test_a_blocking_lease_raises_lease_timeout_when_nothing_comes(make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put(b"x")
    held(make_queue(worker="other"), 30)
    started = time.monotonic()
    with pytest.raises(LeaseTimeout):
        q.lease(30, timeout=0.4)
    assert 0.4 <= time.monotonic() - started < 2.0


def test_a_blocking_lease_returns_none_when_the_holder_completes(make_queue: MakeQueue) -> None:
    q = make_queue()
    holder = make_queue(worker="holder")
    q.put(b"x")
    lease = held(holder, 30)
    threading.Timer(0.3, holder.complete, args=(lease,)).start()
    started = time.monotonic()
    assert q.lease(30, timeout=5) is None
    assert 0.3 <= time.monotonic() - started < 2.5


def test_a_blocking_lease_takes_over_an_expired_lease_within_a_second_of_its_deadline(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    crashed = make_queue(worker="crashed")
    waiting = make_queue(worker="waiting")
    crashed.put(b"orphan")
    lost = held(crashed, 1.0)
    taken = held(waiting, 30, timeout=5)
    assert (taken.id, taken.attempt) == (lost.id, 2)
    taken_at_ms = taken.deadline_ms - taken.lease_ms  # Redis's clock when the script ran
    assert 0 <= taken_at_ms - lost.deadline_ms <= 1000
    [info] = waiting.holders()
    assert (info.worker, info.leased_at_ms) == ("waiting", taken_at_ms)
    assert redis_now_ms(client) >= lost.deadline_ms


def test_until_closed_waits_for_close_then_returns_none(make_queue: MakeQueue) -> None:
    q = make_queue()
    producer = make_queue()
    threading.Timer(0.4, producer.close).start()
    started = time.monotonic()
    assert q.lease(30, until="closed", timeout=5) is None
    assert 0.4 <= time.monotonic() - started < 2.5


def test_until_closed_returns_an_item_put_while_waiting(make_queue: MakeQueue) -> None:
    q = make_queue()
    producer = make_queue()
    threading.Timer(0.3, producer.put, args=(b"late item",)).start()
    lease = held(q, until="closed", timeout=5)
    assert lease.payload == b"late item"
    with pytest.raises(LeaseTimeout):
        q.lease(30, until="closed", timeout=0.2)


@pytest.mark.parametrize("situation", ["empty and open", "another worker holds a long lease"])
def test_an_idle_worker_makes_at_most_about_20_redis_calls_a_second(
    client: redis.Redis, make_queue: MakeQueue, situation: str
) -> None:
    q = make_queue()
    if situation != "empty and open":
        q.put(b"x")
        held(make_queue(worker="other"), 60)
    calls = evalsha_calls(client)
    started = time.monotonic()
    with pytest.raises(LeaseTimeout):
        q.lease(30, until="closed", timeout=1.0)
    elapsed = time.monotonic() - started
    made = evalsha_calls(client) - calls
    print(f"\nidle worker ({situation}): {made} script calls in {elapsed:.2f} s")
    assert 2 <= made <= 21 * elapsed + 1


def test_an_idle_worker_picks_up_a_new_item_within_a_second(
    make_queue: MakeQueue,
) -> None:
    q = make_queue()
    producer = make_queue()
    put_at: list[float] = []

    def put_late() -> None:
        producer.put(b"late")
        put_at.append(time.monotonic())

    threading.Timer(1.5, put_late).start()  # by then the poll has backed off to its longest
    lease = held(q, until="closed", timeout=5)
    assert lease.payload == b"late"
    assert time.monotonic() - put_at[0] < 1.0


# -- heartbeats ---------------------------------------------------------------------------------


def _heartbeat_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "rediswq-heartbeat")


def test_keep_alive_keeps_a_short_lease_past_its_length_and_stops_cleanly(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    rival = make_queue(worker="rival")
    q.put(b"long item")
    lease = held(q, 0.6)
    first_deadline = lease.deadline_ms
    with q.keep_alive(lease):
        assert _heartbeat_threads() == 1
        time.sleep(1.5)
        with pytest.raises(LeaseTimeout):
            rival.lease(30, timeout=0)  # not reclaimed: still held
    assert _heartbeat_threads() == 0
    assert lease.deadline_ms > first_deadline + 600
    # Stopped means stopped: the deadline no longer moves.
    score = client.zscore(q.keys.leased, lease.handle)
    time.sleep(0.4)
    assert client.zscore(q.keys.leased, lease.handle) == score
    q.complete(lease)
    assert q.stats().expired == 0


def test_a_heartbeat_reports_a_lease_lost_before_it_beat(make_queue: MakeQueue) -> None:
    q = make_queue()
    rival = make_queue(worker="rival")
    q.put_many([b"a", b"b"])
    slow, kept = q.lease_many(2, 0.1)
    reported: list[Lease] = []
    beat = Heartbeat(q, [slow], on_lost=reported.append)
    beat.add(kept)
    q.extend(kept, 30)
    time.sleep(0.15)
    taken = held(rival, 30)  # reclaims the expired one
    assert taken.id == slow.id
    beat.beat()
    assert reported == [slow]
    assert beat.lost == [slow]
    assert beat.is_lost(slow) and not beat.is_lost(kept)
    beat.discard(kept)
    beat.beat()  # nothing left to renew: no call, no error
    assert reported == [slow]
    q.complete(kept)
    rival.complete(taken)


# -- stats --------------------------------------------------------------------------------------


def test_stats_is_one_snapshot_of_every_count(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue(max_attempts=5, retry_backoff_secs=60)
    q.put_many([b"1", b"2", b"3", b"4", b"5", b"6"])
    done, failed, dead, kept, released = q.lease_many(5, 30)
    q.complete(done)
    q.fail(failed, "later")
    q.fail(dead, "never", retry=False)
    q.release(released)
    client.rpush(q.keys.inbox, b"raw")
    q.close()
    stats = q.stats()
    assert stats == Stats(
        pending=3,  # item 6, the released item 5, and the raw one
        leased=1,
        delayed=1,
        dead=1,
        closed=True,
        enqueued=6,
        completed=1,
        failed=2,
        retried=1,
        expired=0,
        dead_lettered=1,
        released=1,
        dropped=0,
    )
    assert (stats.drained, stats.outstanding) == (False, 5)
    q.complete(kept)


def test_peek_and_holders_show_pending_items_and_live_leases(make_queue: MakeQueue) -> None:
    q = make_queue(worker="pod-a")
    q.put_many([b"a", b"b", b"c"])
    lease = held(q)
    assert [(i.id, i.attempts, i.payload) for i in q.peek(5)] == [("2", 0, b"b"), ("3", 0, b"c")]
    [info] = q.holders()
    assert (info.id, info.attempt, info.worker, info.deadline_ms) == ("1", 1, "pod-a", lease.deadline_ms)


# -- refused arguments --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "jobs{x}", "{jobs}", "jobs}", "two words", "tab\there", "new\nline"])
def test_a_bad_queue_name_is_refused(client: redis.Redis, name: str) -> None:
    with pytest.raises(InvalidArgument):
        Queue(client, name)


@pytest.mark.parametrize("bad_id", ["123", "0", "007", ""])
def test_an_empty_or_all_digit_caller_id_is_refused_and_nothing_is_written(
    client: redis.Redis, make_queue: MakeQueue, bad_id: str
) -> None:
    q = make_queue()
    with pytest.raises(InvalidArgument):
        q.put(b"x", id=bad_id)
    with pytest.raises(InvalidArgument):
        q.put_many([b"x", b"y"], ids=["fine", bad_id])
    assert existing_keys(client, q.keys) == set()


def test_a_non_string_id_or_payload_is_refused(make_queue: MakeQueue) -> None:
    q = make_queue()
    with pytest.raises(InvalidArgument):
        q.put(b"x", id=5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        q.put(12345)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        q.put_many([b"x", b"y"], ids=["only-one"])


def test_an_oversized_payload_is_refused_and_nothing_is_written(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(max_payload_bytes=10)
    assert q.put(b"x" * 10) is not None
    with pytest.raises(InvalidArgument, match="11 bytes"):
        q.put(b"x" * 11)
    with pytest.raises(InvalidArgument):
        q.put_many([b"ok", b"y" * 11])
    assert counters(client, q.keys) == {"enqueued": 1}


@pytest.mark.parametrize("lease_secs", [0, -1, float("nan")])
def test_a_non_positive_lease_length_is_refused(make_queue: MakeQueue, lease_secs: float) -> None:
    q = make_queue()
    q.put(b"x")
    with pytest.raises(InvalidArgument):
        q.lease(lease_secs)
    with pytest.raises(InvalidArgument):
        q.lease_many(2, lease_secs)
    lease = held(q)
    with pytest.raises(InvalidArgument):
        q.extend(lease, lease_secs)
    assert q.stats().leased == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda q: q.lease_many(0, 30),
        lambda q: q.lease(30, until="forever"),
        lambda q: q.complete_and_lease([], count=0),
    ],
)
def test_a_bad_count_or_until_is_refused(make_queue: MakeQueue, call: Callable[[Queue], object]) -> None:
    with pytest.raises(InvalidArgument):
        call(make_queue())


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"reclaim_limit": 0},
        {"retry_backoff_secs": 0},
        {"retry_backoff_cap_secs": -1},
    ],
)
def test_bad_queue_options_are_refused(client: redis.Redis, queue_name: str, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        Queue(client, queue_name, **options)
