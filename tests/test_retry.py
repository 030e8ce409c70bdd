"""The one retry policy (rediswq/_retry.py) and its three callers: `Connection.call`, `consume()` and
the worker runtime's calls. Pure logic on a fake clock: no Redis, no sleeping."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis.exceptions

import rediswq
from rediswq import (
    AuthenticationFailed,
    ConnectionFailed,
    EvictingRedis,
    InvalidArgument,
    PermissionDenied,
    Queue,
    QueueNotFound,
    RetryPolicy,
    ServerError,
    TLSFailed,
    _connection,
    consume,
)
from rediswq._connection import Connection
from rediswq_worker import outage
from rediswq_worker.observer import Observer
from rediswq_worker.outage import Outage
from rediswq_worker.runtime import calls as runtime_calls
from rediswq_worker.runtime.calls import Calls, Fatal
from rediswq_worker.runtime.options import Options


class Clock:
    """A monotonic clock that only sleeping moves; records every sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, secs: float) -> None:
        self.sleeps.append(secs)
        self.now += secs


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    for module in (_connection, consume, runtime_calls, outage):
        monkeypatch.setattr(module, "time", fake)
    return fake


def failing_until(clock: Clock, up_at: float, error: Exception) -> Callable[[], str]:
    """A call that raises `error` until the clock reaches `up_at` (seconds from now); records its tries."""
    start = clock.now
    tries: list[float] = []

    def call(*_args: Any) -> str:
        tries.append(round(clock.now - start, 6))
        if clock.now - start < up_at:
            raise error
        return "ok"

    call.tries = tries  # type: ignore[attr-defined]
    return call


# -- the policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ConnectionFailed("cannot reach Redis"), True),
        (AuthenticationFailed("refused the credentials"), False),
        (PermissionDenied("NOPERM"), False),
        (TLSFailed("certificate verify failed"), False),
        (ServerError("OOM command not allowed"), False),
        (InvalidArgument("not in a cluster"), False),
        (EvictingRedis("allkeys-lru"), False),
        (QueueNotFound("no such queue", vanished=False), False),
        (redis.exceptions.ConnectionError("raw, not translated"), False),
    ],
)
def test_only_connection_trouble_that_is_no_refusal_is_retried(error: Exception, retried: bool) -> None:
    assert RetryPolicy.retryable(error) is retried


def test_the_pause_doubles_from_the_first_to_the_cap() -> None:
    policy = RetryPolicy(first_pause_secs=0.1, max_pause_secs=5.0)
    assert [policy.pause_secs(n) for n in range(1, 9)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5, 5])


def test_the_last_try_falls_on_the_end_of_the_window_and_is_the_last() -> None:
    policy = RetryPolicy(reconnect_secs=1.0)
    now, tries, retries = 0.0, [0.0], 0
    while (wait := policy.wait_secs(retries, since=0.0, now=now)) is not None:
        now += wait
        retries += 1
        tries.append(now)
    assert tries == pytest.approx([0, 0.1, 0.3, 0.7, 1.0])


def test_a_pause_never_runs_past_the_deadline() -> None:
    policy = RetryPolicy(reconnect_secs=60.0)
    assert policy.wait_secs(6, since=0.0, now=10.0, deadline=11.5) == pytest.approx(1.5)
    assert policy.wait_secs(6, since=0.0, now=11.5, deadline=11.5) is None
    assert policy.window_over(0.0, 11.5, deadline=11.5) and not policy.window_over(0.0, 59.9)
    assert policy.window_over(0.0, 60.0)


def test_max_retries_bounds_the_retries_of_one_call() -> None:
    policy = RetryPolicy(first_pause_secs=0.2, max_pause_secs=2.0, max_retries=2)
    assert policy.wait_secs(1, since=0.0, now=0.2) == pytest.approx(0.4)
    assert policy.wait_secs(2, since=0.0, now=0.6) is None


# -- Connection.call: the library's per-call retries ------------------------------------------------


@pytest.mark.parametrize(
    ("error", "tries"),
    [
        (redis.exceptions.ConnectionError("Connection reset by peer"), 6),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), 6),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), 6),
        (redis.exceptions.TryAgainError("Multiple keys request during rehashing of slot"), 6),
        (redis.exceptions.AuthenticationError("invalid username-password pair"), 1),
        (redis.exceptions.NoPermissionError("this user has no permissions to run the 'eval' command"), 1),
        (redis.exceptions.ResponseError("OOM command not allowed when used memory > 'maxmemory'."), 1),
        (redis.exceptions.ResponseError("BUSY Redis is busy running a script."), 1),
        (redis.exceptions.ResponseError("Error running script (call to f_0123): user_script:1: boom"), 1),
    ],
)
def test_an_idempotent_call_is_retried_on_connection_trouble_only_on_the_documented_schedule(
    clock: Clock, error: Exception, tries: int
) -> None:
    call = failing_until(clock, 1e9, error)
    with pytest.raises(rediswq.RedisWQError):
        Connection("redis://h:1/0", retries=5).call(call, idempotent=True)
    assert len(call.tries) == tries  # type: ignore[attr-defined]
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0][: tries - 1])


def test_a_call_that_is_not_idempotent_runs_once(clock: Clock) -> None:
    call = failing_until(clock, 1e9, redis.exceptions.ConnectionError("Connection reset by peer"))
    with pytest.raises(ConnectionFailed):
        Connection("redis://h:1/0", retries=5).call(call, idempotent=False)
    assert len(call.tries) == 1  # type: ignore[attr-defined]


# -- consume(): the library loop's window -----------------------------------------------------------


def consumer(reconnect_secs: float) -> consume.Consumer:
    return Queue.from_url("redis://127.0.0.1:1/0", "q").consume(30, reconnect_secs=reconnect_secs)


def test_consume_retries_until_the_end_of_its_window_not_a_pause_before(clock: Clock) -> None:
    # Redis answers again 0.9 s into a 1 s window: the try at 1.0 s finds it (the loop used to give
    # up at 0.7 s, when the next full pause of 0.8 s would have crossed the window).
    call = failing_until(clock, 0.9, ConnectionFailed("cannot reach Redis"))
    assert consumer(1.0)._retrying(call) == ("ok", True)
    assert call.tries == pytest.approx([0, 0.1, 0.3, 0.7, 1.0])  # type: ignore[attr-defined]


def test_consume_gives_up_at_the_end_of_its_window(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    call = failing_until(clock, 1e9, ConnectionFailed("cannot reach Redis"))
    with caplog.at_level(logging.WARNING, logger="rediswq"), pytest.raises(ConnectionFailed):
        consumer(1.0)._retrying(call)
    assert call.tries[-1] == pytest.approx(1.0)  # type: ignore[attr-defined]
    assert [r.getMessage() for r in caplog.records] == ["cannot reach Redis; retrying for up to 1 s"]


def test_consume_does_not_retry_a_refusal(clock: Clock) -> None:
    call = failing_until(clock, 1e9, AuthenticationFailed("refused the credentials"))
    with pytest.raises(AuthenticationFailed):
        consumer(60.0)._retrying(call)
    assert len(call.tries) == 1  # type: ignore[attr-defined]


def test_a_settle_found_lost_after_a_retry_is_unconfirmed(clock: Clock) -> None:
    tries = 0

    def settle() -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise ConnectionFailed("the reply was lost")
        raise rediswq.LeaseLost("gone")

    with pytest.raises(rediswq.LeaseLost) as caught:
        consumer(60.0)._retrying(settle)
    assert caught.value.unconfirmed


# -- the worker runtime: one call policy, the library's schedule -----------------------------------


class Signals:
    """The keeper's sleep on the fake clock; no signal ever arrives."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.noticed = 0

    def pump(self, secs: float) -> None:
        self.clock.sleep(secs)


def worker_calls(clock: Clock, reconnect_secs: float, lease_secs: float = 30.0) -> Calls:
    log = logging.getLogger("rediswq.work")
    options = Options(reconnect_secs=reconnect_secs, lease_secs=lease_secs, install_signals=False)
    return Calls(options, Outage(log, reconnect_secs), Observer(), Signals(clock))  # type: ignore[arg-type]


def test_the_worker_retries_until_the_end_of_its_window_then_gives_up_there(clock: Clock) -> None:
    call = failing_until(clock, 1e9, ConnectionFailed("cannot reach Redis"))
    with pytest.raises(Fatal, match=r"^cannot reach Redis \(gave up after 1\.0 s\)$"):
        worker_calls(clock, 1.0).retry(call)
    # It used to sleep a whole pause past the window: a last try at 1.5 s.
    assert call.tries == pytest.approx([0, 0.1, 0.3, 0.7, 1.0])  # type: ignore[attr-defined]


def test_the_worker_never_pauses_past_its_shutdown_deadline(clock: Clock) -> None:
    call = failing_until(clock, 1e9, ConnectionFailed("cannot reach Redis"))
    with pytest.raises(Fatal):
        worker_calls(clock, 60.0).retry(call, give_up_at=clock.now + 0.5)
    assert call.tries == pytest.approx([0, 0.1, 0.3, 0.5])  # type: ignore[attr-defined]


def test_the_worker_s_pauses_are_capped_at_a_sixth_of_the_lease(clock: Clock) -> None:
    call = failing_until(clock, 3.0, ConnectionFailed("cannot reach Redis"))
    assert worker_calls(clock, 60.0, lease_secs=3.0).retry(call) == "ok"
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5])


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (AuthenticationFailed("refused the credentials"), AuthenticationFailed),
        (QueueNotFound("no such queue", vanished=True), QueueNotFound),
        (ServerError("OOM command not allowed"), Fatal),
        (redis.exceptions.ResponseError("WRONGTYPE"), Fatal),
    ],
)
def test_the_worker_does_not_retry_refusals_or_answers(
    clock: Clock, error: Exception, raised: type[Exception]
) -> None:
    call = failing_until(clock, 1e9, error)
    with pytest.raises(raised):
        worker_calls(clock, 60.0).retry(call)
    assert len(call.tries) == 1  # type: ignore[attr-defined]
