"""Shell completion of queue names, from the Redis the command line (or environment) names.

`eval "$(_REDISWQ_COMPLETE=bash_source rediswq)"` (zsh_source, fish_source) installs click's
completion; the QUEUE arguments then complete from the queues on that Redis. Only when a URL was
given (--url, --url-file, $REDISWQ_URL, $REDIS_URL): a completion never guesses at a Redis. It must
never make the shell wait: the names are read in a thread given COMPLETION_SECS, with one try and short
timeouts, and any error or a slow Redis means no completions, silently.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import Any

import click
from click.core import ParameterSource
from click.shell_completion import CompletionItem

import rediswq
from rediswq_kit import read_url_file

COMPLETION_SECS = 0.8
SOCKET_SECS = 0.5
# A bounded names walk: a few SCAN calls of a few thousand keys each, at most this many names.
NAMES_LIMIT = 500
SCAN_CALLS = 5
SCAN_COUNT = 2000


def complete_queue(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """click's `shell_complete` for a QUEUE argument: the queue names starting with `incomplete`."""
    warnings.simplefilter("ignore")  # e.g. --tls-no-verify's: nothing may garble the completions
    try:
        url, options = _url_and_options(ctx)
    except Exception:  # a completion never fails: no URL, an unreadable --url-file
        return []
    if not url:
        return []
    found: list[str] = []

    def read() -> None:
        with contextlib.suppress(Exception):  # silently no completions
            found.extend(_names(url, options, incomplete))

    reader = threading.Thread(target=read, name="rediswq-complete", daemon=True)
    reader.start()
    reader.join(COMPLETION_SECS)
    if reader.is_alive():
        return []  # the daemon thread dies with the process
    return [CompletionItem(name) for name in found]


def _names(url: str, options: dict[str, Any], incomplete: str) -> list[str]:
    queue = rediswq.Queue.from_url(url, "rediswq-complete", socket_timeout=SOCKET_SECS, retries=0, **options)
    pattern = _glob_escaped(incomplete) + "*"
    if "{" in incomplete or "}" in incomplete:
        return []
    return rediswq.Queue.names(
        queue.client, pattern=pattern, limit=NAMES_LIMIT, max_calls=SCAN_CALLS, count=SCAN_COUNT
    )


def _url_and_options(ctx: click.Context) -> tuple[str | None, dict[str, Any]]:
    """The URL the root command's options name (None when it would be the default), and the
    options for `Queue.from_url` (TLS, sentinel credentials) given beside it."""
    root = ctx.find_root()
    params = root.params
    if params.get("url_file"):
        url: str | None = read_url_file(params["url_file"], "--url-file")
    elif root.get_parameter_source("url") in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        url = params.get("url")
    else:
        url = None
    options: dict[str, Any] = {
        name: params[name]
        for name in ("tls_ca", "tls_cert", "tls_key", "sentinel_username", "sentinel_password")
        if params.get(name)
    }
    if params.get("tls_no_verify"):
        options["tls_verify"] = False
    return url, options


def _glob_escaped(text: str) -> str:
    """`text` as a Redis glob that matches itself only."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
