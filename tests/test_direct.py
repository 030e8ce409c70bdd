"""The lean path of the per-item script call (rediswq/_direct.py): a connection of its own, safely kept.

It must behave as redis-py's own call would: after a fork, from several threads, after a restart
empties the script cache (tests/test_connection.py), and without leaking connections.
"""

from __future__ import annotations

import gc
import multiprocessing
import threading

import pytest
import redis

from rediswq import Queue, _direct


def test_the_lease_call_keeps_one_connection_and_gives_it_back_when_the_queue_goes(
    client: redis.Redis, queue_name: str
) -> None:
    pool = redis.ConnectionPool(**client.connection_pool.connection_kwargs)
    own = redis.Redis(connection_pool=pool)
    try:
        for n in range(20):
            q = Queue(own, f"{queue_name}-{n}")
            q.put(b"x")
            lease = q.lease(30)
            assert lease is not None
            q.complete_and_lease([lease], 1, 30)
            q.purge()
            del q, lease
            gc.collect()
        # One connection for the lease calls, one for puts, one for the rest, whatever the number
        # of queues.
        assert len(pool._in_use_connections) == 0
        assert pool._created_connections <= 3
    finally:
        pool.disconnect()


def _drain_in_child(queue: Queue, done: multiprocessing.Queue[int]) -> None:
    n = 0
    lease = queue.lease(30)
    while lease is not None:
        n += 1
        lease = next(iter(queue.complete_and_lease([lease], 1, 30).leases), None)
    done.put(n)


def test_a_forked_child_leases_on_a_connection_of_its_own(client: redis.Redis, queue_name: str) -> None:
    q = Queue(client, queue_name)
    q.put_many([b"x"] * 200)
    first = q.lease(30)  # the parent's connection exists before the fork
    assert first is not None
    context = multiprocessing.get_context("fork")
    done: multiprocessing.Queue[int] = context.Queue()
    children = [context.Process(target=_drain_in_child, args=(q, done)) for _ in range(2)]
    for child in children:
        child.start()
    q.complete(first)  # the parent's own connection answers its own calls, beside the children's
    counts = [done.get(timeout=30) for _ in children]
    for child in children:
        child.join(10)
        assert child.exitcode == 0
    stats = q.stats()
    assert sum(counts) == 199
    assert (stats.completed, stats.leased, stats.pending) == (200, 0, 0)
    q.purge()


def test_threads_sharing_a_queue_each_get_their_own_replies(client: redis.Redis, queue_name: str) -> None:
    q = Queue(client, queue_name)
    q.put_many([str(i).encode() for i in range(600)])
    seen: list[list[bytes]] = [[] for _ in range(4)]

    def drain(mine: list[bytes]) -> None:
        lease = q.lease(30)
        while lease is not None:
            mine.append(lease.payload)
            lease = next(iter(q.complete_and_lease([lease], 1, 30).leases), None)

    threads = [threading.Thread(target=drain, args=(mine,)) for mine in seen]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = [payload for mine in seen for payload in mine]
    assert sorted(everything) == sorted(str(i).encode() for i in range(600))
    assert q.stats().completed == 600
    q.purge()


def test_the_call_packs_the_same_bytes_with_hiredis_as_without(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _direct.hiredis is not None  # the test extra installs it: both ways are compared
    connection = redis.connection.Connection()
    commands = [("EVALSHA", "ab" * 20, 2, "k1", "k2", 1, b"\x93\x01\xa1x", "pod-1"), ("WAIT", 1, 500)]
    with_hiredis = b"".join(_direct._packed(connection, commands))
    monkeypatch.setattr(_direct, "hiredis", None)
    assert b"".join(_direct._packed(connection, commands)) == with_hiredis
