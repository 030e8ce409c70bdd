"""The one policy for the runtime's Redis calls: one at a time, who retries, for how long.

- One call at a time (the Redis lock): a renewal then never races the completion of the same lease,
  and the accounting after each call is done under the same lock.
- A slot tries a call once (`once`); on an error it leaves the retrying, and its reporting, to the
  keeper. The keeper retries (`retry`) while Redis is unreachable, for up to `reconnect_secs` (or,
  once shutting down, until the grace period ends), pausing 0.1 s doubling to 5 s (or a sixth of the
  lease if less: once Redis is back, the next renewal comes before the leases expire). This is the
  only retry layer of the runtime: the queue is opened with retry_settles=False.
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
from typing import TypeVar

import redis.exceptions

import rediswq
from rediswq_worker.observer import Observer
from rediswq_worker.outage import Outage
from rediswq_worker.runtime.options import Options
from rediswq_worker.runtime.signals import Signals

T = TypeVar("T")

_FIRST_PAUSE_SECS = 0.1
_MAX_RETRY_PAUSE_SECS = 5.0


class Fatal(Exception):
    """Redis stayed unreachable (or answered with an error): the run ends with exit code 1."""


class Interrupted(Exception):
    """A signal arrived while a call was being retried: stop retrying, start shutting down."""


def unreachable(error: BaseException) -> bool:
    """Redis could not be reached (worth retrying), as opposed to refusing the credentials."""
    return isinstance(error, rediswq.ConnectionFailed) and not isinstance(error, rediswq.AuthenticationFailed)


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
        self.reconnect_secs = options.reconnect_secs
        self.max_pause_secs = min(_MAX_RETRY_PAUSE_SECS, max(0.1, options.lease_secs / 6))
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
        attempt, pause = 1, _FIRST_PAUSE_SECS
        while True:
            try:
                return self.once(functools.partial(op, attempt))
            except (
                rediswq.AuthenticationFailed,
                rediswq.EvictingRedis,
                rediswq.InvalidArgument,
                rediswq.QueueNotFound,
            ):
                raise
            except rediswq.ConnectionFailed as e:
                self._give_up_if_late(give_up_at, time.monotonic())
                self._pause(pause, e)
                attempt, pause = attempt + 1, min(pause * 2, self.max_pause_secs)
            except (rediswq.RedisWQError, redis.exceptions.RedisError) as e:
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
        since, error = self.outage.since, self.outage.error
        if since is None:
            return
        if now >= since + self.reconnect_secs or (give_up_at is not None and now >= give_up_at):
            raise Fatal(f"{error} (gave up after {now - since:.1f} s)")


__all__ = ["Calls", "Fatal", "Interrupted", "unreachable"]
