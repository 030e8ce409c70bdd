"""The boundary with redis-py: `Connection`, which runs every call.

How a call is retried is rediswq/_retry.py's; how redis-py's errors read, rediswq/_redis_errors.py's;
what a failure really was when redis-py hides it, the client's topology's (rediswq/_topology/). URLs
and their redaction are rediswq/_url.py's: every text a call's error shows goes through its
`Redactor`, so a password can reach neither a message nor a log line.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import redis.exceptions

from rediswq import _topology
from rediswq._redis_errors import REDIS_ERRORS, translate
from rediswq._retry import RetryPolicy
from rediswq._url import Redactor

T = TypeVar("T")


class Connection:
    """Runs calls against Redis, turning redis-py's errors into rediswq's (_redis_errors.py), redacted.

    Idempotent calls are retried as rediswq/_retry.py says: `retries` times, pausing 0.2 s doubling to
    2 s; the others run once, because a retry after a lost reply could apply them twice. Refused
    credentials, permissions and certificates are never retried: waiting cannot fix them.

    `client`, the client the calls use, if given: the passwords it holds are hidden too, and when its
    sentinels name no master they are asked why (redis-py keeps only the type of their errors).
    `hidden`: other secrets never to show (those of a client not made yet).
    """

    def __init__(
        self,
        url: str,
        retries: int = 5,
        keys: str = "",
        client: _topology.Client | None = None,
        hidden: Iterable[str] = (),
    ) -> None:
        self.keys = keys  # which keys the calls touch, in words, for a refusal by the ACL
        # No window: the count bounds a call's retries (about 5 s for 5); callers that wait out an
        # outage (consume, the worker) retry on top of this with a window of their own.
        self._policy = RetryPolicy(math.inf, first_pause_secs=0.2, max_pause_secs=2.0, max_retries=retries)
        self._given = url
        self._hidden = list(hidden)
        self.adopt(client)

    def adopt(self, client: _topology.Client | None, url: str | None = None) -> None:
        """Calls go through `client` from now on (a Queue makes a cluster's client in its first call):
        hide its passwords too, and name it by `url` if given."""
        self._given = url or self._given
        self._topology = _topology.of(client) if client is not None else None
        held = self._topology.secrets() if self._topology is not None else []
        self._redactor = Redactor(self._given, [*self._hidden, *held])
        self.url = self._redactor.url

    def call(self, fn: Callable[[], T], *, idempotent: bool) -> T:
        """`fn()`, retried if `idempotent` while the policy says so; errors as rediswq's."""
        retries = 0
        while True:
            try:
                return self._explained(fn)
            except REDIS_ERRORS as e:
                error = self.wrap(e)
                wait = self._wait(error, retries) if idempotent else None
                if wait is None:
                    raise error from e
            retries += 1
            time.sleep(wait)

    def _wait(self, error: Exception, retries: int) -> float | None:
        """How long to wait before trying an idempotent call again after `error`; None: raise it."""
        if not self._policy.retryable(error):
            return None
        now = time.monotonic()
        return self._policy.wait_secs(retries, now, now)

    def _explained(self, fn: Callable[[], T]) -> T:
        """`fn()`; a connection error whose cause redis-py hides is asked about again, by the client's
        topology (`Topology.diagnose`: why the sentinels named no master, whether a TLS server wants
        a client certificate), and raised as what it really was."""
        try:
            return fn()
        except redis.exceptions.ConnectionError as e:
            topology = self._topology
            better = topology.diagnose(e, self.url, self._redactor.text) if topology is not None else None
            if better is None:
                raise
            raise better from e

    def wrap(self, e: BaseException) -> Exception:
        """redis-py's error `e` as rediswq's, its text redacted."""
        return translate(e, self.url, self._redactor.text, self.keys)
