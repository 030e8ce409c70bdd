"""Each Lua script, driven through the façade, with the exact Redis state it leaves asserted.

The state is read straight from the keys the schema in `rediswq/_keys.py` documents (envelopes decoded
with msgpack, zset scores compared with Redis's own TIME), not through the library's readers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers_core import (
    counters,
    dead,
    delayed,
    evalsha_calls,
    existing_keys,
    handle_fields,
    leased,
    meta,
    pending,
    redis_now_ms,
)
from redis.crc import key_slot
from redis_server import RedisServer

from rediswq import LeaseLost, LeaseTimeout, PermissionDenied, Queue, QueueClosed, _library
from rediswq._keys import EMBED_LIMIT, LEASED_SENTINEL, Keys
from rediswq._scripts import DRAINED, LEASED, MISSING, NOTHING_NOW, Scripts
from rediswq._wire import envelope

pytestmark = pytest.mark.usefixtures("lua_path")

MakeQueue = Callable[..., Queue]


@pytest.fixture
def make_queue(client: redis.Redis, queue_name: str) -> Iterator[MakeQueue]:
    """Queues on the test's own name with the options a test needs; purged afterwards."""
    made: list[Queue] = []

    def make(**options: Any) -> Queue:
        options.setdefault("worker", "w-1")
        q = Queue(client, queue_name, **options)
        made.append(q)
        return q

    yield make
    for q in made:
        q.purge()


def make_due(client: redis.Redis, keys: Keys) -> None:
    """Make every delayed item due now, instead of waiting out its backoff."""
    members: list[bytes] = client.zrange(keys.delayed, 0, -1)  # type: ignore[assignment]
    for member in members:
        client.zadd(keys.delayed, {member: 0}, xx=True)


# -- put ----------------------------------------------------------------------------------------


def test_put_gives_sequential_ids_and_appends_envelopes(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    result = q.put_many([b"a", b"b", b"a"])
    assert (result.added, result.skipped) == (3, 0)
    assert q.put(b"c") == "4"
    assert pending(client, q.keys) == [[1, 0, b"a"], [2, 0, b"b"], [3, 0, b"a"], [4, 0, b"c"]]
    assert meta(client, q.keys) == {"seq": 4, "enqueued": 4}
    assert existing_keys(client, q.keys) == {"pending", "meta"}


def test_put_with_caller_ids_tracks_them_as_live(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    assert q.put(b"x", id="job-x") == "job-x"
    assert q.put_many([b"y", b"z"], ids=["job-y", "job-z"]).added == 2
    assert pending(client, q.keys) == [[b"job-x", 0, b"x"], [b"job-y", 0, b"y"], [b"job-z", 0, b"z"]]
    assert client.smembers(q.keys.ids) == {b"job-x", b"job-y", b"job-z"}
    # No id was asked of the queue, so its sequence was not touched.
    assert meta(client, q.keys) == {"enqueued": 3}


def test_put_of_a_live_caller_id_adds_nothing_while_pending_leased_or_delayed(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(retry_backoff_secs=60)
    assert q.put(b"first", id="k") == "k"
    assert q.put(b"second", id="k") is None  # pending
    lease = q.lease(30)
    assert lease is not None
    assert q.put(b"third", id="k") is None  # leased
    q.fail(lease, "transient")
    assert q.put(b"fourth", id="k") is None  # delayed
    assert pending(client, q.keys) == []
    assert [entry for entry, _due in delayed(client, q.keys)] == [[b"k", 1, b"first"]]
    assert counters(client, q.keys) == {"enqueued": 1, "failed": 1, "retried": 1}


def test_put_many_skips_a_repeated_id_within_one_batch(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    result = q.put_many([b"1", b"2", b"3"], ids=["a", "b", "a"])
    assert (result.added, result.skipped) == (2, 1)
    assert pending(client, q.keys) == [[b"a", 0, b"1"], [b"b", 0, b"2"]]


def test_put_of_a_completed_caller_id_adds_it_again(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put(b"v1", id="k")
    lease = q.lease(30)
    assert lease is not None
    q.complete(lease)
    assert not client.exists(q.keys.ids)
    assert q.put(b"v2", id="k") == "k"
    assert pending(client, q.keys) == [[b"k", 0, b"v2"]]
    assert counters(client, q.keys) == {"enqueued": 2, "completed": 1}


def test_put_on_a_closed_queue_adds_nothing(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.close()
    with pytest.raises(QueueClosed):
        q.put(b"late")
    with pytest.raises(QueueClosed) as caught:
        q.put_many([b"late", b"later"])
    assert caught.value.added == 0
    # Only the id sequence moved (the client reserves ids before the script checks closed: a harmless
    # gap of 1 + 2 ids); the closed check comes before anything else is written.
    assert meta(client, q.keys) == {"closed": 1, "seq": 3}
    assert existing_keys(client, q.keys) == {"meta"}


def test_put_many_closed_part_way_reports_what_went_in(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()

    def payloads() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        yield b"c"  # the first batch (a, b) is on its way while put_many reads this
        deadline = time.monotonic() + 5
        while client.llen(q.keys.pending) < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        q.close()
        yield b"d"

    with pytest.raises(QueueClosed) as caught:
        q.put_many(payloads(), batch_size=2)
    assert caught.value.added == 2
    assert pending(client, q.keys) == [[1, 0, b"a"], [2, 0, b"b"]]
    assert counters(client, q.keys) == {"enqueued": 2}


def test_put_of_a_dead_letters_id_supersedes_the_dead_letter(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(max_attempts=1)
    q.put(b"old", id="p")
    lease = q.lease(30)
    assert lease is not None
    assert q.fail(lease, "broken") is True
    assert set(dead(client, q.keys)) == {b"p"}
    assert q.put(b"new", id="p") == "p"
    assert dead(client, q.keys) == {}
    assert pending(client, q.keys) == [[b"p", 0, b"new"]]
    assert client.smembers(q.keys.ids) == {b"p"}
    assert counters(client, q.keys) == {"enqueued": 2, "failed": 1, "dead_lettered": 1, "dropped": 1}


# -- lease --------------------------------------------------------------------------------------


def test_lease_records_its_deadline_on_redis_clock(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put(b"payload")
    q.put(b"other")
    before = redis_now_ms(client)
    lease = q.lease(30, worker="pod-7")
    after = redis_now_ms(client)
    assert lease is not None
    assert (lease.id, lease.payload, lease.attempt, lease.lease_ms) == ("1", b"payload", 1, 30000)
    [(handle, deadline_ms)] = leased(client, q.keys)
    token, item_id, attempt, worker, leased_at_ms = handle
    assert (token, item_id, attempt, worker) == (1, 1, 1, b"pod-7")
    assert before <= leased_at_ms <= after
    assert deadline_ms == leased_at_ms + 30000 == lease.deadline_ms
    # The handle is the envelope the item was leased from, then token, worker and leased_at_ms.
    assert lease.handle.startswith(envelope(1, b"payload"))
    assert not client.exists(q.keys.payloads)  # a small payload travels in the handle
    assert pending(client, q.keys) == [[2, 0, b"other"]]
    assert meta(client, q.keys) == {"seq": 2, "enqueued": 2, "token": 1}


def test_each_lease_of_an_item_counts_one_attempt(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put(b"x")
    for expected in (1, 2, 3):
        lease = q.lease(0.05)
        assert lease is not None
        assert lease.attempt == expected
        [(handle, _deadline)] = leased(client, q.keys)
        assert handle[2] == expected
        time.sleep(0.08)
    assert counters(client, q.keys)["expired"] == 2


def test_a_lease_token_names_the_call_and_the_item_id_the_lease(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put_many([b"same"] * 5)
    leases = q.lease_many(3, 30) + q.lease_many(2, 30)
    tokens = [handle_fields(lease.handle)[0] for lease in leases]
    assert tokens == [1, 1, 1, 2, 2]
    assert len({lease.handle for lease in leases}) == 5
    assert client.zcard(q.keys.leased) == 5 + 1  # and the sentinel
    assert meta(client, q.keys)["token"] == 2


def test_a_copy_of_an_envelope_planted_in_pending_goes_back_and_is_leased_by_a_later_call(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put_many([b"a", b"b" * 300, b"c"])  # b's payload is kept apart while it is leased
    first, second, _ = client.lrange(q.keys.pending, 0, -1)
    client.rpush(q.keys.pending, second, first)  # copies, as a hand-made LPUSH would leave them
    leases = q.lease_many(10, 30)
    assert [(lease.id, lease.payload) for lease in leases] == [("1", b"a"), ("2", b"b" * 300), ("3", b"c")]
    assert client.lrange(q.keys.pending, 0, -1) == [second, first]  # back, as they were
    assert client.zcard(q.keys.leased) == 3 + 1
    again = q.lease_many(10, 30)
    assert [(lease.id, lease.payload) for lease in again] == [("2", b"b" * 300), ("1", b"a")]
    assert len({lease.handle for lease in leases + again}) == 5
    q.complete_many(leases + again)
    assert q.stats().drained


def test_lease_takes_raw_items_from_the_inbox_after_pending(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put(b"queued")
    client.rpush(q.keys.inbox, b"raw-x", b"raw-y", b"raw-z")
    assert q.stats().pending == 4  # raw items count as pending before any worker takes them in
    leases = q.lease_many(3, 30)
    assert [(lease.id, lease.payload, lease.attempt) for lease in leases] == [
        ("1", b"queued", 1),
        ("2", b"raw-x", 1),
        ("3", b"raw-y", 1),
    ]
    assert client.lrange(q.keys.inbox, 0, -1) == [b"raw-z"]
    assert [h[1:3] for h, _ in leased(client, q.keys)] == [[1, 1], [2, 1], [3, 1]]
    # Raw items are counted as enqueued when a lease takes them in.
    assert meta(client, q.keys) == {"seq": 3, "enqueued": 3, "token": 1}  # one lease call
    [last] = q.lease_many(5, 30)
    assert (last.id, last.payload) == ("4", b"raw-z")
    assert not client.exists(q.keys.inbox)
    assert meta(client, q.keys)["enqueued"] == 4


def test_lease_ignores_an_inbox_key_that_is_not_a_list(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    client.set(q.keys.inbox, b"another application's string")
    q.put(b"item")
    leases = q.lease_many(5, 30)
    assert [lease.payload for lease in leases] == [b"item"]
    assert client.get(q.keys.inbox) == b"another application's string"
    client.delete(q.keys.inbox)


def test_lease_reclaims_at_most_reclaim_limit_expired_leases(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(reclaim_limit=2)
    q.put_many([b"p1", b"p2", b"p3", b"p4", b"p5", b"p6"])
    stale = q.lease_many(5, 0.05)
    assert [lease.id for lease in stale] == ["1", "2", "3", "4", "5"]
    time.sleep(0.1)
    [fresh] = q.lease_many(1, 30)
    # Two expired leases went back to the head of pending; one of them was leased again.
    assert counters(client, q.keys)["expired"] == 2
    assert fresh.attempt == 2
    assert client.zcard(q.keys.leased) == 3 + 1 + 1  # and the sentinel
    rest = pending(client, q.keys)
    assert len(rest) == 2
    assert rest[-1] == [6, 0, b"p6"]
    assert rest[0][1] == 1  # a reclaimed item keeps its attempt count
    reclaimed_ids = {str(rest[0][0]), fresh.id}
    assert reclaimed_ids < {"1", "2", "3", "4", "5"}
    assert len(reclaimed_ids) == 2
    # Reclaimed items are back in pending with their payloads.
    assert {bytes(e[2]) for e in rest} == {b"p" + str(e[0]).encode() for e in rest}
    q.lease_many(1, 30)
    assert counters(client, q.keys)["expired"] == 4


def test_lease_on_the_last_attempt_expired_renewed_dead_letters_the_item(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(max_attempts=1)
    q.put(b"poison", id="kills-its-worker")
    lease = q.lease(0.05)
    assert lease is not None
    time.sleep(0.002)
    q.extend(lease, 0.05)  # a sign of life: the worker had it
    time.sleep(0.08)
    before = redis_now_ms(client)
    assert q.lease(30, timeout=0) is None  # the reclaim dead-letters it, and then the queue is drained
    after = redis_now_ms(client)
    [(item_id, record)] = dead(client, q.keys).items()
    assert item_id == b"kills-its-worker"
    assert record[:4] == [b"kills-its-worker", 1, b"poison", b"lease expired"]
    assert before <= record[4] <= after
    assert existing_keys(client, q.keys) == {"dead", "meta"}
    assert counters(client, q.keys) == {"enqueued": 1, "expired": 1, "dead_lettered": 1}


def test_an_unseen_expiry_on_the_last_attempt_leases_the_item_once_more_then_dead_letters_it(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    # A lease never renewed nor settled may never have reached a worker (its reply was lost).
    q = make_queue(max_attempts=1)
    q.put(b"maybe-lost", id="unseen")
    assert q.lease(0.05) is not None  # this reply "is lost": nobody renews it
    time.sleep(0.08)
    again = q.lease(0.05, timeout=0)
    assert again is not None and again.id == "unseen" and again.attempt == 2
    assert dead(client, q.keys) == {}
    time.sleep(0.08)  # a poison item that kills its worker at once expires unseen again: dead now
    assert q.lease(30, timeout=0) is None
    [(item_id, record)] = dead(client, q.keys).items()
    assert (item_id, record[:4]) == (b"unseen", [b"unseen", 2, b"maybe-lost", b"lease expired"])
    assert counters(client, q.keys) == {"enqueued": 1, "expired": 2, "dead_lettered": 1}


def test_lease_moves_due_retries_bounded_by_reclaim_limit(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue(reclaim_limit=2, retry_backoff_secs=60)
    q.put_many([b"r1", b"r2", b"r3", b"r4"])
    for lease in q.lease_many(4, 30):
        q.fail(lease, "transient")
    assert client.zcard(q.keys.delayed) == 4
    # Not due yet: nothing to lease now, and not drained either.
    with pytest.raises(LeaseTimeout):
        q.lease_many(1, 30, timeout=0)
    make_due(client, q.keys)
    [again] = q.lease_many(1, 30)
    assert again.attempt == 2
    assert client.zcard(q.keys.delayed) == 2
    assert [item[1] for item in pending(client, q.keys)] == [1]  # the other due retry, still at attempt 1
    assert counters(client, q.keys) == {"enqueued": 4, "failed": 4, "retried": 4}


def test_lease_status_tells_drained_from_nothing_now_with_a_wait_hint(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(retry_backoff_secs=2)
    scripts = Scripts(client, q.keys)
    scripts.prepare()

    def lease_now(until_closed: bool = False) -> Any:
        return scripts.lease(
            count=1, lease_ms=30000, max_attempts=5, reclaim_limit=100, worker="w", until_closed=until_closed
        )

    assert lease_now().status == MISSING  # nothing was ever added: no queue, not a drained one
    assert lease_now(until_closed=True).status == MISSING
    assert existing_keys(client, q.keys) == set()
    q.put(b"done")
    first = q.lease(5)
    assert first is not None
    q.complete(first)
    assert lease_now().status == DRAINED
    reply = lease_now(until_closed=True)
    assert (reply.status, reply.wait_ms) == (NOTHING_NOW, -1)

    q.put(b"held")
    assert q.lease(5) is not None
    reply = lease_now()
    assert reply.status == NOTHING_NOW
    assert 4000 < reply.wait_ms <= 5000  # until the held lease's deadline

    q.put(b"fails")
    retried = q.lease(30)
    assert retried is not None
    q.fail(retried, "transient")
    reply = lease_now()
    assert reply.status == NOTHING_NOW
    assert 1000 < reply.wait_ms <= 2000  # until the retry is due, sooner than the deadline

    make_due(client, q.keys)
    reply = lease_now()
    assert reply.status == LEASED
    assert [(item_id, attempt, payload) for item_id, attempt, payload, _h in reply.items] == [
        ("3", 2, b"fails")
    ]


# -- complete -----------------------------------------------------------------------------------


def test_complete_removes_the_lease_its_payload_and_its_live_id(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put(b"mine", id="k")
    q.put(b"auto")
    first, second = q.lease_many(2, 30)
    assert first.id == "k"
    q.complete(first)
    assert [h[1] for h, _ in leased(client, q.keys)] == [1]  # the auto id: the caller's took no number
    assert not client.exists(q.keys.ids)
    q.complete_many([second])
    # leased holds its sentinel only (written by a lease of several items).
    assert existing_keys(client, q.keys) == {"leased", "meta"}
    assert counters(client, q.keys) == {"enqueued": 2, "completed": 2}


def test_complete_of_a_settled_lease_raises_lease_lost_and_changes_nothing(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put_many([b"a", b"b"])
    first, second = q.lease_many(2, 30)
    q.complete(first)
    with pytest.raises(LeaseLost) as caught:
        q.complete_many([first, second])
    assert caught.value.leases == [first]
    # The lease that held was completed all the same; leased holds its sentinel only.
    assert existing_keys(client, q.keys) == {"leased", "meta"}
    assert counters(client, q.keys) == {"enqueued": 2, "completed": 2}


def test_complete_and_lease_is_one_script_call(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put_many([b"a", b"b", b"c"])
    first = q.lease(30)
    assert first is not None
    calls = evalsha_calls(client)
    handoff = q.complete_and_lease([first], count=2, lease_secs=30)
    assert evalsha_calls(client) - calls == 1
    assert handoff.lost == []
    assert [lease.payload for lease in handoff.leases] == [b"b", b"c"]
    assert [h[1] for h, _ in leased(client, q.keys)] == [2, 3]
    assert counters(client, q.keys) == {"enqueued": 3, "completed": 1}


def test_complete_and_lease_reports_lost_completions(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put_many([b"a", b"b", b"c"])
    first, second = q.lease_many(2, 30)
    q.complete(first)
    handoff = q.complete_and_lease([first, second], count=1, lease_secs=30)
    assert handoff.lost == [first]
    assert [lease.payload for lease in handoff.leases] == [b"c"]
    assert counters(client, q.keys) == {"enqueued": 3, "completed": 2}


# -- fail ---------------------------------------------------------------------------------------


def test_fail_backoff_doubles_from_the_first_delay_until_the_cap(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    """1, 2, 4, 8, 16 s, then the 20 s cap: a cap far above the first delay, so linear growth (1, 2, 3,
    4, 5 s) fails from the third attempt. Each due time is the delayed zset's score, compared with
    Redis's clock just before and after the fail call; nothing waits out a delay."""
    q = make_queue(max_attempts=10, retry_backoff_secs=1, retry_backoff_cap_secs=20)
    q.put(b"flaky")
    expected_secs = [1, 2, 4, 8, 16, 20, 20]
    for attempt, expected in enumerate(expected_secs, start=1):
        make_due(client, q.keys)
        lease = q.lease(30)
        assert lease is not None
        assert lease.attempt == attempt
        before = redis_now_ms(client)
        assert q.fail(lease, f"failure {attempt}") is False
        after = redis_now_ms(client)
        [(entry, due_ms)] = delayed(client, q.keys)
        assert entry == [1, attempt, b"flaky"]
        assert before + expected * 1000 <= due_ms <= after + expected * 1000, (attempt, due_ms - before)
        assert not client.exists(q.keys.leased, q.keys.payloads)
    retries = len(expected_secs)
    assert counters(client, q.keys) == {"enqueued": 1, "failed": retries, "retried": retries}


def test_fail_on_the_last_attempt_dead_letters_the_item(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue(max_attempts=2, retry_backoff_secs=60)
    q.put(b"bad", id="item-b")
    lease = q.lease(30)
    assert lease is not None
    assert q.fail(lease, "first") is False
    make_due(client, q.keys)
    lease = q.lease(30)
    assert lease is not None
    before = redis_now_ms(client)
    assert q.fail(lease, "second: ValueError") is True
    after = redis_now_ms(client)
    [(item_id, record)] = dead(client, q.keys).items()
    assert item_id == b"item-b"
    assert record[:4] == [b"item-b", 2, b"bad", b"second: ValueError"]
    assert before <= record[4] <= after
    # The id is no longer live (no ids key); no lease is left.
    assert existing_keys(client, q.keys) == {"dead", "meta"}
    assert counters(client, q.keys) == {"enqueued": 1, "failed": 2, "retried": 1, "dead_lettered": 1}
    [letter] = q.dead_letters()
    assert (letter.id, letter.attempts, letter.payload, letter.error) == (
        "item-b",
        2,
        b"bad",
        "second: ValueError",
    )


def test_fail_without_retry_dead_letters_at_once(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue(max_attempts=5)
    q.put(b"hopeless")
    lease = q.lease(30)
    assert lease is not None
    assert q.fail(lease, "no point", retry=False) is True
    assert dead(client, q.keys)[b"1"][:4] == [1, 1, b"hopeless", b"no point"]
    assert counters(client, q.keys) == {"enqueued": 1, "failed": 1, "dead_lettered": 1}


def test_fail_of_a_settled_lease_raises_lease_lost_and_changes_nothing(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(retry_backoff_secs=60)
    q.put(b"x")
    lease = q.lease(30)
    assert lease is not None
    q.fail(lease, "once")
    state = (delayed(client, q.keys), meta(client, q.keys))
    with pytest.raises(LeaseLost):
        q.fail(lease, "twice")
    assert (delayed(client, q.keys), meta(client, q.keys)) == state


# -- extend -------------------------------------------------------------------------------------


def test_extend_moves_the_deadline_on_redis_clock(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put_many([b"a", b"b"])
    lease, other = q.lease_many(2, 5)
    before = redis_now_ms(client)
    q.extend(lease, 30)
    after = redis_now_ms(client)
    scores = {entry[1]: deadline for entry, deadline in leased(client, q.keys)}
    assert before + 30000 <= scores[1] <= after + 30000
    assert lease.deadline_ms == scores[1]
    assert lease.lease_ms == 30000
    assert scores[2] == other.deadline_ms  # untouched
    # Without a length, a lease is extended by its own (now 30 s).
    before = redis_now_ms(client)
    q.extend(lease)
    score = client.zscore(q.keys.leased, lease.handle)
    assert score is not None
    assert score >= before + 30000


def test_extend_never_recreates_a_lost_lease(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    q.put_many([b"a", b"b"])
    gone, held = q.lease_many(2, 5)
    q.complete(gone)
    deadline_before = held.deadline_ms
    with pytest.raises(LeaseLost) as caught:
        q.extend_many([gone, held], 60)
    assert caught.value.leases == [gone]
    assert client.zscore(q.keys.leased, gone.handle) is None
    assert client.zcard(q.keys.leased) == 1 + 1  # and the sentinel
    assert held.deadline_ms > deadline_before  # the one that held was extended all the same
    assert client.zscore(q.keys.leased, held.handle) == held.deadline_ms


# -- release ------------------------------------------------------------------------------------


def test_release_returns_the_item_to_the_head_without_charging_the_attempt(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put_many([b"a", b"b"])
    lease = q.lease(30)
    assert lease is not None
    q.release(lease)
    assert pending(client, q.keys) == [[1, 0, b"a"], [2, 0, b"b"]]
    assert existing_keys(client, q.keys) == {"pending", "meta"}
    assert counters(client, q.keys) == {"enqueued": 2, "released": 1}
    again = q.lease(30)
    assert again is not None
    assert (again.id, again.attempt) == ("1", 1)
    with pytest.raises(LeaseLost):
        q.release(lease)


def test_release_after_a_reclaim_keeps_the_earlier_attempts(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put(b"a")
    assert q.lease(0.05) is not None
    time.sleep(0.08)
    second = q.lease(30)
    assert second is not None
    assert second.attempt == 2
    q.release(second)
    assert pending(client, q.keys) == [[1, 1, b"a"]]
    third = q.lease(30)
    assert third is not None
    assert third.attempt == 2


# -- dead letters -------------------------------------------------------------------------------


def _dead_letter_three(q: Queue) -> None:
    """Dead letters 1 (a), kb (b) and 2 (c); item 3 (alive) stays pending. Caller ids take no number."""
    q.put(b"a")
    q.put(b"b", id="kb")
    q.put(b"c")
    q.put(b"alive")
    for lease in q.lease_many(3, 30):
        q.fail(lease, "broken", retry=False)


def test_requeue_dead_moves_dead_letters_to_the_tail_with_fresh_attempts(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    _dead_letter_three(q)
    assert set(dead(client, q.keys)) == {b"1", b"kb", b"2"}
    assert q.requeue_dead(["kb", "no-such-id"]) == 1
    assert pending(client, q.keys) == [[3, 0, b"alive"], [b"kb", 0, b"b"]]
    assert client.smembers(q.keys.ids) == {b"kb"}  # live again
    assert q.requeue_dead(["2", "1"]) == 2
    assert pending(client, q.keys)[2:] == [[2, 0, b"c"], [1, 0, b"a"]]
    assert not client.exists(q.keys.dead)
    # A requeued item is the same item: nothing is counted as enqueued or dropped again.
    assert counters(client, q.keys) == {"enqueued": 4, "failed": 3, "dead_lettered": 3}
    q.complete(q.lease_many(2, 30)[1])  # skip "alive"; kb comes next
    lease = q.lease(30)
    assert lease is not None
    assert (lease.id, lease.attempt) == ("2", 1)


def test_purge_dead_deletes_dead_letters_and_counts_them_dropped(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    _dead_letter_three(q)
    assert q.purge_dead(["1", "no-such-id"]) == 1
    assert set(dead(client, q.keys)) == {b"kb", b"2"}
    assert counters(client, q.keys)["dropped"] == 1
    assert q.purge_dead(["kb", "2"]) == 2
    assert not client.exists(q.keys.dead)
    assert counters(client, q.keys) == {"enqueued": 4, "failed": 3, "dead_lettered": 3, "dropped": 3}
    assert pending(client, q.keys) == [[3, 0, b"alive"]]


# -- purge and the key schema -------------------------------------------------------------------


def test_purge_deletes_exactly_the_queues_keys(
    client: redis.Redis, make_queue: MakeQueue, queue_name: str
) -> None:
    q = make_queue(max_attempts=5, retry_backoff_secs=60)
    # p3 is over EMBED_LIMIT: while leased, it waits in the payloads hash.
    q.put_many([b"p1", b"p2", b"p3" * 200, b"p4"], ids=["a", "b", "c", "d"])
    leases = q.lease_many(3, 30)
    q.fail(leases[0], "retry later")
    q.fail(leases[1], "dead", retry=False)
    client.rpush(q.keys.inbox, b"raw")
    assert existing_keys(client, q.keys) == {
        "inbox",
        "pending",
        "leased",
        "payloads",
        "delayed",
        "dead",
        "ids",
        "meta",
    }
    neighbour = Queue(client, queue_name + "-neighbour")
    neighbour.put(b"not mine")
    unrelated = {
        "unrelated": b"1",
        f"{queue_name}:pending": b"2",
        f"rediswq:{queue_name}:pending": b"3",
        f"rediswq:{{{queue_name}x}}:pending": b"4",
        f"rediswq:{{{queue_name}}}:other-app": b"5",
    }
    client.mset(unrelated)
    try:
        q.purge()
        assert existing_keys(client, q.keys) == set()
        assert client.mget(list(unrelated)) == list(unrelated.values())
        assert neighbour.stats().pending == 1
    finally:
        client.delete(*unrelated)
        neighbour.purge()


def test_every_key_of_a_queue_is_in_one_cluster_slot(queue_name: str) -> None:
    keys = Keys.for_queue(queue_name)
    assert len({key_slot(key.encode()) for key in keys.all()}) == 1
    assert keys.pending == f"rediswq:{{{queue_name}}}:pending"
    assert keys.inbox == queue_name


def test_leasing_several_items_keeps_leased_out_of_the_listpack_encoding(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put_many([b"a", b"b", b"c"])
    first = q.lease_many(3, 30)
    assert client.object("encoding", q.keys.leased) == b"skiplist"
    assert client.zscore(q.keys.leased, LEASED_SENTINEL) == float("inf")
    q.complete_many(first)  # the key keeps its sentinel, so it keeps its encoding
    assert client.object("encoding", q.keys.leased) == b"skiplist"


def test_a_large_payload_waits_in_the_payloads_hash_while_leased(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue(max_attempts=5, retry_backoff_secs=60)
    big = bytes(range(256)) * 2  # over EMBED_LIMIT: the handle must stay small
    q.put_many([big, big, big])
    expiring, failing, releasing = q.lease_many(3, 30)
    assert [lease.payload for lease in (expiring, failing, releasing)] == [big] * 3
    assert all(len(lease.handle) < 100 for lease in (expiring, failing, releasing))
    assert client.hgetall(q.keys.payloads) == {b"1": big, b"2": big, b"3": big}
    assert client.object("encoding", q.keys.payloads) == b"hashtable"
    # Each way out of a lease takes the payload back into the item's envelope.
    q.fail(failing, "transient")
    q.release(releasing)
    client.zadd(q.keys.leased, {expiring.handle: 0}, xx=True)  # expired long ago
    [again] = q.lease_many(1, 30)  # the reclaim pushes it to the head, and it is leased again
    assert (again.id, again.attempt, again.payload) == ("1", 2, big)
    assert client.hgetall(q.keys.payloads) == {b"1": big}
    assert pending(client, q.keys) == [[3, 0, big]]
    assert delayed(client, q.keys)[0][0] == [2, 1, big]
    q.complete(again)
    assert not client.exists(q.keys.payloads)
    assert counters(client, q.keys) == {
        "enqueued": 3,
        "completed": 1,
        "expired": 1,
        "failed": 1,
        "retried": 1,
        "released": 1,
    }


def test_the_sentinels_are_invisible_to_stats_holders_the_wait_and_drained(
    client: redis.Redis, make_queue: MakeQueue
) -> None:
    q = make_queue()
    q.put_many([b"one", b"two"])
    leases = q.lease_many(2, 30)  # a lease of several items writes the sentinel
    assert client.zscore(q.keys.leased, LEASED_SENTINEL) == float("inf")
    assert [h.id for h in q.holders()] == [lease.id for lease in leases]
    assert q.stats().leased == 2
    with pytest.raises(LeaseTimeout):  # the wait hint is the lease's deadline, never the +inf sentinel
        q.lease(30, timeout=0.05)
    q.complete_many(leases)
    assert q.holders() == []
    assert q.stats().leased == 0
    assert q.is_drained()
    assert q.lease(30, timeout=1) is None  # drained at once: the sentinel is no lease


def test_the_prelude_names_the_same_sentinel_and_embed_limit_as_the_key_schema() -> None:
    prelude = (Path(__file__).parent.parent / "rediswq" / "lua" / "prelude.lua").read_text()
    assert f"local SENTINEL = '{LEASED_SENTINEL.decode()}'\n" in prelude
    assert f"local EMBED_LIMIT = {EMBED_LIMIT}\n" in prelude


@pytest.mark.parametrize("item_id", [1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**40])
@pytest.mark.parametrize("size", [0, 1, 31, 32, 255, 256, 65535, 65536])
def test_envelopes_built_by_the_client_are_the_bytes_lua_would_pack(
    client: redis.Redis, item_id: int, size: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    lua = "return cmsgpack.pack({tonumber(ARGV[1]), 0, ARGV[2]})"
    assert envelope(item_id, payload) == client.eval(lua, 0, item_id, payload)
    as_caller_id = "k" * (item_id % 300)  # 0 to 299 characters: every string header
    if as_caller_id:
        lua_str = "return cmsgpack.pack({ARGV[1], 0, ARGV[2]})"
        assert envelope(as_caller_id, payload) == client.eval(lua_str, 0, as_caller_id, payload)


def test_put_many_pushes_the_envelopes_lua_would_pack(client: redis.Redis, make_queue: MakeQueue) -> None:
    q = make_queue()
    payloads = [b"p" * size for size in (0, 1, 31, 32, 255, 256, 65535, 65536)]
    q.put_many(payloads)
    q.put_many(payloads, ids=[f"id-{size}" for size in range(len(payloads))])
    lua = "return cmsgpack.pack({tonumber(ARGV[1]) or ARGV[1], 0, ARGV[2]})"
    expected = [client.eval(lua, 0, i + 1, p) for i, p in enumerate(payloads)]
    expected += [client.eval(lua, 0, f"id-{i}", p) for i, p in enumerate(payloads)]
    assert client.lrange(q.keys.pending, 0, -1) == expected


@pytest.mark.parametrize("operation", _library.OPERATIONS)
def test_every_line_of_a_script_maps_back_to_the_same_line_of_its_file(operation: str) -> None:
    for number, text in enumerate(_library.script(operation).splitlines(), start=1):
        where = _library.script_where(operation, number)
        assert where is not None, f"{operation} script line {number}"
        name, line = where
        assert _library.source(name).splitlines()[line - 1] == text, f"{operation} script line {number}"


def test_every_line_of_the_library_from_a_file_maps_back_to_that_line_and_the_prelude_comes_once() -> None:
    library = _library.library()
    lines = library.code.splitlines()
    mapped = [(number, library.where(number)) for number in range(1, len(lines) + 1)]
    files = {where[0] for _, where in mapped if where is not None}
    assert files == {_library.PRELUDE, *_library.OPERATIONS}
    for number, where in mapped:
        if where is not None:
            assert _library.source(where[0]).splitlines()[where[1] - 1] == lines[number - 1]
    assert library.code.count("local function checked(") == 1


@pytest.mark.parametrize(
    ("refused", "where"),
    [
        ("time", "in prelude.lua line "),  # lease.lua's clock_ms, a helper of the prelude
        ("zrem", "in fail.lua line "),  # fail.lua's first write
    ],
)
def test_a_command_the_acl_refuses_is_named_with_the_lua_file_and_line_that_ran_it(
    redis_server: RedisServer, client: redis.Redis, queue: Queue, refused: str, where: str
) -> None:
    queue.put_many([b"a", b"b"])
    leases = queue.lease_many(2, 30)
    user = f"no-{refused}"
    client.acl_setuser(user, enabled=True, passwords=["+pw"], commands=["+@all", f"-{refused}"], keys=["*"])
    url = f"redis://{user}:pw@127.0.0.1:{redis_server.port}/0"
    restricted = Queue.from_url(url, queue.name)
    with pytest.raises(PermissionDenied) as caught:
        restricted.fail(leases[0], "e") if refused == "zrem" else restricted.lease(30)
    message = str(caught.value)
    assert f"(the command {refused.upper()}, {where}" in message, message
    name, _, number = message.split(f"(the command {refused.upper()}, in ")[1].partition(".lua line ")
    line = _library.source(name).splitlines()[int(number.split(")")[0]) - 1]
    assert f"redis.call('{refused.upper()}'" in line, line
