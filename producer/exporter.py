"""`rediswq exporter`: the queue-side numbers of many queues, as Prometheus metrics.

What the workers' own metrics cannot show (they see only their share, and none run between Jobs):
pending, leased, delayed and dead items, whether a queue is closed, and its lifetime counters, read
with one `Queue.stats()` script call per queue per scrape (custom collector: nothing is read between
scrapes). With --all, queues are found by SCAN on their meta keys (on a cluster, on every master in
turn), at most SCAN_CALLS calls per scrape: on a large keyspace one walk spans several scrapes, and a
queue deleted meanwhile drops out when the next walk completes.

GET /queues/NAME (same port) answers one exported queue's counts as JSON, read with one `Queue.stats()`
at request time (summed over a sharded queue's shards): what KEDA's metrics-api scaler reads
(k8s/components/keda), `waiting` being the items ready to lease, the inbox included.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from http import HTTPStatus
from types import FrameType
from typing import TYPE_CHECKING

import click

import rediswq
from rediswq_kit import CONTEXT_SETTINGS, open_queue, prom, queue_errors
from rediswq_kit.complete import complete_queue

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client.metrics_core import Metric

SCAN_CALLS = 10
SCAN_COUNT = 1000
# The queue opened for its client alone when no QUEUE is named (--all); nothing is read from it.
_PROBE = "rediswq-exporter"
# The path under which GET answers one queue's counts as JSON: /queues/NAME.
QUEUES_PATH = "/queues/"

Client = rediswq.Client

GAUGES = (
    ("pending", "Items ready to lease (the inbox included)."),
    ("leased", "Items leased by a worker now."),
    ("delayed", "Failed items waiting out their retry backoff."),
    ("dead", "Dead-lettered items kept for inspection."),
)
COUNTERS = (
    ("enqueued", "Items ever added."),
    ("completed", "Items completed."),
    ("failed", "Failures reported (each retried or dead-lettered)."),
    ("retried", "Failed items put back for a retry."),
    ("expired", "Leases that ran out and were taken back (a worker died or stalled)."),
    ("dead_lettered", "Items dead-lettered."),
    ("released", "Leases given back unfinished, no attempt charged."),
    ("dropped", "Items removed by purge or requeue tools."),
    ("quarantined", "Malformed entries moved to the dead letters (ids malformed:<sha1>)."),
)


class Discovery:
    """The queue names on a Redis, or on every master of a cluster, found by a SCAN walk that
    advances at most SCAN_CALLS calls a step (a cluster's masters are walked one after another)."""

    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client
        # The masters this walk has yet to finish (None: the one server), and the cursor in the first.
        self._left: list[rediswq.Node] = []
        self._cursor = 0
        self._walking: set[str] = set()  # names seen in the walk under way
        self._known: set[str] = set()  # names seen in the last complete walk

    def step(self) -> set[str]:
        client = self._client()
        for _ in range(SCAN_CALLS):
            if not self._left:
                self._left = rediswq.Queue.scan_nodes(client)
            try:
                self._cursor, names = rediswq.Queue.scan_names(
                    client, self._cursor, SCAN_COUNT, node=self._left[0]
                )
            except rediswq.ConnectionFailed:
                # The next step walks again the masters the cluster names then (one may have failed over).
                self._left, self._cursor = [], 0
                raise
            self._walking.update(names)
            if self._cursor == 0:
                self._left.pop(0)
                if not self._left:
                    self._known, self._walking = self._walking, set()
                    break
        return self._known | self._walking


class QueueCollector:
    """Reads every queue's stats when scraped; a Redis error marks the scrape down, never raises."""

    def __init__(self, client: Callable[[], Client], names: tuple[str, ...]) -> None:
        """`client` gives the client every read shares (ConnectionFailed while it cannot be made: a
        cluster whose seeds do not answer); `names`: the queues to read; none: every queue found."""
        self._client = client
        self._queues = {name: self._open(name) for name in names}
        self._discovery = None if names else Discovery(client)
        self._lock = threading.Lock()  # one scrape at a time: the discovery walk is not shared
        self.last_error = ""

    def _open(self, name: str) -> rediswq.Queue:
        # One try per call: a scrape must answer in time; the next scrape is the retry.
        return rediswq.Queue(self._client, name, retries=0)

    def _queue(self, name: str) -> rediswq.Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = self._open(name)
        return queue

    def read(self, found: dict[str, rediswq.Stats]) -> str:
        """Put every queue's stats in `found` (one script call each); returns the first error Redis
        answered with (such a queue is left out), raises when Redis cannot be reached."""
        if self._discovery is not None:  # forget the queues the last complete walk did not see
            self._queues = {name: self._queue(name) for name in self._discovery.step()}
        error = ""
        for name in sorted(self._queues):
            try:
                found[name] = self._queues[name].stats()
            except rediswq.ConnectionFailed:
                raise
            except rediswq.RedisWQError as e:  # e.g. another application's key of another type
                error = error or str(e)
        return error

    def _exported(self, name: str) -> rediswq.Queue | None:
        """The queue `name` if exported: a named one; with --all any valid name (its stats tell)."""
        if self._discovery is None:
            return self._queues.get(name)
        try:
            return self._open(name)  # not kept: a request names what it likes
        except rediswq.InvalidArgument:
            return None

    def answer(self, name: str) -> tuple[int, dict[str, object]]:
        """GET /queues/NAME: (HTTP status, JSON body). 200 with the counts; 404 for a queue not
        exported (with --all: no queue of that name on the Redis); 503 when Redis cannot be reached,
        500 when it answers the read with an error."""
        queue = self._exported(name)
        if queue is None:
            return 404, {"error": f"queue {name!r} is not exported here"}
        try:
            stats = queue.stats()
        except rediswq.ConnectionFailed as e:
            return 503, {"error": str(e)}
        except rediswq.RedisWQError as e:
            return 500, {"error": str(e)}
        if self._discovery is not None and not stats.exists:
            return 404, {"error": f"no queue {name!r} on this Redis"}
        counts = {what: getattr(stats, what) for what, _ in GAUGES}
        return 200, {
            "queue": name,
            "shards": stats.shards,
            "waiting": stats.pending,
            **counts,
            "closed": stats.closed,
        }

    def _scrape(self) -> tuple[dict[str, rediswq.Stats], str]:
        """The stats read, and the error that stopped the reading (empty if none), said once."""
        found: dict[str, rediswq.Stats] = {}
        error = ""
        with self._lock:
            try:
                error = self.read(found)
            except rediswq.RedisWQError as e:
                error = str(e)
            if error != self.last_error:
                click.echo(f"rediswq exporter: {error or 'Redis answers again'}", err=True)
                self.last_error = error
        return found, error

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        began = time.monotonic()
        found, error = self._scrape()
        for what, text in GAUGES:
            gauge = GaugeMetricFamily(f"rediswq_queue_{what}", text, labels=["queue"])
            for name, stats in found.items():
                gauge.add_metric([name], getattr(stats, what))
            yield gauge
        closed = GaugeMetricFamily("rediswq_queue_closed", "1 once the queue is closed.", labels=["queue"])
        for name, stats in found.items():
            closed.add_metric([name], int(stats.closed))
        yield closed
        for what, text in COUNTERS:
            counter = CounterMetricFamily(f"rediswq_queue_{what}", text, labels=["queue"])
            for name, stats in found.items():
                counter.add_metric([name], getattr(stats, what))
            yield counter
        yield GaugeMetricFamily(
            "rediswq_exporter_up", "1 if every queue was read in this scrape.", value=int(not error)
        )
        yield GaugeMetricFamily("rediswq_exporter_queues", "Queues read in this scrape.", value=len(found))
        yield GaugeMetricFamily(
            "rediswq_exporter_scrape_duration_seconds",
            "Time this scrape took.",
            value=time.monotonic() - began,
        )


def queues_app(collector: QueueCollector) -> WSGIApplication:
    """The WSGI app of GET /queues/NAME (`QueueCollector.answer`, one line of JSON)."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        body: dict[str, object] = {"error": "use GET"}
        status = 405
        if environ["REQUEST_METHOD"] == "GET":
            # PEP 3333: PATH_INFO is the path's bytes, percent-decoded, as latin-1 characters.
            raw = environ.get("PATH_INFO", "").removeprefix(QUEUES_PATH)
            status, body = collector.answer(raw.encode("latin-1").decode("utf-8", "replace"))
        data = json.dumps(body).encode() + b"\n"
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return [data]

    return app


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue_names", nargs=-1, metavar="[QUEUE]...", shell_complete=complete_queue)
@click.option(
    "--all",
    "all_queues",
    is_flag=True,
    help="Export every queue on this Redis (on every master of a cluster), found by SCAN.",
)
@click.option(
    "--port",
    metavar="PORT",
    type=click.IntRange(min=1, max=65535),
    default=9180,
    show_default=True,
    envvar="REDISWQ_EXPORTER_PORT",
    show_envvar=True,
    help="Serve the metrics on http://0.0.0.0:PORT/metrics (and each queue as JSON on /queues/QUEUE).",
)
def exporter(queue_names: tuple[str, ...], all_queues: bool, port: int) -> None:
    """Serve Prometheus metrics of the named queues (or --all) until SIGTERM or SIGINT.

    Per queue (label queue): gauges rediswq_queue_pending, _leased, _delayed, _dead, _closed and the
    lifetime counters rediswq_queue_enqueued_total, _completed_total, _failed_total, _retried_total,
    _expired_total, _dead_lettered_total, _released_total, _dropped_total, _quarantined_total; and
    rediswq_exporter_up (0 when Redis did not answer), _queues, _scrape_duration_seconds. Each scrape
    reads each queue with one script call; --all adds at most 10 SCAN calls a scrape (on a cluster,
    walking its masters one after another). A Redis that refuses the password exits 2; an
    unreachable one (or a cluster none of whose seeds answers) is reported (rediswq_exporter_up 0)
    until it answers.

    GET /queues/QUEUE on the same port: that queue's counts as one JSON object, read when asked
    (one script call; a sharded queue's shards summed), {"queue", "shards", "waiting", "pending",
    "leased", "delayed", "dead", "closed"}; waiting (= pending, the inbox included) is the number
    KEDA's metrics-api scaler reads. 404 for a queue not exported (with --all: no such queue), 503
    while Redis cannot be reached, 500 for an error Redis answered; the body is then {"error": ...}.
    """
    if bool(queue_names) == all_queues:
        raise click.UsageError("name the queues to export, or give --all (not both)")
    prom.require("rediswq exporter")
    # Queue.from_url makes the client (no blind retries, keepalive; a cluster's on the first read, one
    # try a scrape); every queue read shares it.
    probe = open_queue(queue_names[0] if queue_names else _PROBE, retries=0)
    with queue_errors():
        collector = QueueCollector(lambda: probe.client, queue_names)  # a bad name: exit 2
        try:
            collector.read({})  # a wrong password: exit 2, at start
        except rediswq.AuthenticationFailed:
            raise
        except rediswq.ConnectionFailed as e:
            collector.last_error = str(e)
            click.echo(f"rediswq exporter: {e}; serving rediswq_exporter_up 0 until it answers", err=True)
    prom.serve(port, collector, {QUEUES_PATH: queues_app(collector)})
    click.echo(f"rediswq exporter: serving http://0.0.0.0:{port}/metrics and {QUEUES_PATH}QUEUE", err=True)
    _wait_for_signal()


def _wait_for_signal() -> None:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    while not stop.wait(1.0):
        pass
