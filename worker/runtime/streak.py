"""A handler or command that fails every item: noticed after a few, before it burns the whole queue.

Without this, a handler with a wrong signature fails each item in microseconds, each failure charges an
attempt, and the queue ends as dead letters within seconds (20,000 of them in 10 s, 40,000 log lines).
With --stop-after-failures N (default 10), once the last N items filed here all failed with the same
error, the worker stops early (worker.runtime.state: exit 6): N items were charged one attempt each and
come back after their backoff, for a fixed handler to run.

"The same error" is `Outcome.same_as`: a handler's exception type and message, not its traceback (the
line numbers of a traceback differ with the path taken, the message does not); a command's exit
status and last line of standard error. A message that names its item (a file not found) differs per
item, so ordinary failures of some items never stop the run; any item that succeeds starts the count
again.
"""

from __future__ import annotations

from rediswq_worker.runners import Outcome


class Streak:
    """The run of failures with one cause, ending at the last item filed; guarded by the ledger's lock."""

    __slots__ = ("cause", "count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit  # 0: never stop
        self.cause = ""
        self.count = 0

    @property
    def broken(self) -> bool:
        """The last `limit` items all failed with `cause`."""
        return self.limit > 0 and self.count >= self.limit

    def filed_locked(self, outcome: Outcome) -> None:
        """One more item finished; a failure with the streak's cause lengthens it, anything else ends it."""
        if self.broken:
            return  # the verdict stands
        if outcome.ok:
            self.cause, self.count = "", 0
        elif outcome.same_as == self.cause:
            self.count += 1
        else:
            self.cause, self.count = outcome.same_as, 1

    def same_locked(self, outcome: Outcome) -> bool:
        """A failure after the verdict, with the same cause: give it back instead of charging it."""
        return self.broken and not outcome.ok and outcome.same_as == self.cause


__all__ = ["Streak"]
