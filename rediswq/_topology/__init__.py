"""The topology seam: one class per way Redis is deployed, and the table that picks one.

    standalone.py   redis://, rediss://, unix://              one server
    sentinel.py     redis+sentinel://, rediss+sentinel://     the master a set of sentinels names
    cluster.py      redis+cluster://, rediss+cluster://       a Redis Cluster

Each is a `Topology` (base.py): the same few questions (describe, secrets, the node of a key, the
masters, refresh after a change, diagnose a failure) answered for its kind of client. The rest of
rediswq asks these and never looks at redis-py's topology types; an `isinstance` on them appears in
this package only (tests/test_layers.py checks it).

Adding a topology is one module with a `Topology` subclass, and one row in `SCHEMES` above the
standalone rows (the TLS form of a scheme, rediss+..., names the same class).
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from redis.cluster import RedisCluster

from rediswq._topology.base import Client, Maker, Node, Options, Topology
from rediswq._topology.cluster import Cluster
from rediswq._topology.sentinel import SentinelMaster
from rediswq._topology.standalone import Standalone
from rediswq._url import SeedURL, plain_scheme, scheme_of

__all__ = ["Client", "Maker", "Node", "Options", "Topology", "for_url", "of"]

#: URL scheme (without TLS) -> its topology. A client's topology is the first whose `owns` claims
#: it: Standalone, which claims any, comes last.
SCHEMES: dict[str, type[Topology]] = {
    "redis+cluster": Cluster,
    "redis+sentinel": SentinelMaster,
    "redis": Standalone,
    "unix": Standalone,
}
_KINDS = tuple(dict.fromkeys(SCHEMES.values()))


def for_url(url: str) -> type[Topology]:
    """The topology a URL's scheme names; Standalone for any other (its check refuses the scheme)."""
    return SCHEMES.get(plain_scheme(scheme_of(url)), Standalone)


def of(client: Client) -> Topology:
    """The topology of a client: asked when it is made and when a call fails, not per item."""
    return next(kind for kind in _KINDS if kind.owns(client))(client)


def client_or_maker(
    given: Client | Callable[[], Client],
) -> tuple[Client | None, Callable[[], Client] | None]:
    """(the client, None) for a redis-py client of any topology; (None, it) for a function that makes one."""
    if isinstance(given, redis.Redis | RedisCluster):
        return given, None
    return None, given


def is_topology_url(url: str) -> bool:
    """True for a URL of seeds (cluster, sentinel), which is read when its client is made."""
    return for_url(url) is not Standalone


def parse(url: str) -> SeedURL:
    """The parts of a topology URL (cluster, sentinel); `InvalidArgument` if it is bad."""
    return for_url(url).parse(url)


def describe(client: Client) -> str:
    """A password-free URL naming the server (or the cluster, or the sentinels) a client talks to."""
    return of(client).describe()


def master_clients(client: Client) -> list[redis.Redis]:
    """The redis.Redis of every master: a cluster's, or the one server."""
    topology = of(client)
    return [topology.master_client(node) for node in topology.masters()]


def node_client(client: Client, key: str) -> redis.Redis:
    """The redis.Redis of the server that holds `key`: a cluster's node by its slot map, else the client."""
    return of(client).node_client(key)
