"""The processes of the stress test: a producer and a worker, run as `python helpers_core_stress.py ROLE ...`.

    producer URL QUEUE ITEMS    put ITEMS items ("0" .. "ITEMS-1") in small batches, then close the queue
    worker URL QUEUE            lease, work and settle items until the queue is closed and drained

Item n is poison when n % POISON == 0 (failed without retry: a dead letter), and fails once on its
first attempt when n % FLAKY == 0 (retried). The work writes its result half-way through, so a worker
killed after that point leaves an item whose work is done twice: the at-least-once case the test counts.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time

from rediswq import LeaseLost, Queue

POISON = 97
FLAKY = 13
LEASE_SECS = 1.0


def processed_key(queue_name: str) -> str:
    """A hash item -> how many times its work wrote its result (the test reads it)."""
    return f"stress-results:{{{queue_name}}}:processed"


def produce(url: str, name: str, items: int) -> None:
    q = Queue.from_url(url, name)
    batch = 25
    for start in range(0, items, batch):
        q.put_many(str(n).encode() for n in range(start, min(start + batch, items)))
        time.sleep(0.01)
    q.close()


def work(url: str, name: str) -> None:
    q = Queue.from_url(
        url,
        name,
        max_attempts=20,
        retry_backoff_secs=0.05,
        retry_backoff_cap_secs=0.1,
        worker=f"stress-{os.getpid()}",
    )
    r = q.client
    handoff = os.getpid() % 2 == 0  # half the workers settle with complete_and_lease: one call per item
    lease = q.lease(LEASE_SECS, until="closed")
    while lease is not None:
        n = int(lease.payload)
        time.sleep(random.uniform(0.005, 0.02))
        if n % POISON == 0:
            q.fail(lease, "poison item", retry=False)
            lease = q.lease(LEASE_SECS, until="closed")
            continue
        if n % FLAKY == 0 and lease.attempt == 1:
            q.fail(lease, "transient failure")
            lease = q.lease(LEASE_SECS, until="closed")
            continue
        r.hincrby(processed_key(name), str(n), 1)  # the work's result
        time.sleep(random.uniform(0.005, 0.02))
        if handoff:
            leases = q.complete_and_lease([lease], 1, LEASE_SECS, until="closed").leases
            lease = leases[0] if leases else None
        else:
            with contextlib.suppress(LeaseLost):  # stalled past the lease: another worker has the item
                q.complete(lease)
            lease = q.lease(LEASE_SECS, until="closed")


if __name__ == "__main__":
    role, url, queue_name, *rest = sys.argv[1:]
    if role == "producer":
        produce(url, queue_name, int(rest[0]))
    else:
        work(url, queue_name)
