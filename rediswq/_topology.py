"""Redis Cluster and Sentinel: the URL forms redis-py lacks, and the clients built from them.

    redis+cluster://[user:password@]host1[:port1],host2[:port2]/          (port: 6379)
    rediss+cluster://...                                                  (TLS)
    redis+sentinel://[user:password@]host1[:port1],host2[:port2]/SERVICE[/DB]   (port: 26379)
    rediss+sentinel://...           (TLS to the sentinels and the master)

Every host is a seed: one that is down is skipped, so start-up needs only one that answers. The
cluster client learns every node from the seeds and follows MOVED, ASK and failovers by refreshing its
slot map; the Sentinel client asks the sentinels where the master is whenever it connects. The user
and password are the data nodes' (the master's, for Sentinel); the sentinels' own (`requirepass` or an
ACL user in their config) are given apart, as `sentinel_auth`. TLS settings (a CA, a client
certificate) apply to every connection: to each cluster node, and to the sentinels and the master
alike.

Like `Queue.from_url`'s plain client, these clients do not retry on their own (nor do the sentinel
connections): rediswq retries only the calls that are safe to repeat. A RedisCluster contacts its seeds
when it is made, so `client` returns a function that makes it: a Queue calls it in its first call,
under the same retries as any call, and a cluster that is not up yet is waited for like a server.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from rediswq._tls import is_tls_failure
from rediswq.errors import InvalidArgument

#: What a Queue talks to: one server (plain or Sentinel-managed), or a cluster.
Client = redis.Redis | RedisCluster

SCHEMES: dict[str, tuple[str, bool]] = {
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_DEFAULT_PORT = {"cluster": 6379, "sentinel": 26379}
_CONNECT_TIMEOUT_SECS = 5


@dataclass(frozen=True)
class Topology:
    """A parsed cluster or sentinel URL."""

    kind: str  # "cluster" or "sentinel"
    tls: bool
    hosts: list[tuple[str, int]]
    username: str | None
    password: str | None
    service: str | None  # sentinel only
    db: int


def is_topology_url(url: str) -> bool:
    """True for the cluster and sentinel schemes, which `client` builds."""
    return url.partition("://")[0].lower() in SCHEMES


def kind(url: str) -> str | None:
    """The kind of a topology URL, "cluster" or "sentinel"; None for any other URL."""
    return SCHEMES.get(url.partition("://")[0].lower(), (None, False))[0]


def _host(text: str, default_port: int) -> tuple[str, int]:
    if not text:
        raise InvalidArgument("an empty host in the host list")
    try:
        parts = urllib.parse.urlsplit("//" + text)
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"bad host {text!r}: the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise InvalidArgument(f"bad host {text!r}")
    return parts.hostname, port or default_port


def _path(kind: str, path: str) -> tuple[str | None, int]:
    """(service, db) from the URL's path."""
    parts = [p for p in path.split("/") if p]
    if kind == "cluster":
        if parts not in ([], ["0"]):
            raise InvalidArgument("a cluster URL names no database (a cluster has only db 0)")
        return None, 0
    if not parts or len(parts) > 2:
        raise InvalidArgument("a sentinel URL ends in /SERVICE or /SERVICE/DB (the master's name)")
    if len(parts) == 2 and not parts[1].isdigit():
        raise InvalidArgument(f"bad database {parts[1]!r}: it must be a number")
    return urllib.parse.unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0


def parse(url: str) -> Topology:
    """The parts of a cluster or sentinel URL; `InvalidArgument` (password never quoted) if it is bad."""
    scheme, _, rest = url.partition("://")
    kind, tls = SCHEMES[scheme.lower()]
    netloc, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    if query or "?" in netloc:
        raise InvalidArgument(f"a {scheme} URL takes no query options")
    userinfo, _, host_list = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    hosts = [_host(h.strip(), _DEFAULT_PORT[kind]) for h in host_list.split(",")]
    service, db = _path(kind, path)
    return Topology(
        kind=kind,
        tls=tls,
        hosts=hosts,
        username=urllib.parse.unquote(username) or None,
        password=urllib.parse.unquote(password) if ":" in userinfo else None,
        service=service,
        db=db,
    )


def client(
    url: str,
    shown: str,
    *,
    tls: Mapping[str, Any] | None = None,
    sentinel_auth: Mapping[str, str] | None = None,
    socket_timeout: float | None = None,
) -> Maker:
    """What makes a RedisCluster, or a Sentinel-managed redis.Redis for the master; `shown` is the URL
    redacted. The URL is checked now (`InvalidArgument`); the cluster client contacts its seeds when
    made (redis-py's error if none answers), the sentinel client on its first command.

    `tls`: redis-py's ssl_* arguments (a rediss+ URL's CA, client certificate, checks), for every
    connection. `sentinel_auth`: the sentinels' `username` and `password` (a sentinel URL's only).
    `socket_timeout`: how long a call waits for a reply, on every node and sentinel (None: forever).
    """
    try:
        return Maker(parse(url), dict(tls or {}), dict(sentinel_auth or {}), socket_timeout)
    except InvalidArgument as e:
        raise InvalidArgument(f"bad Redis URL {shown}: {e}") from e


@dataclass(frozen=True)
class Maker:
    """Makes the client of a cluster or sentinel URL when called. `passwords` are those the client
    will hold: hidden from every message, also those of the calls that fail to make it."""

    topology: Topology
    tls: dict[str, Any]
    sentinel_auth: dict[str, str]
    socket_timeout: float | None = None

    def __call__(self) -> Client:
        return _client(self.topology, self.tls, self.sentinel_auth, self.socket_timeout)

    @property
    def passwords(self) -> list[str]:
        return [p for p in (self.topology.password, self.sentinel_auth.get("password")) if p]


def _client(
    topology: Topology, tls: Mapping[str, Any], sentinel_auth: Mapping[str, str], socket_timeout: float | None
) -> Client:
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": _CONNECT_TIMEOUT_SECS,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
    }
    if topology.tls:
        common.update(ssl=True, **tls)
    credentials: dict[str, Any] = {"username": topology.username, "password": topology.password}
    if topology.kind == "cluster":
        seeds = [ClusterNode(host, port) for host, port in topology.hosts]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=seeds, **credentials, **common)
    # No retries of their own either: redis-py's default (3, backing off) made a refused password take
    # 12 s to surface, and a sentinel that does not answer is skipped for the next one anyway.
    # redis-py 8.0 leaves Sentinel untyped and 8.2 types it: CI type-checks both ends of the range we
    # claim, so these ignores say `unused-ignore` too (needed on 8.0, unused on 8.2).
    sentinel = Sentinel(topology.hosts, sentinel_kwargs={**common, **sentinel_auth})  # type: ignore[no-untyped-call,unused-ignore]
    assert topology.service is not None
    master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
        topology.service, db=topology.db, **credentials, **common
    )
    return master


def passwords(client: Client) -> list[str]:
    """The passwords a client holds (its servers', and its sentinels'): never to be shown."""
    if isinstance(client, RedisCluster):
        options = [client.nodes_manager.connection_kwargs]
    else:
        pool = client.connection_pool
        options = [pool.connection_kwargs]
        if isinstance(pool, SentinelConnectionPool):
            options.append(pool.sentinel_manager.sentinel_kwargs)
    return [found for kwargs in options if isinstance(found := kwargs.get("password"), str) and found]


def why_no_master(client: Client) -> Exception | None:
    """Why the sentinels of a Sentinel-managed client named no master, each sentinel asked again:
    redis-py's MasterNotFoundError keeps only the type of each one's error. A refusal (the sentinels'
    password or user, a certificate) is returned as the sentinel raised it; anything else (sentinels
    down, a failover under way) as a MasterNotFoundError that says in a few words what each did.
    None for a client that has no sentinels."""
    pool = getattr(client, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool):
        return None
    failures = []
    for sentinel in pool.sentinel_manager.sentinels:
        where = "{host}:{port}".format(**sentinel.connection_pool.connection_kwargs)
        try:
            sentinel.sentinel_masters()
        except (redis.exceptions.AuthenticationError, redis.exceptions.NoPermissionError) as e:
            return e  # refused: the sentinels' password or user, or their ACL (NOPERM)
        except (redis.exceptions.RedisError, OSError) as e:
            if is_tls_failure(e):
                return e
            failures.append(f"{where}: {e}")
    found = "; ".join(failures) if failures else "every sentinel answered, none names a master that is up"
    return MasterNotFoundError(f"no master found for {pool.service_name!r} ({found})")


def is_cluster(client: Client) -> bool:
    return isinstance(client, RedisCluster)


def describe_cluster(client: RedisCluster) -> str:
    """A password-free URL naming a cluster client's seed nodes."""
    tls = client.nodes_manager.connection_kwargs.get("ssl")
    nodes = ",".join(node.name for node in client.nodes_manager.startup_nodes.values())
    return f"{'rediss' if tls else 'redis'}+cluster://{nodes}/"


def describe_sentinel(pool: SentinelConnectionPool) -> str:
    """A password-free URL naming the sentinels, the service and the database of a master's pool."""
    tls = pool.connection_kwargs.get("ssl") or "SSL" in pool.connection_class.__name__
    sentinels = ",".join(
        "{host}:{port}".format(**s.connection_pool.connection_kwargs) for s in pool.sentinel_manager.sentinels
    )
    db = pool.connection_kwargs.get("db", 0)
    return f"{'rediss' if tls else 'redis'}+sentinel://{sentinels}/{pool.service_name}/{db}"


def node_client(client: Client, key: str) -> redis.Redis:
    """The redis.Redis of the server that holds `key`: a cluster's node by its slot map, else the client."""
    if isinstance(client, RedisCluster):
        node = client.nodes_manager.get_node_from_slot(client.keyslot(key))  # type: ignore[no-untyped-call]
        return client.get_redis_connection(node)
    return client


def follow_moved(client: Client, error: redis.exceptions.MovedError) -> bool:
    """Update a cluster's slot map after a MOVED; False for a plain client, which cannot follow it."""
    if not isinstance(client, RedisCluster):
        return False
    client.nodes_manager.move_slot(error)
    return True


def refresh(client: Client) -> None:
    """Re-read a cluster's slot map from its nodes (after a node stopped answering); no-op otherwise."""
    if isinstance(client, RedisCluster):
        client.nodes_manager.initialize()


def asked_node(client: Client, error: redis.exceptions.AskError) -> redis.Redis | None:
    """The redis.Redis of the node an ASK names (None if the client is not a cluster client)."""
    if not isinstance(client, RedisCluster):
        return None
    node = client.get_node(host=error.host, port=error.port)  # type: ignore[no-untyped-call]
    if node is None:
        client.nodes_manager.initialize()
        node = client.get_node(host=error.host, port=error.port)  # type: ignore[no-untyped-call]
    return None if node is None else client.get_redis_connection(node)
