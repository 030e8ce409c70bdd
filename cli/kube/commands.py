"""`rediswq job`: submit, watch, scale and delete worker Jobs on Kubernetes.

Thin: parse, validate, call the modules beside it (cluster, manifest, scale, watch), map errors to
exit codes. The `kubernetes` package (the extra `[kube]`) is imported inside the commands, so the other
`rediswq` commands (and `rediswq work` in every pod) start without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from rediswq_cli.kit import (
    EXIT_ERROR,
    EXIT_OK,
    ConfigError,
    check_target,
    open_queue,
    parse_prefetch,
    queue_errors,
)

if TYPE_CHECKING:
    import rediswq
    from rediswq_cli.kube.cluster import Cluster

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130

_EXIT_CODES = """\b
Exit codes:
  0  success (with --watch: the Job completed)
  1  runtime error: the Job failed, the API server or Redis cannot be reached, the Job does not
     exist (404) or already exists (409)
  2  configuration error: no kubeconfig and not in a pod, unknown context, credentials refused
     (401) or not allowed (403), a request the API server rejects as invalid, a bad option
  130  interrupted (Ctrl-C) while watching or scaling; the Job keeps running
"""


def kube_options(f: F) -> F:
    """--kubeconfig, --context, --namespace and --request-timeout, as kubectl spells them."""
    f = click.option(
        "--request-timeout",
        "request_timeout_secs",
        type=click.FloatRange(min=0.1),
        default=30.0,
        show_default=True,
        metavar="SECS",
        help="Give up on an API request after this long.",
    )(f)
    f = click.option(
        "--namespace",
        "-n",
        metavar="NS",
        help="Namespace (default: the context's, in a pod its own, else `default`).",
    )(f)
    f = click.option("--context", metavar="NAME", help="kubeconfig context (default: the current one).")(f)
    f = click.option(
        "--kubeconfig",
        envvar="KUBECONFIG",
        metavar="PATH",
        help="kubeconfig file(s), `:`-separated (default: $KUBECONFIG, then ~/.kube/config, "
        "then the in-cluster service account).",
    )(f)
    return f


def _connect(kubeconfig: str | None, context: str | None, namespace: str | None, timeout: float) -> Cluster:
    from rediswq_cli.kube.cluster import connect

    return connect(kubeconfig, context, namespace, timeout)


KUBE_HINT = "rediswq job needs the Kubernetes client: pip install 'rediswq-k8s[kube]'"


class _KubeCommand(click.Command):
    """A `job` subcommand: needs the kubernetes extra to run (its --help does not)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            import kubernetes  # noqa: F401
        except ImportError:
            raise ConfigError(KUBE_HINT) from None
        return super().invoke(ctx)


@click.group(epilog=_EXIT_CODES)
def job() -> None:
    """Run a queue's workers as a Kubernetes Job (variable pod count) and follow it.

    Configuration is found as kubectl finds it: --kubeconfig or $KUBECONFIG, else ~/.kube/config,
    else the service account of the pod this runs in. Queue counts come from the Redis that the
    global --url names (`rediswq --url ... job ...`); its password is never printed. Needs the
    kubernetes client: pip install 'rediswq-k8s[kube]' (exit 2 without it).
    """


job.command_class = _KubeCommand


@job.command(epilog=_EXIT_CODES)
@click.argument("queue")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--image", required=True, metavar="IMAGE", help="Worker image (ENTRYPOINT `rediswq work`).")
@click.option(
    "--parallelism", "-p", type=click.IntRange(min=1), required=True, metavar="N", help="Pods at once."
)
@click.option("--name", metavar="NAME", help="Job name (default: the template's, `rediswq-worker`).")
@click.option("--until", type=click.Choice(["drained", "closed"]), help="Passed to `rediswq work`.")
@click.option(
    "--lease-secs", type=click.FloatRange(min=0.1), metavar="SECS", help="Passed to `rediswq work`."
)
@click.option(
    "--timeout",
    "item_timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECS",
    help="Per-item timeout, passed to `rediswq work`.",
)
@click.option("--concurrency", type=click.IntRange(min=1), metavar="N", help="Passed to `rediswq work`.")
@click.option("--prefetch", callback=parse_prefetch, metavar="N|auto", help="Passed to `rediswq work`.")
@click.option("--max-attempts", type=click.IntRange(min=1), metavar="N", help="Passed to `rediswq work`.")
@click.option("--handler", metavar="MODULE:FUNCTION", help="Passed to `rediswq work` (instead of a COMMAND).")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Passed to `rediswq work`.")
@click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set (or override) an environment variable of the worker container; repeatable. "
    "E.g. -e 'REDISWQ_URL=redis://:$(REDIS_PASSWORD)@my-redis:6379/0'.",
)
@click.option(
    "--secret", metavar="NAME", help="The Secret holding the Redis password (default: the template's)."
)
@click.option("--watch", "-w", is_flag=True, help="Follow the Job and the queue until the Job ends.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    metavar="SECS",
    help="How often --watch looks.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the Job as JSON (with --namespace, its metadata.namespace) and create nothing.",
)
@kube_options
def submit(
    queue: str,
    command: tuple[str, ...],
    image: str,
    parallelism: int,
    name: str | None,
    until: str | None,
    lease_secs: float | None,
    item_timeout: float | None,
    concurrency: int | None,
    prefetch: int | None,
    max_attempts: int | None,
    handler: str | None,
    log_format: str | None,
    env: tuple[str, ...],
    secret: str | None,
    watch: bool,
    interval: float,
    dry_run: bool,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    request_timeout_secs: float,
) -> None:
    """Create a worker Job that drains QUEUE, built from the manifest that k8s/ ships.

    Every pod runs `rediswq work QUEUE [OPTIONS] [-- COMMAND...]`; the first pod to exit 0 means the
    queue is drained, and the Job completes when the rest end. A COMMAND (after `--`) or --handler
    is required: without one the command exits 2 and creates nothing. Give the command after `--`:

    \b
      rediswq --url redis://:PASS@redis:6379/0 job submit thumbs --image my/thumbnailer:1.4 \\
          -p 8 --watch -- python -m thumbs {}

    With --watch it shows the queue (done/total, rate, ETA; from --url) and the pods (active,
    succeeded, failed; from the Job's status) until the Job completes (exit 0) or fails (exit 1).
    """
    import json

    from rediswq_cli.kube.manifest import ManifestError, WorkerJob, build

    check_target(handler, command, item_timeout)
    options: list[str] = []
    for flag, value in (
        ("--until", until),
        ("--lease-secs", lease_secs),
        ("--timeout", item_timeout),
        ("--concurrency", concurrency),
        ("--prefetch", prefetch),
        ("--max-attempts", max_attempts),
        ("--handler", handler),
        ("--log-format", log_format),
    ):
        if value is not None:
            options += [flag, _number_text(value)]
    pairs = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--env")
        pairs.append((key, value))
    request = WorkerJob(
        queue=queue,
        image=image,
        parallelism=parallelism,
        name=name,
        worker_options=tuple(options),
        command=command,
        env=tuple(pairs),
        secret=secret,
    )
    try:
        manifest = build(request)
        body = _to_model(manifest)
    except ManifestError as e:
        raise ConfigError(str(e)) from e
    if dry_run:
        from rediswq_cli.kube.cluster import to_json

        shown = cast("dict[str, Any]", to_json(body))
        if namespace:
            shown["metadata"]["namespace"] = namespace
        click.echo(json.dumps(shown, indent=2))
        return

    from rediswq_cli.kube.cluster import api_errors

    watched = open_queue(queue) if watch else None  # a bad --url fails here, before the Job exists
    cluster = _connect(kubeconfig, context, namespace, request_timeout_secs)
    job_name = manifest["metadata"]["name"]
    with api_errors(cluster):
        cluster.batch.create_namespaced_job(cluster.namespace, body, _request_timeout=request_timeout_secs)
    click.echo(f"job.batch/{job_name} created in namespace {cluster.namespace}")
    if watch:
        _exit_after_watch(cluster, job_name, watched, interval)


def _number_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_model(manifest: dict[str, Any]) -> Any:
    """The manifest as the client's V1Job; the client validates it here (quantities must be quoted)."""
    from kubernetes import client
    from pydantic import ValidationError

    from rediswq_cli.kube.manifest import ManifestError

    try:
        return client.V1Job.from_dict(manifest)
    except ValidationError as e:
        raise ManifestError(f"the worker Job is not valid: {str(e).splitlines()[0]}") from e


def _exit_after_watch(cluster: Cluster, name: str, queue: rediswq.Queue | None, interval: float) -> None:
    from rediswq_cli.kube.watch import watch

    try:
        code = watch(cluster, name, queue, interval)
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; Job {name} keeps running", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    raise SystemExit(code)


@job.command(epilog=_EXIT_CODES)
@click.argument("name")
@click.option(
    "--queue", metavar="QUEUE", help="The queue to show (default: the Job's first worker argument)."
)
@click.option("--no-queue", is_flag=True, help="Show the Job only; do not read the queue.")
@click.option("--watch", "-w", is_flag=True, help="Follow the Job and the queue until the Job ends.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    metavar="SECS",
    help="How often --watch looks.",
)
@kube_options
def status(
    name: str,
    queue: str | None,
    no_queue: bool,
    watch: bool,
    interval: float,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    request_timeout_secs: float,
) -> None:
    """Show the Job NAME (conditions, pods, parallelism) and its queue's counts."""
    from rediswq_cli.kube.cluster import pod_counts, queue_of
    from rediswq_cli.kube.watch import read_job

    cluster = _connect(kubeconfig, context, namespace, request_timeout_secs)
    current = read_job(cluster, name)
    queue_name = None if no_queue else (queue or queue_of(current))
    if watch:
        _exit_after_watch(cluster, name, open_queue(queue_name) if queue_name else None, interval)
    active, succeeded, failed = pod_counts(current)
    conditions = [
        f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
        for c in (current.status.conditions if current.status else None) or []
    ]
    spec = current.spec
    click.echo(f"job:         {name} (namespace {cluster.namespace})")
    click.echo(f"conditions:  {', '.join(conditions) or 'none yet'}")
    click.echo(f"parallelism: {spec.parallelism if spec else None}")
    click.echo(f"pods:        {active} active, {succeeded} succeeded, {failed} failed")
    if queue_name is None:
        if not no_queue:
            click.echo("queue:       unknown (give --queue)")
        return
    with queue_errors():
        stats = open_queue(queue_name, one_shot=True).stats()
    click.echo(
        f"queue:       {queue_name}: {stats.pending} pending, {stats.leased} leased, "
        f"{stats.delayed} delayed, {stats.dead} dead, {stats.completed} completed"
        f"{', closed' if stats.closed else ''}{', drained' if stats.drained else ''}"
    )


@job.command(epilog=_EXIT_CODES)
@click.argument("name")
@click.option(
    "--propagation",
    type=click.Choice(["Background", "Foreground"]),
    default="Background",
    show_default=True,
    help="Background: the Job goes now, its pods right after. Foreground: the Job stays (with a "
    "deletionTimestamp) until its pods are gone.",
)
@kube_options
def delete(
    name: str,
    propagation: str,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    request_timeout_secs: float,
) -> None:
    """Delete the Job NAME and its pods (never `Orphan`: pods left behind would keep leasing)."""
    from rediswq_cli.kube.cluster import api_errors

    cluster = _connect(kubeconfig, context, namespace, request_timeout_secs)
    with api_errors(cluster):
        cluster.batch.delete_namespaced_job(
            name, cluster.namespace, propagation_policy=propagation, _request_timeout=request_timeout_secs
        )
    click.echo(f"job.batch/{name} deleted from namespace {cluster.namespace} ({propagation})")


@job.command(epilog=_EXIT_CODES)
@click.argument("name")
@click.option("--auto", is_flag=True, help="Keep parallelism matched to the queue (see above).")
@click.option(
    "--parallelism", "-p", type=click.IntRange(min=0), metavar="N", help="Set it once to N instead."
)
@click.option("--min", "minimum", type=click.IntRange(min=0), default=1, show_default=True, metavar="N")
@click.option("--max", "maximum", type=click.IntRange(min=1), default=10, show_default=True, metavar="N")
@click.option(
    "--items-per-pod",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    metavar="K",
    help="Outstanding items one pod should have ahead of it.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    metavar="SECS",
    help="How often to look.",
)
@click.option("--once", is_flag=True, help="Look once, adjust, and exit.")
@click.option("--queue", metavar="QUEUE", help="The queue (default: the Job's first worker argument).")
@kube_options
def scale(
    name: str,
    auto: bool,
    parallelism: int | None,
    minimum: int,
    maximum: int,
    items_per_pod: int,
    interval: float,
    once: bool,
    queue: str | None,
    kubeconfig: str | None,
    context: str | None,
    namespace: str | None,
    request_timeout_secs: float,
) -> None:
    """Keep the Job's parallelism matched to its queue, until the Job finishes.

    \b
    parallelism = max(clamp(ceil(outstanding / K), --min, --max), pods holding leases)

    outstanding counts pending, delayed (retry backoff) and leased items. It never asks for fewer
    pods than hold leases: lowering parallelism makes the Job controller kill pods, and it does not
    know which are mid-item. KEDA's Redis list scaler differs here: it sees only a list's length
    (the pending items), not items leased in pods or delayed for retry, so near the end of a run it
    scales down to pods that still hold work. Pods holding leases are found by their names
    (`Queue.holders()`; a worker's name is its pod's name) among the Job's live pods; without
    permission to list pods, every distinct lease holder counts.

    Once a pod has exited 0 (queue drained) the Job starts no new pods, so scaling up stops
    mattering; the command exits when the Job is Complete (0) or Failed (1).
    """
    if auto == (parallelism is not None):
        raise click.UsageError("give either --auto or --parallelism N")
    if minimum > maximum:
        raise click.UsageError(f"--min {minimum} is above --max {maximum}")

    from rediswq_cli.kube.cluster import api_errors, queue_of
    from rediswq_cli.kube.scale import apply
    from rediswq_cli.kube.watch import read_job

    cluster = _connect(kubeconfig, context, namespace, request_timeout_secs)
    if parallelism is not None:
        read_job(cluster, name)
        with api_errors(cluster):
            apply(cluster, name, parallelism)
        click.echo(f"job.batch/{name} parallelism set to {parallelism}")
        return
    queue_name = queue or queue_of(read_job(cluster, name))
    if queue_name is None:
        raise ConfigError(f"cannot tell which queue Job {name} drains; give --queue")
    try:
        with queue_errors():
            code = _autoscale(cluster, name, queue_name, items_per_pod, minimum, maximum, interval, once)
    except KeyboardInterrupt:
        click.echo("\nstopped scaling", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    raise SystemExit(code)


def _autoscale(
    cluster: Cluster,
    name: str,
    queue_name: str,
    items_per_pod: int,
    minimum: int,
    maximum: int,
    interval: float,
    once: bool,
) -> int:
    import rediswq
    from rediswq_cli.kube.cluster import Unreachable, api_errors, finished
    from rediswq_cli.kube.scale import apply, decide
    from rediswq_cli.kube.watch import read_job

    queue = open_queue(queue_name)
    while True:
        try:
            current = read_job(cluster, name)
            state = finished(current)
            if state is not None:
                click.echo(f"Job {name} finished ({state}); stopping")
                return EXIT_OK if state == "Complete" else EXIT_ERROR
            with api_errors(cluster):
                decision = decide(cluster, current, queue, items_per_pod, minimum, maximum)
                if decision.wanted != decision.current:
                    apply(cluster, name, decision.wanted)
            if once or decision.wanted != decision.current:
                click.echo(decision.describe(items_per_pod, minimum, maximum))
        except (Unreachable, rediswq.RedisWQError) as e:
            if once or isinstance(e, (rediswq.AuthenticationFailed, rediswq.InvalidArgument)):
                raise  # a single look, or a configuration error: trying again cannot help
            click.echo(f"rediswq: {e}; trying again in {interval:g}s", err=True)
        if once:
            return EXIT_OK
        time.sleep(interval)
