"""What rediswq asks of a topology: the interface every one of them (standalone.py, sentinel.py,
cluster.py) implements, and what makes a client from a topology's URL in a queue's first call.

A `Topology` wraps one redis-py client. It is asked when a client is made and when a call fails,
never per item: the per-item path (Connection.call, the direct script calls) keeps what it was
given (a node's pool), so the seam costs no round trip and no allocation there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from rediswq._url import SeedURL, split_seeds
from rediswq.errors import InvalidArgument

#: What a Queue talks to: one server (plain or Sentinel-managed), or a cluster.
Client = redis.Redis | RedisCluster
#: A master to walk (one of `Topology.masters`): a cluster's node, or None for the one server.
Node = ClusterNode | None
#: A text with every secret replaced by ***.
Hide = Callable[[str], str]

CONNECT_TIMEOUT_SECS = 5


@dataclass(frozen=True)
class Options:
    """How to connect, besides the URL: redis-py's ssl_* arguments (for every connection), the
    sentinels' own `username` and `password` (a sentinel URL's only), and how long a call waits for
    a reply on every node and sentinel (None: forever)."""

    tls: dict[str, Any] = field(default_factory=dict)
    sentinel_auth: dict[str, str] = field(default_factory=dict)
    socket_timeout: float | None = None

    def connection_kwargs(self, tls: bool) -> dict[str, Any]:
        """What every connection of a client made from seeds takes. No retries of redis-py's own:
        rediswq retries only the calls that are safe to repeat."""
        common: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": CONNECT_TIMEOUT_SECS,
            "socket_keepalive": True,
            "retry": Retry(NoBackoff(), 0),
        }
        if tls:
            common.update(ssl=True, **self.tls)
        return common


class Topology(ABC):
    """One client's topology: who holds a key, which masters there are, how it is named and what it
    hides, and what to do when it changes or fails. Class-side: which clients are of this kind and
    how one is made from its URL."""

    #: The port of a seed that names none (redis+KIND:// URLs).
    default_port: ClassVar[int] = 6379
    #: Whether the sentinels' own credentials (sentinel_username/sentinel_password) apply.
    takes_sentinel_auth: ClassVar[bool] = False

    # -- the class side: recognising and making clients ------------------------------------------

    @staticmethod
    @abstractmethod
    def owns(client: Client) -> bool:
        """True for a client of this topology."""

    @abstractmethod
    def __init__(self, client: Any) -> None:
        """Wrap `client`, a client this topology `owns`."""

    @classmethod
    @abstractmethod
    def check_url(cls, url: str) -> None:
        """Refuse a bad URL (`InvalidArgument`) before the TLS settings are looked at, or leave it to
        `client_for` (a URL of seeds is read there, after them)."""

    @classmethod
    def client_for(cls, url: str, shown: str, options: Options) -> Client | Maker:
        """A client for `url` (`shown`: redacted), or what makes it in the queue's first call; the URL
        is checked now (`InvalidArgument`). By default: the URL's seeds, made into a client later."""
        return from_seeds(cls, url, shown, options)

    @classmethod
    def parse(cls, url: str) -> SeedURL:
        """The parts of this topology's URL; `InvalidArgument` (password never quoted) if it is bad."""
        seeds, path = split_seeds(url, cls.default_port)
        service, db = cls.read_path(path)
        return replace(seeds, service=service, db=db)

    @classmethod
    def read_path(cls, parts: list[str]) -> tuple[str | None, int]:
        """(service, db) from the URL path's parts."""
        raise InvalidArgument("this URL has no seeds")

    @classmethod
    def make(cls, seeds: SeedURL, options: Options) -> Client:
        """The client of a parsed URL (contacting the seeds, if the client does when made)."""
        raise NotImplementedError

    # -- the instance side: one client ------------------------------------------------------------

    @abstractmethod
    def describe(self) -> str:
        """A password-free URL naming what the client talks to."""

    @abstractmethod
    def secrets(self) -> list[str]:
        """The passwords the client holds (its servers', its sentinels'): never to be shown."""

    @abstractmethod
    def node_client(self, key: str) -> redis.Redis:
        """The redis.Redis of the server that holds `key`."""

    @abstractmethod
    def masters(self) -> list[Node]:
        """The masters a walk of every key visits (SCAN, loading the function library)."""

    @abstractmethod
    def master_client(self, node: Node) -> redis.Redis:
        """The redis.Redis of one of `masters()`."""

    @abstractmethod
    def scan(self, node: Node, cursor: int, match: str, count: int) -> tuple[int, list[Any]]:
        """One SCAN step on one of `masters()`: (next cursor, keys)."""

    @abstractmethod
    def refresh(self, error: Exception | None = None) -> bool:
        """Learn the topology anew after a change: `error` a MOVED (follow it), None after a node
        stopped answering (re-read it). False when there is nothing to learn (one server)."""

    @abstractmethod
    def asked(self, error: redis.exceptions.AskError) -> redis.Redis | None:
        """The redis.Redis of the node an ASK names (None when the topology has no such redirection)."""

    @abstractmethod
    def diagnose(self, error: Exception, url: str, hide: Hide) -> Exception | None:
        """What a connection error really was, when redis-py hides it (an error to raise from it), or
        None to raise it as it is. `url` names the Redis in messages, `hide` redacts a text."""


def from_seeds(kind: type[Topology], url: str, shown: str, options: Options) -> Maker:
    """What makes the client of a redis+KIND:// URL in a queue's first call (a cluster client contacts
    its seeds when made, so a cluster not up yet is waited for like a server); the URL checked now."""
    try:
        return Maker(kind, kind.parse(url), options)
    except InvalidArgument as e:
        raise InvalidArgument(f"bad Redis URL {shown}: {e}") from e


@dataclass(frozen=True)
class Maker:
    """Makes the client of a topology URL when called. `passwords` are those the client will hold:
    hidden from every message, also those of the calls that fail to make it."""

    kind: type[Topology]
    seeds: SeedURL
    options: Options

    def __call__(self) -> Client:
        return self.kind.make(self.seeds, self.options)

    @property
    def passwords(self) -> list[str]:
        return [p for p in (self.seeds.password, self.options.sentinel_auth.get("password")) if p]
