"""The worker runtime behind `rediswq work`: lease in batches, run items in slots, settle, drain, stop.

Threads, and who does what:
  slot x N  run items (a handler call or a child process) taken from the buffer of leased items.
            A slot that finds the buffer empty leases the next batch itself, completing the items
            finished since the last call in the same script call: while the queue flows, one round
            trip per batch and no thread hand-off at all.
  keeper    ("rediswq-main") everything else: once a lease call finds nothing (the queue is empty
            for now, or drained), the slots wait and the keeper polls, backing off from 50 ms to
            0.5 s; it fails items, renews every lease held here in one `extend_many` call
            (`_renew`) a third of the way through the lease, completes finished items that
            would otherwise wait over a second, retries while Redis is unreachable, and runs the
            shutdown. It sleeps on one event queue that the slots and the signal handlers post to.
  main      the process's main thread: signal handlers run here. It only waits for the run to end,
            and after a signal ends it by --grace-secs + 3 s even if a Redis call hangs.
One Redis call at a time (`_redis` lock): a renewal then never races the completion of the same
lease, and the accounting after each call is done under the same lock. The hot path per item is a
deque pop, a set add and remove and a list append: no Redis call of its own and no thread of its own
(a failure is the exception: it wakes the keeper to call `fail`).

Every lease this worker holds is in exactly one place: the buffer (leased, not started), running,
done (finished, to be completed with the next call), failed (to be failed) or late (to be given
back); the renewals cover all five, so nothing held here can expire while it waits.

A buffered item is started only while its lease has time left on this worker's own clock: the time
the lease call was sent (or the last renewal that extended it) plus the lease length, less a margin
(`START_MARGIN_SECS`, at most a quarter of the lease). A worker that was frozen (SIGSTOP, a paused VM,
a stalled node) past that point gives the lease back instead of starting the item:
  time 0    worker A leases items 1-4 (lease 1 s) and starts item 1; A is frozen
  time 1    the leases of 2-4 expire; worker B takes them over and completes them
  time 3    A resumes: items 2-4 are past their start-by time, so A gives them back (the release
            finds them taken over and changes nothing) instead of running them a second time.

Exit decisions, as `Summary.exit_code` (the codes of rediswq_cli.kit):
  0  a lease call said the queue is drained (and closed, with until="closed") while this worker
     held nothing: the whole queue is done, not just this worker's share
  1  Redis stayed unreachable for `reconnect_secs`, or Redis answered with an error, or the queue's
     state vanished (QueueNotFound, vanished: its keys deleted, its counters gone)
  2  Redis refused the credentials, or no such queue exists with until="drained" (QueueNotFound)
  3  --max-items reached (unless the queue is drained by then), or SIGTERM/SIGINT: unstarted items
     are given back at once, running ones get `grace_secs` to finish, the rest are killed and given
     back (`release_many`: no attempt is charged)
  4  drained, but with `fail_on_dead` the queue holds dead letters (its count, read when it drained)
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue as stdqueue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any, Literal, TypeVar

import redis.exceptions

import rediswq
from rediswq import Lease
from rediswq_cli.kit import EXIT_DEAD, EXIT_ERROR, EXIT_OK, EXIT_STOPPED, EXIT_USAGE
from rediswq_worker.logs import LOGGER
from rediswq_worker.observer import Observer
from rediswq_worker.outage import Outage
from rediswq_worker.runners import OK, Outcome, Overlapping, Runner

T = TypeVar("T")
Until = Literal["drained", "closed"]

# An idle worker asks for work at most 20 times a second, backing off to twice a second (the same
# bounds the library's own blocking lease uses), and at once when one of its items finishes.
MIN_POLL_SECS = 0.05
MAX_POLL_SECS = 0.5
# Completions wait for the next lease call, but never longer than this (so `stats` stays current and
# a crash repeats little work).
FLUSH_SECS = 1.0
# Retries of a call while Redis is unreachable back off to this, or to a sixth of the lease if less:
# once Redis is back, the worker's next try (and so its next renewal) comes before its leases expire.
_MAX_RETRY_PAUSE_SECS = 5.0
# While items take from LOOKAHEAD_MIN_SECS to LOOKAHEAD_MAX_SECS (a child process, say), the next
# batch is leased as the last item of the current one starts, so the round trip to Redis is off the
# critical path: by the slot itself while its child runs (a runner that is `Overlapping`: no thread
# hand-off at all), else by the keeper. Quicker items gain nothing from it (the slot's own call is sooner
# than waking the keeper); longer ones are leased only when a slot is free, so no pod sits on an
# item another pod could start.
LOOKAHEAD_MIN_SECS = 0.0005
LOOKAHEAD_MAX_SECS = 0.1
# --prefetch auto (Options.prefetch None): while items take under AUTO_BATCH_SECS, a lease call brings
# about that much work, at most AUTO_BATCH_MAX items, so a quick command costs a fraction of a round
# trip; slower items, and the first ones (their time unknown), are leased one at a time, so no pod
# sits on items another pod could start. Item times are averaged, recent ones weighing most.
AUTO_BATCH_SECS = 0.05
AUTO_BATCH_MAX = 16
_AUTO_WEIGHT = 0.2
# After the first signal the process is gone within --grace-secs plus this, whatever Redis does.
HARD_STOP_SECS = 3.0
# A buffered item starts only if its lease has this much left (at most a quarter of the lease) on the
# worker's clock: time for the keeper's next renewal to land before the lease runs out.
START_MARGIN_SECS = 1.0
_SUPERVISE_SECS = 0.5

_WAKE = ("wake", 0)
_NEVER = (math.inf, 0)


@dataclass(frozen=True)
class Options:
    """How the runtime works; the CLI's options, validated there."""

    lease_secs: float = 30.0
    concurrency: int = 1
    prefetch: int | None = None  # None: auto (see AUTO_BATCH_SECS)
    until: Until = "drained"
    max_items: int | None = None
    grace_secs: float = 25.0
    reconnect_secs: float = 60.0
    fail_on_dead: bool = False  # drained with dead letters in the queue: exit 4, not 0
    install_signals: bool = True


@dataclass
class Summary:
    """What one run did, for the line printed at exit."""

    outcome: str = ""
    exit_code: int = EXIT_OK
    done: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0
    lost: int = 0
    unconfirmed: int = 0
    dead_letters: int | None = None  # the queue's dead letters when it drained (None: not read)
    elapsed_secs: float = 0.0
    error: str = ""

    @property
    def rate(self) -> float:
        """Items settled (done or failed) per second of the run."""
        return (self.done + self.failed) / self.elapsed_secs if self.elapsed_secs > 0 else 0.0

    def line(self, queue_name: str) -> str:
        parts = [
            f"{self.done} done",
            f"{self.failed} failed",
            f"{self.dead} dead-lettered",
            f"{self.released} given back",
            f"{self.lost} lost",
        ]
        if self.unconfirmed:
            parts.append(f"{self.unconfirmed} unconfirmed (sent as the connection broke)")
        line = (
            f"queue {queue_name!r} {self.outcome}: {', '.join(parts)} in {self.elapsed_secs:.2f} s "
            f"({self.rate:.1f} items/s)"
        )
        if self.dead_letters:
            line += f"; the queue holds {self.dead_letters} dead letters (rediswq dead list {queue_name})"
        return line

    def fields(self) -> dict[str, Any]:
        return {
            "event": "summary",
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "done": self.done,
            "failed": self.failed,
            "dead_lettered": self.dead,
            "given_back": self.released,
            "lost": self.lost,
            "unconfirmed": self.unconfirmed,
            "queue_dead_letters": self.dead_letters,
            "elapsed_secs": round(self.elapsed_secs, 3),
            "items_per_sec": round(self.rate, 1),
        }


class Fatal(Exception):
    """Redis stayed unreachable (or answered with an error): the run ends with exit code 1."""


class _Interrupted(Exception):
    """A signal arrived while a call was being retried: stop retrying, start shutting down."""


class Runtime:
    """Drains `queue` with `runner`; `run()` returns the Summary once it stops, never raising."""

    def __init__(
        self,
        queue: rediswq.Queue,
        runner: Runner,
        options: Options,
        log: logging.Logger | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.queue = queue
        self.observer = observer or Observer()
        self.runner = runner
        self.options = options
        self.log = log or logging.getLogger(LOGGER)
        self._verbose = self.log.isEnabledFor(logging.DEBUG)
        self._events: stdqueue.SimpleQueue[tuple[str, int]] = stdqueue.SimpleQueue()
        self._redis = threading.Lock()  # taken before _cv, never while holding it
        self._cv = threading.Condition(threading.Lock())
        # Guarded by _cv:
        self._buffer: deque[Lease] = deque()
        self._running: set[Lease] = set()
        self._done: list[Lease] = []
        self._done_since: float | None = None
        self._failed: list[tuple[Lease, Outcome]] = []
        self._late: list[Lease] = []  # buffered leases past their start-by time: to be given back
        # Buffered leases: (monotonic time to start by, the lease's deadline_ms that time was set for).
        self._start_by: dict[Lease, tuple[float, int]] = {}
        self._margin_secs = min(START_MARGIN_SECS, options.lease_secs / 4)
        self._max_pause_secs = min(_MAX_RETRY_PAUSE_SECS, max(0.1, options.lease_secs / 6))
        self._taken = 0  # leases taken, for --max-items
        self._leasing = False  # a lease call is under way
        self._starved = False  # the last lease call found nothing: the keeper polls
        self._drained = False  # ... and it said the queue is drained
        self._wanted = False  # a starved slot has woken the keeper already
        self._troubled = False  # a slot's call failed: only the keeper calls until one succeeds
        self._lookahead_pays = False  # the last item took LOOKAHEAD_MIN_SECS to LOOKAHEAD_MAX_SECS
        self._lookahead = False  # a slot asks the keeper to lease the next batch now
        self._item_secs: float | None = None  # how long items take, averaged (for --prefetch auto)
        self._stopping = False  # slots start nothing more
        self._exiting = False  # slots end
        # Guarded by _redis:
        self._held: set[Lease] = set()  # every lease held here: what each renewal extends
        self._summary = Summary()
        # Keeper only (the poll times are also reset by a slot whose call found nothing):
        self._beat_secs = options.lease_secs / 3
        self._next_beat = 0.0
        self._next_poll = 0.0
        self._poll_secs = MIN_POLL_SECS
        self._signals: list[str] = []
        self._give_up_at: float | None = None  # set once shutting down: calls are retried until then
        self._outage = Outage(self.log, options.reconnect_secs, self.observer)
        # Set by the signal handler, read by the process's main thread:
        self._signals_seen: list[int] = []
        self._signal_times: list[float] = []
        self._finished = threading.Event()
        self._returning = 0  # leases in a give-back call under way (for the hard stop's message)
        self._maybe_sent: set[Lease] = set()  # guarded by _redis: see _put_back

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> Summary:
        started = time.monotonic()
        self._next_beat = started + self._beat_secs
        restore = self._install_signals() if self.options.install_signals else {}
        for i in range(self.options.concurrency):
            threading.Thread(target=self._slot, name=f"rediswq-slot-{i}", daemon=True).start()
        threading.Thread(target=self._keep, name="rediswq-main", daemon=True).start()
        try:
            self._supervise()
        finally:
            with self._cv:
                self._stopping = self._exiting = True
                self._cv.notify_all()
            for signum, handler in restore.items():
                signal.signal(signum, handler)
        self._summary.elapsed_secs = time.monotonic() - started
        return self._summary

    # -- read by the metrics endpoint (worker.metrics), from its own thread ----------------------

    @property
    def summary(self) -> Summary:
        """The counts so far; the same object `run()` returns."""
        return self._summary

    def state(self) -> str:
        """leasing, waiting (nothing to lease for now), draining (nothing more to lease: finishing what
        it holds), stopping (a signal or an error) or stopped."""
        with self._cv:
            if self._finished.is_set():
                return "stopped"
            if self._stopping:
                return "stopping"
            if self._drained or self._limit_reached():
                return "draining"
            return "waiting" if self._starved else "leasing"

    def held(self) -> tuple[int, int]:
        """(items running, leases held: prefetched, running, finished or failed but not yet settled)."""
        with self._cv:
            return len(self._running), len(self._held)

    def _keep(self) -> None:
        """The keeper: everything but the items and the signals (see the module docstring)."""
        summary = self._summary
        try:
            summary.outcome, summary.exit_code = self._serve()
        except Fatal as e:
            summary.outcome, summary.exit_code, summary.error = "stopped on an error", EXIT_ERROR, str(e)
            self._abandon()
        except rediswq.QueueNotFound as e:
            # Never "drained": a typo'd name is a configuration error, a vanished queue a runtime one.
            summary.outcome, summary.exit_code, summary.error = (
                ("stopped: its state vanished", EXIT_ERROR, str(e))
                if e.vanished
                else (
                    "not found",
                    EXIT_USAGE,
                    f"no such queue {self.queue.name!r} (nothing was ever added to it); "
                    "use --until closed to wait for a producer",
                )
            )
            self._abandon()
        except (rediswq.AuthenticationFailed, rediswq.EvictingRedis) as e:  # configuration: exit 2
            summary.outcome, summary.exit_code, summary.error = "stopped", EXIT_USAGE, str(e)
            self._abandon()
        except BaseException as e:  # a bug: say so in one place, and still end the run
            self.log.exception("the worker runtime failed")
            summary.outcome, summary.exit_code, summary.error = "failed", EXIT_ERROR, repr(e)
            self._abandon()
        finally:
            self._finished.set()

    def _supervise(self) -> None:
        """Wait for the run to end; after a signal, end it by the deadline even if Redis hangs.

        The runtime's Redis calls can block for a long time when Redis stops answering (redis-py's
        socket timeout, times the library's own retries). So they run on the "rediswq-main" thread,
        and this one (the process's main thread, where signal handlers run) keeps the promise made to
        Kubernetes: gone within --grace-secs + HARD_STOP_SECS of the first SIGTERM, a second signal
        or not.
        """
        deadline: float | None = None
        seen = 0
        wait = _SUPERVISE_SECS
        while not self._finished.wait(wait):
            now = time.monotonic()
            if len(self._signal_times) > seen:
                if seen == 0:
                    deadline = self._signal_times[0] + self.options.grace_secs + HARD_STOP_SECS
                else:
                    deadline = min(deadline or now, now + HARD_STOP_SECS)
                seen = len(self._signal_times)
            if deadline is not None and now >= deadline:
                self._hard_stop()
                return
            wait = _SUPERVISE_SECS if deadline is None else min(_SUPERVISE_SECS, deadline - now)

    def _hard_stop(self) -> None:
        """Redis did not let the shutdown finish in time: kill what runs and leave the rest to expiry."""
        with self._cv:
            self._stopping = True
            running = list(self._running)
            self._running.clear()
            held = len(self._buffer) + len(self._done) + len(self._failed) + len(self._late) + self._returning
        self.runner.kill(running)
        self.log.warning(
            "Redis did not answer in time to give back %d leases: they come back when they expire",
            held + len(running),
        )
        summary = self._summary
        summary.outcome, summary.exit_code = f"stopped by {_signal_name(self._signals_seen[0])}", EXIT_STOPPED

    def _serve(self) -> tuple[str, int]:
        """The main loop: returns (outcome, exit code) once drained, stopped or interrupted."""
        limit = self.options.max_items
        while True:
            self._pump(self._next_wait())
            if self._signals:
                return self._shutdown()
            try:
                self._settle_failures()
                self._give_back_late()
                self._beat_if_due()
                with self._cv:
                    flush = self._done_since is not None and time.monotonic() - self._done_since >= FLUSH_SECS
                if flush:
                    self._flush()
                if limit is not None and self._limit_reached():
                    if self._idle():
                        return self._stop_at_limit(limit)
                    continue
                with self._cv:
                    drained = self._drained and self._idle_locked()
                if drained:
                    return self._drained_exit()
                with self._cv:
                    poll = self._should_poll_locked() and time.monotonic() >= self._next_poll
                    if self._lookahead:
                        self._lookahead = False
                        poll = poll or (self._may_lease_now_locked() and not self._buffer)
                    if poll:
                        self._leasing = True
                if poll:
                    self._lease(by_slot=False)
            except _Interrupted:
                return self._shutdown()

    def _limit_reached(self) -> bool:
        return self.options.max_items is not None and self._taken >= self.options.max_items

    def _idle(self) -> bool:
        with self._cv:
            return self._idle_locked()

    def _idle_locked(self) -> bool:
        return not (
            self._buffer or self._running or self._done or self._failed or self._late or self._leasing
        )

    def _should_poll_locked(self) -> bool:
        return (
            self._starved
            and not self._leasing
            and not self._buffer
            and len(self._running) < self.options.concurrency
            and not self._limit_reached()
        )

    def _next_wait(self) -> float:
        now = time.monotonic()
        # The beat is always on the clock: a slot may lease while this thread sleeps, and its new
        # leases must be renewed in time without waking anyone.
        waits = [1.0, self._next_beat - now]
        with self._cv:
            if self._should_poll_locked():
                waits.append(self._next_poll - now)
            if self._done_since is not None:
                waits.append(self._done_since + FLUSH_SECS - now)
        return max(0.0, min(waits))

    def _pump(self, timeout: float) -> None:
        """Wait up to `timeout` for an event, then take every event that is there."""
        try:
            event = self._events.get(timeout=timeout) if timeout > 0 else self._events.get_nowait()
            while True:
                kind, signum = event
                if kind == "signal":
                    self._signals.append(_signal_name(signum))
                event = self._events.get_nowait()
        except stdqueue.Empty:
            pass

    # -- the slots -------------------------------------------------------------------------------

    def _slot(self) -> None:
        runner, cv, verbose, buffer, running = (
            self.runner,
            self._cv,
            self._verbose,
            self._buffer,
            self._running,
        )
        overlapped = runner.run_overlapped if isinstance(runner, Overlapping) else None
        lease: Lease | None = None
        outcome = OK
        took = 0.0
        ahead = False  # this slot leases the next batch itself while its item runs
        while True:
            with cv:  # one lock round per item: settle the last one, take the next
                if lease is not None:
                    self._finished_locked(lease, outcome, took)
                    lease = None
                while True:
                    if self._exiting:
                        return
                    if not self._stopping:
                        if buffer:
                            lease = buffer.popleft()
                            if time.monotonic() > self._start_by.pop(lease, _NEVER)[0]:
                                self._late_locked(lease)
                                lease = None
                                continue
                            running.add(lease)
                            if not buffer and self._lookahead_pays and self._may_lease_now_locked():
                                if overlapped is not None:
                                    ahead = self._leasing = True
                                else:
                                    self._lookahead = True
                                    self._events.put(_WAKE)
                            break
                        if self._slot_may_lease_locked():
                            self._leasing = True
                            break
                        if self._starved and not self._wanted:
                            self._wanted = True
                            self._events.put(_WAKE)
                    cv.wait()
            if lease is None:
                self._lease(by_slot=True)
                continue
            if verbose:
                self.log.debug("item %s attempt %d started", lease.id, lease.attempt, extra=_item(lease))
            began = time.monotonic()
            if ahead:
                ahead = False
                assert overlapped is not None
                meanwhile = _Once(self._lease_by_slot)
                try:
                    outcome = overlapped(lease, meanwhile)
                finally:
                    meanwhile()  # the item could not start: the call is made all the same
            else:
                outcome = runner.run(lease)
            took = time.monotonic() - began
            if verbose and outcome.ok:
                self.log.debug("item %s done", lease.id, extra=_item(lease))

    def _lease_by_slot(self) -> None:
        self._lease(by_slot=True)

    def _finished_locked(self, lease: Lease, outcome: Outcome, took: float) -> None:
        """File a finished item as done or failed (under _cv)."""
        self.observer.item_finished(took)
        self._lookahead_pays = LOOKAHEAD_MIN_SECS <= took < LOOKAHEAD_MAX_SECS
        average = self._item_secs
        self._item_secs = took if average is None else average + _AUTO_WEIGHT * (took - average)
        if lease not in self._running:
            return  # given back when the grace period ended
        self._running.discard(lease)
        if outcome.ok:
            self._done.append(lease)
            if self._done_since is None:
                self._done_since = time.monotonic()
            if self._stopping or self._limit_reached():
                self._events.put(_WAKE)  # the keeper settles and ends the run
        else:
            self._failed.append((lease, outcome))
            self._events.put(_WAKE)

    def _batch_locked(self) -> int:
        """Items per lease call: --prefetch N, or with auto about AUTO_BATCH_SECS of work."""
        if self.options.prefetch is not None:
            return self.options.prefetch
        average = self._item_secs
        if average is None or average >= AUTO_BATCH_SECS:
            return 1
        return min(AUTO_BATCH_MAX, int(AUTO_BATCH_SECS / max(average, 1e-6)))

    def _slot_may_lease_locked(self) -> bool:
        # While starved the keeper polls; a slot still calls at once to complete what it just
        # finished (and to take the next item if one came).
        return (
            not self._leasing
            and not self._troubled
            and (not self._starved or bool(self._done))
            and not self._limit_reached()
        )

    def _may_lease_now_locked(self) -> bool:
        """The queue flows: a lease call now would likely bring items (for the look-ahead)."""
        return not (
            self._leasing or self._starved or self._troubled or self._stopping or self._limit_reached()
        )

    # -- talking to Redis ------------------------------------------------------------------------

    def _lease(self, *, by_slot: bool) -> None:
        """Complete what is done and lease the next batch (the caller has set `_leasing`).

        A slot tries once: on an error it leaves the retrying, and its reporting, to the keeper.
        """
        try:
            if by_slot:
                began = time.monotonic()
                try:
                    with self._redis:
                        self._lease_once(1)
                    self._outage.answered()
                except Exception as e:
                    if _unreachable(e):
                        self._outage.failed(e, began)
                    else:
                        self.log.debug("lease call failed: %s", e)
                    with self._cv:  # the keeper retries (and reports) until a call succeeds
                        self._starved = self._troubled = True
                        self._next_poll = time.monotonic()
            else:
                self._call(self._lease_once)
        finally:
            with self._cv:
                self._leasing = False
                self._cv.notify_all()

    def _lease_once(self, attempt: int) -> None:
        with self._cv:
            if self._stopping:
                return
            settle, self._done, self._done_since = self._done, [], None
            count = max(self._batch_locked(), self.options.concurrency - len(self._running))
            if self.options.max_items is not None:
                count = min(count, self.options.max_items - self._taken)
        if count < 1:
            self._put_back(settle, sent=False)
            return
        drained = False
        sent_at = time.monotonic()  # the leases' deadlines are later than this plus their length
        try:
            handoff = self.queue.complete_and_lease(
                settle, count, self.options.lease_secs, timeout=0, until=self.options.until
            )
            leases, lost = handoff.leases, handoff.lost
            drained = not leases
        except rediswq.LeaseTimeout:
            leases, lost = [], []
        except rediswq.LeaseLost as e:
            leases, lost = [], e.leases
        except BaseException:
            self._put_back(settle, sent=True)
            raise
        self._settled(settle, lost)
        self._held.update(leases)
        with self._cv:
            for lease in leases:
                self._start_by[lease] = (
                    sent_at + lease.lease_ms / 1000 - self._margin_secs,
                    lease.deadline_ms,
                )
            self._buffer.extend(leases)
            self._taken += len(leases)
            self._starved = not leases
            self._drained = drained
            self._troubled = False
            if leases:
                self._wanted = False
                self._poll_secs = MIN_POLL_SECS
            else:
                self._next_poll = time.monotonic() + self._poll_secs
                self._poll_secs = min(self._poll_secs * 2, MAX_POLL_SECS)

    def _put_back(self, settle: list[Lease], *, sent: bool) -> None:
        """Finished items whose completion did not go through: the next call completes them.

        `sent`: the call failed on the way, so Redis may have applied it and only the reply was lost;
        if the next call then finds these leases gone, that is why (see `_settled`).
        """
        if not settle:
            return
        if sent:
            self._maybe_sent.update(settle)
        with self._cv:
            self._done[:0] = settle
            if self._done_since is None:
                self._done_since = time.monotonic()

    def _settled(self, settle: list[Lease], lost: list[Lease]) -> None:
        """Account for completions sent (under `_redis`): `lost` ones were no longer held."""
        self._held.difference_update(settle)
        unconfirmed = 0
        for lease in lost:
            if lease in self._maybe_sent:
                unconfirmed += 1  # completed by the call whose reply was lost, or expired meanwhile
            else:
                self._lost_lease(lease, "was finished")
        if unconfirmed:
            self._summary.unconfirmed += unconfirmed
            self.log.warning(
                "%d completions were sent as the connection broke: they were completed then, or their "
                "leases expired meanwhile and the items will be done again",
                unconfirmed,
            )
        if self._maybe_sent:
            self._maybe_sent.difference_update(settle)
        self._summary.done += len(settle) - len(lost)

    def _flush(self) -> None:
        """Complete the finished items now, without leasing (the slots are busy, or we are stopping)."""
        with self._cv:
            if not self._done:
                return
        self._call(self._flush_once)

    def _flush_once(self, attempt: int) -> None:
        with self._cv:
            settle, self._done, self._done_since = self._done, [], None
        if not settle:
            return
        lost: list[Lease] = []
        try:
            self.queue.complete_many(settle)
        except rediswq.LeaseLost as e:
            lost = e.leases
        except BaseException:
            self._put_back(settle, sent=True)
            raise
        self._settled(settle, lost)

    def _settle_failures(self) -> None:
        with self._cv:
            if not self._failed:
                return
        self._call(self._settle_failures_once)

    def _settle_failures_once(self, attempt: int) -> None:
        with self._cv:
            failed, self._failed = self._failed, []
            self._next_poll = 0.0  # a settled item may be what a starved worker waits for
        for i, (lease, outcome) in enumerate(failed):
            try:
                dead = self.queue.fail(lease, outcome.error, retry=outcome.retry)
            except rediswq.LeaseLost:
                if lease in self._maybe_sent:
                    self._summary.unconfirmed += 1  # failed by the call whose reply was lost, or expired
                else:
                    self._lost_lease(lease, f"failed ({_first_line(outcome.error)})")
            except BaseException:
                self._maybe_sent.add(lease)
                with self._cv:
                    self._failed[:0] = failed[i:]
                raise
            else:
                self._summary.failed += 1
                self._summary.dead += bool(dead)
                then = (
                    "dead-lettered"
                    if dead
                    else f"retrying after a backoff (attempt {lease.attempt} of {self.queue.max_attempts})"
                )
                self.log.warning(
                    "item %s failed: %s; %s",
                    lease.id,
                    outcome.error,
                    then,
                    extra=_item(lease, error=outcome.error, dead_lettered=bool(dead)),
                )
            self._held.discard(lease)
            self._maybe_sent.discard(lease)

    def _give_back(self, leases: list[Lease], what: str) -> None:
        """Release leases without charging their attempt; never raises (the leases expire otherwise)."""
        if not leases:
            return

        def release(attempt: int) -> None:
            lost: list[Lease] = []
            try:
                self.queue.release_many(leases)
            except rediswq.LeaseLost as e:
                # After a retry, "lost" may mean released by the attempt whose reply was lost.
                lost = [] if attempt > 1 else e.leases
            self._summary.released += len(leases) - len(lost)
            self._summary.lost += len(lost)
            self.log.info("gave back %d %s items", len(leases) - len(lost), what)

        self._returning = len(leases)
        try:
            self._call(release, give_up_at=self._give_up_at)
        except (Fatal, _Interrupted, rediswq.RedisWQError) as e:
            self.log.warning(
                "could not give back %d leases (%s): they come back when they expire", len(leases), e
            )
        finally:
            self._held.difference_update(leases)  # given back or not, they are not renewed again
            self._returning = 0

    def _beat_if_due(self) -> None:
        now = time.monotonic()
        if now < self._next_beat:
            return
        self._next_beat = now + self._beat_secs
        try:
            with self._redis_turn():
                self._renew(now)
        except redis.exceptions.RedisError as e:  # passed through unwrapped by the library
            self.observer.redis_error()
            raise Fatal(f"Redis error: {e}") from e

    def _renew(self, began: float) -> None:
        """Extend every lease held here in one call (under `_redis`); a failed call is retried next beat.

        As `rediswq.Heartbeat.beat` does, but a connection failure counts towards the one report of
        an outage (`Outage`) instead of a line of its own, and an extended lease that waits in the
        buffer gets a new start-by time.
        """
        leases = list(self._held)
        if not leases:
            return
        try:
            self.queue.extend_many(leases)
        except rediswq.LeaseLost as e:
            for lease in e.leases:
                self._held.discard(lease)
                self._on_lost(lease)
        except rediswq.RedisWQError as e:
            if _unreachable(e):
                self._outage.failed(e, began)
            else:
                self.log.warning("could not renew leases: %s", e)
            return  # the next beat retries: a lease survives two missed beats
        self._outage.answered()
        with self._cv:
            for lease in self._buffer:
                start_by = self._start_by.get(lease)
                if start_by is not None and start_by[1] != lease.deadline_ms:
                    self._start_by[lease] = (
                        began + lease.lease_ms / 1000 - self._margin_secs,
                        lease.deadline_ms,
                    )

    @contextmanager
    def _redis_turn(self) -> Iterator[None]:
        """Hold the Redis lock; once shutting down, wait for it only until the deadline.

        Without this, a Redis that stopped answering (a partition: no reset, no reply) would hold a
        slot's call, and with it the lock, past the grace period the pod is given.
        """
        deadline = self._give_up_at
        if deadline is None:
            with self._redis:
                yield
            return
        if not self._redis.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise Fatal("Redis does not answer a call under way")
        try:
            yield
        finally:
            self._redis.release()

    def _on_lost(self, lease: Lease) -> None:
        """A renewal found a lease gone (this worker stalled past its deadline): don't start it."""
        self.log.warning(
            "lease of item %s was lost before its work ended", lease.id, extra=_item(lease, lost=True)
        )
        with self._cv:
            try:
                self._buffer.remove(lease)
            except ValueError:
                return  # running or finished: its settle call reports it
            self._start_by.pop(lease, None)
        self._summary.lost += 1

    def _late_locked(self, lease: Lease) -> None:
        """A buffered lease is past its start-by time (under _cv): give it back, don't start it late."""
        self._late.append(lease)
        self._events.put(_WAKE)

    def _give_back_late(self) -> None:
        with self._cv:
            late, self._late = self._late, []
        if late:
            self.log.warning(
                "%d leased items were not started: their leases ran out while this worker was held up "
                "(frozen, or Redis unreachable); giving them back",
                len(late),
            )
            self._give_back(late, "late")

    def _lost_lease(self, lease: Lease, what: str) -> None:
        self._summary.lost += 1
        self.log.warning(
            "item %s %s after its lease expired and was taken over; the new holder's work counts",
            lease.id,
            what,
            extra=_item(lease, lost=True),
        )

    def _call(self, op: Callable[[int], T], give_up_at: float | None = None) -> T:
        """Run `op(attempt)` under the Redis lock, retrying while Redis is unreachable.

        Retries go on for up to `reconnect_secs` (or until `give_up_at`). They are safe for every
        call the runtime makes, idempotent or not: each names its leases by handle, so a retried
        completion that went through the first time reports that lease as no longer held and changes
        nothing.
        """
        if give_up_at is None:
            give_up_at = self._give_up_at
        attempt = 0
        pause = 0.1
        while True:
            attempt += 1
            began = time.monotonic()
            if attempt == 1:
                self._give_up_if_late(give_up_at, began)
            try:
                with self._redis_turn():
                    result = op(attempt)
                self._outage.answered()
                return result
            except (rediswq.AuthenticationFailed, rediswq.EvictingRedis, rediswq.QueueNotFound):
                raise
            except rediswq.ConnectionFailed as e:
                self._outage.failed(e, began)
                self._give_up_if_late(give_up_at, time.monotonic())
                signals = len(self._signals)
                self._pump(pause)
                if len(self._signals) > signals:
                    raise _Interrupted() from e
                pause = min(pause * 2, self._max_pause_secs)
            except rediswq.RedisWQError as e:
                # Redis answered with an error (OOM, a key of the wrong type):
                # retrying will not help.
                self.observer.redis_error()
                raise Fatal(str(e)) from e
            except redis.exceptions.RedisError as e:  # the same, from a library that passes it through
                self.observer.redis_error()
                raise Fatal(f"Redis error: {e}") from e

    def _give_up_if_late(self, give_up_at: float | None, now: float) -> None:
        """Raise Fatal once Redis has been unreachable for `reconnect_secs` (or past `give_up_at`)."""
        since, error = self._outage.since, self._outage.error
        if since is None:
            return
        if now >= since + self.options.reconnect_secs or (give_up_at is not None and now >= give_up_at):
            raise Fatal(f"{error} (gave up after {now - since:.1f} s)")

    # -- stopping --------------------------------------------------------------------------------

    def _stop_at_limit(self, limit: int) -> tuple[str, int]:
        self._flush()
        self._settle_failures()
        stats = self._call(lambda _attempt: self.queue.stats())
        if stats.drained and (self.options.until == "drained" or stats.closed):
            return self._drained_exit(stats)
        return f"stopped after --max-items {limit}", EXIT_STOPPED

    def _drained_exit(self, stats: rediswq.Stats | None = None) -> tuple[str, int]:
        """The queue is done: exit 0, or with `fail_on_dead` exit 4 if it holds dead letters.

        The queue's count, not this run's: a Job is done only when no item of it ended as a dead
        letter, whichever pod dead-lettered it.
        """
        if stats is None:
            try:
                stats = self._call(lambda _attempt: self.queue.stats())
            except Fatal:
                if self.options.fail_on_dead:
                    raise
                return "drained", EXIT_OK  # the count is for the summary line only
        self._summary.dead_letters = stats.dead
        if stats.dead and self.options.fail_on_dead:
            return f"drained with {stats.dead} dead letters (--fail-on-dead)", EXIT_DEAD
        return "drained", EXIT_OK

    def _shutdown(self) -> tuple[str, int]:
        """Stop leasing, give back what has not started, let running items finish within the grace."""
        why = self._signals[0]
        self._give_up_at = time.monotonic() + self.options.grace_secs
        # Taking the Redis lock first lets a slot's lease call under way add its leases to the buffer
        # (if Redis does not answer it, those leases are not ours to give back: they will expire).
        with contextlib.suppress(Fatal), self._redis_turn(), self._cv:
            self._stopping = True  # any lease call after this one sees it, and leases nothing
        with self._cv:
            self._stopping = True  # (again, in case the Redis lock could not be had)
            unstarted = [*self._buffer, *self._late]
            self._buffer.clear()
            self._late.clear()
            self._start_by.clear()
            running = len(self._running)
            self._cv.notify_all()
        self.log.info(
            "%s: stopping; %d running items get up to %g s to finish",
            why,
            running,
            self.options.grace_secs,
            extra={"fields": {"event": "stopping", "signal": why}},
        )
        self._give_back(unstarted, "unstarted")
        self._settle_quietly()
        seen = len(self._signals)
        while True:
            with self._cv:
                running = len(self._running)
            now = time.monotonic()
            if running == 0 or now >= self._give_up_at:
                break
            self._pump(min(self._give_up_at - now, max(0.0, self._next_beat - now), 1.0))
            if len(self._signals) > seen:
                seen = len(self._signals)
                self.log.warning("second %s: ending the grace period now", self._signals[-1])
                self._give_up_at = time.monotonic()
            self._settle_quietly()
            self._beat_if_due()
        with self._cv:
            leftover = list(self._running)
            self._running.clear()
        if leftover:
            self.log.warning("grace period over: stopping %d running items", len(leftover))
            self.runner.kill(leftover)
            self._give_up_at = time.monotonic() + HARD_STOP_SECS / 2
            self._give_back(leftover, "unfinished")
        self._settle_quietly()
        return f"stopped by {why}", EXIT_STOPPED

    def _settle_quietly(self) -> None:
        """Settle what finished during shutdown; an unreachable Redis only means leases expire."""
        try:
            self._settle_failures()
            self._flush()
        except (Fatal, _Interrupted, rediswq.RedisWQError) as e:
            self.log.warning("could not settle finished items (%s): their leases will expire", e)

    def _abandon(self) -> None:
        """After a fatal error: stop the children of running items (their leases will expire)."""
        with self._cv:
            self._stopping = True
            running = list(self._running)
            self._running.clear()
            self._buffer.clear()
            self._late.clear()
        self.runner.kill(running)

    # -- signals ---------------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        restore: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            restore[signum] = signal.signal(signum, self._on_signal)
        return restore

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals_seen.append(signum)
        self._signal_times.append(time.monotonic())
        self._events.put(("signal", signum))  # SimpleQueue.put is safe in a signal handler


class _Once:
    """Calls `fn` on the first call only."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _unreachable(error: BaseException) -> bool:
    """Redis could not be reached (worth retrying), as opposed to refusing the credentials."""
    return isinstance(error, rediswq.ConnectionFailed) and not isinstance(error, rediswq.AuthenticationFailed)


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def _item(lease: Lease, **more: Any) -> dict[str, Any]:
    return {"fields": {"item": lease.id, "attempt": lease.attempt, **more}}


__all__ = ["Fatal", "Options", "Runtime", "Summary"]
