"""`Queue.consume()`: the library's one loop, a lease per iteration, completed when the next begins.

    with queue.consume(lease_secs=30) as leases:
        for lease in leases:
            render(lease.payload)

Each item is completed in the same script call that leases the next one (`complete_and_lease`), so
the loop costs one round trip per item (per `prefetch` items). Leases held (the running one and the
prefetched ones) are renewed in the background. A dropped connection is retried for up to
`reconnect_secs`; a completion whose reply was lost and whose retry found the lease gone is counted
in `unconfirmed`, not `lost`.

How the loop ends, for the item being worked on:
  the queue drains (until="drained", or "closed")  every item was completed; the loop ends
  the body raises an Exception inside `with`        the item is failed with the exception (type,
                                                    message, traceback: retried after a backoff, or
                                                    dead-lettered), then the exception propagates
  KeyboardInterrupt, SystemExit                     the item and the prefetched ones are released
                                                    (attempt not charged), then it propagates
  `break`, or leaving the loop without `with`       the item and the prefetched ones are released;
  (the iterator cannot tell a break from an error)  finished items are completed
  the `with` block ends normally after a `break`    the item counts as done and is completed

There is no time limit per item here: the body runs in the caller's own thread, which the library
will not interrupt, and a lease it stops renewing would only let a second worker run the item beside
the first. The body enforces its own limits (a timeout on its calls), or the program runs under
`rediswq work --item-timeout`, which stops a handler and, when it cannot, exits so the pod is
replaced. Likewise the prefetched leases are renewed while the body runs: with items that may take
long, keep `prefetch=1` so no other worker waits for an item held here unstarted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from rediswq._retry import RetryPolicy
from rediswq.errors import ConnectionFailed, InvalidArgument, LeaseLost
from rediswq.heartbeat import Heartbeat
from rediswq.lease import Lease

if TYPE_CHECKING:
    from rediswq.queue import Queue, Until

log = logging.getLogger("rediswq")
T = TypeVar("T")

_ERROR_CHARS = 8000  # the end of a traceback is the part that says what failed


def describe_error(error: BaseException) -> str:
    """The exception as a dead letter keeps it: type, message and traceback, the end if long."""
    text = "".join(traceback.format_exception(error)).rstrip()
    return text if len(text) <= _ERROR_CHARS else "...\n" + text[-_ERROR_CHARS:]


class Consumer:
    """Leases from one queue, one per iteration; see the module docstring for how it ends."""

    def __init__(
        self,
        queue: Queue,
        lease_secs: float,
        *,
        prefetch: int,
        until: Until,
        reconnect_secs: float,
    ) -> None:
        self._queue = queue
        self._lease_secs = lease_secs
        self._prefetch = prefetch
        self._until: Until = until
        self._policy = RetryPolicy(reconnect_secs)
        self._buffer: deque[Lease] = deque()
        self._done: list[Lease] = []
        self._current: Lease | None = None
        self._gone: set[int] = set()  # ids of buffered leases the heartbeat found lost
        self._gone_lock = threading.Lock()
        self._heartbeat = Heartbeat(queue, on_lost=self._on_lost)
        self._in_with = False
        self._finished = False
        self.completed = 0
        self.failed = 0
        self.lost: list[Lease] = []  # completions whose lease had expired and been taken over
        self.unconfirmed: list[Lease] = []  # completions sent as the connection broke, then found gone

    # -- the loop -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Lease]:
        try:
            while (lease := self._next()) is not None:
                yield lease
        except GeneratorExit:
            if not self._in_with:
                self._stop(current="release")
            raise

    def _next(self) -> Lease | None:
        if self._finished:
            return None
        if self._current is not None:
            self._done.append(self._current)
            self._heartbeat.discard(self._current)
            self._current = None
        while True:
            while self._buffer:
                lease = self._buffer.popleft()
                with self._gone_lock:
                    gone = id(lease) in self._gone
                if not gone:
                    self._current = lease
                    return lease
            if not self._refill():
                return None

    def _refill(self) -> bool:
        """Complete the finished items and lease the next ones in one call; False once drained."""
        done, self._done = self._done, []
        try:
            handoff, resent = self._retrying(
                lambda: self._queue.complete_and_lease(
                    done, self._prefetch, self._lease_secs, until=self._until
                )
            )
        except BaseException:
            self._done[:0] = done  # not known to be completed: the loop's end completes them
            raise
        self._settled(done, handoff.lost, handoff.unconfirmed or resent)
        if not handoff.leases:
            self._finished = True
            self._heartbeat.stop()
            return False
        with self._gone_lock:
            self._gone.clear()
        for lease in handoff.leases:
            self._heartbeat.add(lease)
        self._buffer.extend(handoff.leases)
        self._heartbeat.start()
        return True

    def fail(self, lease: Lease, error: BaseException | str, *, retry: bool = True) -> bool:
        """Fail the current item now, for a loop that catches its own errors and goes on.

        The item is not completed when the next iteration begins. Returns True if it was
        dead-lettered; a lease found gone is counted in `lost` (or `unconfirmed`), not raised.
        """
        if lease is not self._current:
            raise InvalidArgument("only the lease of the current iteration can be failed through the loop")
        self._current = None
        self._heartbeat.discard(lease)
        text = error if isinstance(error, str) else describe_error(error)
        try:
            dead, _resent = self._retrying(lambda: self._queue.fail(lease, text, retry=retry))
        except LeaseLost as e:
            self._settled([lease], e.leases, e.unconfirmed)
            return False
        self.failed += 1
        return dead

    # -- settling -------------------------------------------------------------------------------

    def _settled(self, done: list[Lease], lost: list[Lease], unconfirmed: bool) -> None:
        if lost and unconfirmed:
            self.unconfirmed.extend(lost)
            log.warning(
                "%d settle(s) were sent as the connection broke: they went through then, or their leases "
                "expired meanwhile and the items will be done again",
                len(lost),
            )
        elif lost:
            self.lost.extend(lost)
            log.warning(
                "%d item(s) finished after their lease expired and was taken over: %s",
                len(lost),
                ", ".join(lease.id for lease in lost[:5]),
            )
        self.completed += len(done) - len(lost)

    def _on_lost(self, lease: Lease) -> None:
        """The heartbeat found a lease gone (the loop stalled past its deadline): don't start it late."""
        with self._gone_lock:
            self._gone.add(id(lease))

    def _retrying(self, op: Callable[[], T]) -> tuple[T, bool]:
        """Run `op`, again while Redis is unreachable, as rediswq/_retry.py says (for `reconnect_secs`).

        Returns its result and whether an earlier try failed on the way (so may have been applied).
        Every call made here names its leases by handle, so a try applied twice changes nothing.
        """
        policy = self._policy
        since = time.monotonic()
        retries = 0
        while True:
            try:
                return op(), retries > 0
            except LeaseLost as e:
                e.unconfirmed = e.unconfirmed or retries > 0
                raise
            except ConnectionFailed as e:
                if not policy.retryable(e):
                    raise
                if not retries:
                    log.warning("%s; retrying for up to %g s", e, policy.reconnect_secs)
                wait = policy.wait_secs(retries, since, time.monotonic())
                if wait is None:
                    raise
                retries += 1
                time.sleep(wait)

    # -- ending ---------------------------------------------------------------------------------

    def __enter__(self) -> Consumer:
        self._in_with = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._in_with = False
        if error is None:
            self._stop(current="complete")
        elif isinstance(error, Exception):
            self._stop(current="fail", error=error)
        else:
            self._stop(current="release", error=error)

    def _stop(self, *, current: str, error: BaseException | None = None) -> None:
        """Settle what the loop holds: the current item as told, prefetched ones released, done completed."""
        self._finished = True
        lease, self._current = self._current, None
        give_back = list(self._buffer)
        self._buffer.clear()
        if lease is not None and current == "complete":
            self._done.append(lease)
        elif lease is not None and current == "release":
            give_back.insert(0, lease)
        try:
            if lease is not None and current == "fail" and error is not None:
                self._current = lease
                self.fail(lease, error)
            self._settle_done_and_release(give_back)
        except Exception as e:
            if error is None:
                raise
            # The body's own error is the one to see; the items not settled expire and come back.
            log.warning("could not settle the loop's leases after an error: %s", e)
        finally:
            self._heartbeat.stop()

    def _settle_done_and_release(self, give_back: list[Lease]) -> None:
        done, self._done = self._done, []
        if done:
            try:
                self._retrying(lambda: self._queue.complete_many(done))
                lost: list[Lease] = []
                unconfirmed = False
            except LeaseLost as e:
                lost, unconfirmed = e.leases, e.unconfirmed
            self._settled(done, lost, unconfirmed)
        if give_back:
            # A lease found gone was taken over already: nothing of ours to give back.
            with contextlib.suppress(LeaseLost):
                self._retrying(lambda: self._queue.release_many(give_back))
