"""A sharded queue on a real Redis Cluster (three masters, a replica each), through the installed CLI.

30,000 items over 12 shards, drained by 4 `rediswq work` processes; mid-drain one master is
SIGKILLed (its replica takes over) and one worker is SIGKILLed. Nothing may be lost, and every item
processed twice must be explained by at-least-once: it was in the killed worker's hands, or in a shard
whose master died (a batch in flight at the failover). With `enqueue --unique`, the same enqueue is
run again mid-drain and adds nothing (its checkpoint, written with the last shard call of each round).
The handler only logs (helpers_shard_handler.py). Also: 12 shards put an even share of items on each
master. Run with -s to see the figures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import find_binary
from topologies import ENTRY_POINT, Cluster, wait_for

from rediswq import Queue
from rediswq._keys import Keys
from rediswq._wire import read_envelope

ITEMS = 30_000
SHARDS = 12
WORKERS = 4
PREFETCH = 10


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    made = Cluster(binary=find_binary())
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
def name() -> str:
    return f"sh-{uuid.uuid4().hex[:8]}"


def _processed(log: Path) -> dict[int, list[bytes]]:
    return {int(p.suffix[1:]): p.read_bytes().splitlines() for p in log.parent.glob(log.name + ".*")}


def _where(cluster: Cluster, queue: Queue) -> tuple[dict[bytes, int], dict[int, int]]:
    """Each pending payload's shard, and each shard's master port."""
    shard_of: dict[bytes, int] = {}
    master: dict[int, int] = {}
    for i in range(SHARDS):
        keys = Keys.for_shard(queue.name, i, SHARDS)
        master[i] = cluster.owner(queue.client.keyslot(keys.meta))
        for raw in queue.client.lrange(keys.pending, 0, -1):
            shard_of[read_envelope(raw)[2]] = i
    return shard_of, master


def test_twelve_shards_put_an_even_share_on_each_master(cluster: Cluster, name: str) -> None:
    for unique in (False, True):
        queue = Queue.from_url(cluster.url, f"{name}-{unique}", shards=SHARDS)
        items = [b"%d" % i for i in range(ITEMS)]
        queue.put_many(items, ids=[f"c:{i}" for i in range(ITEMS)] if unique else None)
        shard_of, master = _where(cluster, queue)
        per_master = Counter(master[shard] for shard in shard_of.values())
        print(f"\nitems per master ({'ids' if unique else 'rotation'}): {dict(per_master)}")
        assert sorted(Counter(master.values()).values()) == [4, 4, 4]  # shards per master
        assert len(per_master) == 3 and sum(per_master.values()) == ITEMS
        for count in per_master.values():
            assert abs(count - ITEMS / 3) <= 0.15 * ITEMS / 3
        queue.purge()


@pytest.mark.parametrize("unique", [False, True], ids=["plain", "unique-rerun"])
def test_a_master_and_a_worker_killed_mid_drain_lose_nothing_and_redo_only_what_they_held(
    cluster: Cluster, name: str, tmp_path: Path, unique: bool
) -> None:
    enqueue = [
        ENTRY_POINT,
        "--url",
        cluster.url,
        "--min-replicas",
        "1",
        "enqueue",
        name,
        "--range",
        f"0:{ITEMS}",
    ]
    enqueue += ["--shards", str(SHARDS), "-q", *(["--unique"] if unique else [])]
    subprocess.run(enqueue, check=True, timeout=120)
    queue = Queue.from_url(cluster.url, name)
    assert queue.shard_count() == SHARDS
    shard_of, master = _where(cluster, queue)
    assert len(shard_of) == ITEMS
    log = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "REDISWQ_TEST_LOG": str(log)}
    command = [ENTRY_POINT, "--url", cluster.url, "work", name, "--handler", "helpers_shard_handler:handle"]
    command += ["--prefetch", str(PREFETCH), "--lease-secs", "3", "--reconnect-secs", "30"]
    workers = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(WORKERS)]
    started = time.monotonic()
    try:
        done = lambda: sum(len(lines) for lines in _processed(log).values())  # noqa: E731
        rerun = None
        if unique:  # the same enqueue again, mid-drain: its checkpoints say every item is in
            wait_for(lambda: done() > 0, "the drain's start", secs=60)
            again = [word for word in enqueue if word != "-q"]
            rerun = subprocess.run(again, capture_output=True, text=True, timeout=60)
            assert done() < ITEMS  # it ran mid-drain
        wait_for(lambda: done() >= ITEMS // 3, "a third of the drain", secs=60)
        killed_master = master[0]
        at_kill = done()
        cluster.kill(killed_master)
        workers[0].send_signal(signal.SIGKILL)
        for worker in workers:
            worker.wait(timeout=120)
        logs = [worker.communicate()[1][-2000:] for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    elapsed = time.monotonic() - started
    processed = _processed(log)
    seen = Counter(line for lines in processed.values() for line in lines)
    lost = {b"%d" % i for i in range(ITEMS)} - set(seen)
    redone = {item: n for item, n in seen.items() if n > 1}
    held_by_killed = set(processed.get(workers[0].pid, []))
    on_dead_master = {item for item in redone if master[shard_of[item]] == killed_master}
    unexplained = set(redone) - held_by_killed - on_dead_master
    print(
        f"\nsharded drain ({'unique, re-run' if unique else 'plain'}): items={ITEMS} lost={len(lost)} "
        f"redone={len(redone)} (killed worker {len(set(redone) & held_by_killed)}, dead master's shards "
        f"{len(on_dead_master)}) done at the kills={at_kill} secs={elapsed:.1f} "
        f"exits={[w.returncode for w in workers]}"
    )
    assert [w.returncode for w in workers[1:]] == [0] * (WORKERS - 1), "\n".join(logs)
    assert not lost
    assert at_kill < 0.8 * ITEMS  # mid-drain: the survivors went through the failover
    assert any(f"127.0.0.1:{killed_master}" in text for text in logs[1:]), logs
    assert not unexplained, sorted(unexplained)[:10]
    assert all(n == 2 for n in redone.values())
    # The killed worker held at most its prefetch and the batch it was completing; each worker at
    # the failover at most a batch held and a batch whose completion the promoted replica lacks.
    assert len(set(redone) & held_by_killed - on_dead_master) <= 2 * PREFETCH
    assert len(on_dead_master) <= WORKERS * 2 * PREFETCH
    if rerun is not None:
        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stdout.startswith("enqueued 0,") and f"{ITEMS} put in by an earlier run" in rerun.stdout
    cluster.settle()
    stats = Queue.from_url(cluster.url, name).stats()
    assert stats.drained and stats.enqueued == ITEMS
