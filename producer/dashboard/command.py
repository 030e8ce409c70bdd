"""`rediswq dashboard`: every queue's live numbers on a web page, served from this machine."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from types import FrameType

import click

import rediswq
from rediswq.urls import redact
from rediswq_kit import CONTEXT_SETTINGS, ConfigError, open_queue, queue_errors, settings
from rediswq_producer.dashboard.actions import MIN_TOKEN_CHARS, Guard
from rediswq_producer.dashboard.board import Board
from rediswq_producer.dashboard.reader import Client, Reader
from rediswq_producer.dashboard.server import Dashboard, serve

TOKEN_ENV = "REDISWQ_DASHBOARD_TOKEN"
# The queue opened for its client alone (nothing is read from it).
_PROBE = "rediswq-dashboard"


def _log(line: str) -> None:
    click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} dashboard: {line}", err=True)


def _scrubber() -> tuple[str, ...]:
    return tuple(secret for secret in settings().secrets() if secret)


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queues", nargs=-1, metavar="[QUEUE]...")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0: any free port."
)
@click.option(
    "-n",
    "--interval",
    type=click.FloatRange(min=0.5),
    default=2.0,
    show_default=True,
    metavar="SECS",
    help="Seconds between read cycles (one for all open pages).",
)
@click.option(
    "--history",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    metavar="MINUTES",
    help="How far back the charts go.",
)
@click.option(
    "--allow-actions",
    is_flag=True,
    help=f"Offer requeue and purge of dead letters, close and reopen; each needs the token printed at "
    f"start-up (or ${TOKEN_ENV}'s, at least {MIN_TOKEN_CHARS} characters).",
)
def dashboard(
    queues: tuple[str, ...], host: str, port: int, interval: float, history: float, allow_actions: bool
) -> None:
    """Serve a web page with the live numbers of every queue (or of the QUEUEs named).

    The list shows each queue's state, pending, leased, delayed, done, failed and dead counts, the rate
    at which items settle, the time to drain and a chart of done and failed per second; a queue's page
    adds who holds which item, its dead letters with their errors, and its history. Without QUEUE, the
    queues are found by SCAN on every master (a Redis user that may SCAN every key); with QUEUEs, only
    their keys are read. One read cycle every --interval serves every open page. It listens on
    127.0.0.1 unless --host says otherwise; the page and its JSON never show the Redis URL or a password.

    Actions are off unless --allow-actions: then each is a POST that needs the token (printed at
    start-up, or from $REDISWQ_DASHBOARD_TOKEN) and the page's own CSRF value, and is logged.
    Ctrl-C stops it (exit 0).

    \b
    Examples:
      rediswq dashboard                       # then open http://127.0.0.1:8080/
      rediswq dashboard jobs thumbs --port 9000
      rediswq dashboard --allow-actions
    """
    token = _token(allow_actions)
    probe = open_queue(_PROBE)
    chosen = settings()

    def client() -> Client:
        return probe.client

    def queue(c: Client, name: str) -> rediswq.Queue:
        return rediswq.Queue(c, name, url=chosen.url, allow_eviction=chosen.allow_eviction)

    hidden = _scrubber()

    def scrub(text: str) -> str:
        for secret in hidden:
            text = text.replace(secret, "***")
        return text

    board = Board(Reader(client, queue, queues), interval, history * 60, scrub=scrub)
    with queue_errors():
        board.reader.read()  # a wrong URL or password: one line and its exit code, before serving
    board.refresh()  # the first snapshot, so the first page served has numbers (never an empty body)
    try:
        server = Dashboard((host, port), board, Guard(token), _log)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    shown_host = f"[{host}]" if ":" in host else host
    address = f"http://{shown_host}:{server.server_address[1]}/"
    which = ", ".join(queues) if queues else "every queue"
    _log(f"serving {address} ({which} on {redact(chosen.url)}, every {interval:g}s)")
    if token is not None:
        where = f"the token is ${TOKEN_ENV}'s" if os.environ.get(TOKEN_ENV) else f"token {token}"
        _log(f"actions on; {where} (open {address}#token=TOKEN, or the page asks once per tab)")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    try:
        serve(server, stop)
    except KeyboardInterrupt:
        stop.set()
    _log("stopped")


def _token(allow_actions: bool) -> str | None:
    """The action token: $REDISWQ_DASHBOARD_TOKEN's, or a new random one; None with actions off."""
    if not allow_actions:
        return None
    given = os.environ.get(TOKEN_ENV, "")
    if given and len(given) < MIN_TOKEN_CHARS:
        raise ConfigError(f"${TOKEN_ENV} is too short: at least {MIN_TOKEN_CHARS} characters")
    return given or secrets.token_urlsafe(24)
