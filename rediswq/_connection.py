"""The boundary with redis-py: URL checks and redaction, and `Connection`, which runs every call.

How a call is retried is rediswq/_retry.py's; how redis-py's errors read, rediswq/_redis_errors.py's.

Every URL, redis-py error text and connection description that rediswq shows goes through `Redactor`,
so a password can reach neither a message nor a log line, whatever shape the URL has.
"""

from __future__ import annotations

import math
import os
import re
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions
import redis.sentinel

from rediswq import _topology
from rediswq._redis_errors import REDIS_ERRORS, sentinel_error, translate
from rediswq._retry import RetryPolicy
from rediswq._tls import certificate_wanted, closed_at_once
from rediswq.errors import InsecureTLSWarning, InvalidArgument, TLSFailed

T = TypeVar("T")

_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A query parameter whose name holds one of these is taken for a secret, whatever its exact spelling.
_SECRET_WORDS = ("pass", "pwd", "token", "secret", "auth", "key", "cred")
# Shorter secrets are not searched for in free text: they would blank out ordinary words.
_MIN_SECRET_CHARS = 4
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~-]*")

# What is said of a text with no scheme:// in it, in place of the text itself (which may be a password).
NOT_A_URL = (
    "the value given is not shown, since it has no scheme:// and may be a password; expected "
    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://..., unix://PATH, redis+cluster://... or "
    "redis+sentinel://..."
)

_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_CERT_REQS = ("none", "optional", "required")


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _flag(text: str) -> bool:
    return _BOOL[text.lower()]


def _cert_reqs(text: str) -> str:
    if text.lower() not in _CERT_REQS:
        raise ValueError
    return text.lower()


# The URL parameters rediswq accepts (README, "Connecting to Redis"), each with its parser and what
# a bad value should have been. Anything else is refused by name instead of failing at the first call.
_PARAMETERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "db": (_whole, "a whole number"),
    "username": (str, "a user name"),
    "password": (str, "a password"),
    "client_name": (str, "a name"),
    "socket_timeout": (_seconds, "a positive number of seconds"),
    "socket_connect_timeout": (_seconds, "a positive number of seconds"),
    "health_check_interval": (_whole, "a whole number of seconds"),
    "max_connections": (_whole, "a whole number"),
}
_TLS_PARAMETERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "ssl_cert_reqs": (_cert_reqs, "none, optional or required"),
    "ssl_check_hostname": (_flag, "true or false"),
    "ssl_ca_certs": (str, "a file"),
    "ssl_ca_path": (str, "a directory"),
    "ssl_certfile": (str, "a file"),
    "ssl_keyfile": (str, "a file"),
    "ssl_password": (str, "a password"),
}


class Redactor:
    """Hides the secrets of one URL, and any given besides it (the sentinels' password): in the URL
    itself, and in any text that might quote them."""

    def __init__(self, url: str, others: Iterable[str] = ()) -> None:
        self.url = redact(url)
        given = {secret for secret in others if len(secret) >= _MIN_SECRET_CHARS}
        self._secrets = sorted({*url_secrets(url), *given}, key=len, reverse=True)

    def text(self, text: str) -> str:
        """`text` with every secret (as written, or decoded) replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def redact(url: str) -> str:
    """The URL with its userinfo's password and every secret-bearing query value replaced by ***.

    Works on the text as written, before any parsing: a password holding `/`, `?`, `#` or `@`, a URL
    with no scheme and one no parser accepts are all hidden. What is hidden: everything before the
    last `@` (the user name is kept when it is plain), and the value of every query parameter whose
    name says it is a secret. The two may overlap; their union is hidden.
    """
    hidden = [False] * len(url)
    start = m.end() if (m := _SCHEME.match(url)) else 0
    at = url.rfind("@", start)
    if at >= 0:
        user, colon, _password = url[start:at].partition(":")
        first = start + len(user) + 1 if colon and _PLAIN_USER.fullmatch(user) else start
        for i in range(first, at):
            hidden[i] = True
    for begin, end in _secret_query_values(url):
        for i in range(begin, end):
            hidden[i] = True
    out: list[str] = []
    for i, char in enumerate(url):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append("***")
    return "".join(out)


def _secret_query_values(url: str) -> Iterable[tuple[int, int]]:
    """(start, end) of the text after each secret-bearing query parameter's `=`, scanning from every
    `?` (one may be a password's). It runs to the end of the URL: a password written raw may hold
    `&` or `#`, and what follows them is then a piece of it, not another parameter."""
    question = url.find("?")
    while question >= 0:
        pos = question + 1
        for piece in re.split(r"[&#]", url[pos:]):
            name, equals, _value = piece.partition("=")
            if equals and _is_secret_name(name):
                yield pos + len(name) + 1, len(url)
                break
            pos += len(piece) + 1
        question = url.find("?", question + 1)


def _is_secret_name(name: str) -> bool:
    plain = urllib.parse.unquote_plus(name).lower()
    return any(word in plain for word in _SECRET_WORDS)


def url_secrets(url: str) -> list[str]:
    """The secrets of a Redis URL (password, secret query values), as written and decoded, longest
    first: what must never be shown, nor passed on to code that should not connect."""
    return sorted(_secrets_of(url), key=len, reverse=True)


def _secrets_of(url: str) -> set[str]:
    """Every secret of the URL as it may appear in a message: as written, and percent-decoded."""
    found: set[str] = set()
    start = m.end() if (m := _SCHEME.match(url)) else 0
    at = url.rfind("@", start)
    if at >= 0:
        userinfo = url[start:at]
        # The user name is no secret (a pod name may hold it); with no ":" the whole is a password.
        user, colon, password = userinfo.partition(":")
        password = password if colon else user
        found.update((userinfo, password, *re.split(r"[/?#@:&=;]", password)))
    for begin, end in _secret_query_values(url):
        tail = url[begin:end]
        found.add(tail)
        known = set(_PARAMETERS) | set(_TLS_PARAMETERS)
        found.update(p for p in re.split(r"[&#=;]", tail) if urllib.parse.unquote_plus(p) not in known)
    decoded = {urllib.parse.unquote(s) for s in found} | {urllib.parse.unquote_plus(s) for s in found}
    return {s for s in found | decoded if len(s) >= _MIN_SECRET_CHARS}


def describe(client: _topology.Client) -> str:
    """A password-free URL naming the server (or the cluster, or the sentinels) a client talks to."""
    if isinstance(client, redis.cluster.RedisCluster):
        return _topology.describe_cluster(client)
    pool = client.connection_pool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        return _topology.describe_sentinel(pool)
    kwargs = pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}/{kwargs.get('db', 0)}"
    scheme = "rediss" if pool.connection_class.__name__ == "SSLConnection" else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def check_url(url: str) -> dict[str, Any]:
    """Every mistake in a Redis URL as `InvalidArgument` naming the part at fault; else its options.

    Checked before redis-py sees it, since redis-py passes an unknown parameter on to the connection
    (a TypeError at the first call) and quotes the URL in some of its errors. The options returned are
    the query's, parsed; warns with `InsecureTLSWarning` when the URL turns certificate checks off.
    """
    redactor = Redactor(url)
    try:
        return _checked(url, redactor.url)
    except InvalidArgument as e:
        # A secret pasted where no secret belongs (?db=PASSWORD) is hidden all the same.
        raise InvalidArgument(redactor.text(str(e))) from None


def _checked(url: str, shown: str) -> dict[str, Any]:
    if "://" not in url:
        # Not a URL at all: perhaps a password given where the URL belongs. Not one character of it
        # is shown.
        raise InvalidArgument(f"bad Redis URL: {NOT_A_URL}")
    scheme = url.partition("://")[0].lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise InvalidArgument(f"bad Redis URL {shown}: it must start with redis://, rediss:// or unix://")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidArgument(
            f"bad Redis URL {shown}: the host or port could not be parsed (a port is a number from 1 to "
            "65535; percent-encode / ? # @ : in a password)"
        ) from None
    if scheme != "unix" and port == 0:
        raise InvalidArgument(f"bad Redis URL {shown}: the port must be a number from 1 to 65535")
    options = _query_options(parts.query, shown, tls=scheme == "rediss")
    path = urllib.parse.unquote(parts.path).strip("/")
    if scheme != "unix" and path and "db" not in options and not path.isdigit():
        # The path is not quoted: with a raw password in the URL, it may be a piece of it.
        raise InvalidArgument(f"bad Redis URL {shown}: the path must be a database number, e.g. /0")
    if options.get("ssl_cert_reqs") == "none" or options.get("ssl_check_hostname") is False:
        warn_insecure(shown)
    return options


def warn_insecure(shown: str) -> None:
    warnings.warn(
        f"TLS certificate checks are off for {shown}: anyone on the path can read and change the queue",
        InsecureTLSWarning,
        stacklevel=3,
    )


def tls_options(
    url: str, *, ca: str | None, cert: str | None, key: str | None, verify: bool
) -> dict[str, Any]:
    """redis-py's SSL arguments for these TLS settings; they need a TLS URL (rediss://, rediss+cluster://,
    rediss+sentinel://) and existing files."""
    given = {"ssl_ca_certs": ca, "ssl_certfile": cert, "ssl_keyfile": key}
    chosen = {name: path for name, path in given.items() if path}
    if not verify:
        chosen["ssl_cert_reqs"] = "none"
    scheme = redact(url).partition(":")[0]
    if chosen and not _is_tls_scheme(scheme.lower()):
        raise InvalidArgument(f"TLS settings need a {_tls_scheme(scheme.lower())}:// URL, not {scheme}://")
    for name, path in given.items():
        if path and not os.path.isfile(path):
            raise InvalidArgument(f"TLS file {path!r} ({name}) does not exist or is not a file")
    if not verify:
        warn_insecure(redact(url))
    return chosen


def _is_tls_scheme(scheme: str) -> bool:
    return scheme == "rediss" or _topology.SCHEMES.get(scheme, ("", False))[1]


def _tls_scheme(scheme: str) -> str:
    """The TLS form of a scheme: rediss+cluster for redis+cluster, else rediss."""
    return "rediss+" + scheme.partition("+")[2] if scheme in _topology.SCHEMES else "rediss"


def _query_options(query: str, shown: str, *, tls: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for piece in query.split("&"):
        if not piece:
            continue
        raw_name, equals, raw_value = piece.partition("=")
        name = urllib.parse.unquote_plus(raw_name)
        label = name
        known = _PARAMETERS.get(name) or _TLS_PARAMETERS.get(name)
        if known is None:
            hint = " (it needs a rediss:// URL)" if name.startswith("ssl_") else ""
            raise InvalidArgument(f"bad Redis URL {shown}: unknown parameter {label!r}{hint}")
        if name in _TLS_PARAMETERS and not tls:
            raise InvalidArgument(f"bad Redis URL {shown}: parameter {name!r} needs a rediss:// URL")
        if not equals or not raw_value:
            raise InvalidArgument(f"bad Redis URL {shown}: parameter {label!r} has no value")
        parse, expected = known
        try:
            options[name] = parse(urllib.parse.unquote_plus(raw_value))
        except (ValueError, KeyError, OverflowError):
            raise InvalidArgument(f"bad Redis URL {shown}: parameter {name!r} must be {expected}") from None
    return options


class Connection:
    """Runs calls against Redis, turning redis-py's errors into rediswq's (_redis_errors.py), redacted.

    Idempotent calls are retried as rediswq/_retry.py says: `retries` times, pausing 0.2 s doubling to
    2 s; the others run once, because a retry after a lost reply could apply them twice. Refused
    credentials, permissions and certificates are never retried: waiting cannot fix them.

    `client`, the client the calls use, if given: the passwords it holds are hidden too, and when its
    sentinels name no master they are asked why (redis-py keeps only the type of their errors).
    `hidden`: other secrets never to show (those of a client not made yet).
    """

    def __init__(
        self,
        url: str,
        retries: int = 5,
        keys: str = "",
        client: _topology.Client | None = None,
        hidden: Iterable[str] = (),
    ) -> None:
        self.keys = keys  # which keys the calls touch, in words, for a refusal by the ACL
        # No window: the count bounds a call's retries (about 5 s for 5); callers that wait out an
        # outage (consume, the worker) retry on top of this with a window of their own.
        self._policy = RetryPolicy(math.inf, first_pause_secs=0.2, max_pause_secs=2.0, max_retries=retries)
        self._given = url
        self._hidden = list(hidden)
        self.adopt(client)

    def adopt(self, client: _topology.Client | None, url: str | None = None) -> None:
        """Calls go through `client` from now on (a Queue makes a cluster's client in its first call):
        hide its passwords too, and name it by `url` if given."""
        self._given = url or self._given
        held = _topology.passwords(client) if client is not None else []
        self._redactor = Redactor(self._given, [*self._hidden, *held])
        self._client = client
        self.url = self._redactor.url

    def call(self, fn: Callable[[], T], *, idempotent: bool) -> T:
        """`fn()`, retried if `idempotent` while the policy says so; errors as rediswq's."""
        retries = 0
        while True:
            try:
                return self._explained(fn)
            except REDIS_ERRORS as e:
                error = self.wrap(e)
                wait = self._wait(error, retries) if idempotent else None
                if wait is None:
                    raise error from e
            retries += 1
            time.sleep(wait)

    def _wait(self, error: Exception, retries: int) -> float | None:
        """How long to wait before trying an idempotent call again after `error`; None: raise it."""
        if not self._policy.retryable(error):
            return None
        now = time.monotonic()
        return self._policy.wait_secs(retries, now, now)

    def _explained(self, fn: Callable[[], T]) -> T:
        """`fn()`; errors whose cause redis-py hides are asked about again and, when it is a refusal,
        raised as an error no retry repeats. The sentinels named no master: a refusal by them (their
        password, TLS), else connection trouble that says what each sentinel did. A TLS server closed
        the connection at once: it may want a client certificate (`certificate_wanted`)."""
        try:
            return fn()
        except redis.sentinel.MasterNotFoundError as e:
            why = _topology.why_no_master(self._client) if self._client is not None else None
            if why is None:
                raise
            if isinstance(why, redis.sentinel.MasterNotFoundError):
                raise why from e  # sentinels down, or a failover: retried as before
            raise sentinel_error(why, self.url, self._redactor.text) from e
        except redis.exceptions.ConnectionError as e:
            wanted = certificate_wanted(self._client) if closed_at_once(e) else None
            if wanted is None:
                raise
            raise TLSFailed(
                f"TLS with Redis at {self.url} failed: the server wants a client certificate "
                f"(tls_cert= and tls_key=): {wanted}"
            ) from e

    def wrap(self, e: BaseException) -> Exception:
        """redis-py's error `e` as rediswq's, its text redacted."""
        return translate(e, self.url, self._redactor.text, self.keys)
