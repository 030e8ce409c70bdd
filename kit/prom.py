"""Serving Prometheus metrics over HTTP, for `rediswq work --metrics-port` and `rediswq exporter`.

prometheus_client is an optional extra (`rediswq-k8s[metrics]`, in the image): this module imports it only
when a command asks for metrics, so without it the rest of the command line works as before.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from rediswq_kit import ConfigError

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

HINT = "pip install 'rediswq-k8s[metrics]'"


def require(option: str) -> None:
    """Exit 2 with one line when prometheus_client is not installed."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(f"{option} needs the prometheus_client package: {HINT}")


def serve(port: int, collector: Collector) -> None:
    """Serve `collector` (and the process's CPU, memory and start time) on /metrics, from a daemon thread.

    Each scrape calls `collector.collect()` on the server's thread; nothing is collected in between.
    """
    from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    try:
        start_http_server(port, registry=registry)
    except OSError as e:
        raise ConfigError(f"cannot serve metrics on port {port}: {e.strerror or e}") from e
