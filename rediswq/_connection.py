"""The boundary with redis-py: URL checks and redaction, error wrapping, and retries of idempotent calls.

Every URL, redis-py error text and connection description that rediswq shows goes through `Redactor`,
so a password can reach neither a message nor a log line, whatever shape the URL has.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import re
import urllib.parse
import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from rediswq import _library, _topology
from rediswq._tls import certificate_wanted, closed_at_once, is_tls_failure
from rediswq.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    InsecureTLSWarning,
    InvalidArgument,
    PermissionDenied,
    ServerError,
    TLSFailed,
)

T = TypeVar("T")

_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A query parameter whose name holds one of these is taken for a secret, whatever its exact spelling.
_SECRET_WORDS = ("pass", "pwd", "token", "secret", "auth", "key", "cred")
# Shorter secrets are not searched for in free text: they would blank out ordinary words.
_MIN_SECRET_CHARS = 4
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~-]*")

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


# Replies of a cluster or a replicated set in the middle of a change (a slot migrating, a failover, a
# promoted replica loading its data, a cluster client whose redirections ran out: "TTL exhausted"):
# the command did not run, and it will once the change is over. Named by the code Redis sent, which
# redis-py strips from the message. (LOADING is redis-py's BusyLoadingError, a ConnectionError.)
_TOPOLOGY_CODES: tuple[tuple[type[Exception], str], ...] = (
    (redis.exceptions.MovedError, "MOVED"),
    (redis.exceptions.AskError, "ASK"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.MasterDownError, "MASTERDOWN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.ClusterError, ""),  # "TTL exhausted."
    (redis.exceptions.RedisClusterException, ""),  # "Redis Cluster cannot be connected ..."
)
_TOPOLOGY_ERRORS = tuple(kind for kind, _code in _TOPOLOGY_CODES)

# A cluster URL aimed at a server that is not in a cluster: a mistake in the URL, not a change.
_NOT_A_CLUSTER = "Cluster mode is not enabled"


def _not_a_cluster(error: BaseException) -> bool:
    return isinstance(error, redis.exceptions.RedisClusterException) and _NOT_A_CLUSTER in str(error)


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
    scheme = url.partition("://")[0].lower() if "://" in url else ""
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


def _underlying(error: BaseException) -> BaseException:
    """The error that says what went wrong. A cluster client that reached no node (at start-up, or
    re-reading its slot map) raises RedisClusterException from the last node's error: a refused
    connection is then an outage, a refused password a refusal, as they are from one server. A user
    refused CLUSTER SLOTS by its ACL makes redis-py say "Cluster mode is not enabled" while handling
    the refusal: the refusal is what went wrong (it names the command), not the URL."""
    while isinstance(error, redis.exceptions.RedisClusterException):
        cause, context = error.__cause__, error.__context__
        if isinstance(cause, redis.exceptions.RedisError | OSError):
            return cause
        if isinstance(cause, redis.exceptions.RedisClusterException):
            error = cause  # "cannot be connected ... : Cluster mode is not enabled", from the refusal
        elif isinstance(context, redis.exceptions.ResponseError) and _is_permission_error(context):
            return context
        else:
            break
    return error


def _is_transient(error: Exception) -> bool:
    underlying = _underlying(error)
    return (
        not _not_a_cluster(error)
        and isinstance(underlying, _CONNECTION_ERRORS + _TOPOLOGY_ERRORS)
        and not isinstance(underlying, redis.exceptions.AuthenticationError)
        and not is_tls_failure(underlying)
    )


def _is_permission_error(error: redis.exceptions.ResponseError) -> bool:
    # Outside a script redis-py raises NoPermissionError; inside one, Redis wraps the NOPERM reply, and
    # 6.2 says only "can't run this command" (about the command or key that was refused).
    text = str(error)
    if isinstance(error, redis.exceptions.NoPermissionError):
        return True
    return "NOPERM" in text or "no permissions" in text or "can't run this command" in text


# Where a script was refused: Redis 7 says "script: SHA, on @user_script:LINE", 6.2 "(call to f_SHA):
# @user_script:LINE".
_SCRIPT_LINE = re.compile(r"(?:script: |call to f_)([0-9a-f]{40})\)?[,:] (?:on )?@user_script:([0-9]+)")
# Where a function of rediswq's library was refused: "script: rediswq_lease, on @user_function:LINE".
_FUNCTION_LINE = re.compile(r"script: rediswq_\w+, on @user_function:([0-9]+)")
_CALLED = re.compile(r"redis\.p?call\('([A-Za-z]+)'")
_COMMAND = re.compile(
    r"run the '([^']+)' command|access the '([^']+)' key|keys? (?:used|accessed) .*?'([^']+)'"
)


def _denied(text: str, keys: str) -> str:
    """What was refused, in words: the command (and script line) or key the message names; Redis does
    not name a refused key, so a key refusal names the keys this connection's calls use."""
    if "permissions to access one of the keys" in text or "access at least one of the keys" in text:
        return f"(the keys {keys})" if keys else "(a key it was not granted)"
    if found := _SCRIPT_LINE.search(text):
        where = _script_lines().get(found.group(1))
        if where is not None:
            name, lines = where
            number = int(found.group(2))
            line = lines[number - 1] if 0 < number <= len(lines) else ""
            called = _CALLED.search(line)
            what = f"the command {called.group(1)}" if called else "a command or key"
            return f"({what}, in {name}.lua line {number})"
    if found := _FUNCTION_LINE.search(text):
        in_library = _library.library().where(int(found.group(1)))
        if in_library is not None:
            operation, at = in_library
            text_lines = _library.source(operation).splitlines()
            refused = _CALLED.search(text_lines[at - 1]) if 0 < at <= len(text_lines) else None
            what = f"the command {refused.group(1)}" if refused else "a command or key"
            return f"({what}, in {operation}.lua line {at})"
    if found := _COMMAND.search(text):
        command, key, other = found.groups()
        return f"(the command {command.upper()})" if command else f"(the key {key or other})"
    return "(a command or key it was not granted)"


@functools.cache
def _script_lines() -> dict[str, tuple[str, list[str]]]:
    """sha1 -> (script name, source lines) of every script rediswq ships."""
    found = {}
    for entry in importlib.resources.files("rediswq.lua").iterdir():
        if entry.name.endswith(".lua"):
            source = entry.read_text(encoding="utf-8")
            sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
            found[sha] = (entry.name.removesuffix(".lua"), source.splitlines())
    return found


def _node(error: Exception) -> str:
    """ " (node HOST:PORT)" when the error knows the server it came from and does not name it already."""
    where = getattr(error, "connection", None)
    host, port = getattr(where, "host", None), getattr(where, "port", None)
    if not host or not port or f"{host}:{port}" in str(error):
        return ""
    return f" (node {host}:{port})"


def _topology_change(error: Exception) -> str:
    """The error as Redis sent it ("MOVED 1234 10.0.0.7:6379"), naming the node it points to."""
    code = next(code for kind, code in _TOPOLOGY_CODES if isinstance(error, kind))
    text = str(error)
    return text if text.startswith(code) else f"{code} {text}"


# What Redis answers a client that sent no credentials to a Redis that needs them (NOAUTH).
_NO_CREDENTIALS = ("Authentication required", "HELLO must be called with the client already authenticated")


class Connection:
    """Runs calls against Redis, turning redis-py's errors into rediswq's, redacted.

    Idempotent calls are retried with exponential backoff (redis-py's own `Retry`); the others run
    once, because a retry after a lost reply could apply them twice. Refused credentials, permissions
    and certificates are never retried: waiting cannot fix them.

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
        self._retry = Retry(
            ExponentialBackoff(cap=2.0, base=0.1), retries, _CONNECTION_ERRORS + _TOPOLOGY_ERRORS
        )
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
        explained = functools.partial(self._explained, fn)
        try:
            if idempotent:
                return self._retry.call_with_retry(explained, lambda _error: None, is_retryable=_is_transient)
            return explained()
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as e:
            raise self.wrap(e) from e
        except OSError as e:
            raise self.wrap(e) from e

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
            raise self._sentinel_error(why) from e
        except redis.exceptions.ConnectionError as e:
            wanted = certificate_wanted(self._client) if closed_at_once(e) else None
            if wanted is None:
                raise
            raise TLSFailed(
                f"TLS with Redis at {self.url} failed: the server wants a client certificate "
                f"(--tls-cert and --tls-key, or tls_cert= and tls_key=): {wanted}"
            ) from e

    def _sentinel_error(self, refusal: Exception) -> Exception:
        text = self._redactor.text(str(refusal))
        sentinels = f"the sentinels of {self.url}"
        if is_tls_failure(refusal):
            return TLSFailed(f"TLS with {sentinels} failed: {text}")
        if any(words in text for words in _NO_CREDENTIALS):
            return AuthenticationFailed(
                f"{sentinels} need a password, and none was given for them (the URL's password is the "
                "master's; give the sentinels' as sentinel_password, or $REDISWQ_SENTINEL_PASSWORD)"
            )
        if isinstance(refusal, redis.exceptions.NoPermissionError):
            return PermissionDenied(f"{sentinels} refused this sentinel user {_denied(text, '')}: {text}")
        return AuthenticationFailed(f"{sentinels} refused the sentinel password or user: {text}")

    def wrap(self, e: BaseException) -> Exception:
        """redis-py's error `e` as rediswq's, its text redacted."""
        e = _underlying(e)
        text = self._redactor.text(str(e))
        url = self.url
        if isinstance(e, _CONNECTION_ERRORS + _TOPOLOGY_ERRORS) and is_tls_failure(e):
            # First: a cluster client's own errors ("cannot be connected") may hold a refused certificate.
            return TLSFailed(f"TLS with Redis at {url} failed: {text}")
        if _not_a_cluster(e):
            return InvalidArgument(
                f"bad Redis URL {url}: the server is not in a cluster (cluster mode is not enabled "
                "there); name one server with redis:// or rediss://"
            )
        if isinstance(e, _TOPOLOGY_ERRORS):
            # Connection trouble, for the retries above and for a worker's reconnect window.
            change = self._redactor.text(_topology_change(e))
            return ConnectionFailed(f"Redis at {url} is changing: {change}{_node(e)}")
        if any(words in text for words in _NO_CREDENTIALS):
            # NOAUTH: none were sent. Redis's own text (HELLO's especially) does not say that.
            return AuthenticationFailed(
                f"Redis needs a password, and none was given for {url} (put it in the URL: "
                "redis://:PASSWORD@HOST:PORT, or USER:PASSWORD@ for an ACL user)"
            )
        if isinstance(e, redis.exceptions.AuthenticationError):
            return AuthenticationFailed(f"Redis at {url} refused the credentials: {text}")
        if isinstance(e, redis.exceptions.ResponseError):
            if "NOAUTH" in text or "WRONGPASS" in text:
                return AuthenticationFailed(f"Redis at {url} refused the credentials: {text}")
            if _is_permission_error(e):
                return PermissionDenied(
                    f"Redis at {url} refused this user {_denied(text, self.keys)}: {text}"
                )
            return ServerError(f"Redis at {url} refused the command: {text}")
        if isinstance(e, _CONNECTION_ERRORS):
            return ConnectionFailed(f"cannot reach Redis at {url}: {text}{_node(e)}")
        return ServerError(f"Redis at {url} answered with an error: {text}")
