"""Serving Prometheus metrics over HTTP, for `rediswq work --metrics-port` and `rediswq exporter`.

prometheus_client is an optional extra (`rediswq-k8s[metrics]`, in the image): this module imports it only
when a command asks for metrics, so without it the rest of the command line works as before.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from rediswq_kit import ConfigError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from prometheus_client.registry import Collector

HINT = "pip install 'rediswq-k8s[metrics]'"


def require(option: str) -> None:
    """Exit 2 with one line when prometheus_client is not installed."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError(f"{option} needs the prometheus_client package: {HINT}")


class _Server(ThreadingMixIn, WSGIServer):
    """One thread a request, none of them keeping the process alive (as prometheus_client's server)."""

    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # no line on stderr per request
        pass


def serve(port: int, collector: Collector, routes: Mapping[str, WSGIApplication] | None = None) -> None:
    """Serve `collector` (and the process's CPU, memory and start time) on /metrics, from a daemon thread.

    Each scrape calls `collector.collect()` on the server's thread; nothing is collected in between.
    `routes`: path prefix -> the WSGI app that answers the paths under it (`rediswq exporter`'s
    /queues/); every other path is prometheus_client's metrics app, as its start_http_server serves it.
    """
    from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app

    registry = CollectorRegistry()
    registry.register(collector)
    ProcessCollector(registry=registry)
    metrics = make_wsgi_app(registry)
    routed = dict(routes or {})

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        chosen = next((a for prefix, a in routed.items() if path.startswith(prefix)), metrics)
        return chosen(environ, start_response)

    try:
        server = make_server("0.0.0.0", port, app, _Server, handler_class=_Quiet)
    except OSError as e:
        raise ConfigError(f"cannot serve metrics on port {port}: {e.strerror or e}") from e
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
