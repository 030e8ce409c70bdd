"""A queue's way to Redis: the client (from a URL, given, or made in the first call) and every call.

Apart from `Queue` because none of it is about items: which client, when it is made, which scripts sit
on it, and the wrapper every call goes through (retries, redacted errors, the eviction policy checked
once). `Queue` and its helpers (`_put`, `_inspect`) all call Redis through one `QueueClient`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from rediswq import _library, _topology
from rediswq._connection import Connection
from rediswq._keys import Keys
from rediswq._policy import check_eviction
from rediswq._scripts import Scripts
from rediswq._topology import Client, Maker, Options, describe
from rediswq._url import redact, tls_options
from rediswq.errors import InvalidArgument

if TYPE_CHECKING:
    from rediswq.queue import Queue

T = TypeVar("T")


def from_url(
    cls: type[Queue],
    /,
    url: str,
    name: str,
    *,
    socket_timeout: float | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_verify: bool = True,
    sentinel_username: str | None = None,
    sentinel_password: str | None = None,
    **options: Any,
) -> Queue:
    """A queue on the Redis at `url` (redis://, rediss:// or unix://; a password is never shown).

    `redis+cluster://` and `redis+sentinel://` (and `rediss+`) name a Redis Cluster or a
    Sentinel-managed master by several seed hosts: see rediswq/_topology/ for the forms. The
    URL's password is the data nodes' (the master's); `sentinel_password` (and `sentinel_username`,
    for an ACL user) is the sentinels' own, for sentinels with `requirepass` or ACLs.

    Every mistake in the URL (scheme, port, database, an unknown or malformed query parameter) is
    an `InvalidArgument` naming it. With rediss:// (or rediss+cluster://, rediss+sentinel://),
    `tls_ca` (a PEM file of the CA to trust instead of the system's), `tls_cert` and `tls_key` (a
    client certificate), or the rediss:// URL's `ssl_*` parameters, set up TLS; `tls_verify=False`
    (or `ssl_cert_reqs=none`) turns certificate and host name checks off and warns with
    `InsecureTLSWarning`.

    rediswq retries idempotent calls itself, so the client it makes does not retry on its own: a
    blind retry of `put` or `complete` after a lost reply could apply it twice. `socket_timeout`
    (seconds; None: no limit) bounds each call's wait for a reply, so a stalled Redis is noticed.
    """
    topology = _topology.for_url(url)
    sentinel_auth = _sentinel_auth(url, topology, sentinel_username, sentinel_password)
    topology.check_url(url)
    tls = tls_options(url, ca=tls_ca, cert=tls_cert, key=tls_key, verify=tls_verify)
    client = topology.client_for(url, redact(url), Options(tls, sentinel_auth, socket_timeout))
    return cls(client, name, url=url, **options)


def _sentinel_auth(
    url: str, topology: type[_topology.Topology], username: str | None, password: str | None
) -> dict[str, str]:
    """The sentinels' own credentials, those given; only a sentinel URL may have them."""
    given = {"username": username, "password": password}
    auth = {key: value for key, value in given.items() if value}
    if auth and not topology.takes_sentinel_auth:
        raise InvalidArgument(
            "a sentinel password or user needs a redis+sentinel:// or rediss+sentinel:// URL, not "
            + (f"{redact(url).partition(':')[0]}://" if "://" in url else "a text with no scheme://")
        )
    return auth


def _with_scripts(client: Client, keys: Keys) -> tuple[Client, Scripts]:
    if client.get_encoder().decode_responses:
        # Payloads are bytes; a decoding client would fail half-way through a lease.
        raise InvalidArgument("the Redis client must not decode responses (decode_responses=False)")
    return client, Scripts(client, keys)


class QueueClient:
    """The client of one queue, the scripts on it, and the one way its calls go to Redis.

    `client` is a redis-py client, or a function that makes one: that is called in the queue's first
    call, under that call's retries (a RedisCluster contacts its seeds when it is made, and a queue on
    a cluster that is not up yet must wait for it as it waits for a server). `url` names the Redis
    in messages (password hidden); by default the client's own description.
    """

    def __init__(
        self,
        client: Client | Callable[[], Client],
        keys: Keys,
        name: str,
        *,
        url: str | None,
        retries: int,
        allow_eviction: bool,
        retry_settles: bool,
    ) -> None:
        self._keys = keys
        self._name = name
        self._making = threading.Lock()
        # Read on every call before anything else: the client and its scripts once made.
        self.made: tuple[Client, Scripts] | None = None
        given, self._make = _topology.client_or_maker(client)
        if given is not None:
            self.made = _with_scripts(given, keys)
        self._described = url is None  # the Connection names the client once it is made
        what = f"of queue {name!r} ({keys.meta.rsplit(':', 1)[0]}:* and {keys.inbox})"
        self.conn = Connection(
            url or (describe(given) if given else "Redis"),
            retries,
            what,
            client=given,
            hidden=client.passwords if isinstance(client, Maker) else (),
        )
        self._policy_checked = allow_eviction
        self._prepared = False
        self._retry_settles = retry_settles

    def ready(self) -> tuple[Client, Scripts]:
        """The client and the scripts on it; made here, in the first call, from a client function.

        Raises what making it raised (redis-py's error when no seed answers): the call it runs in
        wraps and retries that as any other error of the call.
        """
        made = self.made
        if made is None:
            with self._making:
                if self.made is None:
                    assert self._make is not None
                    client = self._make()
                    self.conn.adopt(client, describe(client) if self._described else None)
                    self.made = _with_scripts(client, self._keys)
                made = self.made
        return made

    @property
    def client(self) -> Client:
        """The client, made now if need be: for use inside a call."""
        return (self.made or self.ready())[0]

    @property
    def scripts(self) -> Scripts:
        """The scripts on the client, made now if need be: for use inside a call."""
        return (self.made or self.ready())[1]

    def connected(self) -> Client:
        """The client; made now (with the retries of a call) if no call has made it yet."""
        if self.made is not None:
            return self.made[0]
        return self.conn.call(lambda: self.client, idempotent=True)

    def call(self, fn: Callable[[], T], *, idempotent: bool) -> T:
        """Every Redis call of the queue: the first one checks the eviction policy (see `_policy`) and
        whether the function library serves (`Scripts.prepare`)."""
        if self._prepared:
            return self.conn.call(fn, idempotent=idempotent)

        def checked() -> T:
            try:
                if not self._policy_checked:
                    # On a cluster, the node that holds the queue.
                    node = _topology.node_client(self.client, self._keys.meta)
                    check_eviction(node, self.conn.url, self._name)
                    self._policy_checked = True
                self.scripts.prepare()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                # Asked of the node the slot map names: after a failover, re-read it before the retry
                # (a queue, or a shard, whose first call comes after one).
                self._refresh()
                raise
            self._prepared = True
            return fn()

        return self.conn.call(checked, idempotent=idempotent)

    def _refresh(self) -> None:
        with contextlib.suppress(redis.exceptions.RedisError):
            _topology.of(self.client).refresh()

    def install(self) -> str | None:
        """See `Queue.install`: the library loaded on every master, each checked for eviction first."""

        def check(node: redis.Redis) -> None:
            if not self._policy_checked:
                check_eviction(node, self.conn.url, None)

        return self.conn.call(
            lambda: _library.install(_topology.master_clients(self.client), check), idempotent=True
        )

    def settle_call(self, fn: Callable[[], T]) -> tuple[T, bool]:
        """A settle call (complete, fail, release), retried on connection errors as idempotent calls are.

        The scripts name each lease by its handle, so a retry is safe: a completion that went through
        the first time finds its lease gone and changes nothing. Returns the result and whether the
        call was sent more than once; if so, a lease found gone may have been settled by the first
        send (its reply lost) and is reported as unconfirmed. A caller with a retry policy of its own
        (the worker runtime) passes `retry_settles=False` and sees the connection errors instead.
        """
        if not self._retry_settles:
            return self.call(fn, idempotent=False), False
        tries = 0

        def once() -> T:
            nonlocal tries
            tries += 1
            return fn()

        return self.call(once, idempotent=True), tries > 1
