"""The worker Job `rediswq job submit` creates, built from the template that `k8s/` ships.

One source of truth: `k8s/base/worker-job.yaml` is what `kubectl apply -k` uses and, packaged in the
wheel as `rediswq_cli.kube.manifests`, what `submit` starts from. It changes only what the user asked
for (name, image, parallelism, the container's args, env, the Secret's name, or the URL taken whole
from a Secret as `k8s/components/external-redis` does), so the template's
podFailurePolicy, security context, resources and the Downward API's POD_NAME are kept as they are.

The container runs `rediswq work` (the image's ENTRYPOINT), so its `args` are
`QUEUE [OPTION]... [-- COMMAND [ARG]...]`: the template's first argument is the queue name and the
options up to `--` are kept. The template has no command on purpose: a placeholder such as
`echo {}` would complete every item with no work done, so a Job without a COMMAND or a --handler is
refused here.
"""

from __future__ import annotations

import copy
import importlib.resources
import re
from dataclasses import dataclass
from typing import Any

import yaml

TEMPLATE = "base/worker-job.yaml"
CONTAINER = "worker"

# A Job's name becomes its pods' `job-name` label value: a DNS-1123 label of at most 63 characters.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# A Secret's name is a DNS-1123 subdomain; its keys, letters, digits, '-', '_' and '.'.
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
URL_VARIABLE = "REDISWQ_URL"
# The template's password variable: the only use of it is the URL the template builds from it.
PASSWORD_VARIABLE = "REDIS_PASSWORD"


class ManifestError(Exception):
    """The template or the requested change cannot make a valid worker Job."""


@dataclass(frozen=True)
class WorkerJob:
    """What the user asked `submit` for; everything else comes from the template."""

    queue: str
    image: str
    parallelism: int
    name: str | None = None
    worker_options: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    secret: str | None = None
    url_secret: tuple[str, str] | None = None  # (Secret, key) that REDISWQ_URL comes from


def load_template() -> dict[str, Any]:
    """The packaged worker Job manifest, parsed."""
    try:
        text = (
            importlib.resources.files("rediswq_cli.kube.manifests")
            .joinpath(TEMPLATE)
            .read_text(encoding="utf-8")
        )
    except (ModuleNotFoundError, OSError) as e:
        raise ManifestError(f"the packaged worker Job template {TEMPLATE} cannot be read: {e}") from e
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or document.get("kind") != "Job":
        raise ManifestError(f"the packaged template {TEMPLATE} is not a Job")
    return document


def split_args(args: list[str]) -> tuple[str | None, list[str], list[str]]:
    """`QUEUE [OPTION]... [-- COMMAND...]` -> (queue, options, command)."""
    queue = args[0] if args and not args[0].startswith("-") else None
    rest = args[1:] if queue is not None else list(args)
    if "--" in rest:
        cut = rest.index("--")
        return queue, rest[:cut], rest[cut + 1 :]
    return queue, rest, []


def check_name(name: str) -> None:
    if len(name) > 63 or not _NAME.match(name):
        raise ManifestError(
            f"bad Job name {name!r}: use at most 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )


def build(request: WorkerJob, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Job manifest for `request`: a deep copy of the template with the requested changes."""
    manifest = copy.deepcopy(template if template is not None else load_template())
    name = request.name or str(manifest.get("metadata", {}).get("name") or "")
    _check_request(request, name)
    manifest.setdefault("metadata", {})["name"] = name
    manifest["metadata"].pop("namespace", None)  # the command's --namespace decides
    spec = manifest.setdefault("spec", {})
    spec["parallelism"] = request.parallelism
    spec.pop("completions", None)  # variable pod count: exit 0 of any pod means the queue is done
    container = _worker_container(spec)
    container["image"] = request.image
    container["args"] = _args(request, [str(a) for a in container.get("args") or []])
    env = container.setdefault("env", [])
    if request.secret:
        _rename_secret(env, request.secret)
    if request.url_secret:
        _url_from_secret(env, *request.url_secret)
    for key, value in request.env:
        _set_env(env, key, value)
    return manifest


def _check_request(request: WorkerJob, name: str) -> None:
    check_name(name)
    if not request.queue:
        raise ManifestError("the queue name must not be empty")
    if request.parallelism < 1:
        raise ManifestError(f"parallelism must be at least 1, not {request.parallelism}")
    if not request.image.strip():
        raise ManifestError("the image must not be empty")
    if request.url_secret:
        _check_url_secret(request, *request.url_secret)


def _check_url_secret(request: WorkerJob, name: str, key: str) -> None:
    if len(name) > 253 or not _SECRET_NAME.match(name):
        raise ManifestError(
            f"bad Secret name {name!r}: use lowercase letters, digits, '-' and '.' (at most 253)"
        )
    if len(key) > 253 or not _SECRET_KEY.match(key):
        raise ManifestError(f"bad Secret key {key!r}: use letters, digits, '-', '_' and '.' (at most 253)")
    if request.secret:
        raise ManifestError(
            "--secret names the Secret of the password, which a URL from --url-from-secret replaces: "
            "give one of them"
        )
    if any(variable == URL_VARIABLE for variable, _ in request.env):
        raise ManifestError(f"{URL_VARIABLE} comes from --url-from-secret: do not set it with --env too")


def _worker_container(spec: dict[str, Any]) -> dict[str, Any]:
    containers = spec.get("template", {}).get("spec", {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == CONTAINER), None)
    if container is None:
        raise ManifestError(f"the worker Job template has no container named {CONTAINER!r}")
    return container  # type: ignore[no-any-return]


def _args(request: WorkerJob, template_args: list[str]) -> list[str]:
    """`QUEUE [OPTION]... [-- COMMAND...]`: the template's options, then the requested ones."""
    _, options, template_command = split_args(template_args)
    options = options + list(request.worker_options)
    command = list(request.command) or template_command
    if any(o == "--handler" or o.startswith("--handler=") for o in options):
        command = list(request.command)  # a Python handler replaces a command of the template
    elif not command:
        raise ManifestError(
            "the Job has nothing to run: give a COMMAND after -- (e.g. -- python -m thumbs {}) or --handler"
        )
    return [request.queue, *options, *(["--", *command] if command else [])]


def _rename_secret(env: list[dict[str, Any]], secret: str) -> None:
    """Point every secretKeyRef of the container's env at `secret`."""
    for entry in env:
        ref = (entry.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            ref["name"] = secret


def _url_from_secret(env: list[dict[str, Any]], name: str, key: str) -> None:
    """REDISWQ_URL from key `key` of Secret `name`, in the template's place for it, as
    k8s/components/external-redis does. REDIS_PASSWORD goes: nothing uses it then, and a pod whose
    env names a Secret key that does not exist never starts."""
    env[:] = [entry for entry in env if entry.get("name") != PASSWORD_VARIABLE]
    url = {"name": URL_VARIABLE, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
    at = next((i for i, entry in enumerate(env) if entry.get("name") == URL_VARIABLE), None)
    if at is None:
        env.insert(0, url)
    else:
        env[at] = url


def _set_env(env: list[dict[str, Any]], key: str, value: str) -> None:
    """Override the variable `key` where the template sets it, else append it."""
    if not _ENV_NAME.match(key):
        raise ManifestError(f"bad environment variable name {key!r}")
    entry = next((e for e in env if e.get("name") == key), None)
    if entry is None:
        env.append({"name": key, "value": value})
    else:
        entry.pop("valueFrom", None)
        entry["value"] = value
