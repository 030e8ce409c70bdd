"""The boundary with the Kubernetes API for `rediswq job`: configuration, errors, reading a Job.

Configuration is found as kubectl finds it: --kubeconfig (or $KUBECONFIG, a list of files separated
by `:`), else ~/.kube/config, else the in-cluster service account of the pod we run in. The namespace
is --namespace, else the context's namespace (or the service account's), else `default`.

Every failure becomes one line and the documented exit code (no traceback, never a token):
  2  configuration: no kubeconfig and not in a pod, an unknown context, a malformed kubeconfig,
     credentials refused (401) or not allowed (403), a request the API server rejects as invalid (400, 422)
  1  runtime: the API server cannot be reached, the Job does not exist (404) or already does (409),
     any other API error
This module imports the `kubernetes` package, which takes half a second: `rediswq_cli.kube.commands`
imports it only when a `job` command runs, so `rediswq work` in every pod does not pay for it.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click
import urllib3.exceptions
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from rediswq_kit import ConfigError

DEFAULT_KUBECONFIG = "~/.kube/config"
SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclass
class Cluster:
    """An API client for one cluster, and the namespace the commands act in."""

    api: client.ApiClient
    namespace: str
    request_timeout_secs: float

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def server(self) -> str:
        """The API server's scheme://host:port, for messages (never credentials)."""
        parts = urllib.parse.urlsplit(str(self.api.configuration.host))
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return f"{parts.scheme}://{netloc}"


def connect(
    kubeconfig: str | None, context: str | None, namespace: str | None, request_timeout_secs: float
) -> Cluster:
    """Load the configuration as kubectl would; a missing or broken one is a ConfigError (exit 2)."""
    paths = kubeconfig or DEFAULT_KUBECONFIG
    present = [p for p in paths.split(os.pathsep) if p and os.path.exists(os.path.expanduser(p))]
    configuration = client.Configuration()
    try:
        chosen = _load(configuration, paths, bool(present), kubeconfig, context, namespace)
    except ConfigException as e:
        raise ConfigError(f"Kubernetes configuration: {_first_line(str(e))}") from e
    except (OSError, ValueError, yaml.YAMLError, KeyError, TypeError, AttributeError) as e:
        # An unreadable file, malformed YAML or base64, or a document of the wrong shape: the loader
        # has no exception of its own for these.
        raise ConfigError(f"Kubernetes configuration: {_first_line(str(e))}") from e
    return Cluster(client.ApiClient(configuration), chosen or "default", request_timeout_secs)


def _load(
    configuration: client.Configuration,
    paths: str,
    present: bool,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
) -> str | None:
    """Fill `configuration` from a kubeconfig, else the pod's service account; returns the namespace."""
    if present:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=paths, context=context, client_configuration=configuration, persist_config=False
        )
        return namespace or _context_namespace(paths, context)
    if kubeconfig:
        raise ConfigError(f"kubeconfig not found: {kubeconfig}")
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        raise ConfigError(
            "no Kubernetes configuration: no kubeconfig (--kubeconfig, $KUBECONFIG, "
            f"{DEFAULT_KUBECONFIG}) and not running in a pod"
        )
    if context:
        raise ConfigError(f"--context {context} needs a kubeconfig; none found at {DEFAULT_KUBECONFIG}")
    config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return namespace or _service_account_namespace()


def _context_namespace(paths: str, context: str | None) -> str | None:
    contexts, current = config.list_kube_config_contexts(paths)  # type: ignore[no-untyped-call]
    wanted = context or (current or {}).get("name")
    for entry in contexts or []:
        if entry.get("name") == wanted:
            value = (entry.get("context") or {}).get("namespace")
            return str(value) if value else None
    return None


def _service_account_namespace() -> str | None:
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def api_message(e: ApiException) -> str:
    """The API server's own message (from the Status in the body), else the HTTP reason."""
    try:
        body = json.loads(e.body) if e.body else {}
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return _first_line(str(message or e.reason or "error"))


class Unreachable(click.ClickException):
    """The API server did not answer (exit 1); a long-running loop may try again next time."""


@contextmanager
def api_errors(cluster: Cluster | None = None) -> Iterator[None]:
    """Turn the client's exceptions into one line and the documented exit code."""
    where = f" at {cluster.server}" if cluster is not None else ""
    try:
        yield
    except ApiException as e:
        status = int(e.status or 0)
        text = f"Kubernetes API{where}: {api_message(e)} ({status})"
        if status in (400, 401, 403, 422):
            raise ConfigError(text) from e
        raise click.ClickException(text) from e
    except (urllib3.exceptions.HTTPError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise Unreachable(f"cannot reach the Kubernetes API{where}: {_first_line(str(reason))}") from e


def to_json(model: object) -> object:
    """A client model as the API's JSON (camelCase keys, no nulls): exactly what a request sends."""
    return client.ApiClient().sanitize_for_serialization(model)  # type: ignore[no-untyped-call]


def condition(job: client.V1Job, kind: str) -> client.V1JobCondition | None:
    """The Job's condition of this type if it is True (Complete, Failed, Suspended, ...)."""
    for c in (job.status.conditions if job.status else None) or []:
        if c.type == kind and c.status == "True":
            return c
    return None


def finished(job: client.V1Job) -> str | None:
    """'Complete' or 'Failed' once the Job controller has said so, else None."""
    for kind in ("Complete", "Failed"):
        if condition(job, kind) is not None:
            return kind
    return None


def pod_counts(job: client.V1Job) -> tuple[int, int, int]:
    """(active, succeeded, failed) pods, as the Job controller counts them in the Job's status."""
    status = job.status
    if status is None:
        return 0, 0, 0
    return int(status.active or 0), int(status.succeeded or 0), int(status.failed or 0)


def worker_container(job: client.V1Job) -> client.V1Container | None:
    """The container named `worker` (the template's), else the only container."""
    spec = job.spec.template.spec if job.spec and job.spec.template else None
    containers = list(spec.containers) if spec and spec.containers else []
    for c in containers:
        if c.name == "worker":
            return c
    return containers[0] if len(containers) == 1 else None


def queue_of(job: client.V1Job) -> str | None:
    """The queue a worker Job drains: the first argument of `rediswq work` in its worker container."""
    container = worker_container(job)
    args = list(container.args or []) if container is not None else []
    if args and not args[0].startswith("-"):
        return str(args[0])
    return None


def describe_failure(job: client.V1Job) -> str:
    c = condition(job, "Failed")
    if c is None:
        return "failed"
    return ": ".join(part for part in (c.reason, c.message) if part) or "failed"
