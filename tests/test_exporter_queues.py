"""The exporter's GET /queues/NAME: one queue's counts as JSON, what KEDA's metrics-api scaler reads.

Real exporter processes against the session's private Redis (an unsharded and a sharded queue, the
inbox filled by hand as the Kubernetes docs' example does), a name it does not export, and a Redis
that cannot be reached.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis_server import free_port
from test_metrics import REDISWQ, answers, env, scrape, start, value, wait_for

from rediswq import Queue
from rediswq_producer.exporter import QueueCollector

__all__ = ["env"]  # the fixture, imported for the tests here


def get(port: int, path: str) -> tuple[int, Any]:
    """GET http://127.0.0.1:port/path: (status, the JSON body), whatever the status."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            assert response.headers["Content-Type"] == "application/json"
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        assert e.headers["Content-Type"] == "application/json"
        body = e.read()
        assert body.count(b"\n") == 1  # one line
        return e.code, json.loads(body)


@pytest.fixture
def two(client: redis.Redis, queue_name: str) -> Iterator[tuple[Queue, Queue]]:
    """A queue of one shard and one of 4 shards (on one server: every shard's keys on it), each with
    items pending, in the inbox (`redis-cli rpush NAME`), leased, delayed and dead, and closed."""
    plain = Queue(client, f"{queue_name}-plain", retry_backoff_secs=30)
    sharded = Queue(client, f"{queue_name}-sharded", shards=4, retry_backoff_secs=30)
    for q in (plain, sharded):
        q.put_many([f"item-{i}" for i in range(40)])
        client.rpush(q.name, "by-hand-1", "by-hand-2", "by-hand-3")  # the inbox
        q.fail(q.lease(5), "boom", retry=False)  # dead
        q.fail(q.lease(5), "later")  # delayed
        q.lease(5)  # leased
    yield plain, sharded
    for q in (plain, sharded):
        q.purge()


def expected(q: Queue) -> dict[str, Any]:
    s = q.stats()
    return {
        "queue": q.name,
        "shards": s.shards,
        "waiting": s.pending,
        "pending": s.pending,
        "leased": s.leased,
        "delayed": s.delayed,
        "dead": s.dead,
        "closed": s.closed,
    }


def test_each_queue_s_counts_summed_over_its_shards_with_the_inbox_waiting(
    redis_url: str, two: tuple[Queue, Queue], env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    plain, sharded = two
    named, every = free_port(), free_port()
    start(
        procs, [REDISWQ, "--url", redis_url, "exporter", plain.name, sharded.name, "--port", str(named)], env
    )
    start(procs, [REDISWQ, "--url", redis_url, "exporter", "--all", "--port", str(every)], env)
    wait_for(lambda: answers(named) and answers(every))
    # 40 waiting: 40 put and 3 pushed into the inbox by hand, less 3 leased (1 dead, 1 delayed, 1 held).
    for port in (named, every):
        for q, shards in ((plain, 1), (sharded, 4)):
            status, body = get(port, f"/queues/{q.name}")
            assert status == 200
            assert body == expected(q)
            assert body["shards"] == shards and body["waiting"] == 40 + 3 - 3
            assert (body["leased"], body["delayed"], body["dead"]) == (1, 1, 1)
    # Every shard counts: the sharded queue's shard 0 alone holds only part of what waits.
    assert (
        Queue(plain.client, sharded.name).shard_stats()[0].pending
        < get(named, f"/queues/{sharded.name}")[1]["waiting"]
    )
    # Read at request time: one more item is one more waiting; closing shows at once.
    sharded.put("one-more")
    sharded.close()
    status, body = get(named, f"/queues/{sharded.name}")
    assert (status, body["waiting"], body["closed"]) == (200, 41, True)
    # /metrics is as it was on the same port.
    assert value(scrape(named), "rediswq_queue_pending", queue=sharded.name) == 41


def test_a_queue_not_exported_is_a_404_with_a_one_line_json_error(
    redis_url: str, two: tuple[Queue, Queue], env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    plain, sharded = two
    named, every = free_port(), free_port()
    start(procs, [REDISWQ, "--url", redis_url, "exporter", plain.name, "--port", str(named)], env)
    start(procs, [REDISWQ, "--url", redis_url, "exporter", "--all", "--port", str(every)], env)
    wait_for(lambda: answers(named) and answers(every))
    # A queue on the Redis, but not one this exporter was told to export.
    status, body = get(named, f"/queues/{sharded.name}")
    assert status == 404 and sharded.name in body["error"] and set(body) == {"error"}
    # With --all: a name no queue has, and a name no queue can have.
    for missing in (f"{plain.name}-nope", "%7Bbraces%7D", ""):
        status, body = get(every, f"/queues/{missing}")
        assert status == 404 and set(body) == {"error"}, missing
    assert get(every, f"/queues/{plain.name}")[0] == 200
    # Only GET.
    post = urllib.request.Request(f"http://127.0.0.1:{named}/queues/{plain.name}", data=b"", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(post, timeout=10)
    assert refused.value.code == 405


def test_an_error_redis_answers_is_a_500_with_it_in_the_json(client: redis.Redis, queue_name: str) -> None:
    client.set(f"rediswq:{{{queue_name}}}:meta", "another application's string")
    try:
        status, body = QueueCollector(lambda: client, (queue_name,)).answer(queue_name)
    finally:
        client.delete(f"rediswq:{{{queue_name}}}:meta")
    assert status == 500 and set(body) == {"error"} and body["error"]


def test_an_unreachable_redis_is_a_503_with_a_json_error_and_metrics_still_say_down(
    env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    start(procs, [REDISWQ, "--url", unreachable, "exporter", "jobs", "--port", str(port)], env)
    wait_for(lambda: answers(port))
    status, body = get(port, "/queues/jobs")
    assert status == 503 and "cannot reach Redis" in body["error"] and set(body) == {"error"}
    assert value(scrape(port), "rediswq_exporter_up") == 0


def test_a_queue_made_sharded_after_the_exporter_started_is_counted_whole(
    redis_url: str,
    client: redis.Redis,
    queue_name: str,
    env: dict[str, str],
    procs: list[subprocess.Popen[str]],
) -> None:
    """The order in Kubernetes: the exporter (and KEDA polling it) first, the producer's queue later."""
    port = free_port()
    start(procs, [REDISWQ, "--url", redis_url, "exporter", queue_name, "--port", str(port)], env)
    wait_for(lambda: answers(port))
    status, body = get(port, f"/queues/{queue_name}")
    assert (status, body["shards"], body["waiting"]) == (200, 1, 0)  # no queue yet: nothing waits
    made = Queue(client, queue_name, shards=4)
    try:
        made.put_many([f"item-{i}" for i in range(40)])
        status, body = get(port, f"/queues/{queue_name}")
        assert (status, body["shards"], body["waiting"]) == (200, 4, 40)
    finally:
        made.purge()
