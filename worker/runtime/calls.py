"""The one policy for the runtime's Redis calls: one at a time, who retries, for how long.

- One call at a time (the Redis lock): a renewal then never races the completion of the same lease,
  and the accounting after each call is done under the same lock.
- A slot tries a call once (`once`); on an error it leaves the retrying, and its reporting, to the
  keeper. The keeper retries (`retry`) what the library's `RetryPolicy` says is worth retrying (Redis
  unreachable or mid-change), for up to `reconnect_secs` from the start of the outage (or, once
  shutting down, until the grace period ends), pausing 0.1 s doubling to 5 s (or a sixth of the
  lease if less: once Redis is back, the next renewal comes before the leases expire), never past
  either end. This is the only retry layer of the runtime: the queue is opened with
  retry_settles=False.
- Retrying is safe for every call the runtime makes, idempotent or not: each names its leases by
  handle, so a retried completion that went through the first time reports that lease as no longer
  held and changes nothing.
- An outage is reported once when it starts and once when it ends (worker.outage); Redis answering
  with an error, refusing the credentials, or the queue vanishing is not retried.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn, TypeVar

import redis.exceptions

import rediswq
from rediswq_worker.observer import Observer
from rediswq_worker.outage import Outage
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.signals import Signals

T = TypeVar("T")

_MAX_RETRY_PAUSE_SECS = 5.0
# Not retried and not Fatal: a configuration error, which ends the run with exit code 2.
_CONFIGURATION = (
    rediswq.AuthenticationFailed,
    rediswq.EvictingRedis,
    rediswq.InvalidArgument,
    rediswq.QueueNotFound,
)


class Fatal(Exception):
    """Redis stayed unreachable (or answered with an error): the run ends with exit code 1."""


class Interrupted(Exception):
    """A signal arrived while a call was being retried: stop retrying, start shutting down."""


def unreachable(error: BaseException) -> bool:
    """Redis could not be reached (worth retrying), as opposed to refusing the credentials."""
    return rediswq.RetryPolicy.retryable(error)


class Calls:
    """Runs the runtime's Redis calls under its policy.

    `lock` serializes the calls; `give_up_at` is written by the keeper thread only (set once
    shutting down) and read by any; the Outage has a lock of its own.
    """

    def __init__(self, options: Options, outage: Outage, observer: Observer, signals: Signals) -> None:
        self.lock = threading.Lock()
        self.outage = outage
        self.observer = observer
        self.signals = signals
        self.policy = rediswq.RetryPolicy(
            options.reconnect_secs,
            max_pause_secs=min(_MAX_RETRY_PAUSE_SECS, max(0.1, options.lease_secs / 6)),
        )
        self.give_up_at: float | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the Redis lock; once shutting down, wait for it only until the deadline.

        Without this, a Redis that stopped answering (a partition: no reset, no reply) would hold a
        slot's call, and with it the lock, past the grace period the pod is given.
        """
        deadline = self.give_up_at
        if deadline is None:
            with self.lock:
                yield
            return
        if not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Fatal("Redis does not answer a call under way")
        try:
            yield
        finally:
            self.lock.release()

    def once(self, op: Callable[[], T]) -> T:
        """Try `op` once under the Redis lock; an unreachable Redis counts towards the outage."""
        began = time.monotonic()
        try:
            with self.turn():
                result = op()
        except Exception as e:
            if unreachable(e):
                self.outage.failed(e, began)
            raise
        self.outage.answered()
        return result

    def retry(self, op: Callable[[int], T], give_up_at: float | None = None) -> T:
        """Run `op(attempt)` (keeper only), retrying while Redis is unreachable; see the module doc."""
        if give_up_at is None:
            give_up_at = self.give_up_at
        self._give_up_if_late(give_up_at, time.monotonic())
        attempt = 1
        while True:
            try:
                return self.once(functools.partial(op, attempt))
            except (rediswq.RedisWQError, redis.exceptions.RedisError) as e:
                if self.policy.retryable(e):
                    self._pause(self._wait_secs(attempt - 1, give_up_at, e), e)
                    attempt += 1
                elif isinstance(e, _CONFIGURATION):
                    raise
                else:
                    raise self.fatal(e) from e  # Redis answered with an error: retrying will not help

    def fatal(self, error: Exception) -> Fatal:
        """Redis answered with an error (OOM, a key of the wrong type), perhaps passed through unwrapped."""
        self.observer.redis_error()
        if isinstance(error, rediswq.RedisWQError):
            return Fatal(str(error))
        return Fatal(f"Redis error: {error}")

    def _pause(self, secs: float, error: Exception) -> None:
        noticed = self.signals.noticed
        self.signals.pump(secs)
        if self.signals.noticed > noticed:
            raise Interrupted() from error

    def _give_up_if_late(self, give_up_at: float | None, now: float) -> None:
        """Raise Fatal once Redis has been unreachable for `reconnect_secs` (or past `give_up_at`)."""
        since = self.outage.since
        if since is not None and self.policy.window_over(since, now, give_up_at):
            self._give_up(since, now)

    def _wait_secs(self, retries: int, give_up_at: float | None, error: Exception) -> float:
        """The pause before the next try, as the policy says; Fatal if the window is over."""
        now = time.monotonic()
        since = self.outage.since
        since = now if since is None else since  # another thread's call went through meanwhile
        wait = self.policy.wait_secs(retries, since, now, give_up_at)
        if wait is None:
            self._give_up(since, now, error)
        return wait

    def _give_up(self, since: float, now: float, error: Exception | None = None) -> NoReturn:
        raise Fatal(f"{self.outage.error or error} (gave up after {now - since:.1f} s)")


__all__ = ["Calls", "Fatal", "Interrupted", "unreachable"]
