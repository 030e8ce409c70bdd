"""How `rediswq work` reports a Redis that stops answering: one line when it starts, one when it ends.

A dropped connection that the very next try opens again (a `CLIENT KILL`, a proxy or load balancer
cutting a connection, a restart that is already over) is a blip: logged at debug level only, or a
loop of kills would make each worker log two lines per connection. An outage is a call that timed
out (Redis did not answer within the socket timeout: a stall), or a second failure in a row: one
warning when it is noticed, and one line when a call succeeds again.
"""

from __future__ import annotations

import logging
import threading
import time

import redis.exceptions

import rediswq
from rediswq_kit import message
from rediswq_worker.observer import Observer


def is_stall(error: BaseException) -> bool:
    """The call timed out waiting for Redis (not a reset or a refused connection)."""
    cause = error.__cause__ or error
    return isinstance(cause, (redis.exceptions.TimeoutError, TimeoutError))


class Outage:
    """Since when Redis is unreachable (`since`, None while it answers) and why (`error`)."""

    def __init__(self, log: logging.Logger, reconnect_secs: float, observer: Observer | None = None) -> None:
        self.log = log
        self.observer = observer or Observer()
        self.reconnect_secs = reconnect_secs
        self.since: float | None = None
        self.error = ""
        self._reported = False
        self._lock = threading.Lock()

    def failed(self, error: BaseException, began: float) -> None:
        """A call that began at `began` (monotonic) failed to reach Redis."""
        self.observer.redis_error()
        with self._lock:
            first = self.since is None
            if first:
                self.since, self.error = began, str(error)
            if self._reported:
                return
            if first and not is_stall(error):
                self.log.debug("%s; trying again", error)
                return
            self._reported = True
        said = message(error) if isinstance(error, rediswq.RedisWQError) else str(error)
        self.log.warning("%s; retrying for up to %g s", said, self.reconnect_secs)

    def answered(self) -> None:
        """A call went through: the outage, if any, is over."""
        if self.since is None:  # the common case, without the lock
            return
        with self._lock:
            since, reported = self.since, self._reported
            self.since, self.error, self._reported = None, "", False
        if since is None:
            return
        self.observer.reconnected()
        took = time.monotonic() - since
        if reported:
            self.log.info("Redis answers again, after %.1f s", took)
        else:
            self.log.debug("a dropped connection was opened again after %.2f s", took)


__all__ = ["Outage", "is_stall"]
