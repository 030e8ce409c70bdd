"""The `rediswq job` group: its options as kubectl spells them, the cluster connection, exit codes.

The subcommands live beside it (commands.py: submit, status, delete; autoscale.py: scale). The
`kubernetes` package (the extra `[kube]`) is imported only inside the commands, so the other
`rediswq` commands (and `rediswq work` in every pod) start without it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rediswq_kit import CONTEXT_SETTINGS, ConfigError

if TYPE_CHECKING:
    import rediswq
    from rediswq_cli.kube.cluster import Cluster

F = TypeVar("F", bound=Callable[..., Any])

EXIT_INTERRUPTED = 130

EXIT_CODES = """\b
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


def connect(kubeconfig: str | None, context: str | None, namespace: str | None, timeout: float) -> Cluster:
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


@click.group(epilog=EXIT_CODES, context_settings=CONTEXT_SETTINGS)
def job() -> None:
    """Run a queue's workers as a Kubernetes Job (variable pod count) and follow it.

    Configuration is found as kubectl finds it: --kubeconfig or $KUBECONFIG, else ~/.kube/config,
    else the service account of the pod this runs in. Queue counts come from the Redis that the
    global --url names (`rediswq --url ... job ...`); its password is never printed. Needs the
    kubernetes client: pip install 'rediswq-k8s[kube]' (exit 2 without it).
    """


job.command_class = _KubeCommand


def exit_after_watch(cluster: Cluster, name: str, queue: rediswq.Queue | None, interval: float) -> None:
    from rediswq_cli.kube.watch import watch

    try:
        code = watch(cluster, name, queue, interval)
    except KeyboardInterrupt:
        click.echo(f"\nstopped watching; Job {name} keeps running", err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    raise SystemExit(code)
