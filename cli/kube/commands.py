"""`rediswq job submit`, `status` and `delete`: create a worker Job, show it, delete it.

Thin: parse, validate, call the modules beside it (cluster, manifest, watch), map errors to exit
codes; the `kubernetes` package is imported inside the commands only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import click

from rediswq_cli.kube.group import EXIT_CODES, connect, exit_after_watch, job, kube_options
from rediswq_kit import (
    ConfigError,
    check_max_wait,
    check_target,
    open_queue,
    parse_prefetch,
    queue_errors,
)

if TYPE_CHECKING:
    from rediswq_cli.kube.cluster import Cluster


def secret_key(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, str] | None:
    """--url-from-secret NAME[/KEY] -> (NAME, KEY), KEY `url` by default (both checked with the Job)."""
    if value is None:
        return None
    name, _, key = value.partition("/")
    return name, key or "url"


@job.command(epilog=EXIT_CODES)
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
    help="Per-item timeout, passed to `rediswq work` (as --item-timeout).",
)
@click.option(
    "--max-wait",
    "max_wait_secs",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECS",
    help="With --until closed: exit 7 (the Job fails) once the queue stayed open and empty this long; "
    "passed to `rediswq work`.",
)
@click.option(
    "--allow-dead",
    is_flag=True,
    default=None,
    help="The Job completes even if the queue drained with dead letters; passed to `rediswq work`.",
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
@click.option(
    "--url-from-secret",
    "url_secret",
    metavar="NAME[/KEY]",
    callback=secret_key,
    help="Take the pods' REDISWQ_URL whole from key KEY (default: url) of Secret NAME, as "
    "k8s/components/external-redis does (e.g. a Redis Cluster or Sentinel URL with its password), "
    "instead of the bundled Redis's URL and password.",
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
    help="Print the Job as JSON (with --namespace, its metadata.namespace) and create nothing. "
    "Secret-looking --env values (a URL's password, a NAME holding PASSWORD, TOKEN, SECRET, KEY, AUTH "
    "...) are shown as ***; $(NAME) references as they are.",
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
    max_wait_secs: float | None,
    allow_dead: bool | None,
    concurrency: int | None,
    prefetch: int | None,
    max_attempts: int | None,
    handler: str | None,
    log_format: str | None,
    env: tuple[str, ...],
    secret: str | None,
    url_secret: tuple[str, str] | None,
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

    The template's pods use the bundled Redis of k8s/ as its user rediswq-worker: for a QUEUE that
    user's key patterns (as packaged) do not cover, submit exits 2 and --dry-run warns (k8s/README.md,
    "The queue's name"), unless the URL is yours (--url-from-secret, or -e REDISWQ_URL=...).
    """
    from rediswq_cli.kube.bundled import refusal
    from rediswq_cli.kube.manifest import ManifestError, WorkerJob, build

    check_target(handler, command)
    check_max_wait(until, max_wait_secs)
    worker_options = {
        "--until": until,
        "--max-wait": max_wait_secs,
        "--allow-dead": allow_dead or None,
        "--lease-secs": lease_secs,
        "--item-timeout": item_timeout,
        "--concurrency": concurrency,
        "--prefetch": prefetch,
        "--max-attempts": max_attempts,
        "--handler": handler,
        "--log-format": log_format,
    }
    request = WorkerJob(
        queue=queue,
        image=image,
        parallelism=parallelism,
        name=name,
        worker_options=_options_text(worker_options),
        command=command,
        env=_env_pairs(env),
        secret=secret,
        url_secret=url_secret,
    )
    try:
        manifest = build(request)
        body = _to_model(manifest)
    except ManifestError as e:
        raise ConfigError(str(e)) from e
    refused = refusal(request, manifest)
    if dry_run:
        if refused:
            click.echo(f"warning: {refused}", err=True)
        _print_job(body, namespace)
        return
    if refused:
        raise ConfigError(refused)
    watched = open_queue(queue) if watch else None  # a bad --url fails here, before the Job exists
    cluster = connect(kubeconfig, context, namespace, request_timeout_secs)
    _create(cluster, body, manifest["metadata"]["name"], request_timeout_secs)
    if watch:
        exit_after_watch(cluster, manifest["metadata"]["name"], watched, interval)


def _options_text(options: Mapping[str, object]) -> tuple[str, ...]:
    """The `rediswq work` options given, as the container's args spell them."""
    given = [(flag, value) for flag, value in options.items() if value is not None]
    return tuple(
        word
        for flag, value in given
        for word in ((flag,) if value is True else (flag, _number_text(value)))  # True: a flag alone
    )


def _env_pairs(env: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            # Not echoed: a value given alone may be a password.
            raise click.BadParameter("expected NAME=VALUE, got no NAME= in it", param_hint="--env")
        pairs.append((key, value))
    return tuple(pairs)


def _print_job(body: object, namespace: str | None) -> None:
    """--dry-run: the Job as the API would receive it, with --namespace's namespace if given, and
    secret-looking environment values hidden (cli.kube.redact)."""
    import json

    from rediswq_cli.kube.cluster import to_json
    from rediswq_cli.kube.redact import redact_containers

    shown = cast("dict[str, Any]", to_json(body))
    redact_containers(shown)
    if namespace:
        shown["metadata"]["namespace"] = namespace
    click.echo(json.dumps(shown, indent=2))


def _create(cluster: Cluster, body: Any, name: str, timeout_secs: float) -> None:
    from rediswq_cli.kube.cluster import api_errors

    with api_errors(cluster):
        cluster.batch.create_namespaced_job(cluster.namespace, body, _request_timeout=timeout_secs)
    click.echo(f"job.batch/{name} created in namespace {cluster.namespace}")


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


@job.command(epilog=EXIT_CODES)
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
    from rediswq_cli.kube.cluster import queue_of
    from rediswq_cli.kube.watch import read_job

    cluster = connect(kubeconfig, context, namespace, request_timeout_secs)
    current = read_job(cluster, name)
    queue_name = None if no_queue else (queue or queue_of(current))
    if watch:
        exit_after_watch(cluster, name, open_queue(queue_name) if queue_name else None, interval)
    click.echo(f"job:         {name} (namespace {cluster.namespace})")
    click.echo("\n".join(_job_lines(current)))
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


def _job_lines(current: Any) -> list[str]:
    """A V1Job's conditions, parallelism and pod counts, a line each."""
    from rediswq_cli.kube.cluster import pod_counts

    active, succeeded, failed = pod_counts(current)
    conditions = [
        f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
        for c in (current.status.conditions if current.status else None) or []
    ]
    return [
        f"conditions:  {', '.join(conditions) or 'none yet'}",
        f"parallelism: {current.spec.parallelism if current.spec else None}",
        f"pods:        {active} active, {succeeded} succeeded, {failed} failed",
    ]


@job.command(epilog=EXIT_CODES)
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

    cluster = connect(kubeconfig, context, namespace, request_timeout_secs)
    with api_errors(cluster):
        cluster.batch.delete_namespaced_job(
            name, cluster.namespace, propagation_policy=propagation, _request_timeout=request_timeout_secs
        )
    click.echo(f"job.batch/{name} deleted from namespace {cluster.namespace} ({propagation})")
