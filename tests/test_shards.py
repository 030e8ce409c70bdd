"""Sharded queues on one server: key layout, routing of puts and settles, leasing from every shard,
closing and draining, checkpoints, the shard count's record, survey and names, ACL roles.

(On a cluster, with a master killed mid-drain and the balance over masters: test_shards_cluster.py.)
"""

from __future__ import annotations

import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator

import pytest
import redis
from topologies import ENTRY_POINT

import rediswq
from rediswq import InvalidArgument, LeaseLost, Queue, QueueClosed, QueueNotFound
from rediswq._keys import SLOTS, Keys, shard_of, shard_tag, slot_of
from rediswq._sharded_lease import ROTATE_CALLS
from rediswq._shards import shard_for_id
from rediswq.acl import acl_rules


@pytest.fixture
def name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sharded(client: redis.Redis, name: str) -> Iterator[Queue]:
    q = Queue(client, name, shards=4, retry_backoff_secs=0.05, retry_backoff_cap_secs=0.1)
    q.shard_count()
    yield q
    q.purge()


def keys_of(client: redis.Redis, name: str) -> set[str]:
    return {k.decode() for k in client.keys("*") if name in k.decode()}


@pytest.mark.parametrize("shards", [2, 3, 12, 64])
def test_the_shards_take_one_slice_of_the_slots_each(shards: int) -> None:
    tags = [Keys.for_shard("jobs", i, shards).meta.split("{")[1].split("}")[0] for i in range(shards)]
    assert tags[0] == "jobs" and Keys.for_shard("jobs", 0, shards).pending == Keys.for_queue("jobs").pending
    width = SLOTS / shards
    assert sorted(int(slot_of(tag) // width) for tag in tags) == list(range(shards))
    for i, tag in enumerate(tags[1:], 1):
        assert shard_of(tag) == ("jobs", i) and shard_tag("jobs", i, shards) == tag
        assert " " not in tag and "{" not in tag


def test_an_unsharded_queue_keeps_its_keys_and_records_no_count(client: redis.Redis, name: str) -> None:
    for shards in (None, 1):
        q = Queue(client, name, shards=shards)
        q.put(b"a")
        lease = q.lease(30)
        assert lease is not None and lease.shard == 0 and lease.id == "1"
        q.fail(lease, "x", retry=False)
        assert keys_of(client, name) == {f"rediswq:{{{name}}}:{k}" for k in ("meta", "dead")}
        assert client.hget(Keys.for_queue(name).meta, "shards") is None
        assert q.shard_count() == 1 and q.stats().shards == 1
        q.purge()


def test_items_go_to_the_shard_of_their_id_or_in_rotation(client: redis.Redis, sharded: Queue) -> None:
    assert sharded.put_many([b"%d" % i for i in range(400)]).added == 400
    assert [s.pending for s in sharded.shard_stats()] == [100] * 4
    ids = [item.id for item in sharded.peek(400)]
    assert len(set(ids)) == 400  # ids the shards assign never collide
    for i in range(4):
        shard = Keys.for_shard(sharded.name, i, 4)
        for raw in client.lrange(shard.pending, 0, -1):
            assert shard_for_id(rediswq._wire.read_envelope(raw)[0].__str__(), 4) == i
    ids_given = [f"item-{i}" for i in range(200)]
    assert sharded.put_many([b"x"] * 200, ids=ids_given) == rediswq.Enqueued(200, 0)
    by_id = [client.scard(Keys.for_shard(sharded.name, i, 4).ids) for i in range(4)]
    assert sum(by_id) == 200 and all(25 <= n <= 75 for n in by_id), by_id  # CRC-32 spreads them
    crc = zlib.crc32(b"item-3") % 4  # the same in every process: not Python's hash()
    assert client.sismember(Keys.for_shard(sharded.name, crc, 4).ids, "item-3")
    assert sharded.put_many([b"x"] * 200, ids=ids_given) == rediswq.Enqueued(0, 200)
    assert sharded.put(b"again", id="item-7") is None
    assert sharded.put(b"new", id="item-new") == "item-new"
    shard = Keys.for_shard(sharded.name, shard_for_id("item-new", 4), 4)
    assert client.sismember(shard.ids, "item-new")
    assert sharded.stats().pending == 601


def test_every_settle_goes_to_the_shard_of_its_lease(sharded: Queue) -> None:
    sharded.put_many([b"%d" % i for i in range(40)])
    leases = sharded.lease_many(10, 30)
    more = []
    while len({lease.shard for lease in leases + more}) < 4:
        more += sharded.lease_many(10, 30)
    held = leases + more
    by_shard = {lease.shard: lease for lease in held}
    sharded.extend_many(list(by_shard.values()), 60)
    sharded.release(by_shard[1])
    assert sharded.fail(by_shard[2], "boom", retry=False) is True
    sharded.complete_many([lease for lease in held if lease not in (by_shard[1], by_shard[2])])
    with pytest.raises(LeaseLost) as lost:
        sharded.complete_many([by_shard[0], by_shard[3]])
    assert set(lost.value.leases) == {by_shard[0], by_shard[3]}
    assert [d.error for d in sharded.dead_letters()] == ["boom"]
    assert sharded.requeue_dead([by_shard[2].id]) == 1
    drained = 0
    while got := sharded.lease_many(7, 30):
        sharded.complete_many(got)
        drained += len(got)
    stats = sharded.stats()
    assert drained == 40 - len(held) + 2
    assert stats.drained and stats.completed == 40 and stats.enqueued == 40 and stats.shards == 4
    assert sum(s.completed for s in sharded.shard_stats()) == 40


def test_close_closes_every_shard_shard_0_last(sharded: Queue, client: redis.Redis) -> None:
    order: list[int] = []
    for i, q in enumerate(sharded._shards.queues()):  # type: ignore[union-attr]
        close = q.close
        q.close = lambda i=i, close=close: (order.append(i), close())[1]  # type: ignore[method-assign]
    sharded.put_many([b"a"] * 8)
    sharded.close()
    assert order == [1, 2, 3, 0]
    assert all(s.closed for s in sharded.shard_stats()) and sharded.stats().closed
    with pytest.raises(QueueClosed):
        sharded.put_many([b"late"] * 8)
    worker = Queue(client, sharded.name)
    done = 0
    while leases := worker.lease_many(3, 30, until="closed"):
        worker.complete_many(leases)
        done += len(leases)
    assert done == 8


def test_a_worker_until_closed_waits_for_a_shard_still_open(sharded: Queue, client: redis.Redis) -> None:
    for q in sharded._shards.queues()[1:]:  # type: ignore[union-attr]
        q.close()
    assert not sharded.stats().closed  # shard 0 open: the queue is open
    with pytest.raises(rediswq.LeaseTimeout):
        Queue(client, sharded.name).lease(30, timeout=0.3, until="closed")
    sharded.close()
    assert Queue(client, sharded.name).lease(30, timeout=1, until="closed") is None


def test_a_queue_s_shard_count_is_read_from_redis_and_checked(client: redis.Redis, sharded: Queue) -> None:
    assert Queue(client, sharded.name).shard_count() == 4
    with pytest.raises(InvalidArgument, match="has 4 shard"):
        Queue(client, sharded.name, shards=3).put(b"x")
    with pytest.raises(InvalidArgument, match="has 4 shard"):
        Queue(client, sharded.name, shards=1).stats()
    plain = Queue(client, f"{sharded.name}-plain")
    plain.put(b"x")
    with pytest.raises(InvalidArgument, match="has 1 shard"):
        Queue(client, plain.name, shards=2).put(b"x")
    plain.purge()
    with pytest.raises(InvalidArgument, match="shards must be"):
        Queue(client, "x", shards=0)


def test_enqueue_shards_makes_the_queue_and_a_disagreeing_count_is_exit_2(
    redis_url: str, client: redis.Redis, name: str
) -> None:
    run = [ENTRY_POINT, "--url", redis_url, "enqueue", name, "--range", "0:300", "-q"]
    assert subprocess.run([*run, "--shards", "3"], capture_output=True, timeout=30).returncode == 0
    assert subprocess.run(run, capture_output=True, timeout=30).returncode == 0  # learns the count
    bad = subprocess.run([*run, "--shards", "5"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "has 3 shard(s), not 5" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    q = Queue(client, name)
    assert q.stats().pending == 600 and [s.pending for s in q.shard_stats()] == [200] * 3
    q.purge()


def test_the_checkpoint_says_only_what_every_shard_took(client: redis.Redis, sharded: Queue) -> None:
    items = [b"%d" % i for i in range(16)]
    sharded.put_many(items[:8], batch_size=2, checkpoint=("in", str))
    assert sharded.checkpoint("in") == "8"
    sharded._shards.queues()[2].close()  # type: ignore[union-attr]  # shard 2 refuses the next round
    with pytest.raises(QueueClosed) as closed:
        sharded.put_many(items[8:], batch_size=2, checkpoint=("in", lambda n: str(8 + n)))
    assert sharded.checkpoint("in") == "8"  # shard 0's call, last of the round, never went
    assert closed.value.added == sharded.stats().pending - 8  # shard 1's batch went in, and says so


def test_a_worker_moves_on_from_its_shard_and_costs_one_call_an_item(
    client: redis.Redis, sharded: Queue
) -> None:
    sharded.put_many([b"x"] * (ROTATE_CALLS * 8))
    worker = Queue(client, sharded.name, worker="w1")
    before = client.info("commandstats")
    order: list[int] = []
    lease = worker.lease(30)
    n = 0
    while lease is not None:
        order.append(lease.shard)
        n += 1
        handoff = worker.complete_and_lease([lease], 1, 30)
        lease = handoff.leases[0] if handoff.leases else None
    after = client.info("commandstats")
    calls = sum(
        int(after.get(f"cmdstat_{c}", {}).get("calls", 0))
        - int(before.get(f"cmdstat_{c}", {}).get("calls", 0))
        for c in ("fcall", "evalsha")
    )
    assert n == ROTATE_CALLS * 8 and set(order) == {0, 1, 2, 3}
    # Each shard holds 2 * ROTATE_CALLS items: the worker moves on before its first shard is empty.
    assert len(set(order[: ROTATE_CALLS + 1])) == 2
    assert calls <= n * 1.03 + 4 + 4  # one call an item; a move costs one; the last sweep 4


def test_consume_drains_a_sharded_queue_with_prefetch(client: redis.Redis, sharded: Queue) -> None:
    sharded.put_many([b"%d" % i for i in range(300)])
    got = []
    with Queue(client, sharded.name).consume(30, prefetch=7) as leases:
        for lease in leases:
            got.append(lease.payload)
    assert sorted(got) == sorted(b"%d" % i for i in range(300))
    assert sharded.stats().completed == 300


def test_a_vanished_shard_is_an_error(client: redis.Redis, sharded: Queue) -> None:
    sharded.put_many([b"x"] * 8)
    client.delete(*Keys.for_shard(sharded.name, 2, 4).all())
    worker = Queue(client, sharded.name)
    with pytest.raises(QueueNotFound, match="vanished"):
        while leases := worker.lease_many(8, 30):
            worker.complete_many(leases)


def test_names_and_survey_show_a_sharded_queue_once_a_lookalike_as_its_own(
    client: redis.Redis, sharded: Queue
) -> None:
    sharded.put_many([b"x"] * 40)
    lookalike = Queue(client, f"{sharded.name}~s1.0")  # the form of a tag, not one of this queue's
    if shard_tag(sharded.name, 1, 4) == lookalike.name:
        lookalike = Queue(client, f"{sharded.name}~s9.0")
    lookalike.put(b"y")
    names = Queue.names(client, pattern=f"{sharded.name}*")
    assert names == sorted([sharded.name, lookalike.name])
    found = {s.name: s.stats for s in rediswq.survey(client, pattern=f"{sharded.name}*").queues}
    assert set(found) == set(names)
    assert found[sharded.name] is not None and found[sharded.name].pending == 40
    assert found[sharded.name].shards == 4
    lookalike.purge()


def test_acl_roles_name_every_shard_s_keys(client: redis.Redis, redis_url: str, name: str) -> None:
    if int(client.info()["redis_version"].split(".")[0]) < 7:
        pytest.skip("Redis 7's rules (selectors)")
    Queue(client, "rediswq-install").install()
    users = {}
    for role in ("producer", "worker"):
        user = f"u-{role}-{name}"
        client.execute_command("ACL", "SETUSER", user, *acl_rules(name, role, shards=3), ">pw")
        users[role] = redis.Redis.from_url(redis_url.replace("redis://", f"redis://{user}:pw@"))
    try:
        producer = Queue(users["producer"], name, shards=3, allow_eviction=True)
        producer.put_many([b"%d" % i for i in range(30)])
        producer.close()
        worker = Queue(users["worker"], name, allow_eviction=True)
        done = 0
        while leases := worker.lease_many(4, 30, until="closed"):
            worker.complete_many(leases)
            done += len(leases)
        assert done == 30
        with pytest.raises(rediswq.PermissionDenied):
            Queue(users["producer"], f"{name}-other", shards=3, allow_eviction=True).put(b"x")
    finally:
        for role in users:
            client.execute_command("ACL", "DELUSER", f"u-{role}-{name}")
        Queue(client, name).purge()


def test_stats_ls_and_the_exporter_show_a_sharded_queue_as_one(
    client: redis.Redis, redis_url: str, sharded: Queue
) -> None:
    import json

    from rediswq_producer.exporter import QueueCollector

    sharded.put_many([b"x"] * 40)
    base = [ENTRY_POINT, "--url", redis_url]
    stats = json.loads(
        subprocess.run([*base, "stats", sharded.name, "--json"], capture_output=True, timeout=30).stdout
    )
    assert stats["pending"] == 40 and stats["shards"] == 4
    text = subprocess.run([*base, "stats", sharded.name], capture_output=True, text=True, timeout=30).stdout
    assert text.startswith(f"queue {sharded.name}: open, 4 shards, 40 outstanding")
    per_shard = json.loads(
        subprocess.run(
            [*base, "stats", sharded.name, "--json", "--per-shard"], capture_output=True, timeout=30
        ).stdout
    )["per_shard"]
    assert [s["pending"] for s in per_shard] == [10] * 4
    text = subprocess.run(
        [*base, "stats", sharded.name, "--per-shard"], capture_output=True, text=True, timeout=30
    ).stdout
    assert text.splitlines()[-5].split() == ["SHARD", "PENDING", "LEASED", "DELAYED", "DEAD", "CLOSED"]
    assert [line.split()[:2] for line in text.splitlines()[-4:]] == [[str(i), "10"] for i in range(4)]
    listed = json.loads(
        subprocess.run([*base, "ls", f"{sharded.name}*", "--json"], capture_output=True, timeout=30).stdout
    )
    assert [(q["name"], q["pending"]) for q in listed] == [(sharded.name, 40)]
    found: dict[str, rediswq.Stats] = {}
    QueueCollector(lambda: client, ()).read(found)
    mine = [name for name in found if name.startswith(sharded.name)]
    assert mine == [sharded.name] and found[sharded.name].pending == 40


def test_put_many_counts_what_went_in_when_stopped_or_its_input_raises(sharded: Queue) -> None:
    import threading

    stop = threading.Event()

    def items() -> Iterator[bytes]:
        for i in range(100):
            if i == 50:
                stop.set()
            yield b"%d" % i

    done = sharded.put_many(items(), batch_size=5, stop=stop)
    assert done.added == sharded.stats().pending and 0 < done.added <= 50

    def broken() -> Iterator[bytes]:
        yield from (b"a", b"b", b"c")
        raise OSError("input gone")

    before = sharded.stats().pending
    with pytest.raises(OSError):
        sharded.put_many(broken())
    assert sharded.stats().pending == before + 3  # what it gave before went in
    with pytest.raises(InvalidArgument, match="fewer ids"):
        sharded.put_many([b"x", b"y"], ids=["only-one"])
    with pytest.raises(InvalidArgument, match="all digits"):
        sharded.put(b"x", id="123")


def test_a_worker_waiting_for_a_queue_not_made_yet_finds_every_shard_once_it_is(
    client: redis.Redis, name: str
) -> None:
    import threading

    worker = Queue(client, name)
    got: list[rediswq.Lease | None] = []
    waiting = threading.Thread(target=lambda: got.append(worker.lease(30, timeout=10, until="closed")))
    waiting.start()
    time.sleep(0.3)  # the worker has found no queue and waits for one
    producer = Queue(client, name, shards=4)
    item = next(f"i-{n}" for n in range(100) if shard_for_id(f"i-{n}", 4) == 3)
    producer.put(b"on shard 3", id=item)
    waiting.join(timeout=15)
    try:
        assert got and got[0] is not None and got[0].payload == b"on shard 3" and got[0].shard == 3
        worker.complete(got[0])
        producer.close()
        assert worker.lease(30, timeout=5, until="closed") is None
    finally:
        producer.purge()
