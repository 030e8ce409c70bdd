"""Fast tests of the pure-Python parts, plus the readers run on fakeredis and on the real Redis alike.

fakeredis cannot run most of rediswq's scripts: its Lua (the `lupa` package, the `fakeredis[lua]` extra)
offers `cjson` but no `cmsgpack`, which the scripts that move items use for their envelopes. So those
are proven only on a real Redis (test_scripts.py and the rest); here fakeredis serves the readers and
the scripts without envelopes (stats, purge), in one contract suite that runs on both backends (stats,
peek, holders, dead letters; close, reopen and purge), with state written as the schema in
`rediswq/_keys.py` describes it.
"""

from __future__ import annotations

from collections.abc import Iterator

import fakeredis
import msgpack
import pytest
import redis

from rediswq import DeadLetter, InvalidArgument, Item, LeaseInfo, Queue, Stats
from rediswq._keys import Keys
from rediswq._topology import describe
from rediswq._url import redact

# -- the key schema -----------------------------------------------------------------------------


def test_keys_of_a_queue_share_its_hash_tag_and_prefix() -> None:
    keys = Keys.for_queue("frames")
    assert keys.all() == [
        "frames",
        "rediswq:{frames}:pending",
        "rediswq:{frames}:leased",
        "rediswq:{frames}:payloads",
        "rediswq:{frames}:delayed",
        "rediswq:{frames}:dead",
        "rediswq:{frames}:ids",
        "rediswq:{frames}:meta",
        "rediswq:{frames}:checkpoints",
    ]


@pytest.mark.parametrize("name", ["", "a{b", "a}b", "a b", "a\tb", "a\nb", "\u00a0nbsp"])
def test_keys_refuse_names_with_braces_or_white_space(name: str) -> None:
    with pytest.raises(InvalidArgument):
        Keys.for_queue(name)


@pytest.mark.parametrize("name", ["jobs", "job2", "a:b", "team/frames-2024", "ünïcode"])
def test_keys_accept_ordinary_names(name: str) -> None:
    assert Keys.for_queue(name).meta == f"rediswq:{{{name}}}:meta"


# -- redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:hunter2@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("redis://user:hunter2@localhost/1", "redis://user:***@localhost/1"),
        ("rediss://default:hunter2@redis.example:6380", "rediss://default:***@redis.example:6380"),
        ("redis://:hunter2@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://:hunter2@[::1", "redis://:***@[::1"),
        ("redis://:hun/ter2?#x@host:6379/0", "redis://:***@host:6379/0"),
        (":hunter2@host", ":***@host"),
        ("redis://host/0?db=1&password=hunter2", "redis://host/0?db=1&password=***"),
        ("redis://host/0?password=hunter2&db=1", "redis://host/0?password=***"),
        ("rediss://host/0?ssl_password=hunter2", "rediss://host/0?ssl_password=***"),
        ("redis://u:p@host/0?password=hunter2@x", "redis://u:***"),
    ],
)
def test_redact_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "hunter2" not in redact(url)


def test_describe_names_a_clients_server_without_its_password() -> None:
    tcp = redis.Redis(host="redis.example", port=6380, db=2, password="hunter2")
    assert describe(tcp) == "redis://redis.example:6380/2"
    unix = redis.Redis(unix_socket_path="/run/redis.sock", password="hunter2")
    assert describe(unix) == "unix:///run/redis.sock/0"


# -- arguments refused before anything is sent --------------------------------------------------


@pytest.fixture
def fake() -> redis.Redis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def test_refused_arguments_send_nothing(fake: redis.Redis) -> None:
    q = Queue(fake, "q", max_payload_bytes=4)
    for call in (
        lambda: q.put(b"12345"),
        lambda: q.put(b"x", id="42"),
        lambda: q.put(b"x", id=""),
        lambda: q.put_many([b"a", b"b"], ids=["only-one"]),
        lambda: q.lease(0),
        lambda: q.lease_many(0),
        lambda: q.lease(1, until="whenever"),  # type: ignore[arg-type]
    ):
        with pytest.raises(InvalidArgument):
            call()
    assert fake.dbsize() == 0


def test_a_queue_given_a_function_makes_its_client_in_its_first_call_once_and_retries_making_it(
    fake: redis.Redis,
) -> None:
    made: list[str] = []

    def make() -> redis.Redis:
        made.append("tried")
        if len(made) == 1:  # as a RedisCluster whose seeds do not answer yet
            raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:7000.")
        return fake

    q = Queue(make, "q", url="redis+cluster://127.0.0.1:7000/", retries=1)
    assert made == []  # nothing contacted by the constructor
    q.close()  # the first try fails, the retry makes it
    q.reopen()
    assert q.client is fake and made == ["tried", "tried"]
    with pytest.raises(InvalidArgument, match="decode responses"):
        Queue(lambda: fakeredis.FakeRedis(decode_responses=True), "q").stats()


# -- one contract suite, two backends -----------------------------------------------------------


@pytest.fixture(params=["fakeredis", "redis-server"])
def backend(request: pytest.FixtureRequest, client: redis.Redis) -> redis.Redis:
    if request.param == "fakeredis":
        return fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return client


@pytest.fixture
def q(backend: redis.Redis, queue_name: str) -> Iterator[Queue]:
    queue = Queue(backend, queue_name)
    yield queue
    queue.purge()


def _pack(*fields: object) -> bytes:
    packed: bytes = msgpack.packb(list(fields))
    return packed


def _values(*values: object) -> bytes:
    return b"".join(msgpack.packb(value) for value in values)


def _fill(client: redis.Redis, keys: Keys) -> None:
    """A queue in the middle of its life, written key by key as the schema documents it."""
    client.rpush(keys.pending, _pack(3, 0, b"three"), _pack("job-4", 1, b"four"))
    client.rpush(keys.inbox, b"raw")
    # A handle: the envelope the item was leased from, then token, worker, leased_at_ms; a payload
    # over EMBED_LIMIT waits in the payloads hash.
    client.zadd(
        keys.leased,
        {
            _pack(1, 1, b"one") + _values(7, "pod-a", 1_000): 31_000,
            _pack("job-1", 0) + _values(8, "pod-b", 2_000): 12_000,
        },
    )
    client.hset(keys.payloads, mapping={"job-1": b"job one" * 50})
    client.zadd(keys.delayed, {_pack(2, 1, b"two"): 5_000})
    client.hset(
        keys.dead, mapping={"5": _pack(5, 3, b"five", "boom", 9_000), "x": _pack("x", 1, b"ex", "bad", 8_000)}
    )
    client.sadd(keys.ids, "job-1", "job-4")
    client.hset(keys.checkpoints, "file:items.txt", "2:digest")
    client.hset(
        keys.meta,
        mapping={
            "seq": 8,
            "token": 8,
            "enqueued": 9,
            "completed": 1,
            "failed": 4,
            "retried": 2,
            "expired": 1,
        },
    )


def test_stats_read_every_count_and_counter(backend: redis.Redis, q: Queue) -> None:
    # Nothing was ever added: no such queue, and so not a drained one.
    assert q.stats() == Stats(0, 0, 0, 0, False, 0, 0, 0, 0, 0, 0, 0, 0, 0, exists=False)
    assert not q.is_drained()
    _fill(backend, q.keys)
    stats = q.stats()
    assert stats == Stats(
        pending=3,  # two envelopes and the raw item in the inbox
        leased=2,
        delayed=1,
        dead=2,
        closed=False,
        enqueued=9,
        completed=1,
        failed=4,
        retried=2,
        expired=1,
        dead_lettered=0,
        released=0,
        dropped=0,
    )
    assert (stats.drained, stats.outstanding) == (False, 6)
    assert not q.is_drained()


def test_close_and_reopen_flip_the_closed_flag(q: Queue) -> None:
    q.close()
    q.close()
    assert q.stats().closed
    q.reopen()
    assert not q.stats().closed


def test_peek_shows_pending_items_then_raw_ones(backend: redis.Redis, q: Queue) -> None:
    _fill(backend, q.keys)
    assert q.peek(10) == [Item("3", 0, b"three"), Item("job-4", 1, b"four"), Item("", 0, b"raw")]
    assert q.peek(1) == [Item("3", 0, b"three")]


def test_holders_show_live_leases_soonest_deadline_first(backend: redis.Redis, q: Queue) -> None:
    _fill(backend, q.keys)
    assert q.holders() == [
        LeaseInfo("job-1", 1, "pod-b", 2_000, 12_000),
        LeaseInfo("1", 2, "pod-a", 1_000, 31_000),
    ]


def test_dead_letters_are_listed_oldest_first(backend: redis.Redis, q: Queue) -> None:
    _fill(backend, q.keys)
    assert q.dead_letters() == [
        DeadLetter("x", 1, b"ex", "bad", 8_000),
        DeadLetter("5", 3, b"five", "boom", 9_000),
    ]


def test_purge_deletes_the_queues_keys_and_nothing_else(backend: redis.Redis, q: Queue) -> None:
    _fill(backend, q.keys)
    backend.set("unrelated", b"kept")
    backend.set(f"rediswq:{{{q.name}-other}}:meta", b"kept")
    try:
        q.purge()
        assert [backend.exists(key) for key in q.keys.all()] == [0] * 9
        assert backend.get("unrelated") == backend.get(f"rediswq:{{{q.name}-other}}:meta") == b"kept"
    finally:
        backend.delete("unrelated", f"rediswq:{{{q.name}-other}}:meta")
