"""The one retry policy of rediswq's Redis calls: which errors are retried, how often, for how long.

Three callers retry, each at its own level, and all ask this policy:

- `Connection.call` (the library, every call of a `Queue`): an idempotent call is tried again at once
  on connection trouble, up to `retries` times (`Queue(retries=5)`), pausing 0.2 s doubling to 2 s
  (0.2, 0.4, 0.8, 1.6, 2: about 5 s); a call that is not idempotent (`put` without ids, a settle on a
  queue opened with `retry_settles=False`) runs once, since a retry after a lost reply could apply
  it twice. No window: the count bounds it.
- `Consumer` (`Queue.consume()`): on top of that, a settle or lease call that still fails is tried
  again for up to `reconnect_secs` (60 s), pausing 0.1 s doubling to 5 s, with one warning when the
  outage starts. Its calls name leases by handle, so a second send changes nothing.
- the worker runtime (`rediswq work`, rediswq_worker/runtime/calls.py): opens its queue with
  `retry_settles=False`, so its settles reach it at the first failure, and retries every call for up
  to `--reconnect-secs`, pausing 0.1 s doubling to 5 s (or a sixth of the lease if less, so a renewal
  comes before the leases expire), or until its shutdown deadline. Its window runs from the start of
  the outage (the first failed call of any thread), not of the call; it keeps what is its own: one
  call at a time, one report per outage, a signal cutting a pause short.

What is retried (`retryable`): a `ConnectionFailed` that is not an `AuthenticationFailed`. The
translation of redis-py's errors (rediswq/_redis_errors.py) makes that class, and so decides: a
dropped or refused connection, a timeout (a stalled Redis), LOADING (a replica loading its data),
and a cluster or replicated set in the middle of a change (MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
MASTERDOWN, READONLY, "TTL exhausted", no node reachable, sentinels naming no master): the command
did not run, or may not have, and will once the change is over.

What is never retried: refused credentials, a missing password, NOPERM, a failed TLS handshake
(`AuthenticationFailed` and its subclasses: waiting cannot fix them); a cluster URL aimed at a server
that is not in a cluster (`InvalidArgument`); any other error reply (`ServerError`: OOM under
noeviction, WRONGTYPE, a script's error, BUSY from another client's long script).

The schedule: retry N waits `first_pause_secs * 2**(N-1)`, at most `max_pause_secs`, and never past
the end of the window (`since + reconnect_secs`, or an earlier `deadline`): the last try falls on the
window's end, and a try that fails at or after it is the last. Until this module, the consumer gave up
as soon as the next full pause would cross its window (with `reconnect_secs=1`, after 0.7 s), and the
worker slept a whole pause past its window or its shutdown deadline (up to 5 s): both read "retried
for up to reconnect_secs", and both now do exactly that.

A call whose reply was lost: a settle retried after a dropped connection may have gone through the
first time, so a lease it then finds gone is "unconfirmed", not lost (nobody can tell whether it was
settled then or expired meanwhile). `Queue._settle_call` counts the sends (`Handoff.unconfirmed`,
`LeaseLost.unconfirmed`); `Consumer` adds its own retries to that; the worker runtime, with
`retry_settles=False`, tells them apart itself (the attempt number its retries pass, `maybe_sent`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rediswq.errors import AuthenticationFailed, ConnectionFailed

RECONNECT_SECS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a failed Redis call again, and after how long.

    `reconnect_secs`: how long an outage is waited out, from the start of its first failed try.
    `first_pause_secs`, `max_pause_secs`: the back-off, doubling from the one to the other.
    `max_retries`: a bound on the retries of one call besides the window (None: the window alone).
    """

    reconnect_secs: float = RECONNECT_SECS
    first_pause_secs: float = 0.1
    max_pause_secs: float = 5.0
    max_retries: int | None = None

    @staticmethod
    def retryable(error: BaseException) -> bool:
        """Redis could not be reached or is in the middle of a change: worth trying again."""
        return isinstance(error, ConnectionFailed) and not isinstance(error, AuthenticationFailed)

    def pause_secs(self, retry: int) -> float:
        """The pause before retry number `retry` (1, 2, ...), before the window clips it."""
        return min(self.max_pause_secs, self.first_pause_secs * 2.0 ** (retry - 1))

    def window_over(self, since: float, now: float, deadline: float | None = None) -> bool:
        """An outage that began at `since` (monotonic) has lasted its window, or `deadline` is past."""
        return now >= self._end(since, deadline)

    def wait_secs(
        self, retries: int, since: float, now: float, deadline: float | None = None
    ) -> float | None:
        """How long to wait before trying again after `retries` retries failed (0: the first try), in an
        outage that began at `since`; None: give up. The caller has checked that the error is `retryable`."""
        if self.max_retries is not None and retries >= self.max_retries:
            return None
        end = self._end(since, deadline)
        if now >= end:
            return None
        return min(self.pause_secs(retries + 1), end - now)

    def _end(self, since: float, deadline: float | None) -> float:
        end = since + self.reconnect_secs
        return end if deadline is None or deadline > end else deadline


__all__ = ["RECONNECT_SECS", "RetryPolicy"]
