"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer, three static files, JSON.

Routes:
  GET  /                the queue list; /queue?name=Q the page of queue Q (the same HTML: the script
                        draws the one the address names)
  GET  /static/<file>   app.js and app.css (package data: the page needs nothing from the network)
  GET  /api/queues      the overview (the last read cycle's snapshot, the same bytes for every tab)
  GET  /api/queue?name= a queue's numbers, history, holders and dead letters
  GET  /healthz         200 while the server runs (no Redis call: for probes)
  POST /api/action      an action, when allowed (see actions.py)
No response carries the Redis URL or a password: errors are the library's (redacted) and scrubbed of
every secret once more before they leave.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rediswq_producer.dashboard.actions import MAX_BODY_BYTES, Action, Guard, Refused, perform
from rediswq_producer.dashboard.board import Board

STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# Nothing but this server's own files, never in a frame (no clickjacking of the action buttons).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _static(name: str) -> bytes:
    return resources.files("rediswq_producer.dashboard").joinpath("static").joinpath(name).read_bytes()


class Dashboard(ThreadingHTTPServer):
    """The server, holding what every request handler reads: the board, the guard, the page."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], board: Board, guard: Guard, log: Callable[[str], None]
    ) -> None:
        super().__init__(address, Handler)
        self.board = board
        self.guard = guard
        self.log = log
        # Bound to this machine only: a request must name it as this machine too, so a site whose
        # name resolves to 127.0.0.1 (DNS rebinding) cannot read the numbers through a browser.
        self.loopback_only = _is_loopback(address[0])
        page = _static("index.html").decode()
        self.page = (
            page.replace("{{csrf}}", guard.csrf)
            .replace("{{actions}}", "on" if guard.enabled else "off")
            .encode()
        )
        self.files = {name: _static(name) for name in STATIC}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    server: Dashboard
    server_version = "rediswq-dashboard"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the page polls every few seconds; actions are logged by themselves."""

    def do_GET(self) -> None:
        if not self._host_allowed():
            return
        url = urlsplit(self.path)
        if url.path in ("/", "/queue"):
            self._send(200, "text/html; charset=utf-8", self.server.page)
        elif url.path.startswith("/static/") and url.path[8:] in STATIC:
            self._send(200, STATIC[url.path[8:]], self.server.files[url.path[8:]])
        elif url.path == "/api/queues":
            self._send(200, "application/json", self.server.board.overview_json())
        elif url.path == "/api/queue":
            name = parse_qs(url.query).get("name", [""])[0]
            detail = self.server.board.queue_detail(name)
            if detail is None:
                self._json(404, {"error": "no such queue on the dashboard"})
            else:
                self._json(200, detail)
        elif url.path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n")
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        if not self._host_allowed():
            return
        if urlsplit(self.path).path != "/api/action":
            self._json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._json(413, {"error": "request too large"})
            return
        body = self.rfile.read(length)
        who = self.client_address[0]
        action: Action | None = None
        try:
            self.server.guard.check({k.title(): v for k, v in self.headers.items()})
            action = Action.parse(body)
            board = self.server.board
            result = perform(action, board.reader.queue, board.knows)
        except Refused as e:
            what = action.describe() if action else "action"
            self.server.log(f"refused {what} from {who}: {e.reason}")
            self._json(e.status, {"ok": False, "error": e.reason})
            return
        except Exception as e:  # a Redis error: shown redacted, the server goes on
            assert action is not None
            reason = board.scrub(str(e))
            self.server.log(f"failed {action.describe()} from {who}: {reason}")
            self._json(500, {"ok": False, "error": reason})
            return
        self.server.log(f"{action.describe()} from {who}: {result['message']}")
        board.refresh_soon(action.queue)
        self._json(200, result)

    def do_PUT(self) -> None:
        self._json(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_PUT

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = urlsplit(f"//{self.headers.get('Host', '')}").hostname or ""
        if host in LOOPBACK_NAMES or _is_loopback(host):
            return True
        self._json(403, {"error": "this dashboard answers to localhost only"})
        return False

    def _json(self, status: int, value: Any) -> None:
        self._send(status, "application/json", json.dumps(value).encode())

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def serve(server: Dashboard, stop: threading.Event) -> None:
    """Run the read cycle in a thread and serve until `stop` is set (or Ctrl-C)."""
    cycle = threading.Thread(target=server.board.run, args=(stop,), name="dashboard-cycle", daemon=True)
    cycle.start()

    def watch() -> None:
        stop.wait()
        server.shutdown()

    threading.Thread(target=watch, name="dashboard-stop", daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        stop.set()
        server.server_close()
