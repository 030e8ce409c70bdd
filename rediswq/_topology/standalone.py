"""One Redis server: redis://, rediss:// and unix:// URLs, a plain `redis.Redis` client."""

from __future__ import annotations

from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rediswq._tls import certificate_wanted, closed_at_once
from rediswq._topology.base import CONNECT_TIMEOUT_SECS, Client, Hide, Maker, Node, Options, Topology
from rediswq._url import check_url, redact
from rediswq.errors import InvalidArgument, TLSFailed


class Standalone(Topology):
    """One server: every key is on it, it is the one master, and nothing about it moves."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @staticmethod
    def owns(client: Client) -> bool:
        return True  # any client no other topology claims: the table lists this one last

    @classmethod
    def check_url(cls, url: str) -> None:
        check_url(url)

    @classmethod
    def client_for(cls, url: str, shown: str, options: Options) -> Client | Maker:
        """A client that never retries on its own (and does not connect until its first call)."""
        options_for_tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}
        try:
            return redis.Redis.from_url(
                url,
                retry=Retry(NoBackoff(), 0),
                socket_connect_timeout=CONNECT_TIMEOUT_SECS,
                socket_timeout=options.socket_timeout,
                **options_for_tcp,
                **options.tls,
            )
        except (ValueError, TypeError):
            # redis-py's message may quote the URL (password and all): say it in our words, no chain.
            raise InvalidArgument(f"bad Redis URL {redact(url)}: it could not be parsed") from None

    def describe(self) -> str:
        pool = self.client.connection_pool
        kwargs = pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}/{kwargs.get('db', 0)}"
        scheme = "rediss" if pool.connection_class.__name__ == "SSLConnection" else "redis"
        return (
            f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        )

    def secrets(self) -> list[str]:
        return _passwords(self.client.connection_pool.connection_kwargs)

    def node_client(self, key: str) -> redis.Redis:
        return self.client

    def masters(self) -> list[Node]:
        return [None]

    def master_client(self, node: Node) -> redis.Redis:
        return self.client

    def scan(self, node: Node, cursor: int, match: str, count: int) -> tuple[int, list[Any]]:
        next_cursor, keys = self.client.scan(cursor, match=match, count=count)
        return int(next_cursor), keys

    def refresh(self, error: Exception | None = None) -> bool:
        return False

    def asked(self, error: redis.exceptions.AskError) -> redis.Redis | None:
        return None

    def diagnose(self, error: Exception, url: str, hide: Hide) -> Exception | None:
        """A TLS server that closed the connection at once may want a client certificate."""
        wanted = certificate_wanted(self.client) if closed_at_once(error) else None
        if wanted is None:
            return None
        return TLSFailed(
            f"TLS with Redis at {url} failed: the server wants a client certificate "
            f"(tls_cert= and tls_key=): {wanted}"
        )


def _passwords(*options: dict[str, Any]) -> list[str]:
    return [found for kwargs in options if isinstance(found := kwargs.get("password"), str) and found]
