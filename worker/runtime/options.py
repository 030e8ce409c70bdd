"""How the runtime works (the CLI's options, validated there) and what one run did (its Summary)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rediswq import Until
from rediswq_worker.runtime.state import Ending


@dataclass(frozen=True)
class Options:
    """How the runtime works; the CLI's options, validated there."""

    lease_secs: float = 30.0
    concurrency: int = 1
    prefetch: int | None = None  # None: auto (see worker.runtime.pacing)
    until: Until = "drained"
    max_items: int | None = None
    grace_secs: float = 25.0
    reconnect_secs: float = 60.0
    fail_on_dead: bool = True  # drained with dead letters in the queue: exit 4, not 0
    item_timeout_secs: float | None = None  # an item's time limit (worker.runtime.overruns)
    warn_after_secs: float | None = None  # warn of an item running this long; None: lease_secs; 0: never
    stop_after_failures: int = 10  # stop once this many items in a row failed alike; 0: never
    progress_secs: float = 30.0  # log a progress line this often (worker.runtime.progress); 0: never
    max_wait_secs: float | None = None  # until="closed": exit 7 after this long idle on an open queue
    install_signals: bool = True


@dataclass
class Summary:
    """What one run did, for the line printed at exit.

    Written under the ledger's lock only (worker.runtime.ledger); the metrics endpoint reads the
    counts without it, each one int.
    """

    outcome: str = ""
    ending: Ending | None = None  # None: the run has not ended (the command treats it as a failure)
    done: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0
    lost: int = 0
    unconfirmed: int = 0
    dead_letters: int | None = None  # the queue's dead letters when it drained (None: not read)
    elapsed_secs: float = 0.0
    error: str = ""

    @property
    def rate(self) -> float:
        """Items settled (done or failed) per second of the run."""
        return (self.done + self.failed) / self.elapsed_secs if self.elapsed_secs > 0 else 0.0

    def line(self, queue_name: str) -> str:
        parts = [
            f"{self.done} done",
            f"{self.failed} failed",
            f"{self.dead} dead-lettered",
            f"{self.released} given back",
            f"{self.lost} lost",
        ]
        if self.unconfirmed:
            parts.append(f"{self.unconfirmed} unconfirmed (sent as the connection broke)")
        line = (
            f"queue {queue_name!r} {self.outcome}: {', '.join(parts)} in {self.elapsed_secs:.2f} s "
            f"({self.rate:.1f} items/s)"
        )
        if self.dead_letters:
            line += f"; the queue holds {self.dead_letters} dead letters (rediswq dead list {queue_name})"
        return line

    def fields(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "outcome": self.outcome,
            "ending": self.ending.value if self.ending else None,
            "done": self.done,
            "failed": self.failed,
            "dead_lettered": self.dead,
            "given_back": self.released,
            "lost": self.lost,
            "unconfirmed": self.unconfirmed,
            "queue_dead_letters": self.dead_letters,
            "elapsed_secs": round(self.elapsed_secs, 3),
            "items_per_sec": round(self.rate, 1),
        }


__all__ = ["Options", "Summary", "Until"]
