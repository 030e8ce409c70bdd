"""The metrics `rediswq work --metrics-port` serves: what this worker did, read when scraped.

Counters come from the runtime's own Summary (the numbers the exit line prints), gauges from its
state, both read at scrape time: a scrape makes no Redis call and the hot path pays nothing for them.
Item times are the one thing recorded per item (`item_finished`, under the runtime's lock): a bucket
index found by bisection and two additions, about half what prometheus_client's Histogram.observe
costs (0.4 against 0.8 us here: it scans the buckets and takes a lock per value it adds to).

Every metric has the label `queue`; `rediswq_worker_info` adds `worker` (the lease holder's name, the
pod name in Kubernetes), the same value the JSON log lines carry.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from rediswq_worker.observer import Observer
from rediswq_worker.runtime import Runtime, Summary

# Item durations from 1 ms to 1 h.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
           120.0, 300.0, 600.0, 1800.0, 3600.0)  # fmt: skip
STATES = ("leasing", "waiting", "draining", "stopping", "stopped")

# name (without _total), help, how to read it from the Summary.
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("rediswq_worker_items_completed", "Items this worker completed.", "done"),
    ("rediswq_worker_items_failed", "Items that failed here (retried or dead-lettered).", "failed"),
    ("rediswq_worker_items_retried", "Failed items put back for a retry after a backoff.", "retried"),
    ("rediswq_worker_items_dead_lettered", "Failed items dead-lettered (attempts spent).", "dead"),
    ("rediswq_worker_items_released", "Leases given back unfinished, no attempt charged.", "released"),
    ("rediswq_worker_leases_lost", "Leases that expired and were taken over before settling.", "lost"),
)


def _summary_value(summary: Summary, what: str) -> int:
    return summary.failed - summary.dead if what == "retried" else int(getattr(summary, what))


class WorkerMetrics(Observer, Collector):
    """Observes one runtime and turns what it knows into Prometheus metrics at each scrape."""

    def __init__(self, queue_name: str, worker: str) -> None:
        self.queue_name = queue_name
        self.worker = worker
        self.runtime: Runtime | None = None
        self._started = time.time()
        self._lock = threading.Lock()
        self._counts = [0] * (len(BUCKETS) + 1)  # per bucket, not cumulative; the last one: over 1 h
        self._sum = 0.0
        self._redis_errors = 0
        self._reconnects = 0

    def watch(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # -- Observer: called by the runtime ----------------------------------------------------------

    def item_finished(self, secs: float) -> None:
        index = bisect.bisect_left(BUCKETS, secs)
        with self._lock:
            self._counts[index] += 1
            self._sum += secs

    def redis_error(self) -> None:
        with self._lock:
            self._redis_errors += 1

    def reconnected(self) -> None:
        with self._lock:
            self._reconnects += 1

    # -- Collector: called by each scrape ---------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        q = [self.queue_name]
        info = GaugeMetricFamily(
            "rediswq_worker_info", "1, labelled with the worker's name.", labels=["queue", "worker"]
        )
        info.add_metric([self.queue_name, self.worker], 1)
        yield info
        yield _gauge(
            "rediswq_worker_start_time_seconds", "When this worker started, in Unix time.", q, self._started
        )
        runtime = self.runtime
        if runtime is None:
            return
        summary = runtime.summary
        for name, text, what in _COUNTERS:
            yield _counter(name, text, q, _summary_value(summary, what))
        yield self._durations()
        with self._lock:
            errors, reconnects = self._redis_errors, self._reconnects
        yield _counter(
            "rediswq_worker_redis_errors",
            "Redis calls that failed, after the library's own retries.",
            q,
            errors,
        )
        yield _counter(
            "rediswq_worker_redis_reconnects", "Times Redis answered again after an outage.", q, reconnects
        )
        running, held = runtime.held()
        yield _gauge("rediswq_worker_items_in_flight", "Items running now.", q, running)
        yield _gauge(
            "rediswq_worker_leases_held", "Leases held: prefetched, running or being settled.", q, held
        )
        current = runtime.state()
        state = GaugeMetricFamily(
            "rediswq_worker_state", "1 for the state the worker is in.", labels=["queue", "state"]
        )
        for name in STATES:
            state.add_metric([self.queue_name, name], 1 if name == current else 0)
        yield state

    def _durations(self) -> HistogramMetricFamily:
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        for bound, count in zip((*BUCKETS, float("inf")), counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        histogram = HistogramMetricFamily(
            "rediswq_worker_item_duration_seconds", "Time an item's handler or command ran.", labels=["queue"]
        )
        histogram.add_metric([self.queue_name], buckets, total)
        return histogram


def _counter(name: str, text: str, labels: list[str], value: float) -> CounterMetricFamily:
    metric = CounterMetricFamily(name, text, labels=["queue"])
    metric.add_metric(labels, value)
    return metric


def _gauge(name: str, text: str, labels: list[str], value: float) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(name, text, labels=["queue"])
    metric.add_metric(labels, value)
    return metric
