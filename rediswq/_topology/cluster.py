"""A Redis Cluster: redis+cluster:// and rediss+cluster:// URLs, redis-py's `RedisCluster` client.

    redis+cluster://[user:password@]host1[:port1],host2[:port2]/          (port: 6379)
    rediss+cluster://...                                                  (TLS)

Every host is a seed: one that is down is skipped, so start-up needs only one that answers. The client
learns every node from the seeds and follows MOVED, ASK and failovers by refreshing its slot map. It
contacts its seeds when it is made: a queue makes it in its first call, under that call's retries.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.cluster import ClusterNode, RedisCluster

from rediswq._topology.base import Client, Hide, Node, Options, Topology
from rediswq._topology.standalone import _passwords
from rediswq._url import SeedURL
from rediswq.errors import InvalidArgument


class Cluster(Topology):
    """Keys spread over masters by slot: a key's node is read from the slot map, each master holds
    keys of its own, and the map is learnt anew when a slot moves or a node stops answering."""

    def __init__(self, client: RedisCluster) -> None:
        self.client = client

    @staticmethod
    def owns(client: Client) -> bool:
        return isinstance(client, RedisCluster)

    @classmethod
    def check_url(cls, url: str) -> None:
        pass  # read by `client_for`, after the TLS settings

    @classmethod
    def read_path(cls, parts: list[str]) -> tuple[str | None, int]:
        if parts not in ([], ["0"]):
            raise InvalidArgument("a cluster URL names no database (a cluster has only db 0)")
        return None, 0

    @classmethod
    def make(cls, seeds: SeedURL, options: Options) -> Client:
        nodes = [ClusterNode(host, port) for host, port in seeds.hosts]  # type: ignore[no-untyped-call]
        return RedisCluster(
            startup_nodes=nodes,
            username=seeds.username,
            password=seeds.password,
            **options.connection_kwargs(seeds.tls),
        )

    def describe(self) -> str:
        """The seed nodes."""
        tls = self.client.nodes_manager.connection_kwargs.get("ssl")
        nodes = ",".join(node.name for node in self.client.nodes_manager.startup_nodes.values())
        return f"{'rediss' if tls else 'redis'}+cluster://{nodes}/"

    def secrets(self) -> list[str]:
        return _passwords(self.client.nodes_manager.connection_kwargs)

    def node_client(self, key: str) -> redis.Redis:
        """The node that serves the key's slot, by the slot map."""
        node = self.client.nodes_manager.get_node_from_slot(self.client.keyslot(key))  # type: ignore[no-untyped-call]
        return self.client.get_redis_connection(node)

    def masters(self) -> list[Node]:
        return list(self.client.get_primaries())  # type: ignore[no-untyped-call]

    def master_client(self, node: Node) -> redis.Redis:
        assert node is not None
        return self.client.get_redis_connection(node)

    def scan(self, node: Node, cursor: int, match: str, count: int) -> tuple[int, list[Any]]:
        if node is None:
            raise InvalidArgument("name the cluster master to scan (node=, one of client.get_primaries())")
        # A cluster client answers with a cursor per node it scanned: here, the one. A node that does
        # not answer makes the client re-read the cluster.
        cursors, keys = self.client.scan(cursor, match=match, count=count, target_nodes=node)
        return int(cursors[node.name]), keys  # type: ignore[index]

    def refresh(self, error: Exception | None = None) -> bool:
        """Follow a MOVED in the slot map, or re-read the whole map from the nodes."""
        if isinstance(error, redis.exceptions.MovedError):
            self.client.nodes_manager.move_slot(error)
        else:
            self.client.nodes_manager.initialize()
        return True

    def asked(self, error: redis.exceptions.AskError) -> redis.Redis | None:
        node = self.client.get_node(host=error.host, port=error.port)  # type: ignore[no-untyped-call]
        if node is None:
            self.client.nodes_manager.initialize()
            node = self.client.get_node(host=error.host, port=error.port)  # type: ignore[no-untyped-call]
        return None if node is None else self.client.get_redis_connection(node)

    def diagnose(self, error: Exception, url: str, hide: Hide) -> Exception | None:
        return None  # redis-py's cluster errors say what happened (rediswq/_redis_errors.py reads them)
