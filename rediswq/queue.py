"""The queue: put items, lease them, settle leases, and watch the queue drain."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Any, ClassVar, Literal, TypeVar

import msgpack
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from rediswq import _library, _topology
from rediswq._connection import Connection, check_url, describe, redact, tls_options
from rediswq._keys import LEASED_SENTINEL, Keys, meta_pattern, queue_of_meta
from rediswq._policy import check_eviction
from rediswq._scripts import (
    DAMAGED,
    DRAINED,
    LEASED,
    MISSING,
    OUT_OF_MEMORY,
    LeaseReply,
    Scripts,
    StatsReply,
    read_handle,
    wrong_type,
)
from rediswq._topology import Client
from rediswq.consume import Consumer
from rediswq.errors import (
    InvalidArgument,
    LeaseLost,
    LeaseTimeout,
    NotReplicated,
    QueueClosed,
    QueueNotFound,
    RedisWQError,
    ServerError,
    did_you_mean,
)
from rediswq.heartbeat import Heartbeat
from rediswq.lease import Lease

Until = Literal["drained", "closed"]
Mark = tuple[str, str] | None  # a checkpoint (name, value) written with a batch
T = TypeVar("T")

_AUTO_ID = re.compile(r"[0-9]+")
# An idle worker polls at most 20 times a second, backing off to twice a second; it wakes when the
# next lease deadline or retry falls due, since the lease script says when that is. Public, with
# Until, for the worker runtime, which paces its idle polls by the same limits.
MIN_POLL_SECS = 0.05
MAX_POLL_SECS = 0.5
# How close (difflib's ratio) another queue's name must be to be suggested: "typoq2" finds "typoq"
# (0.91), "jbos" finds "jobs" (0.75); two random names of the same length rarely come near.
SIMILAR_CUTOFF = 0.75


@dataclass(frozen=True)
class Enqueued:
    """What `put_many` did: items added, and items skipped because their id was live already."""

    added: int
    skipped: int


@dataclass(frozen=True)
class Handoff:
    """What `complete_and_lease` did: the new leases, and the completions whose lease was lost."""

    leases: list[Lease]
    lost: list[Lease]
    unconfirmed: bool = False  # sent again after a dropped connection: `lost` may have been completed


@dataclass(frozen=True)
class Item:
    """A pending item, as `peek` shows it; `error` says why an entry that does not decode is malformed.

    A malformed entry shows its raw bytes as the payload, under the id it gets once quarantined.
    """

    id: str
    attempts: int
    payload: bytes
    error: str = ""


@dataclass(frozen=True)
class DeadLetter:
    """An item that spent its attempts (or failed without retry), with its last error."""

    id: str
    attempts: int
    payload: bytes
    error: str
    dead_at_ms: int


@dataclass(frozen=True)
class LeaseInfo:
    """A live lease as `holders` shows it: who holds which item until when."""

    id: str
    attempt: int
    worker: str
    leased_at_ms: int
    deadline_ms: int
    error: str = ""  # why a member of the leased zset that is no lease handle is malformed


@dataclass(frozen=True)
class Stats:
    """One consistent snapshot of a queue (read in a single script call)."""

    pending: int
    leased: int
    delayed: int
    dead: int
    closed: bool
    enqueued: int
    completed: int
    failed: int
    retried: int
    expired: int
    dead_lettered: int
    released: int
    dropped: int
    quarantined: int = 0  # malformed entries moved to the dead letters (ids malformed:<sha1>)
    exists: bool = True  # the queue has counters, or items in its inbox: something was ever added
    # Time to the earliest delayed item's retry on Redis's clock (None: nothing delayed). A moment's
    # reading, not a count: left out of comparisons, so two snapshots of the same counts are equal.
    next_retry_in_ms: int | None = field(default=None, compare=False)

    # The lifetime counters among the fields (the rest are counts of now), in the order views list them.
    COUNTERS: ClassVar[tuple[str, ...]] = (
        "enqueued",
        "completed",
        "failed",
        "retried",
        "expired",
        "dead_lettered",
        "released",
        "dropped",
        "quarantined",
    )

    @property
    def drained(self) -> bool:
        """The queue exists and nothing is pending, delayed or leased by anyone."""
        return self.exists and self.pending == 0 and self.leased == 0 and self.delayed == 0

    @property
    def outstanding(self) -> int:
        """Items not yet settled: pending, delayed or leased."""
        return self.pending + self.leased + self.delayed


def stats_of(reply: StatsReply) -> Stats:
    """`Stats` from what `Scripts.stats` (or `stats_reply`) returns."""
    pending, leased, delayed, dead, meta, inbox, next_retry_ms = reply
    return Stats(
        pending=pending,
        leased=leased,
        delayed=delayed,
        dead=dead,
        closed="closed" in meta,
        exists=bool(meta) or inbox > 0,
        next_retry_in_ms=None if next_retry_ms < 0 else next_retry_ms,
        **{name: meta.get(name, 0) for name in Stats.COUNTERS},
    )


_MALFORMED = "malformed:"


def _malformed_id(raw: bytes) -> str:
    """The id a malformed entry gets as a dead letter: the same as lease.lua's redis.sha1hex."""
    return _MALFORMED + hashlib.sha1(raw, usedforsecurity=False).hexdigest()


def _unpack(raw: bytes, arity: int) -> list[Any]:
    """A msgpack array of `arity` values; ValueError with the reason when `raw` is not one."""
    try:
        value = msgpack.unpackb(raw, raw=True)
    except (ValueError, msgpack.UnpackException) as e:
        raise ValueError(f"not msgpack ({e})") from e
    if not isinstance(value, list) or len(value) != arity:
        raise ValueError(f"not a msgpack array of {arity}")
    return value


def _id_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(secs: float, what: str) -> int:
    if not (secs > 0 and math.isfinite(secs)):
        raise InvalidArgument(f"{what} must be a positive number of seconds, not {secs!r}")
    return max(1, round(secs * 1000))


def _mark(checkpoint: tuple[str, Callable[[int], str]] | None, taken: int) -> Mark:
    return None if checkpoint is None else (checkpoint[0], checkpoint[1](taken))


class _BatchSender:
    """Sends put batches from one background thread, at most one in flight, in order.

    While Redis runs the script for batch n (the thread waits on the socket, without the GIL), the
    caller's thread reads and checks batch n+1: the client's work and Redis's overlap instead of
    taking turns. A batch's error (QueueClosed) surfaces at the next send or at the end; nothing is
    sent after it.
    """

    def __init__(self, put: Callable[[list[bytes], list[str] | None, Mark, int], tuple[int, int]]) -> None:
        self._put = put
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: Future[tuple[int, int]] | None = None
        self.added = self.skipped = 0
        self.failed = False  # a batch raised: nothing more may be sent

    def send(self, batch: list[bytes], ids: list[str] | None, mark: Mark) -> None:
        self._settle()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rediswq-put")
        self._in_flight = self._pool.submit(self._put, batch, ids, mark, self.added)

    def _settle(self) -> None:
        if self._in_flight is not None:
            future, self._in_flight = self._in_flight, None
            try:
                added, skipped = future.result()
            except BaseException:
                self.failed = True
                raise
            self.added += added
            self.skipped += skipped

    def __enter__(self) -> _BatchSender:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self._settle()
            else:
                # The batch in flight is waited for even so, so that `added` is exact after an error.
                with contextlib.suppress(Exception):
                    self._settle()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


class Queue:
    """A lease-based work queue in Redis.

    Items are byte strings with ids the queue assigns (equal payloads are independent items), or that
    the caller gives to make `put` idempotent. A worker leases items for a while; it completes, fails,
    extends or releases each lease, and only the lease's holder can: if a lease expires, the next
    lease call takes the item back and someone else may lease it, and the late holder gets `LeaseLost`.

    A lease past its deadline still holds until a lease call (any worker's) reclaims it; from then on
    its holder gets `LeaseLost`. The race that ownership checks settle, as a timeline (times on Redis's
    clock):
      time 0   worker A leases item 7 for 30 s (attempt 1)
      time 30  A's lease expires; B's next lease call returns item 7 to pending and leases it (attempt 2)
      time 31  A finishes and calls complete: LeaseLost; B's lease, the item and the counters are untouched
      time 40  B completes item 7: it is done exactly once in the counters, processed twice (at-least-once)
    """

    def __init__(
        self,
        client: Client | Callable[[], Client],
        name: str,
        *,
        max_attempts: int = 5,
        retry_backoff_secs: float = 1.0,
        retry_backoff_cap_secs: float = 300.0,
        reclaim_limit: int = 100,
        max_payload_bytes: int = 64 * 1024 * 1024,
        worker: str | None = None,
        url: str | None = None,
        retries: int = 5,
        replicas: int = 0,
        replicas_timeout_secs: float = 5.0,
        allow_eviction: bool = False,
        retry_settles: bool = True,
    ) -> None:
        """A queue named `name` on the Redis of `client`, or of the client that `client()` makes.

        A function is called in the queue's first call, under that call's retries: a RedisCluster
        contacts its seeds when it is made, and a queue on a cluster that is not up yet must wait for
        it as it waits for a server (`from_url` passes one for cluster and sentinel URLs). `url`
        names the Redis in messages (password hidden); by default the client's own description.
        """
        if max_attempts < 1:
            raise InvalidArgument(f"max_attempts must be at least 1, not {max_attempts}")
        if reclaim_limit < 1:
            raise InvalidArgument(f"reclaim_limit must be at least 1, not {reclaim_limit}")
        if replicas < 0:
            raise InvalidArgument(f"replicas must be 0 or more, not {replicas}")
        self.name = name
        self.keys = Keys.for_queue(name)
        self.max_attempts = max_attempts
        self.max_payload_bytes = max_payload_bytes
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._backoff_ms = _ms(retry_backoff_secs, "retry_backoff_secs")
        self._backoff_cap_ms = _ms(retry_backoff_cap_secs, "retry_backoff_cap_secs")
        self._reclaim_limit = reclaim_limit
        keys = f"of queue {name!r} ({self.keys.meta.rsplit(':', 1)[0]}:* and {self.keys.inbox})"
        self._making = threading.Lock()
        self._made: tuple[Client, Scripts] | None = None
        if isinstance(client, redis.Redis | RedisCluster):
            self._made = self._with_scripts(client)
            self._make: Callable[[], Client] | None = None
        else:
            self._make = client
        self._described = url is None  # the Connection names the client once it is made
        made = self._made[0] if self._made else None
        hidden = client.passwords if isinstance(client, _topology.Maker) else ()
        self._conn = Connection(
            url or (describe(made) if made else "Redis"), retries, keys, client=made, hidden=hidden
        )
        self._policy_checked = allow_eviction
        self._prepared = False
        self._retry_settles = retry_settles
        self._seen = False  # a lease call has found this queue: a later MISSING means it vanished
        self.replicas = replicas
        # WAIT's timeout 0 means forever: a replica that never answers would hang every put.
        self._wait = (replicas, _ms(replicas_timeout_secs, "replicas_timeout_secs")) if replicas else None

    def _with_scripts(self, client: Client) -> tuple[Client, Scripts]:
        if client.get_encoder().decode_responses:
            # Payloads are bytes; a decoding client would fail half-way through a lease.
            raise InvalidArgument("the Redis client must not decode responses (decode_responses=False)")
        return client, Scripts(client, self.keys)

    def _ready(self) -> tuple[Client, Scripts]:
        """The client and the scripts on it; made here, in the first call, from a client function.

        Raises what making it raised (redis-py's error when no seed answers): the call it runs in
        wraps and retries that as any other error of the call.
        """
        made = self._made
        if made is None:
            with self._making:
                if self._made is None:
                    assert self._make is not None
                    client = self._make()
                    self._conn.adopt(client, describe(client) if self._described else None)
                    self._made = self._with_scripts(client)
                made = self._made
        return made

    @property
    def _client(self) -> Client:
        return self._ready()[0]

    @property
    def _scripts(self) -> Scripts:
        return self._ready()[1]

    def _call(self, fn: Callable[[], T], *, idempotent: bool) -> T:
        """Every Redis call of the queue: the first one checks the eviction policy (see `_policy`) and
        whether the function library serves (`Scripts.prepare`)."""
        if self._prepared:
            return self._conn.call(fn, idempotent=idempotent)

        def checked() -> T:
            if not self._policy_checked:
                # On a cluster, the node that holds the queue.
                node = _topology.node_client(self._client, self.keys.meta)
                check_eviction(node, self._conn.url, self.name)
                self._policy_checked = True
            self._scripts.prepare()
            self._prepared = True
            return fn()

        return self._conn.call(checked, idempotent=idempotent)

    def _settle_call(self, fn: Callable[[], T]) -> tuple[T, bool]:
        """A settle call (complete, fail, release), retried on connection errors as idempotent calls are.

        The scripts name each lease by its handle, so a retry is safe: a completion that went through
        the first time finds its lease gone and changes nothing. Returns the result and whether the
        call was sent more than once; if so, a lease found gone may have been settled by the first
        send (its reply lost) and is reported as unconfirmed. A caller with a retry policy of its own
        (the worker runtime) passes `retry_settles=False` and sees the connection errors instead.
        """
        if not self._retry_settles:
            return self._call(fn, idempotent=False), False
        tries = 0

        def once() -> T:
            nonlocal tries
            tries += 1
            return fn()

        return self._call(once, idempotent=True), tries > 1

    @classmethod
    def from_url(
        cls,
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
        Sentinel-managed master by several seed hosts: see rediswq/_topology.py for the forms. The
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
        given = {"username": sentinel_username, "password": sentinel_password}
        sentinel_auth = {key: value for key, value in given.items() if value}
        if sentinel_auth and _topology.kind(url) != "sentinel":
            raise InvalidArgument(
                "a sentinel password or user needs a redis+sentinel:// or rediss+sentinel:// URL, not "
                + (f"{redact(url).partition(':')[0]}://" if "://" in url else "a text with no scheme://")
            )
        topology = _topology.is_topology_url(url)
        if not topology:
            check_url(url)
        tls = tls_options(url, ca=tls_ca, cert=tls_cert, key=tls_key, verify=tls_verify)
        if topology:
            make = _topology.client(
                url, redact(url), tls=tls, sentinel_auth=sentinel_auth, socket_timeout=socket_timeout
            )
            return cls(make, name, url=url, **options)
        options_for_tcp = {} if url.startswith("unix:") else {"socket_keepalive": True}
        try:
            client = redis.Redis.from_url(
                url,
                retry=Retry(NoBackoff(), 0),
                socket_connect_timeout=5,
                socket_timeout=socket_timeout,
                **options_for_tcp,
                **tls,
            )
        except (ValueError, TypeError):
            # redis-py's message may quote the URL (password and all): say it in our words, no chain.
            raise InvalidArgument(f"bad Redis URL {redact(url)}: it could not be parsed") from None
        return cls(client, name, url=url, **options)

    @property
    def client(self) -> Client:
        """The redis-py client; made now (with the retries of a call) if no call has made it yet."""
        if self._made is not None:
            return self._made[0]
        return self._conn.call(lambda: self._client, idempotent=True)

    # -- adding items ---------------------------------------------------------------------------

    def put(self, payload: bytes | str, *, id: str | None = None) -> str | None:
        """Add one item; returns its id, or None when `id` is given and that item is live already."""
        data = self._checked_payload(payload)
        ids = None if id is None else [self._checked_id(id)]
        closed, first_id, skipped, acked = self._call(
            lambda: self._scripts.put([data], ids, wait=self._wait), idempotent=ids is not None
        )
        if closed:
            raise QueueClosed(f"queue {self.name!r} is closed: no more items may be added")
        self._check_replicated(acked, "the item", 1 - skipped)
        if skipped:
            return None
        return id if id is not None else str(first_id)

    def put_many(
        self,
        payloads: Iterable[bytes | str],
        *,
        ids: Iterable[str] | None = None,
        batch_size: int = 2000,
        batch_bytes: int = 4 * 1024 * 1024,
        checkpoint: tuple[str, Callable[[int], str]] | None = None,
        stop: threading.Event | None = None,
    ) -> Enqueued:
        """Add many items, one script call per batch; `ids` (aligned with `payloads`) makes it idempotent.

        Batches are atomic, the whole call is not: every error out of it (`QueueClosed`, a `ServerError`
        such as out of memory, `ConnectionFailed`, `InvalidArgument` for a bad payload) carries
        `added`, how many items went in before it, and a re-run with ids adds only the rest. When
        `payloads` itself raises, the items it gave before go in first.

        `checkpoint` (name, value_of): with each batch, in the same script call, the queue's checkpoint
        `name` is set to `value_of(n)`, n being the items this call has taken from `payloads` so far
        (all of them are in that batch or before it). A producer killed at any point reads it back with
        `checkpoint(name)` and resumes after those items: exactly-once across restarts.

        `stop`: once set (by a signal handler, say), no further batch is sent; the call returns when
        the reply to the batch in flight has come, so `Enqueued` counts exactly what went in. Only
        batches the sender has sent are in, so the checkpoint too says exactly where it stopped.
        """
        sender = _BatchSender(self._put_batch)
        try:
            self._put_stream(sender, payloads, ids, batch_size, batch_bytes, checkpoint, stop)
        except RedisWQError as e:
            e.added = max(e.added, sender.added)  # NotReplicated counts its own batch, which went in
            raise
        return Enqueued(sender.added, sender.skipped)

    def _put_stream(
        self,
        sender: _BatchSender,
        payloads: Iterable[bytes | str],
        ids: Iterable[str] | None,
        batch_size: int,
        batch_bytes: int,
        checkpoint: tuple[str, Callable[[int], str]] | None,
        stop: threading.Event | None,
    ) -> None:
        id_iter = iter(ids) if ids is not None else None
        limit = self.max_payload_bytes
        size = sent = 0  # sent: items handed to the sender before this batch
        batch: list[bytes] = []
        batch_ids: list[str] | None = [] if id_iter is not None else None
        with sender:
            try:
                for payload in payloads:
                    # The hot path of a million-line enqueue: plain bytes skip the general checks.
                    if type(payload) is not bytes or len(payload) > limit:
                        payload = self._checked_payload(payload)
                    if batch_ids is not None and id_iter is not None:
                        try:
                            batch_ids.append(self._checked_id(next(id_iter)))
                        except StopIteration:
                            raise InvalidArgument("put_many was given fewer ids than payloads") from None
                    batch.append(payload)
                    size += len(payload)
                    if len(batch) >= batch_size or size >= batch_bytes:
                        if stop is not None and stop.is_set():
                            return  # leaving `sender` waits for the reply to the batch in flight
                        sent += len(batch)
                        sender.send(batch, batch_ids, _mark(checkpoint, sent))
                        size, batch = 0, []
                        batch_ids = [] if batch_ids is not None else None
            except RedisWQError:
                raise  # a bad id or payload, or a batch's error: nothing more is sent
            except BaseException:
                # The caller's iterator raised: the items it gave before go in, and `added` says so.
                if batch and not sender.failed:
                    sender.send(batch, batch_ids, _mark(checkpoint, sent + len(batch)))
                raise
            if batch and not (stop is not None and stop.is_set()):
                sender.send(batch, batch_ids, _mark(checkpoint, sent + len(batch)))

    def _put_batch(
        self, batch: list[bytes], ids: list[str] | None, mark: Mark, added_before: int
    ) -> tuple[int, int]:
        """Put one batch; returns (added, skipped)."""
        closed, _first, skipped, acked = self._call(
            lambda: self._scripts.put(batch, ids, mark, wait=self._wait), idempotent=ids is not None
        )
        if closed:
            raise QueueClosed(
                f"queue {self.name!r} is closed: {added_before} items were added before it closed",
                added=added_before,
            )
        self._check_replicated(acked, f"a batch of {len(batch)} items", added_before + len(batch) - skipped)
        return len(batch) - skipped, skipped

    def _check_replicated(self, acked: int | None, what: str, added: int) -> None:
        """Raise `NotReplicated` when WAIT counted fewer replicas than `replicas` (None: not asked)."""
        if acked is None or self._wait is None or acked >= self.replicas:
            return
        raise NotReplicated(
            f"queue {self.name!r}: {what} went in, but only {acked} of {self.replicas} replica(s) "
            f"confirmed it within {self._wait[1] / 1000:g} s; a failover now could lose it",
            added=added,
        )

    def _checked_payload(self, payload: bytes | str) -> bytes:
        data = payload.encode() if isinstance(payload, str) else payload
        if not isinstance(data, bytes):
            raise InvalidArgument(f"a payload must be bytes or str, not {type(payload).__name__}")
        if len(data) > self.max_payload_bytes:
            raise InvalidArgument(
                f"a payload of {len(data)} bytes is over the limit of {self.max_payload_bytes} bytes"
            )
        return data

    @staticmethod
    def _checked_id(item_id: str) -> str:
        if not isinstance(item_id, str) or not item_id:
            raise InvalidArgument(f"an item id must be a non-empty str, not {item_id!r}")
        if _AUTO_ID.fullmatch(item_id):
            # All-digit ids are the queue's own; a caller's would collide with them.
            raise InvalidArgument(f"item id {item_id!r} is all digits: those are reserved for the queue")
        return item_id

    # -- leasing --------------------------------------------------------------------------------

    def lease(
        self,
        lease_secs: float = 60.0,
        *,
        timeout: float | None = None,
        until: Until = "drained",
        worker: str | None = None,
    ) -> Lease | None:
        """Lease one item, waiting for one if need be; None once the queue is drained.

        Drained means nothing pending, delayed or leased by anyone (and, with until="closed", the queue
        closed too): while another worker holds a lease, this call waits, and takes the item over if
        that lease expires. With `timeout` (seconds; 0 tries once) it raises `LeaseTimeout` instead of
        waiting longer.
        """
        leases = self.lease_many(1, lease_secs, timeout=timeout, until=until, worker=worker)
        return leases[0] if leases else None

    def lease_many(
        self,
        count: int,
        lease_secs: float = 60.0,
        *,
        timeout: float | None = None,
        until: Until = "drained",
        worker: str | None = None,
    ) -> list[Lease]:
        """Lease up to `count` items in one call, waiting as `lease` does; [] once drained."""
        return self.complete_and_lease(
            (), count, lease_secs, timeout=timeout, until=until, worker=worker
        ).leases

    def complete_and_lease(
        self,
        done: Sequence[Lease],
        count: int = 1,
        lease_secs: float = 60.0,
        *,
        timeout: float | None = None,
        until: Until = "drained",
        worker: str | None = None,
    ) -> Handoff:
        """Complete `done` and lease up to `count` more in the same script call: one round trip a batch.

        Waits as `lease` does; `Handoff.leases` is empty only once drained. Completions whose lease no
        longer held are in `Handoff.lost` (the rest were completed); `Handoff.unconfirmed` says the
        call was sent again after a dropped connection, so those may have been completed by the first.
        """
        if count < 1:
            raise InvalidArgument(f"count must be at least 1, not {count}")
        if until not in ("drained", "closed"):
            raise InvalidArgument(f"until must be 'drained' or 'closed', not {until!r}")
        lease_ms = _ms(lease_secs, "lease_secs")
        settle = [lease.handle for lease in done]
        lost: list[Lease] = []
        unconfirmed = False
        give_up = None if timeout is None else time.monotonic() + timeout
        poll = MIN_POLL_SECS

        def call() -> LeaseReply:
            return self._scripts.lease(
                count=count,
                lease_ms=lease_ms,
                max_attempts=self.max_attempts,
                reclaim_limit=self._reclaim_limit,
                worker=worker or self.worker,
                until_closed=until == "closed",
                complete=settle,  # the completions still to send: none after the first call
            )

        while True:
            # A bare lease whose reply was lost just expires and is taken back; completions are
            # retried as `_settle_call` says.
            reply, resent = self._settle_call(call)
            if settle:
                lost = [done[i] for i in reply.lost]
                unconfirmed = resent
                settle = []
            if self._absent(reply, until):
                reply = LeaseReply(reply.status, -1, 0, [], [])
            if reply.status == LEASED:
                leases = [
                    Lease(item_id, payload, attempt, reply.deadline_ms, lease_ms, handle)
                    for item_id, attempt, payload, handle in reply.items
                ]
                return Handoff(leases, lost, unconfirmed)
            if reply.status == DRAINED:
                return Handoff([], lost, unconfirmed)
            now = time.monotonic()
            if give_up is not None and now >= give_up:
                if lost:
                    raise self._lost(lost, unconfirmed)
                hint = None if reply.wait_ms < 0 else reply.wait_ms / 1000
                if reply.status == OUT_OF_MEMORY:
                    raise LeaseTimeout(
                        f"Redis is out of memory: no new leases from queue {self.name!r} until memory "
                        "is freed (completions, failures and renewals still work)",
                        hint,
                        out_of_memory=True,
                    )
                raise LeaseTimeout(f"no item in queue {self.name!r} within {timeout} s", hint)
            pause = poll if reply.wait_ms < 0 else min(poll, reply.wait_ms / 1000)
            if give_up is not None:
                pause = min(pause, give_up - now)
            time.sleep(max(pause, MIN_POLL_SECS))
            poll = min(poll * 2, MAX_POLL_SECS)

    def _absent(self, reply: LeaseReply, until: Until) -> bool:
        """Raise `QueueNotFound` for a missing or damaged queue; True: missing, wait as for nothing now.

        A queue missing before this object ever found it is only an error when draining: a worker
        until="closed" waits for its producer. Found once, missing or damaged means its state vanished.
        """
        if reply.status == DAMAGED:
            raise QueueNotFound(
                f"queue {self.name!r} vanished / is damaged: its counters ({self.keys.meta}) are gone "
                "while items remain (an evicting Redis, or keys deleted by hand); nothing was changed",
                vanished=True,
            )
        if reply.status != MISSING:
            self._seen = True
            return False
        if self._seen:
            raise QueueNotFound(
                f"queue {self.name!r} vanished / is damaged: every key of it is gone (deleted, purged, "
                "or a failover to an empty replica)",
                vanished=True,
            )
        if until == "drained":
            raise self.not_found(
                "a worker draining it would finish at once: wait for a producer with until='closed'"
            )
        return True

    # -- settling leases ------------------------------------------------------------------------

    def complete(self, lease: Lease) -> None:
        """The item is done; raises `LeaseLost` if the lease no longer held (and changes nothing)."""
        self.complete_many([lease])

    def complete_many(self, leases: Sequence[Lease]) -> None:
        """Complete many leases in one call; raises `LeaseLost` naming those that no longer held."""
        if not leases:
            return
        settle = [lease.handle for lease in leases]
        reply, resent = self._settle_call(
            lambda: self._scripts.lease(
                count=0,
                lease_ms=1,
                max_attempts=self.max_attempts,
                reclaim_limit=self._reclaim_limit,
                worker=self.worker,
                until_closed=False,
                complete=settle,
            )
        )
        if reply.status in (MISSING, DAMAGED):
            self._seen = True  # a lease was held: the queue existed
            self._absent(reply, "drained")
        if reply.lost:
            raise self._lost([leases[i] for i in reply.lost], resent)

    def fail(self, lease: Lease, error: str = "", *, retry: bool = True) -> bool:
        """The item failed: retry it after a backoff while attempts remain, else dead-letter it.

        Returns True if the item went to the dead letters. Raises `LeaseLost` if the lease no longer
        held (nothing changes then).
        """
        (held, dead, _due_ms), resent = self._settle_call(
            lambda: self._scripts.fail(
                handle=lease.handle,
                error=error,
                retry=retry,
                max_attempts=self.max_attempts,
                backoff_ms=self._backoff_ms,
                backoff_cap_ms=self._backoff_cap_ms,
            )
        )
        if not held:
            raise self._lost([lease], resent)
        return dead

    def extend(self, lease: Lease, lease_secs: float | None = None) -> None:
        """Push the lease's deadline to now + `lease_secs` (default: its own length); `LeaseLost` if gone."""
        self.extend_many([lease], lease_secs)

    def extend_many(self, leases: Sequence[Lease], lease_secs: float | None = None) -> None:
        """Extend many leases (each by its own length unless `lease_secs` is given), one call per length.

        Those still held are extended and their `deadline_ms` updated even when others are lost;
        then `LeaseLost` names the lost ones.
        """
        groups: dict[int, list[Lease]] = {}
        for lease in leases:
            ms = _ms(lease_secs, "lease_secs") if lease_secs is not None else lease.lease_ms
            groups.setdefault(ms, []).append(lease)
        lost: list[Lease] = []

        def extend(handles: list[bytes], lease_ms: int) -> tuple[int, list[int]]:
            return self._scripts.extend(handles=handles, lease_ms=lease_ms)

        for lease_ms, group in groups.items():
            handles = [lease.handle for lease in group]
            deadline_ms, lost_at = self._call(partial(extend, handles, lease_ms), idempotent=True)
            gone = set(lost_at)
            for i, lease in enumerate(group):
                if i in gone:
                    lost.append(lease)
                else:
                    lease.deadline_ms = deadline_ms
                    lease.lease_ms = lease_ms
        if lost:
            raise self._lost(lost, unconfirmed=False)

    def release(self, lease: Lease) -> None:
        """Give the item back to the head of the queue without charging the attempt (e.g. on shutdown)."""
        self.release_many([lease])

    def release_many(self, leases: Sequence[Lease]) -> None:
        """Release many leases in one call; raises `LeaseLost` naming those that no longer held."""
        if not leases:
            return
        handles = [lease.handle for lease in leases]
        lost_at, resent = self._settle_call(lambda: self._scripts.release(handles=handles))
        if lost_at:
            raise self._lost([leases[i] for i in lost_at], resent)

    def consume(
        self,
        lease_secs: float = 60.0,
        *,
        prefetch: int = 1,
        until: Until = "drained",
        reconnect_secs: float = 60.0,
    ) -> Consumer:
        """The library's loop: `with queue.consume(30) as leases: for lease in leases: ...`.

        Each item is completed when the next iteration begins, in the same call that leases the next
        `prefetch` items (one round trip per item, or per batch); the body raising fails the item with
        the exception and the exception propagates. Held leases are kept alive in the background, and
        dropped connections are retried for up to `reconnect_secs`. See `rediswq.consume`.
        """
        if prefetch < 1:
            raise InvalidArgument(f"prefetch must be at least 1, not {prefetch}")
        if until not in ("drained", "closed"):
            raise InvalidArgument(f"until must be 'drained' or 'closed', not {until!r}")
        _ms(lease_secs, "lease_secs")
        return Consumer(self, lease_secs, prefetch=prefetch, until=until, reconnect_secs=reconnect_secs)

    def keep_alive(self, lease: Lease) -> Heartbeat:
        """A context manager that extends `lease` in the background every third of its length."""
        return Heartbeat(self, [lease])

    def _lost_message(self, lost: Sequence[Lease]) -> str:
        shown = ", ".join(lease.id for lease in lost[:5]) + (" ..." if len(lost) > 5 else "")
        return f"{len(lost)} lease(s) in queue {self.name!r} no longer held (expired and reclaimed): {shown}"

    def _lost(self, lost: Sequence[Lease], unconfirmed: bool) -> LeaseLost:
        if not unconfirmed:
            return LeaseLost(self._lost_message(lost), lost)
        shown = ", ".join(lease.id for lease in lost[:5]) + (" ..." if len(lost) > 5 else "")
        return LeaseLost(
            f"{len(lost)} settle(s) in queue {self.name!r} unconfirmed: sent as the connection broke, and "
            f"the retry found the lease gone (settled by the first send, or expired meanwhile): {shown}",
            lost,
            unconfirmed=True,
        )

    # -- closing and draining -------------------------------------------------------------------

    def close(self) -> None:
        """Say no more items will come: later `put` calls raise `QueueClosed` (checked in the same script)."""
        self._call(self._close, idempotent=True)

    def _close(self) -> None:
        # A count, not a flag: the roles' ACLs let them only count in meta (rediswq/acl.py), so no
        # role but admin can clear it; any value is "closed".
        if self._wait is None:
            self._client.hincrby(self.keys.meta, "closed", 1)
            return
        # WAIT counts the writes of its own connection: both go down one pipeline, to the owning node.
        with _topology.node_client(self._client, self.keys.meta).pipeline(transaction=False) as pipe:
            pipe.hincrby(self.keys.meta, "closed", 1)
            pipe.execute_command("WAIT", *self._wait)  # type: ignore[no-untyped-call]
            acked = int(pipe.execute()[1])
        self._check_replicated(acked, "the close", 0)

    def reopen(self) -> None:
        """Undo `close`, e.g. for a queue a CronJob fills again each run; forgets the checkpoints too.

        One atomic operation (reopen.lua), an admin's: the worker and producer roles are refused it
        before anything is written, so a closed queue stays closed for them."""
        self._call(self._scripts.reopen, idempotent=True)

    def install(self) -> str | None:
        """Load (or replace) rediswq's function library on this queue's Redis (every master of a
        cluster), after checking each one's maxmemory-policy (`EvictingRedis`, unless allow_eviction):
        the check worker and producer users may not make. Its version; None on Redis 6.2 (no
        functions: the scripts load on first use). As a user allowed FUNCTION LOAD: `rediswq install`."""

        def check(node: redis.Redis) -> None:
            if not self._policy_checked:
                check_eviction(node, self._conn.url, None)

        return self._conn.call(lambda: _library.install(self._client, check), idempotent=True)

    def checkpoint(self, name: str) -> str | None:
        """The value `put_many(checkpoint=(name, ...))` last wrote with a batch, None if none."""
        value = self._call(lambda: self._client.hget(self.keys.checkpoints, name), idempotent=True)
        return None if value is None else _id_text(value)

    def is_drained(self) -> bool:
        """True when nothing is pending, delayed or leased by anyone."""
        return self.stats().drained

    def stats(self) -> Stats:
        """Counts and lifetime counters, read in one script call so they agree with each other."""
        return stats_of(self._call(lambda: self._scripts.stats(), idempotent=True))

    @staticmethod
    def scan_nodes(client: Client) -> list[ClusterNode | None]:
        """The nodes a walk of `scan_names` must visit: each master of a cluster, or [None] for one
        server (a single Redis or a Sentinel-managed master)."""
        if isinstance(client, RedisCluster):
            return list(client.get_primaries())  # type: ignore[no-untyped-call]
        return [None]

    @staticmethod
    def scan_names(
        client: Client,
        cursor: int = 0,
        count: int = 1000,
        *,
        node: ClusterNode | None = None,
        pattern: str = "*",
    ) -> tuple[int, list[str]]:
        """One SCAN step for the names of the queues on `client`'s Redis: (next cursor, names found).

        Start with cursor 0; the walk is complete when the next cursor is 0 again. `count` bounds the
        keys Redis looks at in one call (a hint, as SCAN's COUNT is); a name may come up twice. Each
        master of a cluster holds keys of its own: walk each, naming it as `node` (one of
        `scan_nodes(client)`); a node that does not answer makes the client re-read the cluster.
        `pattern` (a Redis glob) keeps the names it matches.
        """
        if "{" in pattern or "}" in pattern:
            raise InvalidArgument(f"bad queue name pattern {pattern!r}: queue names hold no braces")
        match = meta_pattern(pattern)
        conn = Connection(describe(client), client=client)
        if isinstance(client, RedisCluster):
            if node is None:
                raise InvalidArgument(
                    "name the cluster master to scan (node=, one of client.get_primaries())"
                )
            # A cluster client answers with a cursor per node it scanned: here, the one.
            cursors, keys = conn.call(
                lambda: client.scan(cursor, match=match, count=count, target_nodes=node),
                idempotent=True,
            )
            next_cursor = cursors[node.name]  # type: ignore[index]
        else:
            next_cursor, keys = conn.call(
                lambda: client.scan(cursor, match=match, count=count), idempotent=True
            )
        return int(next_cursor), [name for key in keys if (name := queue_of_meta(key)) is not None]

    @staticmethod
    def names(
        client: Client, *, pattern: str = "*", limit: int = 1000, max_calls: int = 100, count: int = 1000
    ) -> list[str]:
        """The names of queues on `client`'s Redis (every master of a cluster), sorted: a bounded walk.

        It stops once it has `limit` names or has made `max_calls` SCAN calls in all (each looks at
        about `count` keys), so on a large keyspace the list may be partial; it never walks for long.
        Raises what a call raises: `PermissionDenied` for a user who may not SCAN.
        """
        found: set[str] = set()
        calls = 0
        for node in Queue.scan_nodes(client):
            cursor = 0
            while calls < max_calls and len(found) < limit:
                cursor, names = Queue.scan_names(client, cursor, count, node=node, pattern=pattern)
                calls += 1
                found.update(names)
                if cursor == 0:
                    break
        return sorted(found)[:limit]

    def not_found(self, advice: str = "") -> QueueNotFound:
        """The error for this queue not existing: it names the existing queues closest to this name
        (a typo's likely target, see `similar_names`), then `advice`."""
        similar = self.similar_names()
        text = f"no such queue {self.name!r} (nothing was ever added to it)"
        if similar:
            text += f"; {did_you_mean(similar)}" + (f" {advice[:1].upper()}{advice[1:]}" if advice else "")
        elif advice:
            text += f"; {advice}"
        return QueueNotFound(text, vanished=False, similar=similar)

    def similar_names(self, limit: int = 3) -> list[str]:
        """Names of other queues close to this one's, closest first, for "did you mean ...?".

        A bounded `names` walk; [] when it fails (a user whose ACL role refuses SCAN, a Redis
        error): a suggestion is a courtesy, never a reason for an error of its own.
        """
        try:
            names = Queue.names(self.client)
        except RedisWQError:
            return []
        names = [name for name in names if name != self.name]
        return difflib.get_close_matches(self.name, names, n=limit, cutoff=SIMILAR_CUTOFF)

    # -- looking inside -------------------------------------------------------------------------

    def peek(self, count: int = 10) -> list[Item]:
        """The first `count` pending items, without leasing them."""
        if count < 1:
            return []
        raw = self._read(
            self.keys.pending, "list", lambda: self._client.lrange(self.keys.pending, 0, count - 1)
        )
        items = [self._item(envelope) for envelope in raw]
        if len(items) < count:
            inbox = self._call(partial(self._inbox_head, count - len(items)), idempotent=True)
            items.extend(Item("", 0, payload) for payload in inbox)
        return items

    def _item(self, envelope: bytes) -> Item:
        """A pending envelope as an `Item`; a malformed one as its raw bytes and why."""
        try:
            item_id, attempts, payload = _unpack(envelope, 3)
            if not (
                isinstance(item_id, int | bytes) and isinstance(attempts, int) and isinstance(payload, bytes)
            ):
                raise ValueError("not [id, attempts, payload]")
        except ValueError as e:
            why = f"malformed entry in {self.keys.pending}: {e}"
            return Item(_malformed_id(envelope), 0, envelope, why)
        return Item(_id_text(item_id), attempts, payload)

    def _read(self, key: str, kind: str, fn: Callable[[], Any]) -> Any:
        """Run a read of `key`; a key of another type is a `ServerError` that names it."""
        try:
            return self._call(fn, idempotent=True)
        except ServerError as e:
            wrong = wrong_type(self._client, key, kind) if "WRONGTYPE" in str(e) else None
            if wrong is None:
                raise
            raise ServerError(wrong) from e

    def _inbox_head(self, count: int) -> list[bytes]:
        """The first raw items of the inbox (none if that key is another application's non-list)."""
        if self._client.type(self.keys.inbox) not in (b"list", "list"):
            return []
        return list(self._client.lrange(self.keys.inbox, 0, count - 1))  # type: ignore[arg-type]

    def holders(self, count: int = 100) -> list[LeaseInfo]:
        """Up to `count` live leases, the soonest deadline first, with the worker that holds each."""
        if count < 1:
            return []
        raw: list[tuple[bytes, float]] = self._read(
            self.keys.leased,
            "zset",
            lambda: self._client.zrange(self.keys.leased, 0, count - 1, withscores=True),
        )
        return [self._lease_info(handle, deadline) for handle, deadline in raw if handle != LEASED_SENTINEL]

    def _lease_info(self, handle: bytes, deadline: float) -> LeaseInfo:
        """A leased zset member as `LeaseInfo`; one that is no handle as its quarantine id and why."""
        due = int(deadline) if math.isfinite(deadline) else 0
        try:
            envelope, _token, worker, leased_at_ms = read_handle(handle)
        except ValueError as e:
            return LeaseInfo(
                _malformed_id(handle), 0, "", 0, due, f"malformed entry in {self.keys.leased}: {e}"
            )
        return LeaseInfo(_id_text(envelope[0]), envelope[1] + 1, _id_text(worker), leased_at_ms, due)

    def dead_letters(self, count: int | None = None) -> list[DeadLetter]:
        """Dead letters (all of them, or up to `count`), oldest first."""

        def read() -> list[DeadLetter]:
            return [
                self._dead_letter(key, record)
                for key, record in self._client.hscan_iter(self.keys.dead, count=500)
            ]

        letters = sorted(self._read(self.keys.dead, "hash", read), key=lambda d: (d.dead_at_ms, d.id))
        return letters if count is None else letters[: max(count, 0)]

    def _dead_letter(self, key: bytes, record: bytes) -> DeadLetter:
        """A dead record as `DeadLetter`; a malformed one under its field's name, raw, with why."""
        try:
            item_id, attempts, payload, error, dead_at_ms = _unpack(record, 5)
            if not (
                isinstance(item_id, int | bytes)
                and isinstance(attempts, int)
                and isinstance(payload, bytes)
                and isinstance(error, bytes)
                and isinstance(dead_at_ms, int)
            ):
                raise ValueError("not [id, attempts, payload, error, dead_at_ms]")
        except ValueError as e:
            return DeadLetter(_id_text(key), 0, record, f"malformed record in {self.keys.dead}: {e}", 0)
        return DeadLetter(_id_text(item_id), attempts, payload, error.decode(errors="replace"), dead_at_ms)

    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Put dead letters (all, or those with `ids`) back on the queue with fresh attempts.

        Quarantined entries (ids malformed:<sha1>) and records that do not decode stay: their bytes
        are no item to run; `purge_dead` deletes them.
        """

        def requeue(batch: list[str]) -> int:
            return self._scripts.requeue_dead(ids=batch)

        total = 0
        for batch in self._dead_id_batches(ids):
            total += self._call(partial(requeue, batch), idempotent=True)
        return total

    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or those with `ids`); returns how many were deleted."""

        def purge(batch: list[str]) -> int:
            return self._scripts.purge_dead(ids=batch)

        total = 0
        for batch in self._dead_id_batches(ids):
            total += self._call(partial(purge, batch), idempotent=True)
        return total

    def _dead_id_batches(self, ids: Iterable[str] | None) -> Iterator[list[str]]:
        if ids is None:
            # Collect first, then act: a scan that runs while its hash shrinks may miss keys.
            def scan() -> list[str]:
                return [_id_text(key) for key, _ in self._client.hscan_iter(self.keys.dead, count=500)]

            ids = self._read(self.keys.dead, "hash", scan)
        source = iter(ids)
        while batch := list(islice(source, 500)):
            yield batch

    def purge(self) -> None:
        """Delete every key of this queue (and nothing else): items, leases, dead letters, counters."""
        self._call(lambda: self._scripts.purge(), idempotent=True)
