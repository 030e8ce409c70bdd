"""Live progress of a worker Job: the queue (done/total, rate, ETA) and the pods (from the Job status).

The Job is polled (one GET every --interval seconds) rather than watched with the API's watch stream:
a poll survives API server restarts and expired watches (410 Gone) with no resume logic, and the queue
has to be polled for its counts anyway.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import rediswq
from rediswq_cli.kube.cluster import Cluster, api_errors, describe_failure, finished, pod_counts
from rediswq_kit.progress import Rate, eta_text, settled


def queue_text(name: str, stats: rediswq.Stats, rate: float | None) -> str:
    """`queue q: 120/1000 done (3 dead), 877 outstanding, 45.2 items/s, ETA 19s`."""
    done = settled(stats)
    total = done + stats.outstanding
    rate_text = f"{rate:.1f} items/s" if rate is not None else "- items/s"
    closed = ", closed" if stats.closed else ""
    return (
        f"queue {name}: {stats.completed}/{total} done ({stats.dead_lettered} dead), "
        f"{stats.outstanding} outstanding{closed}, {rate_text}, ETA {eta_text(stats.outstanding, rate)}"
    )


def pods_text(job: client.V1Job) -> str:
    active, succeeded, failed = pod_counts(job)
    parallelism = job.spec.parallelism if job.spec else None
    return f"pods: {active} active, {succeeded} succeeded, {failed} failed (parallelism {parallelism})"


def read_job(cluster: Cluster, name: str) -> client.V1Job:
    with api_errors(cluster):
        try:
            return cluster.batch.read_namespaced_job(
                name, cluster.namespace, _request_timeout=cluster.request_timeout_secs
            )
        except ApiException as e:
            if e.status == 404:
                raise click.ClickException(f"Job {name} not found in namespace {cluster.namespace}") from e
            raise


def watch(
    cluster: Cluster,
    name: str,
    queue: rediswq.Queue | None,
    interval_secs: float,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Show progress until the Job is Complete (returns 0) or Failed (returns 1)."""
    view = _View(name, queue, live=sys.stdout.isatty())
    while True:
        job = read_job(cluster, name)
        view.show(job)
        state = finished(job)
        if state is not None:
            return view.end(job, state)
        sleep(interval_secs)


class _View:
    """The progress line: redrawn in place on a terminal, else printed when the counts change."""

    def __init__(self, name: str, queue: rediswq.Queue | None, live: bool) -> None:
        self.name = name
        self.queue = queue
        self.live = live
        self.rate = Rate()
        self.last_shown = ""

    def show(self, job: client.V1Job) -> None:
        line = " | ".join([f"job {self.name}", pods_text(job), *self._queue_part()])
        if self.live:
            click.echo(f"\r\x1b[K{line}", nl=False)
        elif _without_rate(line) != _without_rate(self.last_shown):
            click.echo(line)
        self.last_shown = line

    def _queue_part(self) -> list[str]:
        if self.queue is None:
            return []
        try:
            stats = self.queue.stats()
        except rediswq.RedisWQError as e:
            self.queue = None  # say it once, keep watching the pods
            click.echo(f"rediswq: queue stats unavailable, watching the pods only: {e}", err=True)
            return []
        rate = self.rate.add(time.monotonic(), settled(stats))
        return [queue_text(self.queue.name, stats, rate)]

    def end(self, job: client.V1Job, state: str) -> int:
        if self.live:
            click.echo()
        if state == "Complete":
            click.echo(f"Job {self.name} complete")
            return 0
        click.echo(f"rediswq: Job {self.name} failed: {describe_failure(job)}", err=True)
        return 1


def _without_rate(line: str) -> str:
    """The line without its rate and ETA, so a piped watch prints a line only when counts change."""
    return line.split(" items/s", 1)[0].rsplit(",", 1)[0] if " items/s" in line else line
