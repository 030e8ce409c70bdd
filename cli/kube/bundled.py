"""Would the bundled Redis let a submitted worker Job reach its queue? Asked before the Job exists.

`rediswq job submit` builds from k8s/base/worker-job.yaml, whose pods log in to the bundled Redis
(k8s/base) as the user in the template's REDISWQ_URL, `rediswq-worker`. That Redis's users are the
ones in k8s/base/redis-config.yaml, packaged beside the template, and their key patterns cover the
queue named in k8s/base/queue.yaml only. A Job for another queue would start its pods, and every one
would fail on its first call (NOPERM): the same packaged files say so here, before anything is created.

A Job whose URL the caller chose (--url-from-secret, or -e REDISWQ_URL=...) targets some other Redis,
or the bundled one on purpose, and is not checked.
"""

from __future__ import annotations

import importlib.resources
import re
import urllib.parse
from typing import Any

import yaml

import rediswq
from rediswq.acl import acl_rules
from rediswq_cli.kube.manifest import URL_VARIABLE, WorkerJob

CONFIG = "base/redis-config.yaml"
CONFIG_MAP = "rediswq-redis-config"
# The queue's name: the users' rules are a template with PLACEHOLDER for it (k8s/tools/generate-users).
QUEUE_FILE, QUEUE_MAP, PLACEHOLDER = "base/queue.yaml", "rediswq-queue", "QUEUE_NAME"


def refusal(request: WorkerJob, manifest: dict[str, Any]) -> str | None:
    """Why the bundled Redis would refuse the Job `manifest` (built from `request`) its queue, or None."""
    if _url_given(request):
        return None
    user = _user(manifest)
    patterns = _key_patterns(user) if user else None
    if not user or not patterns:
        return None  # not a user of the bundled ACL: nothing to check it against
    if _covered(request.queue, patterns):
        return None
    return (
        f"the bundled Redis's ACL refuses user {user} the keys of queue {request.queue!r} (it allows "
        f"{' '.join('~' + p for p in patterns)}): name the queue in k8s/base/queue.yaml or in an "
        'overlay and apply it, its users follow (k8s/README.md, "The queue\'s name"); if the Redis '
        f"you applied names it already, give its URL: -e '{URL_VARIABLE}={_url(manifest)}'"
    )


def _url_given(request: WorkerJob) -> bool:
    """The Job names its Redis itself (a Secret or -e REDISWQ_URL): not the template's bundled one."""
    return request.url_secret is not None or any(name == URL_VARIABLE for name, _ in request.env)


def _covered(queue: str, patterns: list[str]) -> bool:
    """Each key pattern `rediswq acl` gives for `queue` is one of `patterns`, or within one.

    A name the library refuses counts as covered: `rediswq work` refuses it itself, with its own message.
    """
    try:
        needed = _patterns(acl_rules(queue, "worker"))
    except rediswq.InvalidArgument:
        return True
    return all(any(p == n or _glob_matches(p, n) for p in patterns) for n in needed)


def _url(manifest: dict[str, Any]) -> str:
    """The worker container's REDISWQ_URL as the template writes it (a `$(VAR)` in place of the password)."""
    for container in manifest["spec"]["template"]["spec"]["containers"]:
        for entry in container.get("env") or []:
            if entry.get("name") == URL_VARIABLE and "value" in entry:
                return str(entry["value"])
    return ""


def _user(manifest: dict[str, Any]) -> str | None:
    """The Redis user in the Job's REDISWQ_URL."""
    try:
        return urllib.parse.urlsplit(_url(manifest)).username or None
    except ValueError:
        return None


def _key_patterns(user: str) -> list[str]:
    """The key patterns (`~PATTERN`, without the `~`) of `user` in the packaged bundled-Redis ACL: its
    template's QUEUE_NAME is the queue the packaged base names (the Redis container fills it in)."""
    config = _document(CONFIG, CONFIG_MAP)
    queue = str(_document(QUEUE_FILE, QUEUE_MAP).get("name") or "")
    return _patterns(str(config.get(f"{user}.acl") or "").replace(PLACEHOLDER, queue).split())


def _document(path: str, name: str) -> dict[str, Any]:
    """The `data` of ConfigMap `name` in the packaged manifest file `path`."""
    manifests = importlib.resources.files("rediswq_cli.kube.manifests")
    documents = [d for d in yaml.safe_load_all(manifests.joinpath(path).read_text(encoding="utf-8")) if d]
    return next(
        (
            d.get("data") or {}
            for d in documents
            if isinstance(d, dict) and d.get("metadata", {}).get("name") == name
        ),
        {},
    )


def _patterns(rules: list[str]) -> list[str]:
    """The key patterns among ACL rules: `~P`, and the read/write forms `%R~P`, `%W~P`, `%RW~P`."""
    return [rule.split("~", 1)[1] for rule in rules if rule.startswith(("~", "%")) and "~" in rule]


def _glob_matches(pattern: str, key: str) -> bool:
    """Redis's glob (`*`, `?`, `[...]`, `\\` escapes) matching `key`, as ACL key patterns do."""
    regex, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            regex.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        end = pattern.find("]", i + 1) if c == "[" else -1
        if end != -1:
            body = pattern[i + 1 : end]
            negated = body.startswith("^")
            chars = re.sub(r"([\\\]\[^])", r"\\\1", body[1:] if negated else body)
            regex.append(f"[{'^' if negated else ''}{chars}]")
            i = end + 1
            continue
        regex.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.fullmatch("".join(regex), key, re.DOTALL) is not None
