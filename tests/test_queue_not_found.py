"""A queue never created, or whose state vanished, is never "drained": library and CLI."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from click.testing import CliRunner

from rediswq import Queue, QueueNotFound
from rediswq_cli.main import main


def test_draining_a_queue_nothing_was_added_to_raises_queue_not_found(queue: Queue) -> None:
    with pytest.raises(QueueNotFound, match=f"no such queue '{queue.name}'.*until='closed'") as caught:
        queue.lease(30)
    assert caught.value.vanished is False
    assert not queue.stats().exists and not queue.is_drained()


def test_until_closed_waits_for_a_producer_on_a_queue_not_made_yet(client: redis.Redis, queue: Queue) -> None:
    producer = Queue(client, queue.name)
    threading.Timer(0.3, producer.put, args=(b"late",)).start()
    lease = queue.lease(30, until="closed", timeout=5)
    assert lease is not None and lease.payload == b"late"


def test_an_inbox_filled_by_hand_creates_the_queue(client: redis.Redis, queue: Queue) -> None:
    client.rpush(queue.keys.inbox, b"by-hand")
    assert queue.stats().exists
    lease = queue.lease(30)
    assert lease is not None and lease.payload == b"by-hand"


def test_a_queue_whose_keys_vanish_is_not_drained_for_a_worker_that_saw_it(
    client: redis.Redis, queue: Queue
) -> None:
    queue.put_many([b"a", b"b"])
    lease = queue.lease(30)
    assert lease is not None
    client.delete(*queue.keys.all())  # a failover to an empty replica looks like this
    with pytest.raises(QueueNotFound, match="vanished") as caught:
        queue.lease(30, timeout=0)
    assert caught.value.vanished is True
    with pytest.raises(QueueNotFound, match="vanished"):
        queue.complete(lease)


def test_counters_gone_while_items_remain_is_damaged_and_nothing_is_written(
    client: redis.Redis, queue: Queue
) -> None:
    queue.put_many([b"a", b"b"])
    client.delete(queue.keys.meta)  # evicted, say
    fresh = Queue(client, queue.name)
    before = {key: client.dump(key) for key in queue.keys.all()}
    for q in (queue, fresh):
        with pytest.raises(QueueNotFound, match="damaged") as caught:
            q.lease(30, until="closed", timeout=0)
        assert caught.value.vanished is True
    assert {key: client.dump(key) for key in queue.keys.all()} == before


# -- a typo'd name: which queue was meant, and nothing made by mistake ---------------------------------


def test_a_lease_draining_a_typod_name_names_the_queue_close_to_it(client: redis.Redis, queue: Queue) -> None:
    queue.put(b"x")
    typo = Queue(client, queue.name + "2")
    with pytest.raises(QueueNotFound, match=f"did you mean '{queue.name}'.*until='closed'") as caught:
        typo.lease(30)
    assert caught.value.similar[0] == queue.name and not caught.value.vanished


def test_queue_names_are_found_by_a_walk_bounded_by_its_limit_and_its_calls(
    client: redis.Redis, queue_name: str
) -> None:
    made = [Queue(client, f"{queue_name}-{i}") for i in range(6)]
    for q in made:
        q.put(b"x")
    try:
        mine = [q.name for q in made]
        assert Queue.names(client, pattern=f"{queue_name}-*") == mine
        assert set(mine) <= set(Queue.names(client))
        assert len(Queue.names(client, pattern=f"{queue_name}-*", limit=2)) == 2
        # One call that looks at about one key cannot find six queues.
        assert len(Queue.names(client, pattern=f"{queue_name}-*", max_calls=1, count=1)) < 6
    finally:
        for q in made:
            q.purge()


@pytest.mark.parametrize("command", [["stats"], ["peek"], ["dead", "list"]])
def test_a_look_at_a_queue_that_does_not_exist_exits_1_naming_the_close_one(
    redis_url: str, queue: Queue, command: list[str]
) -> None:
    queue.put(b"x")
    result = CliRunner().invoke(main, ["--url", redis_url, *command, queue.name + "2"])
    assert result.exit_code == 1
    said = f"no such queue '{queue.name}2' (nothing was ever added to it); did you mean '{queue.name}'"
    assert result.output.strip().splitlines()[-1].startswith(f"Error: {said}")


def test_work_on_a_queue_that_does_not_exist_exits_2_with_how_to_wait(
    redis_url: str, queue_name: str
) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(main, ["--url", redis_url, "work", queue_name, "--", "true"])
    assert result.exit_code == 2
    assert f"no such queue '{queue_name}'" in result.output and "--until closed" in result.output
    assert f"queue '{queue_name}' drained" not in result.output
    assert time.monotonic() - started < 5


def test_work_on_a_typod_name_exits_2_naming_the_queue_close_to_it(redis_url: str, queue: Queue) -> None:
    queue.put(b"x")
    result = CliRunner().invoke(main, ["--url", redis_url, "work", queue.name + "2", "--", "true"])
    assert result.exit_code == 2
    said = f"no such queue '{queue.name}2' (nothing was ever added to it); did you mean '{queue.name}'? "
    assert said + "use --until closed to wait for a producer" in result.output, result.output


def test_work_exits_1_when_the_queue_vanishes_under_it(
    client: redis.Redis, redis_url: str, queue: Queue
) -> None:
    queue.put_many([b"1", b"2", b"3"])
    threading.Timer(0.5, lambda: client.delete(*queue.keys.all())).start()
    result = CliRunner().invoke(
        main, ["--url", redis_url, "work", queue.name, "--until", "closed", "--", "sleep", "0.2"]
    )
    assert result.exit_code == 1, result.output
    assert "vanished" in result.output
    assert "drained" not in result.output.splitlines()[-1]
