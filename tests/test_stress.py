"""Real processes, real SIGKILLs: a producer and several workers, some killed at random moments mid-item.

Leases are 1 s, so every killed worker's item comes back within about a second. At the end every item
was completed (or, for the poison ones, dead-lettered), none is lost, the counters add up, and the
queue is drained. The figures are printed (run with -s to see them); REDISWQ_STRESS_ITEMS and
REDISWQ_STRESS_KILLS make a longer run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from helpers_core_stress import FLAKY, POISON, processed_key
from redis_server import RedisServer

from rediswq import Queue

HELPER = str(Path(__file__).with_name("helpers_core_stress.py"))
ITEMS = int(os.environ.get("REDISWQ_STRESS_ITEMS", "400"))
KILLS = int(os.environ.get("REDISWQ_STRESS_KILLS", "8"))
WORKERS = 4


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, HELPER, *args], stderr=subprocess.PIPE)


@pytest.mark.slow
def test_killed_workers_lose_no_item_and_the_queue_drains(
    redis_server: RedisServer, client: redis.Redis, queue_name: str
) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    url = redis_server.url
    q = Queue(client, queue_name)
    started = time.monotonic()
    producer = _spawn("producer", url, queue_name, str(ITEMS))
    workers = [_spawn("worker", url, queue_name) for _ in range(WORKERS)]
    finished: list[subprocess.Popen[bytes]] = []
    kills = kills_mid_item = 0
    try:
        while kills < KILLS and time.monotonic() - started < 20:
            time.sleep(rng.uniform(0.15, 0.4))
            stats = q.stats()
            if stats.closed and stats.outstanding == 0:
                break
            # Kill a worker that holds a lease right now: one that is mid-item.
            holding = {info.worker for info in q.holders(1000)}
            candidates = [w for w in workers if f"stress-{w.pid}" in holding and w.poll() is None]
            if not candidates:
                continue
            victim = rng.choice(candidates)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            kills += 1
            if any(info.worker == f"stress-{victim.pid}" for info in q.holders(1000)):
                kills_mid_item += 1  # it died holding a lease: that item must come back
            workers.remove(victim)
            workers.append(_spawn("worker", url, queue_name))
        assert producer.wait(30) == 0
        for w in workers:
            w.wait(40)
            finished.append(w)
    finally:
        for p in [producer, *workers]:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed = time.monotonic() - started
    errors = [w.stderr.read().decode() for w in finished if w.stderr is not None and w.returncode != 0]
    assert [w.returncode for w in finished] == [0] * WORKERS, errors

    processed = {int(k): int(v) for k, v in client.hgetall(processed_key(queue_name)).items()}
    client.delete(processed_key(queue_name))
    stats = q.stats()
    letters = q.dead_letters()
    q.purge()

    poison = {n for n in range(ITEMS) if n % POISON == 0}
    duplicates = sum(1 for runs in processed.values() if runs > 1)
    print(
        f"\nstress on Redis {redis_server.version} (seed {seed}): {ITEMS} items, {WORKERS} workers, "
        f"{kills} kills ({kills_mid_item} mid-item), {stats.expired} leases expired and reclaimed, "
        f"{duplicates} items processed more than once, {sum(processed.values())} runs of work, "
        f"{stats.completed} completed, {stats.dead} dead, {stats.retried} retried, {elapsed:.1f} s"
    )
    # Every item's work was done at least once, and none that should have failed was.
    assert set(processed) == set(range(ITEMS)) - poison
    assert {int(letter.payload) for letter in letters} == poison
    assert {letter.error for letter in letters} == {"poison item"}
    # None lost: the counters add up and nothing is left anywhere.
    assert stats.enqueued == ITEMS
    assert stats.completed + stats.dead == stats.enqueued - stats.dropped
    assert stats.completed == ITEMS - len(poison)
    assert stats.drained and stats.closed
    # Flaky items fail their first attempt, unless that attempt's worker was killed first.
    flaky = [n for n in range(ITEMS) if n % FLAKY == 0 and n not in poison]
    assert stats.retried >= len(flaky) - kills_mid_item
    # Each worker killed holding a lease left one lease that had to expire and be reclaimed.
    assert kills >= 1
    assert stats.expired >= kills_mid_item
