"""Start-up before Redis is reachable: a server, a cluster and a Sentinel set that do not answer yet
are waited for alike (--reconnect-secs, the same log lines, exit 1 after the window), and a worker
started before its cluster drains once it is up (a Kubernetes Job's pods often start before Redis is
ready).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid

from topologies import ENTRY_POINT, Cluster, free_ports

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
    began = time.monotonic()
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
        took = time.monotonic() - began
        assert worker.returncode == 1, stderr
        assert levels(stderr) == ["INFO", "WARNING", "INFO", "ERROR"], stderr
        warning, error = (line for line in stderr.splitlines() if " WARNING " in line or " ERROR " in line)
        assert (
            f"cannot reach Redis at {url}" in warning and f"retrying for up to {RECONNECT_SECS} s" in warning
        )
        assert f"cannot reach Redis at {url}" in error and "(gave up after" in error
        assert len(error) < 300, error  # the sentinels by address, not redis-py's reprs of their clients
        # Given up once the window is over: not at once, nor after redis-py's own retries.
        assert RECONNECT_SECS <= took < RECONNECT_SECS + 8, (url, took)


def test_a_worker_started_before_its_cluster_drains_once_it_is_up() -> None:
    ports = free_ports(3, bus=True)
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in ports) + "/"
    name = f"q-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL"))}
    worker = subprocess.Popen(
        [ENTRY_POINT, "--url", url, "work", name, "--until", "closed", "--", "true"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    cluster = None
    try:
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
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
        if cluster is not None:
            cluster.stop()
