"""What the worker runtime tells an observer as it runs: item times, Redis errors, reconnects.

The runtime counts items itself (its Summary); an observer only hears what the Summary does not keep.
The base class ignores everything, so the runtime calls it unconditionally: a metrics exporter
(worker.metrics) overrides the methods it needs. Calls come from the runtime's threads and must be
quick: `item_finished` runs once per item, under the runtime's own lock.
"""

from __future__ import annotations


class Observer:
    """Ignores every event; subclasses record the ones they need."""

    def item_finished(self, secs: float) -> None:
        """An item's handler or command returned after `secs` seconds (done or failed)."""

    def redis_error(self) -> None:
        """A Redis call failed: unreachable (it is retried) or answered with an error."""

    def reconnected(self) -> None:
        """Redis answers again after an outage."""
