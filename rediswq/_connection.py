"""The boundary with redis-py: URL redaction, error wrapping, and retries of idempotent calls."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from typing import TypeVar

import redis
import redis.cluster
import redis.exceptions
import redis.sentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from rediswq import _topology
from rediswq.errors import AuthenticationFailed, ConnectionFailed, ServerError

T = TypeVar("T")

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


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for every message and log line."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    # The text after the last "@" is host[:port] as written; a bad port stays as it was typed.
    host_and_port = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or ''}:***@{host_and_port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


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


def _is_transient(error: Exception) -> bool:
    return isinstance(error, _CONNECTION_ERRORS + _TOPOLOGY_ERRORS) and not isinstance(
        error, redis.exceptions.AuthenticationError
    )


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


class Connection:
    """Runs calls against Redis, turning redis-py's connection errors into `ConnectionFailed`.

    Idempotent calls are retried with exponential backoff (redis-py's own `Retry`); the others run
    once, because a retry after a lost reply could apply them twice.
    """

    def __init__(self, url: str, retries: int = 5) -> None:
        self.url = url
        self._retry = Retry(
            ExponentialBackoff(cap=2.0, base=0.1), retries, _CONNECTION_ERRORS + _TOPOLOGY_ERRORS
        )

    def call(self, fn: Callable[[], T], *, idempotent: bool) -> T:
        try:
            if idempotent:
                return self._retry.call_with_retry(fn, lambda _error: None, is_retryable=_is_transient)
            return fn()
        except _TOPOLOGY_ERRORS as e:
            # Connection trouble, for the retries above and for a worker's reconnect window.
            raise ConnectionFailed(f"Redis at {self.url} is changing: {_topology_change(e)}{_node(e)}") from e
        except redis.exceptions.AuthenticationError as e:
            raise AuthenticationFailed(f"Redis at {self.url} refused the credentials: {e}") from e
        except redis.exceptions.ResponseError as e:
            if "NOAUTH" in str(e) or "WRONGPASS" in str(e):
                raise AuthenticationFailed(f"Redis at {self.url} refused the credentials: {e}") from e
            raise ServerError(f"Redis at {self.url} refused the command: {e}") from e
        except _CONNECTION_ERRORS as e:
            raise ConnectionFailed(f"cannot reach Redis at {self.url}: {e}{_node(e)}") from e
        except redis.exceptions.RedisError as e:
            raise ServerError(f"Redis at {self.url} answered with an error: {e}") from e
