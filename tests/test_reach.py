"""Start-up before Redis is reachable: a server, a cluster and a Sentinel set that do not answer yet
are waited for alike (--reconnect-secs, the same log lines, exit 1 after the window), and a worker and
an exporter started before their cluster work once it is up (a Kubernetes Job's pods often start
before Redis is ready).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid

from redis_server import RedisServer
from test_metrics import scrape
from topologies import ENTRY_POINT, Cluster, free_ports, wait_for

from rediswq import Queue

RECONNECT_SECS = 2


def levels(stderr: str) -> list[str]:
    """The level of each log line (the second word of the text format)."""
    return [line.split()[1] for line in stderr.splitlines() if line[:4].isdigit()]


def test_a_server_a_cluster_and_a_sentinel_set_that_never_answer_end_a_worker_alike() -> None:
    a, b, c, d, e = free_ports(5)
    urls = [
        f"redis://127.0.0.1:{a}/0",
        f"redis+cluster://127.0.0.1:{b},127.0.0.1:{c}/",
        f"redis+sentinel://127.0.0.1:{d},127.0.0.1:{e}/mymaster",
    ]
    workers = [
        subprocess.Popen(
            [ENTRY_POINT, "--url", url, "work", "q", "--reconnect-secs", str(RECONNECT_SECS), "--", "true"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    # A command that makes a few calls retries them a few times, then says why in one line.
    stats = subprocess.run(
        [ENTRY_POINT, "--url", urls[1], "stats", "q"], capture_output=True, text=True, timeout=60
    )
    assert stats.returncode == 1
    lines = stats.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach Redis at {urls[1]}" in lines[0], stats.stderr
    for url, worker in zip(urls, workers, strict=True):
        _, stderr = worker.communicate(timeout=30)
        assert worker.returncode == 1, stderr
        assert levels(stderr) == ["INFO", "WARNING", "INFO", "ERROR"], stderr
        warning, error = (line for line in stderr.splitlines() if " WARNING " in line or " ERROR " in line)
        assert (
            f"cannot reach Redis at {url}" in warning and f"retrying for up to {RECONNECT_SECS} s" in warning
        )
        assert f"cannot reach Redis at {url}" in error and "(gave up after" in error
        assert len(error) < 500, error  # each sentinel's error in a few words, not redis-py's reprs (2 KB)
        # Given up once the window is over (the outage as the worker timed it): not at once, nor
        # after redis-py's own retries (the sentinels' took 8 s).
        gave_up = re.search(r"gave up after ([0-9.]+) s", error)
        assert gave_up and RECONNECT_SECS <= float(gave_up.group(1)) < RECONNECT_SECS + 3, error


def metric(port: int, name: str, **labels: str) -> float | None:
    """One sample the exporter on `port` serves, None if it serves none by that name."""
    return scrape(port).get((name, tuple(sorted(labels.items()))))


def test_a_worker_and_an_exporter_started_before_their_cluster_drain_and_serve_once_it_is_up() -> None:
    ports = free_ports(3, bus=True)
    metrics_port = free_ports(1)[0]
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/"
    name = f"q-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL"))}
    worker = subprocess.Popen(
        [ENTRY_POINT, "--url", url, "work", name, "--until", "closed", "--", "true"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    exporter = subprocess.Popen(
        [ENTRY_POINT, "--url", url, "exporter", name, "--port", str(metrics_port)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    cluster = None
    try:
        wait_for(lambda: metric(metrics_port, "rediswq_exporter_up") == 0, "the exporter serving")
        time.sleep(2)
        assert worker.poll() is None  # still waiting for the cluster
        cluster = Cluster(ports, replicas=0)
        subprocess.run(
            [ENTRY_POINT, "--url", url, "enqueue", name, "--range", "0:20", "--close", "-q"],
            check=True,
            timeout=60,
        )
        _, stderr = worker.communicate(timeout=60)
        assert worker.returncode == 0, stderr
        assert f"cannot reach Redis at {url}" in stderr and "Redis answers again" in stderr
        stats = Queue.from_url(url, name).stats()
        assert stats.drained and stats.completed == 20
        wait_for(
            lambda: metric(metrics_port, "rediswq_queue_completed_total", queue=name) == 20,
            "the exporter's count",
        )
        assert metric(metrics_port, "rediswq_exporter_up") == 1
    finally:
        for process in (worker, exporter):
            if process.poll() is None:
                process.kill()
            process.communicate()
        if cluster is not None:
            cluster.stop()


def test_a_cluster_url_naming_a_server_outside_any_cluster_is_exit_2_at_once(
    redis_server: RedisServer,
) -> None:
    # A mistake in the URL, not a cluster in the middle of a change: no reconnect window to wait out.
    url = f"redis+cluster://127.0.0.1:{redis_server.port}/"
    for command in (["stats", "q"], ["work", "q", "--", "true"]):
        started = time.monotonic()
        done = subprocess.run(
            [ENTRY_POINT, "--url", url, *command], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 2, done.stderr
        said = done.stderr.strip().splitlines()[-1]
        assert "the server is not in a cluster" in said and "redis://" in said, done.stderr
        assert time.monotonic() - started < 20, command  # a worker would retry for 60 s
