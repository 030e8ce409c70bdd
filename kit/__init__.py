"""What every `rediswq` subcommand shares: the --url option's value, opening a queue, exit codes.

The command kit (installed as rediswq_kit) sits below both sides of the command line: producer/ and
worker/ import it, the root group (cli/) too, and it imports nothing of theirs, only rediswq's public
API and click. Beside it: progress.py (rates, durations) and prom.py (serving Prometheus metrics).

Exit codes (the same for every subcommand, and what the Kubernetes manifests' podFailurePolicy uses):
  0  success; for `work`, the queue is drained (with --until closed: drained and closed)
  1  a runtime error: Redis unreachable after retries, a closed queue, a Redis error
  2  a usage or configuration error: bad option, bad URL, wrong password, a command or key the
     Redis user may not use (NOPERM), a TLS certificate or host name that fails the checks, handler
     not importable, a Redis whose maxmemory-policy may evict queue keys (unless --allow-eviction)
  3  `work` stopped before the queue drained, on purpose: --max-items reached, or SIGTERM/SIGINT
     (its leases were given back)
  4  `work`: the queue drained, but its dead letters are not empty (items that spent their attempts),
     so the work is not all done (unless --allow-dead); the manifests' podFailurePolicy fails the Job
  5  `work`: an item overran --item-timeout and its handler thread could not be stopped: the item
     was failed (an attempt charged, so its retries are bounded by --max-attempts), the worker gave
     back its unstarted items, let the others finish and exited; the pod must be replaced
     (podFailurePolicy: Ignore)
  6  `work`: the last --stop-after-failures items all failed with the same error (a broken handler
     or command): the worker stopped early instead of spending every item's attempts
     (podFailurePolicy: FailJob)
  7  `work --until closed --max-wait`: nothing to lease for that long on a queue still open and
     empty: its producer is missing (podFailurePolicy: FailJob)
  130, 143  `enqueue` stopped by SIGINT (Ctrl-C) or SIGTERM, after the reply to the batch in flight:
     its last line says exactly how many items went in
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import click

import rediswq
from rediswq.urls import url_secrets

#: Every command's context settings: `-h` as well as `--help`, whether it runs under `rediswq` or is
#: parsed on its own (click keeps the help option of the first context a command sees).
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_DEAD = 4
EXIT_ITEM_TIMEOUT = 5
EXIT_BROKEN = 6
EXIT_IDLE = 7

# `rediswq enqueue` stopped by a signal (128 + its number, as a shell reports it): the items counted
# in its last line went in, and a re-run with --unique adds exactly the rest.
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

DEFAULT_URL = "redis://localhost:6379/0"


@dataclass
class Settings:
    """What the root group parsed, handed to subcommands as click's context object."""

    url: str
    allow_eviction: bool = False
    tls: dict[str, Any] = field(default_factory=dict)
    min_replicas: int = 0
    min_replicas_timeout: float = 5.0
    url_from: str = ""  # "--url", "$REDISWQ_URL", "$REDIS_URL" or "--url-file PATH"; empty: the default
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    def secrets(self) -> list[str]:
        """What must never be shown nor passed on to an item: the URL's secrets, the sentinels' password."""
        return [*url_secrets(self.url), *filter(None, [self.sentinel_password])]

    def url_origin(self) -> str:
        """Where the URL came from, for an error that names it: a default nobody chose misleads."""
        if self.url_from:
            return f"from {self.url_from}"
        return "the default: no --url, $REDISWQ_URL or $REDIS_URL given"


class ConfigError(click.ClickException):
    """A configuration error: exits 2, as a usage error does, so a Job can fail at once on it."""

    exit_code = EXIT_USAGE


def read_url_file(path: str, given_as: str) -> str:
    """The URL in the file `path` (a mounted Kubernetes Secret), read once, surrounding whitespace and
    its trailing newline stripped. Any error is one line naming the file (`given_as` says how it was
    given), never its content: exit 2."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"{given_as} {path}: no such file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{given_as} {path}: it is not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{given_as} {path}: cannot read it: {e.strerror or type(e).__name__}") from None
    if not text:
        raise ConfigError(f"{given_as} {path}: the file is empty; it must hold the Redis URL")
    if "\n" in text:
        raise ConfigError(f"{given_as} {path}: it holds more than one line; it must hold the Redis URL only")
    return text


def escape_controls(text: str) -> str:
    """`text` with control characters (newlines, escape sequences, ...) as Python escapes, so a
    caller-given id or payload can neither split a line nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def parse_prefetch(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--prefetch: a whole number from 1 up, or auto (None)."""
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a whole number nor 'auto'") from None
    if number < 1:
        raise click.BadParameter(f"{number} is below 1")
    return number


def check_target(handler: str | None, command: Sequence[str]) -> None:
    """A worker runs a Python handler or a COMMAND, not both."""
    if handler and command:
        raise click.UsageError("give either --handler or a COMMAND after --, not both")


def check_max_wait(until: str | None, max_wait_secs: float | None) -> None:
    """--max-wait bounds the wait for a queue's close: it means nothing without --until closed."""
    if max_wait_secs is not None and until != "closed":
        raise click.UsageError(
            "--max-wait applies with --until closed only (it bounds the wait for the close)"
        )


def settings() -> Settings:
    return click.get_current_context().find_object(Settings) or Settings(DEFAULT_URL)


# The library's messages name its parameters; the command line adds the options that set them here.
# (error type, the parameter its message names) -> the options' names.
FLAGS: dict[tuple[type[rediswq.RedisWQError], str], str] = {
    (rediswq.EvictingRedis, "allow_eviction="): "rediswq --allow-eviction or REDISWQ_ALLOW_EVICTION=1",
    (rediswq.TLSFailed, "tls_cert="): "--tls-cert and --tls-key",
    (rediswq.LibraryMissing, "Queue.install()"): "rediswq install, as the admin role",
    (rediswq.LibraryMismatch, "Queue.install()"): "rediswq install, as the admin role",
}


def message(error: rediswq.RedisWQError) -> str:
    """The library's message, and the command-line options that set the parameters it names."""
    text = str(error)
    flags = [flag for (kind, name), flag in FLAGS.items() if isinstance(error, kind) and name in text]
    return f"{text}; on the command line: {', '.join(flags)}" if flags else text


@contextmanager
def queue_errors() -> Iterator[None]:
    """Turn rediswq's errors into one clear line and the documented exit code; never a traceback."""
    try:
        yield
    except (rediswq.AuthenticationFailed, rediswq.InvalidArgument, rediswq.EvictingRedis) as e:
        raise ConfigError(message(e)) from e
    except rediswq.ConnectionFailed as e:
        raise click.ClickException(f"{message(e)} (URL {settings().url_origin()})") from e
    except rediswq.RedisWQError as e:
        raise click.ClickException(message(e)) from e


def _loopback_address(url: str) -> tuple[str, int] | None:
    """(host, port) of a redis:// or rediss:// URL on this machine; None for any other URL."""
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname or "localhost", parts.port or 6379
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return None  # not an IP address, or a URL the library will name as bad
    return (host, port) if loopback and parts.scheme in ("redis", "rediss") else None


def _refused_on_loopback(url: str) -> bool:
    """A Redis URL on this machine whose port refuses a connection: nothing listens there."""
    address = _loopback_address(url)
    if address is None:
        return False
    try:
        socket.create_connection(address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        pass
    return False


def open_queue(name: str, *, one_shot: bool = False, **options: Any) -> rediswq.Queue:
    """The queue `name` on the Redis that --url names, with the --tls-* and --sentinel-* settings; TLS
    warnings shown.

    `one_shot`: a command that makes a few calls and exits. Against a Redis on this machine that
    refuses the connection it makes no retries, so the error comes at once (nothing listens there;
    waiting seconds would only hide a wrong port); `rediswq work` keeps its reconnect window.
    """
    chosen = settings()
    if one_shot and _refused_on_loopback(chosen.url):
        options = {**options, "retries": 0}
    if chosen.min_replicas:
        options = {
            "replicas": chosen.min_replicas,
            "replicas_timeout_secs": chosen.min_replicas_timeout,
            **options,
        }
    with queue_errors(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", rediswq.InsecureTLSWarning)
        queue = rediswq.Queue.from_url(
            chosen.url,
            name,
            allow_eviction=chosen.allow_eviction,
            sentinel_username=chosen.sentinel_username,
            sentinel_password=chosen.sentinel_password,
            **chosen.tls,
            **options,
        )
    for warning in caught:
        if issubclass(warning.category, rediswq.InsecureTLSWarning):
            click.echo(f"Warning: {warning.message}", err=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return queue
