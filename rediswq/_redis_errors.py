"""redis-py's errors in rediswq's words: which class (rediswq/errors.py) and what message, redacted.

The class decides what is retried (rediswq/_retry.py): a `ConnectionFailed` that is not an
`AuthenticationFailed` is an outage or a change under way; anything else is an answer.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable

import redis.exceptions

from rediswq import _library
from rediswq._tls import is_tls_failure
from rediswq.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    InvalidArgument,
    PermissionDenied,
    ServerError,
    TLSFailed,
)

Hide = Callable[[str], str]  # a text with every secret replaced by ***

_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

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
_TROUBLE = _CONNECTION_ERRORS + _TOPOLOGY_ERRORS

# Every error of redis-py (and the sockets under it) that `translate` turns into rediswq's.
REDIS_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)

# A cluster URL aimed at a server that is not in a cluster: a mistake in the URL, not a change.
_NOT_A_CLUSTER = "Cluster mode is not enabled"

# What Redis answers a client that sent no credentials to a Redis that needs them (NOAUTH).
_NO_CREDENTIALS = ("Authentication required", "HELLO must be called with the client already authenticated")


def translate(error: BaseException, url: str, hide: Hide, keys: str = "") -> Exception:
    """redis-py's `error` as rediswq's, about the Redis at `url` (shown as is), its text through `hide`.
    `keys`: the keys the calls use, in words, for a refusal by the ACL (Redis does not name the key)."""
    e = _underlying(error)
    text = hide(str(e))
    if isinstance(e, _TROUBLE):
        return _trouble(e, url, text, hide)
    if any(words in text for words in _NO_CREDENTIALS):
        return _no_credentials(url)
    if isinstance(e, redis.exceptions.ResponseError):
        return _refusal(e, url, text, keys)
    return ServerError(f"Redis at {url} answered with an error: {text}")


def _trouble(e: BaseException, url: str, text: str, hide: Hide) -> Exception:
    """A connection that failed, or a topology in the middle of a change: retried, unless a refusal."""
    if is_tls_failure(e):
        # First: a cluster client's own errors ("cannot be connected") may hold a refused certificate.
        return TLSFailed(f"TLS with Redis at {url} failed: {text}")
    if _not_a_cluster(e):
        return InvalidArgument(
            f"bad Redis URL {url}: the server is not in a cluster (cluster mode is not enabled "
            "there); name one server with redis:// or rediss://"
        )
    if isinstance(e, _TOPOLOGY_ERRORS):
        return ConnectionFailed(f"Redis at {url} is changing: {hide(_topology_change(e))}{_node(e)}")
    if any(words in text for words in _NO_CREDENTIALS):
        return _no_credentials(url)
    if isinstance(e, redis.exceptions.AuthenticationError):
        return AuthenticationFailed(f"Redis at {url} refused the credentials: {text}")
    return ConnectionFailed(f"cannot reach Redis at {url}: {text}{_node(e)}")


def _no_credentials(url: str) -> AuthenticationFailed:
    # NOAUTH: none were sent. Redis's own text (HELLO's especially) does not say that.
    return AuthenticationFailed(
        f"Redis needs a password, and none was given for {url} (put it in the URL: "
        "redis://:PASSWORD@HOST:PORT, or USER:PASSWORD@ for an ACL user)"
    )


def _refusal(e: redis.exceptions.ResponseError, url: str, text: str, keys: str) -> Exception:
    """An error reply: refused credentials, a refusal by the ACL, or any other."""
    if "NOAUTH" in text or "WRONGPASS" in text:
        return AuthenticationFailed(f"Redis at {url} refused the credentials: {text}")
    if _is_permission_error(e):
        return PermissionDenied(f"Redis at {url} refused this user {_denied(text, keys)}: {text}")
    return ServerError(f"Redis at {url} refused the command: {text}")


def sentinel_error(refusal: Exception, url: str, hide: Hide) -> Exception:
    """The sentinels of `url` refused us (`refusal`, their error, as `why_no_master` found it)."""
    text = hide(str(refusal))
    sentinels = f"the sentinels of {url}"
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


def _not_a_cluster(error: BaseException) -> bool:
    return isinstance(error, redis.exceptions.RedisClusterException) and _NOT_A_CLUSTER in str(error)


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
_KEY_REFUSED = ("permissions to access one of the keys", "access at least one of the keys")


def _denied(text: str, keys: str) -> str:
    """What was refused, in words: the command (and script line) or key the message names; Redis does
    not name a refused key, so a key refusal names the keys this connection's calls use."""
    if any(words in text for words in _KEY_REFUSED):
        return f"(the keys {keys})" if keys else "(a key it was not granted)"
    return _in_script(text) or _in_function(text) or _named(text) or "(a command or key it was not granted)"


def _in_script(text: str) -> str | None:
    """ "(the command X, in NAME.lua line N)" when the message points into one of rediswq's scripts
    (a line of the prelude or of the operation's own file)."""
    found = _SCRIPT_LINE.search(text)
    operation = _script_operations().get(found.group(1)) if found else None
    if found is None or operation is None:
        return None
    return _at(_library.script_where(operation, int(found.group(2))))


def _in_function(text: str) -> str | None:
    """ "(the command X, in NAME.lua line N)" when the message points into rediswq's function library
    (its lines map back to the prelude or the operation's file)."""
    found = _FUNCTION_LINE.search(text)
    return _at(_library.library().where(int(found.group(1)))) if found else None


def _at(where: tuple[str, int] | None) -> str | None:
    """A file and line of rediswq's Lua, as "(the command X, in NAME.lua line N)"."""
    if where is None:
        return None
    name, number = where
    lines = _library.source(name).splitlines()
    called = _CALLED.search(lines[number - 1]) if 0 < number <= len(lines) else None
    what = f"the command {called.group(1)}" if called else "a command or key"
    return f"({what}, in {name}.lua line {number})"


def _named(text: str) -> str | None:
    """ "(the command X)" or "(the key K)" when the message names one."""
    found = _COMMAND.search(text)
    if found is None:
        return None
    command, key, other = found.groups()
    return f"(the command {command.upper()})" if command else f"(the key {key or other})"


@functools.cache
def _script_operations() -> dict[str, str]:
    """sha1 -> operation of every script rediswq sends (rediswq/_library.py's `script`)."""
    return {
        hashlib.sha1(_library.script(op).encode(), usedforsecurity=False).hexdigest(): op
        for op in _library.OPERATIONS
    }


def _node(error: BaseException) -> str:
    """ " (node HOST:PORT)" when the error knows the server it came from and does not name it already."""
    where = getattr(error, "connection", None)
    host, port = getattr(where, "host", None), getattr(where, "port", None)
    if not host or not port or f"{host}:{port}" in str(error):
        return ""
    return f" (node {host}:{port})"


def _topology_change(error: BaseException) -> str:
    """The error as Redis sent it ("MOVED 1234 10.0.0.7:6379"), naming the node it points to."""
    code = next(code for kind, code in _TOPOLOGY_CODES if isinstance(error, kind))
    text = str(error)
    return text if text.startswith(code) else f"{code} {text}"


__all__ = ["REDIS_ERRORS", "sentinel_error", "translate"]
