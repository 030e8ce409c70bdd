"""Keeping leases alive while their items are worked on, from a background thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from rediswq.errors import LeaseLost, RedisWQError
from rediswq.lease import Lease

if TYPE_CHECKING:
    from rediswq.queue import Queue

log = logging.getLogger(__name__)


class Heartbeat:
    """Extends a changing set of leases about every third of their length until stopped.

    A third leaves two chances to renew before a lease runs out, so one slow or failed call does not
    lose it. A lease that was lost anyway (the worker stalled past its deadline) is dropped from the
    set, added to `lost` and passed to `on_lost`; the worker should then abandon that item.
    """

    def __init__(
        self,
        queue: Queue,
        leases: Iterable[Lease] = (),
        *,
        on_lost: Callable[[Lease], None] | None = None,
    ) -> None:
        self._queue = queue
        self._leases: dict[int, Lease] = {id(lease): lease for lease in leases}
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: list[Lease] = []
        self._failing = False  # renewals are failing: said once, until they work again

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases[id(lease)] = lease

    def discard(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def is_lost(self, lease: Lease) -> bool:
        return any(lost is lease for lost in self.lost)

    def start(self) -> Heartbeat:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="rediswq-heartbeat", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing; returns once the thread has ended (at most one renewal call later)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _interval_secs(self) -> float:
        with self._lock:
            shortest_ms = min((lease.lease_ms for lease in self._leases.values()), default=3000)
        return max(shortest_ms / 3000, 0.01)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_secs()):
            self.beat()

    def beat(self) -> None:
        """Renew every lease in the set once, now."""
        with self._lock:
            leases = list(self._leases.values())
        if not leases:
            return
        try:
            self._queue.extend_many(leases)
            self._recovered()
        except LeaseLost as e:
            self._recovered()
            for lease in e.leases:
                with self._lock:
                    # Discarded while the call ran: settled by its worker meanwhile, not lost.
                    if self._leases.pop(id(lease), None) is None:
                        continue
                self.lost.append(lease)
                log.warning("lease of item %s was lost before its work ended", lease.id)
                if self._on_lost is not None:
                    self._on_lost(lease)
        except RedisWQError as e:
            # The next beat retries; a lease survives two missed beats. One line per outage.
            if not self._failing:
                self._failing = True
                log.warning("could not renew leases (retrying every beat): %s", e)

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("lease renewals work again")
