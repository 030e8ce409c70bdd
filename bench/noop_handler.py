"""The no-op handler the worker-runtime bench runs: `rediswq work QUEUE --handler noop_handler:noop`."""

from __future__ import annotations


def noop(lease: object) -> None:
    """Do nothing, so the bench measures the runtime and the queue, not the work."""
