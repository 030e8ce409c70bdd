"""The queue: lease items, settle leases, close and purge; the rest delegates to its helpers.

`Queue` is the one public class, and its methods are the API. What it does itself is the worker's
side: leasing, settling leases, closing. Its other jobs live in modules of their own, each called
through one line here: `_client` (which client, made when, every call's retries), `_waiting` (the
lease calls' loop while nothing can be leased yet: polling, timeouts, a queue missing or vanished),
`_put` (adding items in batches, checkpoints) and `_inspect` (stats, peeking, dead letters, queue
names).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from rediswq import _client, _inspect, _topology
from rediswq._client import QueueClient
from rediswq._inspect import DeadLetter as DeadLetter
from rediswq._inspect import Inspector
from rediswq._inspect import Item as Item
from rediswq._inspect import LeaseInfo as LeaseInfo
from rediswq._inspect import Stats as Stats
from rediswq._inspect import stats_of as stats_of
from rediswq._keys import Keys, check_shards
from rediswq._put import Enqueued as Enqueued
from rediswq._put import Putter, check_replicated
from rediswq._scripts import DAMAGED, MISSING, LeaseReply, Scripts
from rediswq._shards import Shards, sharded, sharded_put
from rediswq._topology import Client
from rediswq._waiting import Handoff as Handoff
from rediswq._waiting import Until as Until
from rediswq._waiting import Waiter, check_counts, check_lease_args, check_until, lost_error, ms
from rediswq.consume import Consumer
from rediswq.errors import InvalidArgument, LeaseLost, LeaseTimeout, QueueNotFound
from rediswq.heartbeat import Heartbeat
from rediswq.lease import Lease


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
        shards: int | None = None,
    ) -> None:
        """A queue named `name` on the Redis of `client`, or of the client that `client()` makes.

        A function is called in the queue's first call, under that call's retries: a RedisCluster
        contacts its seeds when it is made, and a queue on a cluster that is not up yet must wait for
        it as it waits for a server (`from_url` passes one for cluster and sentinel URLs). `url`
        names the Redis in messages (password hidden); by default the client's own description.

        `shards`: the queue is S queues under hash tags of their own, spread over a cluster's masters
        (rediswq/_shards.py). Fixed when the queue is made, recorded in it: a queue learns its count
        from Redis, so leave it out (None) but to make one; given, it must match (`InvalidArgument`).
        """
        check_counts(max_attempts, reclaim_limit, replicas)
        self.name = name
        keys = Keys.for_queue(name)
        self.max_attempts = max_attempts
        self.max_payload_bytes = max_payload_bytes
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._backoff_ms = ms(retry_backoff_secs, "retry_backoff_secs")
        self._backoff_cap_ms = ms(retry_backoff_cap_secs, "retry_backoff_cap_secs")
        self._reclaim_limit = reclaim_limit
        self.replicas = replicas
        # WAIT's timeout 0 means forever: a replica that never answers would hang every put.
        self._wait = (replicas, ms(replicas_timeout_secs, "replicas_timeout_secs")) if replicas else None
        self._options = {"url": url, "retries": retries, "allow_eviction": allow_eviction}
        self._options["retry_settles"] = retry_settles
        self._attach(client, keys)
        self._shards: Shards | None = Shards(self, None if shards is None else check_shards(shards))

    def _attach(self, client: Client | Callable[[], Client], keys: Keys) -> None:
        """The parts that work on one set of keys: the queue's own, or a shard's (rediswq/_shards.py)."""
        self.keys = keys
        self._redis = QueueClient(client, keys, self.name, **self._options)  # type: ignore[arg-type]
        self._conn = self._redis.conn
        self._putter = Putter(self._redis, keys, self.name, self.max_payload_bytes, self._wait)
        self._inspector = Inspector(self._redis, keys, self.name)
        # The inspector's not_found, not ours: a bound method of the queue would make a cycle.
        self._waiter = Waiter(self._redis, keys, self.name, self._inspector.not_found)

    # Made with the rest of the client making, in rediswq/_client.py; documented there.
    from_url = classmethod(_client.from_url)

    @property
    def client(self) -> Client:
        """The redis-py client; made now (with the retries of a call) if no call has made it yet."""
        return self._redis.connected()

    @property
    def _scripts(self) -> Scripts:  # for tests that wrap a script
        return self._redis.scripts

    # -- adding items (rediswq/_put.py) ---------------------------------------------------------

    @sharded_put
    def put(self, payload: bytes | str, *, id: str | None = None) -> str | None:
        """Add one item; returns its id, or None when `id` is given and that item is live already."""
        return self._putter.put(payload, id)

    @sharded_put
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
        return self._putter.put_many(payloads, ids, batch_size, batch_bytes, checkpoint, stop)

    def checkpoint(self, name: str) -> str | None:
        """The value `put_many(checkpoint=(name, ...))` last wrote with a batch, None if none."""
        return self._putter.checkpoint(name)

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
        check_lease_args(count, until)
        lease_ms = ms(lease_secs, "lease_secs")
        if self._shards is not None and self._shards.count() != 1:  # sharded, or not made yet
            return self._shards.complete_and_lease(done, count, lease_ms, timeout, until, worker)  # type: ignore[no-any-return]
        give_up = None if timeout is None else time.monotonic() + timeout
        call, reply, lost, resent = self._first_call(done, count, lease_ms, until, worker)
        try:
            leases = self._waiter.leases(call, reply, lease_ms, until, give_up, timeout)
        except LeaseTimeout:
            if lost:
                raise self._lost(lost, resent) from None
            raise
        return Handoff(leases, lost, resent and bool(done))

    def _first_call(
        self, done: Sequence[Lease], count: int, lease_ms: int, until: Until, worker: str | None
    ) -> tuple[Callable[[], LeaseReply], LeaseReply, list[Lease], bool]:
        """The first lease call, with the completions; the call to repeat while waiting (without them),
        its reply, the completions lost, and whether it was sent again."""
        settle = [lease.handle for lease in done]

        def call() -> LeaseReply:
            return self._redis.scripts.lease(
                count=count,
                lease_ms=lease_ms,
                max_attempts=self.max_attempts,
                reclaim_limit=self._reclaim_limit,
                worker=worker or self.worker,
                until_closed=until == "closed",
                complete=settle,  # the completions still to send: none after the first call
            )

        # A bare lease whose reply was lost just expires and is taken back; completions are
        # retried as `settle_call` says.
        reply, resent = self._redis.settle_call(call)
        settle = []
        return call, reply, [done[i] for i in reply.lost], resent

    # -- settling leases ------------------------------------------------------------------------

    def complete(self, lease: Lease) -> None:
        """The item is done; raises `LeaseLost` if the lease no longer held (and changes nothing)."""
        self.complete_many([lease])

    @sharded
    def complete_many(self, leases: Sequence[Lease]) -> None:
        """Complete many leases in one call; raises `LeaseLost` naming those that no longer held."""
        if not leases:
            return
        settle = [lease.handle for lease in leases]
        reply, resent = self._redis.settle_call(
            lambda: self._redis.scripts.lease(
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
            self._waiter.seen = True  # a lease was held: the queue existed
            self._waiter.absent(reply, "drained")
        if reply.lost:
            raise self._lost([leases[i] for i in reply.lost], resent)

    @sharded
    def fail(self, lease: Lease, error: str = "", *, retry: bool = True) -> bool:
        """The item failed: retry it after a backoff while attempts remain, else dead-letter it.

        Returns True if the item went to the dead letters. Raises `LeaseLost` if the lease no longer
        held (nothing changes then).
        """
        (held, dead, _due_ms), resent = self._redis.settle_call(
            lambda: self._redis.scripts.fail(
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

    @sharded
    def extend_many(self, leases: Sequence[Lease], lease_secs: float | None = None) -> None:
        """Extend many leases (each by its own length unless `lease_secs` is given), one call per length.

        Those still held are extended and their `deadline_ms` updated even when others are lost;
        then `LeaseLost` names the lost ones.
        """
        groups: dict[int, list[Lease]] = {}
        for lease in leases:
            length = ms(lease_secs, "lease_secs") if lease_secs is not None else lease.lease_ms
            groups.setdefault(length, []).append(lease)
        lost: list[Lease] = []

        def extend(handles: list[bytes], lease_ms: int) -> tuple[int, list[int]]:
            return self._redis.scripts.extend(handles=handles, lease_ms=lease_ms)

        for lease_ms, group in groups.items():
            handles = [lease.handle for lease in group]
            deadline_ms, lost_at = self._redis.call(partial(extend, handles, lease_ms), idempotent=True)
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

    @sharded
    def release_many(self, leases: Sequence[Lease]) -> None:
        """Release many leases in one call; raises `LeaseLost` naming those that no longer held."""
        if not leases:
            return
        handles = [lease.handle for lease in leases]
        lost_at, resent = self._redis.settle_call(lambda: self._redis.scripts.release(handles=handles))
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
        check_until(until)
        ms(lease_secs, "lease_secs")
        return Consumer(self, lease_secs, prefetch=prefetch, until=until, reconnect_secs=reconnect_secs)

    def keep_alive(self, lease: Lease) -> Heartbeat:
        """A context manager that extends `lease` in the background every third of its length."""
        return Heartbeat(self, [lease])

    def _lost(self, lost: Sequence[Lease], unconfirmed: bool) -> LeaseLost:
        return lost_error(self.name, lost, unconfirmed)

    # -- closing and purging --------------------------------------------------------------------

    @sharded
    def close(self) -> None:
        """Say no more items will come: later `put` calls raise `QueueClosed` (checked in the same script)."""
        self._redis.call(self._close, idempotent=True)

    def _close(self) -> None:
        # A count, not a flag: the roles' ACLs let them only count in meta (rediswq/acl.py), so no
        # role but admin can clear it; any value is "closed".
        client = self._redis.client
        if self._wait is None:
            client.hincrby(self.keys.meta, "closed", 1)
            return
        # WAIT counts the writes of its own connection: both go down one pipeline, to the owning node.
        with _topology.node_client(client, self.keys.meta).pipeline(transaction=False) as pipe:
            pipe.hincrby(self.keys.meta, "closed", 1)
            pipe.execute_command("WAIT", *self._wait)  # type: ignore[no-untyped-call]
            acked = int(pipe.execute()[1])
        check_replicated(self.name, self._wait, acked, "the close", 0)

    @sharded
    def reopen(self) -> None:
        """Undo `close`, e.g. for a queue a CronJob fills again each run; forgets the checkpoints too.

        One atomic operation (reopen.lua), an admin's: the worker and producer roles are refused it
        before anything is written, so a closed queue stays closed for them."""
        self._redis.call(lambda: self._redis.scripts.reopen(), idempotent=True)

    def install(self) -> str | None:
        """Load (or replace) rediswq's function library on this queue's Redis (every master of a
        cluster), after checking each one's maxmemory-policy (`EvictingRedis`, unless allow_eviction):
        the check worker and producer users may not make. Its version; None on Redis 6.2 (no
        functions: the scripts load on first use). As a user allowed FUNCTION LOAD: `rediswq install`."""
        return self._redis.install()

    @sharded
    def purge(self) -> None:
        """Delete every key of this queue (and nothing else): items, leases, dead letters, counters."""
        self._redis.call(lambda: self._redis.scripts.purge(), idempotent=True)

    # -- looking inside (rediswq/_inspect.py) ---------------------------------------------------

    def is_drained(self) -> bool:
        """True when nothing is pending, delayed or leased by anyone."""
        return self.stats().drained

    @sharded
    def stats(self) -> Stats:
        """Counts and lifetime counters, read in one script call so they agree with each other (on a
        sharded queue: one per shard, summed; `shard_stats` has each)."""
        return self._inspector.stats()

    def shard_count(self) -> int:
        """How many shards the queue has, as Redis records it (1 for a queue not made yet; made now
        when this queue was given `shards`); `InvalidArgument` when that differs from `shards`."""
        return 1 if self._shards is None else self._shards.count() or 1

    def shard_stats(self) -> list[Stats]:
        """Each shard's stats, shard 0 first ([`stats()`] for a queue of one shard)."""
        if self._shards is not None and self._shards.sharded():
            return self._shards.shard_stats()
        return [self.stats()]

    scan_nodes = staticmethod(_inspect.scan_nodes)
    scan_names = staticmethod(_inspect.scan_names)
    names = staticmethod(_inspect.names)

    def not_found(self, advice: str = "") -> QueueNotFound:
        """The error for this queue not existing: it names the existing queues closest to this name
        (a typo's likely target, see `similar_names`), then `advice`."""
        return self._inspector.not_found(advice)

    def similar_names(self, limit: int = 3) -> list[str]:
        """Names of other queues close to this one's, closest first, for "did you mean ...?".

        A bounded `names` walk; [] when it fails (a user whose ACL role refuses SCAN, a Redis
        error): a suggestion is a courtesy, never a reason for an error of its own.
        """
        return self._inspector.similar_names(limit)

    @sharded
    def peek(self, count: int = 10) -> list[Item]:
        """The first `count` pending items, without leasing them."""
        return self._inspector.peek(count)

    @sharded
    def holders(self, count: int = 100) -> list[LeaseInfo]:
        """Up to `count` live leases, the soonest deadline first, with the worker that holds each."""
        return self._inspector.holders(count)

    @sharded
    def dead_letters(self, count: int | None = None) -> list[DeadLetter]:
        """Dead letters (all of them, or up to `count`), oldest first."""
        return self._inspector.dead_letters(count)

    @sharded
    def requeue_dead(self, ids: Iterable[str] | None = None) -> int:
        """Put dead letters (all, or those with `ids`) back on the queue with fresh attempts.

        Quarantined entries (ids malformed:<sha1>) and records that do not decode stay: their bytes
        are no item to run; `purge_dead` deletes them.
        """
        return self._inspector.requeue_dead(ids)

    @sharded
    def purge_dead(self, ids: Iterable[str] | None = None) -> int:
        """Delete dead letters (all, or those with `ids`); returns how many were deleted."""
        return self._inspector.purge_dead(ids)
