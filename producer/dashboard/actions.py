"""The dashboard's actions (requeue and purge dead letters, close, reopen) and who may run them.

Off unless the dashboard was started with --allow-actions. Then an action is a POST only, and runs
only when the request carries both:
  - the token (printed at start-up, or $REDISWQ_DASHBOARD_TOKEN), which the page asks for once per
    tab: it authorises the person;
  - the page's CSRF value (a meta tag in the page, new each start) in a header, and an Origin (when
    the browser sends one) naming this server: a form on another site can set neither header, and
    a script on another site may not send them (no CORS is ever allowed), so it cannot act through a
    person's browser.
Every action and every refusal is logged: what, which queue, from which address; never the token.
"""

from __future__ import annotations

import hmac
import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import rediswq

TOKEN_HEADER = "X-Rediswq-Token"
CSRF_HEADER = "X-Rediswq-Csrf"
ACTIONS = ("requeue", "purge", "close", "reopen")
MAX_BODY_BYTES = 64 * 1024
MIN_TOKEN_CHARS = 16


class Refused(Exception):
    """An action refused, with the HTTP status and a reason safe to show and log."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Guard:
    """Checks an action request; `token` None: actions are off."""

    token: str | None
    csrf: str = ""

    def __post_init__(self) -> None:
        self.csrf = self.csrf or secrets.token_urlsafe(32)

    @property
    def enabled(self) -> bool:
        return self.token is not None

    def check(self, headers: Mapping[str, str]) -> None:
        """Raise `Refused` unless the request may act; the checks that need no secret come first."""
        if self.token is None:
            raise Refused(403, "actions are off (start the dashboard with --allow-actions)")
        origin, host = headers.get("Origin"), headers.get("Host", "")
        if origin is not None and origin not in (f"http://{host}", f"https://{host}"):
            raise Refused(403, "cross-origin request refused")
        if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise Refused(403, "cross-site request refused")
        if not _same(headers.get(CSRF_HEADER, ""), self.csrf):
            raise Refused(403, "missing or stale page token (reload the page)")
        if not _same(headers.get(TOKEN_HEADER, ""), self.token):
            raise Refused(403, "missing or wrong action token")
        if headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise Refused(415, "send the action as application/json")


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Action:
    """One action asked for: what, on which queue, and for dead letters which ids (None: all)."""

    verb: str
    queue: str
    ids: list[str] | None = None

    @classmethod
    def parse(cls, body: bytes) -> Action:
        data = _json_object(body)
        verb, queue = data.get("action"), data.get("queue")
        if verb not in ACTIONS:
            raise Refused(400, f"unknown action; one of {', '.join(ACTIONS)}")
        if not isinstance(queue, str) or not queue:
            raise Refused(400, "name the queue")
        return cls(verb, queue, _ids(verb, data.get("ids")))

    def describe(self) -> str:
        """For the log: never a payload, never a secret (ids are the caller's, shown quoted)."""
        shown = "all" if self.ids is None else ",".join(repr(i) for i in self.ids[:10])
        more = f" (+{len(self.ids) - 10})" if self.ids is not None and len(self.ids) > 10 else ""
        ids = f" ids={shown}{more}" if self.verb in ("requeue", "purge") else ""
        return f"{self.verb} queue={self.queue!r}{ids}"

    def run(self, q: rediswq.Queue) -> str:
        """Do it; a sentence saying what was done."""
        if self.verb == "requeue":
            return f"{q.requeue_dead(self.ids)} dead letter(s) put back on the queue"
        if self.verb == "purge":
            return f"{q.purge_dead(self.ids)} dead letter(s) deleted"
        if self.verb == "close":
            q.close()
            return "queue closed"
        q.reopen()
        return "queue reopened"


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise Refused(400, "the body is not a JSON object")
    return data


def _ids(verb: str, ids: Any) -> list[str] | None:
    """The dead letters' ids an action names (None: all of them), checked."""
    if ids is None:
        return None
    if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
        raise Refused(400, "ids must be a list of strings")
    if verb not in ("requeue", "purge"):
        raise Refused(400, f"{verb} takes no ids")
    return ids


def perform(
    action: Action, queue: Callable[[str], rediswq.Queue], known: Callable[[str], bool]
) -> dict[str, Any]:
    """Run `action` on a queue the dashboard shows (no other: a typo must not make a queue)."""
    if not known(action.queue):
        raise Refused(404, "no such queue on the dashboard")
    return {"ok": True, "message": action.run(queue(action.queue))}
