"""`rediswq job scale`: set a Job's parallelism once, or keep it matched to its queue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from rediswq_cli.kube.group import EXIT_CODES, EXIT_INTERRUPTED, connect, job, kube_options
from rediswq_kit import EXIT_ERROR, EXIT_OK, ConfigError, open_queue, queue_errors

if TYPE_CHECKING:
    import rediswq
    from rediswq_cli.kube.cluster import Cluster


@job.command(epilog=EXIT_CODES)
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
    know which are mid-item. KEDA (k8s/components/keda) differs here: it sees only the waiting items
    (the exporter's `waiting`: pending), not items leased in pods or delayed for retry, so near the
    end of a run it scales down to pods that still hold work. Pods holding leases are found by their names
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

    cluster = connect(kubeconfig, context, namespace, request_timeout_secs)
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
    from rediswq_cli.kube.cluster import Unreachable

    queue = open_queue(queue_name)
    while True:
        try:
            code = _look(cluster, name, queue, (items_per_pod, minimum, maximum), once)
        except (Unreachable, rediswq.RedisWQError) as e:
            if once or isinstance(e, (rediswq.AuthenticationFailed, rediswq.InvalidArgument)):
                raise  # a single look, or a configuration error: trying again cannot help
            click.echo(f"rediswq: {e}; trying again in {interval:g}s", err=True)
            code = None
        if code is not None or once:
            return EXIT_OK if code is None else code
        time.sleep(interval)


def _look(
    cluster: Cluster, name: str, queue: rediswq.Queue, limits: tuple[int, int, int], once: bool
) -> int | None:
    """One look: adjust parallelism; the exit code once the Job has finished, else None."""
    from rediswq_cli.kube.cluster import api_errors, finished
    from rediswq_cli.kube.scale import apply, decide
    from rediswq_cli.kube.watch import read_job

    current = read_job(cluster, name)
    state = finished(current)
    if state is not None:
        click.echo(f"Job {name} finished ({state}); stopping")
        return EXIT_OK if state == "Complete" else EXIT_ERROR
    with api_errors(cluster):
        decision = decide(cluster, current, queue, *limits)
        if decision.wanted != decision.current:
            apply(cluster, name, decision.wanted)
    if once or decision.wanted != decision.current:
        click.echo(decision.describe(*limits))
    return None
