"""The worker runtime in-process, where a test needs to break a call on purpose."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest
import redis

import rediswq
from rediswq import Lease, Queue
from rediswq_worker.runners import OK, Outcome
from rediswq_worker.runtime import AUTO_BATCH_MAX, Ending, Options, Runtime


class ReplyLostOnce(Queue):
    """A queue whose first completing call is applied by Redis, but whose reply never arrives."""

    broke = False

    def complete_and_lease(self, done: Sequence[Lease], *args: Any, **kwargs: Any) -> rediswq.Handoff:
        handoff = super().complete_and_lease(done, *args, **kwargs)
        if done and not self.broke:
            self.broke = True
            raise rediswq.ConnectionFailed("connection reset while reading the reply")
        return handoff


class Record:
    """A runner that completes every item and remembers what it ran."""

    def __init__(self) -> None:
        self.ran: list[tuple[str, int]] = []

    def run(self, lease: Lease) -> Outcome:
        self.ran.append((lease.payload.decode(), lease.attempt))
        return OK

    def kill(self, leases: Sequence[Lease]) -> None:
        pass

    def describe(self) -> str:
        return "record"


def test_a_completion_whose_reply_was_lost_is_reported_unconfirmed_not_lost(
    client: redis.Redis, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    queue = ReplyLostOnce(client, queue_name)
    queue.put_many(f"n{i}" for i in range(4))
    runner = Record()
    with caplog.at_level(logging.INFO):
        summary = Runtime(queue, runner, Options(lease_secs=0.5, prefetch=1, install_signals=False)).run()
    try:
        assert (summary.ending, summary.outcome) == (Ending.DRAINED, "drained")
        # n0 was completed by the broken call; n1 was leased by it too, expired, and ran again.
        assert sorted(runner.ran) == [("n0", 1), ("n1", 2), ("n2", 1), ("n3", 1)]
        assert (summary.done, summary.unconfirmed, summary.lost) == (3, 1, 0)
        stats = queue.stats()
        assert (stats.completed, stats.expired) == (4, 1) and stats.drained
        assert "1 completions were sent as the connection broke" in caplog.text
        assert "after its lease expired" not in caplog.text
    finally:
        queue.purge()


class CountingQueue(Queue):
    """A queue that records how many items each lease call asked for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[int] = []

    def complete_and_lease(
        self, done: Sequence[Lease], count: int = 1, *args: Any, **kwargs: Any
    ) -> rediswq.Handoff:
        self.asked.append(count)
        return super().complete_and_lease(done, count, *args, **kwargs)


class Sleeper(Record):
    """Completes every item after `secs`."""

    def __init__(self, secs: float) -> None:
        super().__init__()
        self.secs = secs

    def run(self, lease: Lease) -> Outcome:
        time.sleep(self.secs)
        return super().run(lease)


@pytest.mark.parametrize(
    ("item_secs", "prefetch", "batches"),
    [
        (0.0, None, "grow"),  # auto: quick items come up to 16 a call
        (0.06, None, "one"),  # auto: items of 50 ms or more come one at a time
        (0.0, 1, "one"),  # a fixed --prefetch 1 stays one at a time
        (0.0, 5, "five"),
    ],
)
def test_prefetch_auto_batches_quick_items_and_leases_slow_ones_one_at_a_time(
    client: redis.Redis, queue_name: str, item_secs: float, prefetch: int | None, batches: str
) -> None:
    queue = CountingQueue(client, queue_name)
    items = 8 if item_secs else 60
    queue.put_many(f"n{i}" for i in range(items))
    runner = Sleeper(item_secs)
    try:
        summary = Runtime(queue, runner, Options(prefetch=prefetch, install_signals=False)).run()
        assert (summary.ending, summary.done) == (Ending.DRAINED, items)
        asked = queue.asked
        assert asked[0] == (prefetch or 1)  # the first items' time is unknown: one, unless fixed
        if batches == "grow":
            assert max(asked) == AUTO_BATCH_MAX
            assert len(asked) < items / 4
        elif batches == "one":
            assert set(asked) == {1}
        else:
            assert set(asked) == {5}
    finally:
        queue.purge()
