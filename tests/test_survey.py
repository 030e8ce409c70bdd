"""`rediswq.survey`: many queues' numbers at once, the same as each queue's own `stats()` says.

Every test works on queues of its own prefix (the session's Redis is shared) and reads them with a
glob on that prefix.
"""

from __future__ import annotations

import uuid

import pytest
import redis
from redis_server import RedisServer

import rediswq
from rediswq import Queue


@pytest.fixture
def prefix() -> str:
    return f"sv{uuid.uuid4().hex[:8]}-"


def make_queues_in_every_state(client: redis.Redis, prefix: str, count: int = 30) -> list[str]:
    """`count` queues, in turn: pending, leased, delayed, dead, closed, some completed."""
    names = []
    for i in range(count):
        name = f"{prefix}{i:02d}"
        q = Queue(client, name, retry_backoff_secs=600)
        q.put_many([b"x"] * (i % 7 + 3))
        kind = i % 6
        if kind == 1:
            q.lease_many(2, 60)
        elif kind == 2:
            for lease in q.lease_many(2, 60):
                q.fail(lease, "try again")
        elif kind == 3:
            q.fail(q.lease_many(1, 60)[0], "broken", retry=False)
        elif kind == 4:
            q.close()
        elif kind == 5:
            for lease in q.lease_many(3, 60):
                q.complete(lease)
        names.append(name)
    return names


def test_a_survey_reads_every_queue_as_its_own_stats_do(client: redis.Redis, prefix: str) -> None:
    names = make_queues_in_every_state(client, prefix)
    found = rediswq.survey(client, pattern=prefix + "*")
    assert found.complete and found.refused == 0
    assert [s.name for s in found.queues] == names
    for summary in found.queues:
        assert summary.error == ""
        assert summary.stats == Queue(client, summary.name).stats(), summary.name
    states = {
        (s.stats.leased > 0, s.stats.delayed > 0, s.stats.dead > 0, s.stats.closed)
        for s in found.queues
        if s.stats
    }
    assert len(states) == 5  # plain, leased, delayed, dead and closed queues were all read
    now_s, _ = client.time()
    assert all(abs(s.read_at_ms - now_s * 1000) < 60_000 for s in found.queues)


def test_a_glob_keeps_the_queues_whose_names_match(client: redis.Redis, prefix: str) -> None:
    for name in ("jobs-a", "jobs-b", "mail"):
        Queue(client, prefix + name).put(b"x")
    found = rediswq.survey(client, pattern=prefix + "jobs-*")
    assert [s.name for s in found.queues] == [prefix + "jobs-a", prefix + "jobs-b"]


def test_a_survey_cut_short_by_its_limit_says_it_is_incomplete(client: redis.Redis, prefix: str) -> None:
    for i in range(5):
        Queue(client, f"{prefix}{i}").put(b"x")
    cut = rediswq.survey(client, pattern=prefix + "*", limit=3)
    assert len(cut.queues) == 3 and not cut.complete
    exact = rediswq.survey(client, pattern=prefix + "*", limit=5)
    assert len(exact.queues) == 5 and exact.complete


def test_a_walk_out_of_scan_calls_says_it_is_incomplete(client: redis.Redis, prefix: str) -> None:
    for i in range(20):
        Queue(client, f"{prefix}{i}").put(b"x")
    found = rediswq.survey(client, pattern=prefix + "*", max_scan_calls=1, count=1)
    assert not found.complete
    assert len(found.queues) < 20


def test_a_queue_with_a_key_of_another_type_is_listed_with_its_error(
    client: redis.Redis, prefix: str
) -> None:
    Queue(client, prefix + "good").put(b"x")
    Queue(client, prefix + "bad").put(b"x")
    client.delete(f"rediswq:{{{prefix}bad}}:pending")
    client.set(f"rediswq:{{{prefix}bad}}:pending", "not a list")
    bad, good = rediswq.survey(client, pattern=prefix + "*").queues
    assert bad.stats is None
    assert bad.error == f"key rediswq:{{{prefix}bad}}:pending holds a string, not a list"
    assert good.stats is not None and good.stats.pending == 1


def test_a_survey_after_a_script_flush_loads_its_script_again(client: redis.Redis, prefix: str) -> None:
    Queue(client, prefix + "a").put(b"x")
    client.script_flush()
    (summary,) = rediswq.survey(client, pattern=prefix + "*").queues
    assert summary.stats is not None and summary.stats.pending == 1


def test_a_survey_costs_one_pipeline_of_one_script_call_per_queue(
    redis_server: RedisServer, prefix: str
) -> None:
    client = redis_server.client()
    for i in range(30):
        Queue(client, f"{prefix}{i}").put(b"x")
    before = client.info("commandstats")
    rediswq.survey(client, pattern=prefix + "*", count=100_000)
    after = client.info("commandstats")

    def calls(command: str) -> int:
        return int(after.get(f"cmdstat_{command}", {}).get("calls", 0)) - int(
            before.get(f"cmdstat_{command}", {}).get("calls", 0)
        )

    if redis_server.version.startswith("7"):  # the function library (loaded by the puts above)
        assert calls("fcall_ro") == 30 + 1  # and the probe of its version
        assert calls("evalsha") == 0
    else:
        assert calls("evalsha") == 30
        assert calls("script|load") == 1 or calls("script") == 1
    assert calls("scan") == 1


def test_a_pattern_with_braces_is_refused(client: redis.Redis) -> None:
    with pytest.raises(rediswq.InvalidArgument, match="braces"):
        rediswq.survey(client, pattern="a{b}")
