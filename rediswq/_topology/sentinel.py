"""A Sentinel-managed master: redis+sentinel:// and rediss+sentinel:// URLs.

    redis+sentinel://[user:password@]host1[:port1],host2[:port2]/SERVICE[/DB]   (port: 26379)
    rediss+sentinel://...           (TLS to the sentinels and the master)

The client is a `redis.Redis` whose pool asks the sentinels where the master is whenever it connects.
The URL's user and password are the master's; the sentinels' own (`requirepass` or an ACL user in
their config) are given apart, as `sentinel_auth`.
"""

from __future__ import annotations

import urllib.parse

import redis
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from rediswq._redis_errors import sentinel_error
from rediswq._tls import is_tls_failure
from rediswq._topology.base import Client, Hide, Maker, Options, from_seeds
from rediswq._topology.standalone import Standalone, _passwords
from rediswq._url import SeedURL
from rediswq.errors import InvalidArgument


class SentinelMaster(Standalone):
    """The master the sentinels name: one server as far as keys go, but named by its sentinels, with
    their passwords to hide, and a master that may not be found."""

    default_port = 26379
    takes_sentinel_auth = True

    @staticmethod
    def owns(client: Client) -> bool:
        return isinstance(getattr(client, "connection_pool", None), SentinelConnectionPool)

    @classmethod
    def check_url(cls, url: str) -> None:
        pass  # read by `client_for`, after the TLS settings

    @classmethod
    def client_for(cls, url: str, shown: str, options: Options) -> Client | Maker:
        return from_seeds(cls, url, shown, options)

    @classmethod
    def read_path(cls, parts: list[str]) -> tuple[str | None, int]:
        if not parts or len(parts) > 2:
            raise InvalidArgument("a sentinel URL ends in /SERVICE or /SERVICE/DB (the master's name)")
        if len(parts) == 2 and not parts[1].isdigit():
            raise InvalidArgument(f"bad database {parts[1]!r}: it must be a number")
        return urllib.parse.unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0

    @classmethod
    def make(cls, seeds: SeedURL, options: Options) -> Client:
        common = options.connection_kwargs(seeds.tls)
        # No retries of their own either: redis-py's default (3, backing off) made a refused password
        # take 12 s to surface, and a sentinel that does not answer is skipped for the next one anyway.
        # redis-py 8.0 leaves Sentinel untyped and 8.2 types it: CI type-checks both ends of the range we
        # claim, so these ignores say `unused-ignore` too (needed on 8.0, unused on 8.2).
        sentinel = Sentinel(seeds.hosts, sentinel_kwargs={**common, **options.sentinel_auth})  # type: ignore[no-untyped-call,unused-ignore]
        assert seeds.service is not None
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
            seeds.service, db=seeds.db, username=seeds.username, password=seeds.password, **common
        )
        return master

    @property
    def _pool(self) -> SentinelConnectionPool:
        pool = self.client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        return pool

    def describe(self) -> str:
        """The sentinels, the service and the database."""
        pool = self._pool
        tls = pool.connection_kwargs.get("ssl") or "SSL" in pool.connection_class.__name__
        sentinels = ",".join(
            "{host}:{port}".format(**s.connection_pool.connection_kwargs)
            for s in pool.sentinel_manager.sentinels
        )
        db = pool.connection_kwargs.get("db", 0)
        return f"{'rediss' if tls else 'redis'}+sentinel://{sentinels}/{pool.service_name}/{db}"

    def secrets(self) -> list[str]:
        pool = self._pool
        return _passwords(pool.connection_kwargs, pool.sentinel_manager.sentinel_kwargs)

    def diagnose(self, error: Exception, url: str, hide: Hide) -> Exception | None:
        """The sentinels named no master: a refusal by them (their password, TLS) as rediswq's error,
        else a MasterNotFoundError that says what each sentinel did (retried as before)."""
        if not isinstance(error, MasterNotFoundError):
            return None
        why = self.why_no_master()
        return why if isinstance(why, MasterNotFoundError) else sentinel_error(why, url, hide)

    def why_no_master(self) -> Exception:
        """Why the sentinels named no master, each sentinel asked again: redis-py's
        MasterNotFoundError keeps only the type of each one's error. A refusal (the sentinels' password
        or user, a certificate) is returned as the sentinel raised it; anything else (sentinels down,
        a failover under way) as a MasterNotFoundError that says in a few words what each did."""
        pool = self._pool
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
