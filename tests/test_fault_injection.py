"""Fault injection: bad data planted in every key of a queue, beside good items, under every operation.

For each key and each kind of bad data (wrong type, garbage member, truncated msgpack, envelope of the
wrong arity, huge member), on a queue holding good items in every state (pending, leased with its
payload kept apart, delayed, dead, with a caller's id), each library operation and `rediswq work` run
once, and then:
- a call that raised raised a `RedisWQError` (a `ServerError` naming the key for a key of the wrong
  type) and wrote nothing: every key of the queue dumps as it did before the call;
- once the planted damage that no script can undo is repaired (a key of the wrong type, a garbage
  counter: restored), the queue drains: every good item is done or a dead letter, none lost, and the
  undecodable entries are dead letters `malformed:<sha1>` with their bytes;
- `rediswq work` exits 0 only with every good item done (it never calls a queue it could not read
  drained).
`pytest -s` prints the figures: entries planted, operations run, items lost.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from click.testing import CliRunner

from rediswq import Lease, LeaseLost, LeaseTimeout, Queue, RedisWQError, ServerError
from rediswq._keys import Keys
from rediswq_cli.main import main

pytestmark = pytest.mark.usefixtures("lua_path")

KEYS = ("inbox", "pending", "leased", "payloads", "delayed", "dead", "ids", "meta", "checkpoints")
KINDS = ("wrong_type", "garbage", "truncated", "arity", "huge")
HUGE = b"\xc1" * 300_000  # 0xc1 is never used by msgpack
BIG = b"B" * 300  # over EMBED_LIMIT: kept in the payloads hash while leased
GOOD = {b"good-dead", BIG, b"good-2", b"good-3", b"good-id"}

FIGURES = {"planted": 0, "operations": 0, "lost": 0}
HANDLED: list[bytes] = []


def record(lease: Lease) -> None:
    """The handler `rediswq work` runs in these tests: it notes each payload."""
    HANDLED.append(lease.payload)


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    print(
        f"\nfault injection: {FIGURES['planted']} entries planted, {FIGURES['operations']} operations "
        f"run, {FIGURES['lost']} items lost"
    )


def snapshot(client: redis.Redis, keys: Keys) -> dict[str, Any]:
    """Every key of the queue as DUMP has it; but meta's `seq` field apart.

    `put` reserves the ids it assigns (HINCRBY meta seq) in a call of its own before its script runs,
    so a refused put leaves a gap in the id sequence, which nothing relies on (rediswq/lua/put.lua).
    """
    saved = dumps(client, keys)
    if client.type(keys.meta) == b"hash":
        saved[keys.meta] = {k: v for k, v in client.hgetall(keys.meta).items() if k != b"seq"}
    return saved


def dumps(client: redis.Redis, keys: Keys) -> dict[str, Any]:
    return {key: client.dump(key) for key in keys.all()}


def restore(client: redis.Redis, saved: dict[str, Any], key: str) -> None:
    client.delete(key)
    if saved[key] is not None:
        client.restore(key, 0, saved[key])


def fill(q: Queue, hold: bool) -> Lease | None:
    """Good items in every state; returns the lease still held (of BIG) when `hold`."""
    q.put(b"good-dead")
    doomed = q.lease(30)
    assert doomed is not None
    q.fail(doomed, "boom", retry=False)
    q.put_many([BIG, b"good-2", b"good-3"])
    q.put(b"good-id", id="gid")
    big, retried = q.lease_many(2, 30)
    q.fail(retried, "retry me")
    if hold:
        return big
    q.release(big)
    return None


def bad_entry(kind: str) -> bytes:
    envelope = msgpack.packb([77, 0, b"payload"], use_bin_type=False)
    return {
        "garbage": b"garbage-member",
        "truncated": envelope[:-3],
        "arity": msgpack.packb([77, 0], use_bin_type=False),
        "huge": HUGE,
    }[kind]


def plant(client: redis.Redis, keys: Keys, key: str, kind: str) -> None:
    """One piece of bad data in `key`, as an operator, a bug or another application might leave it."""
    name = getattr(keys, key)
    FIGURES["planted"] += 1
    if kind == "wrong_type":
        client.delete(name)
        client.set(name, "garbage")
        return
    entry = bad_entry(kind)
    if key in ("inbox", "pending"):
        client.lpush(name, entry)
    elif key in ("leased", "delayed"):
        client.zadd(name, {entry: 1})  # long due: the next lease call meets it
    elif key in ("payloads", "dead", "checkpoints"):
        client.hset(name, "bad-" + kind, entry)
    elif key == "ids":
        client.sadd(name, entry)
    else:  # a counter that is no integer
        field = {"garbage": "completed", "truncated": "token", "arity": "seq", "huge": "enqueued"}[kind]
        client.hset(name, field, b"9" * 100 if kind == "huge" else entry)


def needs_repair(key: str, kind: str) -> bool:
    """Damage no script may undo on its own: a key of another type, a counter that is no integer."""
    return (kind == "wrong_type" and key != "inbox") or key == "meta"


def operations(q: Queue, held: Lease, taken: list[Lease], done: list[bytes]) -> dict[str, Callable[[], Any]]:
    """Every library operation, once; `taken` gets the leases it takes, `done` what it completes."""

    def complete_batch() -> None:
        # A batch (lease.lua reads it with ZMSCORE): the held lease, and one that no longer holds.
        stale = dataclasses.replace(held, handle=held.handle + b"\x00")
        try:
            q.complete_many([held, stale])
        except LeaseLost as e:
            if e.leases != [stale]:
                raise
        done.append(held.payload)

    return {
        "put": lambda: q.put(b"new-1"),
        "put_many": lambda: q.put_many([b"new-2", b"new-3"]),
        "put_many_checkpointed": lambda: q.put_many([b"new-4"], checkpoint=("src", lambda n: f"{n}:x")),
        "lease": lambda: taken.extend(q.lease_many(3, 30, timeout=0)),
        "complete": lambda: (q.complete(held), done.append(held.payload)),
        "complete_many": complete_batch,
        "fail": lambda: q.fail(held, "op failed"),
        "extend": lambda: q.extend(held, 30),
        "release": lambda: q.release(held),
        "stats": q.stats,
        "peek": lambda: q.peek(20),
        "holders": q.holders,
        "dead_letters": q.dead_letters,
        "requeue_dead": q.requeue_dead,
        "purge_dead": q.purge_dead,
    }


def drain(q: Queue, held: list[Lease]) -> list[bytes]:
    """Complete what is held, then lease and complete until drained; the payloads done."""
    done = []
    for lease in held:
        try:
            q.complete(lease)
            done.append(lease.payload)
        except LeaseLost:
            pass  # settled by the operation (failed, released): it comes back through the queue
    for _ in range(50):
        # Retries are due at once: the test does not wait out their backoff.
        if waiting := q.client.zrange(q.keys.delayed, 0, -1):
            q.client.zadd(q.keys.delayed, dict.fromkeys(waiting, 0))
        try:
            leases = q.lease_many(10, 30, timeout=3)
        except LeaseTimeout:
            continue
        if not leases:
            return done
        q.complete_many(leases)
        done += [lease.payload for lease in leases]
    pytest.fail("the queue did not drain")


def account(q: Queue, done: list[bytes], expected: set[bytes]) -> int:
    """Good items neither done nor dead letters: lost."""
    letters = q.dead_letters()
    dead = {d.payload for d in letters if not d.id.startswith("malformed:")}
    lost = expected - set(done) - dead
    FIGURES["lost"] += len(lost)
    return len(lost)


def assert_quarantined(q: Queue, key: str, kind: str) -> None:
    """Undecodable entries of the item keys end as dead letters malformed:<sha1> with their bytes."""
    if kind == "wrong_type" or key not in ("pending", "leased", "delayed"):
        return
    entry = bad_entry(kind)
    letters = {d.id: d for d in q.dead_letters()}
    quarantined = letters.get("malformed:" + hashlib.sha1(entry).hexdigest())
    assert quarantined is not None, f"{key}/{kind}: not quarantined"
    assert quarantined.payload == entry
    assert quarantined.error.startswith(f"malformed entry in {getattr(q.keys, key)}: ")
    assert q.stats().quarantined == 1


OPERATIONS = (
    "put",
    "put_many",
    "put_many_checkpointed",
    "lease",
    "complete",
    "complete_many",
    "fail",
    "extend",
    "release",
    "stats",
    "peek",
    "holders",
    "dead_letters",
    "requeue_dead",
    "purge_dead",
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", KEYS)
def test_bad_data_in_any_key_loses_no_item_and_a_failing_call_writes_nothing(
    client: redis.Redis, queue_name: str, key: str, kind: str
) -> None:
    q = Queue(client, queue_name, retry_backoff_secs=0.01, retry_backoff_cap_secs=0.01, max_attempts=50)
    try:
        every_operation_on_planted_data(
            client,
            q,
            Planted(
                f"{key}/{kind}",
                getattr(q.keys, key),
                lambda: plant(client, q.keys, key, kind),
                repair=needs_repair(key, kind),
                readers_may_fail=kind == "wrong_type",
                quarantined=lambda: assert_quarantined(q, key, kind),
            ),
        )
    finally:
        q.purge()


# Counter values that look like integers but that HINCRBY refuses (leading zero, minus zero, a sign,
# a space), or that one more would overflow: a script must refuse them before its first write.
NEAR_INTEGERS = (b"01", b"-0", b"+1", b" 1", b"9223372036854775807")
COUNTERS = (
    "completed", "token", "expired", "dead_lettered", "quarantined", "seq", "enqueued", "failed",
    "retried", "released", "dropped",
)  # fmt: skip


@pytest.mark.parametrize("field", COUNTERS)
def test_a_counter_holding_a_near_integer_fails_every_call_that_counts_in_it_before_any_write(
    client: redis.Redis, queue_name: str, field: str
) -> None:
    q = Queue(client, queue_name, retry_backoff_secs=0.01, retry_backoff_cap_secs=0.01, max_attempts=50)
    try:
        for value in NEAR_INTEGERS:
            every_operation_on_planted_data(
                client,
                q,
                Planted(
                    f"meta {field}={value!r}",
                    q.keys.meta,
                    lambda value=value: client.hset(q.keys.meta, field, value),  # type: ignore[misc]
                    repair=True,
                ),
            )
    finally:
        q.purge()


@dataclass(frozen=True)
class Planted:
    """Bad data planted in `key` by `plant`; `repair`: no script may undo it (restored after each call)."""

    what: str
    key: str
    plant: Callable[[], Any]
    repair: bool
    readers_may_fail: bool = False
    quarantined: Callable[[], None] = lambda: None


def every_operation_on_planted_data(client: redis.Redis, q: Queue, planted: Planted) -> None:
    """Each operation on a fresh queue with bad data planted: a call that fails writes nothing and
    names the key; once the damage is repaired, no good item is lost."""
    what = planted.what
    for name in OPERATIONS:
        client.delete(*q.keys.all())
        held = fill(q, hold=True)
        assert held is not None
        clean = dumps(client, q.keys)
        planted.plant()
        before = snapshot(client, q.keys)
        taken: list[Lease] = []
        completed: list[bytes] = []
        FIGURES["operations"] += 1
        expected = set(GOOD)
        try:
            operations(q, held, taken, completed)[name]()
        except RedisWQError as e:
            readers = ("peek", "holders", "dead_letters")
            assert name not in readers or planted.readers_may_fail, f"{name} raised on {what}: {e}"
            assert snapshot(client, q.keys) == before, f"{name} on {what} failed and wrote: {e}"
            if isinstance(e, ServerError):
                assert planted.key in str(e), f"{name} on {what}: {e}"
        else:
            if name == "purge_dead":
                expected.discard(b"good-dead")  # deleted on request
        if planted.repair:
            restore(client, clean, planted.key)
        done = completed + drain(q, [held, *taken])
        assert account(q, done, expected) == 0, f"{name} on {what}: items lost"
        if name != "purge_dead":
            planted.quarantined()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("key", KEYS)
def test_rediswq_work_exits_0_only_with_every_good_item_done(
    client: redis.Redis, redis_url: str, queue_name: str, key: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    q = Queue(client, queue_name, retry_backoff_secs=0.01, retry_backoff_cap_secs=0.01)
    try:
        fill(q, hold=False)
        clean = dumps(client, q.keys)
        plant(client, q.keys, key, kind)
        HANDLED.clear()
        FIGURES["operations"] += 1
        result = CliRunner().invoke(
            main,
            # Short leases: a worker stopped by bad data leaves its leases to expire.
            [
                *("--url", redis_url, "work", queue_name, "--handler", "test_fault_injection:record"),
                *("--retry-backoff-secs", "0.01", "--reconnect-secs", "1", "--lease-secs", "0.3"),
                "--allow-dead",  # quarantined entries are dead letters: exit 0 means every good item done
            ],
        )
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert "Traceback" not in result.output
        said_drained = re.search(r"queue '[^']+' drained:", result.output) is not None
        if result.exit_code != 0:
            assert not said_drained
            assert getattr(q.keys, key) in result.output, result.output
        if needs_repair(key, kind):
            restore(client, clean, getattr(q.keys, key))
        if result.exit_code == 0:
            assert said_drained
            letters = {d.payload for d in q.dead_letters()}
            assert set(HANDLED) | letters >= GOOD, f"{key}/{kind}: exit 0 with good items left"
        done = drain(q, [])
        assert account(q, HANDLED + done, set(GOOD)) == 0, f"{key}/{kind}: items lost"
    finally:
        q.purge()


def test_a_key_of_the_wrong_type_is_one_error_naming_it_and_nothing_is_written(
    client: redis.Redis, queue: Queue
) -> None:
    queue.put_many([b"a", b"b", b"c"])
    client.delete(queue.keys.meta)
    client.set(queue.keys.meta, "garbage")
    before = snapshot(client, queue.keys)
    for call in (lambda: queue.lease(30, timeout=0), queue.stats, lambda: queue.put(b"d")):
        with pytest.raises(ServerError, match=re.escape(f"key {queue.keys.meta} holds a string, not a hash")):
            call()
    assert snapshot(client, queue.keys) == before
    assert client.llen(queue.keys.pending) == 3


@pytest.mark.parametrize("size", [0, 1, 31, 32, 255, 256, 65535, 65536])
def test_every_well_formed_envelope_shape_passes_the_lease_scripts_header_check(
    client: redis.Redis, queue: Queue, size: int
) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    client.hset(queue.keys.meta, "seq", 2**32 - 3)  # ids of every msgpack width: uint32, then uint64
    queue.put_many([payload] * 6)
    queue.put(payload, id="s" * 40)  # a str8 id
    queue.put(payload, id="i")
    leases = queue.lease_many(10, 30)
    assert [lease.payload for lease in leases] == [payload] * 8
    assert queue.stats().quarantined == 0
    queue.complete_many(leases)


def test_readers_show_malformed_entries_and_the_cli_prints_them_without_a_traceback(
    client: redis.Redis, redis_url: str, queue: Queue
) -> None:
    queue.put(b"good")
    client.lpush(queue.keys.pending, b"\x93\x01")  # truncated
    client.zadd(queue.keys.leased, {b"not a handle": 2**42})  # far in the future
    client.hset(queue.keys.dead, "broken", b"\xc1garbage")
    quarantine_id = "malformed:" + hashlib.sha1(b"\x93\x01").hexdigest()

    first, second = queue.peek(5)
    assert (first.id, first.payload) == (quarantine_id, b"\x93\x01")
    assert first.error.startswith(f"malformed entry in {queue.keys.pending}: ")
    assert (second.id, second.payload, second.error) == ("1", b"good", "")
    [holder] = queue.holders()
    assert holder.id == "malformed:" + hashlib.sha1(b"not a handle").hexdigest() and holder.error
    [letter] = queue.dead_letters()
    assert (letter.id, letter.payload) == ("broken", b"\xc1garbage")
    assert letter.error.startswith(f"malformed record in {queue.keys.dead}: ")
    for command in (["peek", queue.name], ["dead", "list", queue.name], ["stats", queue.name, "--holders"]):
        result = CliRunner().invoke(main, ["--url", redis_url, *command])
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
        assert "malformed" in result.output

    lease = queue.lease(30)  # the truncated entry is quarantined on the way; the good item is leased
    assert lease is not None and lease.payload == b"good"
    assert queue.requeue_dead() == 0  # neither a quarantined entry nor a broken record is an item to run
    ids = {d.id for d in queue.dead_letters()}
    assert ids == {"broken", quarantine_id}
    assert queue.stats().quarantined == 1
    assert queue.purge_dead() == 2
    assert queue.dead_letters() == []
