"""`rediswq work`: drain a queue in this pod, running a command or a Python handler for each item.

Parsing and validation only; the runtime (threads, leases, signals) is worker.runtime, and what is
done with one item is worker.runners.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import click

import rediswq
from rediswq_cli import prom
from rediswq_cli.kit import EXIT_OK, ConfigError, open_queue, parse_prefetch, settings
from rediswq_worker import logs
from rediswq_worker.runners import (
    CommandRunner,
    HandlerRunner,
    Runner,
    SetupError,
    credential_variables,
    shell_script_with_braces,
)
from rediswq_worker.runtime import Options, Runtime

if TYPE_CHECKING:
    from rediswq_worker.metrics import WorkerMetrics

# A Redis call waits for its reply a third of the lease: a renewal that hangs then fails (and is
# retried) while the leases it renews still hold. Bounded below so a short lease does not turn
# ordinary latency into errors, and above so a dead connection on a long lease is noticed.
MIN_SOCKET_TIMEOUT_SECS = 0.5
MAX_SOCKET_TIMEOUT_SECS = 30.0

_EPILOG = """\b
Command mode (rediswq work QUEUE -- COMMAND [ARG]...):
  Each item runs COMMAND in a new session, with the payload on standard
  input and in place of every {} in the arguments (as UTF-8; bytes that are
  not UTF-8 pass through unchanged; an item whose payload has a NUL byte
  cannot be an argument and is dead-lettered at once). Its environment adds
  REDISWQ_QUEUE, REDISWQ_ITEM_ID and REDISWQ_ATTEMPT (1 on the first lease).
  The item gets no Redis credentials: REDISWQ_URL, REDIS_URL, REDIS_PASSWORD,
  REDISCLI_AUTH, REDISWQ_TLS_KEY and any variable holding the URL or its
  password are dropped from its environment (and from os.environ, in handler
  mode); --pass-env NAME passes one on.
  Exit status 0 completes the item; anything else fails it (retried after a
  backoff, dead-lettered once --max-attempts are spent), with the exit
  status and the last 2000 bytes of its standard error kept as the error.
  Its standard output and standard error pass through to the worker's. Put
  -- before COMMAND so its options are not taken for the worker's.

\b
  A payload is data, never code: no shell runs between it and COMMAND. Do
  not put {} inside a shell script string (sh -c 'convert {}' pastes the
  payload in as shell code: an item `x; rm -rf ~` runs rm); pass it as an
  argument of the script, or read it from standard input:
    rediswq work jobs -- sh -c 'convert -- "$1" out/' _ {}
    rediswq work jobs -- sh -c 'read -r f; convert -- "$f" out/'
  (the worker warns at start when a sh -c or bash -c script holds {}). A
  payload starting with - would be taken for an option by most programs:
  put -- before {} when COMMAND accepts it (e.g. rm -- {}).

\b
Handler mode (rediswq work QUEUE --handler package.module:function):
  Calls function(lease) for each item in one of --concurrency threads; the
  current directory is searched for the module while it is imported, then
  taken off sys.path (an import inside the handler never finds a file that
  lies in the current directory). lease.payload is the
  item (bytes); lease.id, lease.attempt too. Returning completes the item,
  raising fails it with the exception's type, message and traceback.

\b
Leases and stopping:
  Leases are renewed every third of --lease-secs while their items run, so a
  short lease is safe: it is how long a dead pod's items wait before another
  worker takes them over. On SIGTERM or SIGINT the worker leases nothing
  more, gives back items it has not started, lets running ones finish for up
  to --grace-secs, then kills them (their whole process group) and gives
  them back: no attempt is charged. A second signal ends the grace period at
  once. The worker is gone within --grace-secs + 3 s of the first signal,
  even if Redis stops answering: set the Pod's terminationGracePeriodSeconds
  to at least that. A leased item waiting its turn is started only while its
  lease has time left on the worker's own clock (at least 1 s, or a quarter
  of --lease-secs if less): a worker that was frozen past that point (SIGSTOP,
  a paused node) gives the item back instead of running it a second time
  beside the worker that took its expired lease over.

\b
Redis outages:
  Every Redis call waits at most a third of --lease-secs for a reply (at
  least 0.5 s, at most 30 s), so a stalled Redis is noticed before leases
  run out. A dropped connection that the next try opens again is logged only
  with -v; an outage (a call that timed out, or a second failure in a row)
  is logged once when noticed and once when Redis answers again. Calls are
  retried for up to --reconnect-secs, backing off from 0.1 s to a sixth of
  --lease-secs (at most 5 s), so renewals resume before leases run out.

\b
Summary:
  At exit one line says what this run did (done, failed, dead-lettered,
  given back, lost) and, once the queue drained, how many dead letters the
  queue holds (see `rediswq dead list QUEUE`).

\b
Exit codes:
  0  the queue is drained: nothing pending, delayed or leased by any worker
     (with --until closed: and closed). A worker with nothing left to lease
     waits while others hold leases, and takes over any that expire, so 0
     means the whole queue is done.
  1  runtime error: Redis unreachable for --reconnect-secs, Redis answered
     with an error, or the queue's state vanished while it ran
  2  usage or configuration error: bad option, URL or password, handler not
     importable, command not found, no such queue (nothing was ever added
     to it: --until closed waits for a producer)
  3  stopped before the queue drained: --max-items reached, SIGTERM or
     SIGINT
  4  with --fail-on-dead: the queue drained, but it holds dead letters
     (items that spent their attempts, whichever worker ran them)
"""


def _env(name: str) -> str:
    return f"REDISWQ_{name}"


def _metrics(port: int | None, queue_name: str, worker: str) -> WorkerMetrics | None:
    """With --metrics-port: the metrics endpoint, serving from now on (exit 2 if it cannot)."""
    if port is None:
        return None
    prom.require("--metrics-port")
    from rediswq_worker.metrics import WorkerMetrics

    metrics = WorkerMetrics(queue_name, worker)
    prom.serve(port, metrics)
    return metrics


def socket_timeout_secs(lease_secs: float) -> float:
    """How long a Redis call may wait for its reply: a stall is noticed while leases still hold."""
    return min(MAX_SOCKET_TIMEOUT_SECS, max(MIN_SOCKET_TIMEOUT_SECS, lease_secs / 3))


@click.command(epilog=_EPILOG, context_settings={"show_default": True})
@click.argument("queue_name", metavar="QUEUE", envvar=_env("QUEUE"))
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND [ARG]...]")
@click.option(
    "--handler",
    metavar="MODULE:FUNCTION",
    envvar=_env("HANDLER"),
    show_envvar=True,
    help="Call this Python function with each item's lease instead of running a command.",
)
@click.option(
    "--lease-secs",
    metavar="SECS",
    type=click.FloatRange(min=0.1),
    default=30.0,
    envvar=_env("LEASE_SECS"),
    show_envvar=True,
    help="Lease length; renewed while the item runs. A dead worker's items come back after this.",
)
@click.option(
    "--timeout",
    "timeout_secs",
    metavar="SECS",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    envvar=_env("TIMEOUT"),
    show_envvar=True,
    help="Command mode: kill an item's process group after this many seconds and fail the item.",
)
@click.option(
    "--max-attempts",
    metavar="N",
    type=click.IntRange(min=1),
    default=5,
    envvar=_env("MAX_ATTEMPTS"),
    show_envvar=True,
    help="Leases an item gets before it is dead-lettered (give every worker the same value).",
)
@click.option(
    "--retry-backoff-secs",
    metavar="SECS",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    envvar=_env("RETRY_BACKOFF_SECS"),
    show_envvar=True,
    help="Wait before a failed item's first retry; doubled on each further one.",
)
@click.option(
    "--retry-backoff-cap-secs",
    metavar="SECS",
    type=click.FloatRange(min=0, min_open=True),
    default=300.0,
    envvar=_env("RETRY_BACKOFF_CAP_SECS"),
    show_envvar=True,
    help="The longest wait before a retry.",
)
@click.option(
    "--concurrency",
    metavar="N",
    type=click.IntRange(min=1),
    default=1,
    envvar=_env("CONCURRENCY"),
    show_envvar=True,
    help="Items in flight in this worker: child processes (command mode) or threads (handler mode).",
)
@click.option(
    "--prefetch",
    metavar="N|auto",
    callback=parse_prefetch,
    default="auto",
    envvar=_env("PREFETCH"),
    show_envvar=True,
    help="Items leased per Redis call; finished ones are completed in the same call. auto: one at "
    "a time while items take 50 ms or more (so no pod sits on items others could run), and while "
    "they take less, enough for about 50 ms of work (up to 16). A number fixes it: e.g. 100 for "
    "very short items, 1 for strictly one at a time. While items take under 0.1 s, the next batch "
    "is leased as the last item of the current one starts, to hide the round trip.",
)
@click.option(
    "--until",
    type=click.Choice(["drained", "closed"]),
    default="drained",
    envvar=_env("UNTIL"),
    show_envvar=True,
    help="Exit 0 once the queue is drained, or only once it is drained and closed (for producers "
    "that run beside the workers).",
)
@click.option(
    "--max-items",
    metavar="N",
    type=click.IntRange(min=1),
    default=None,
    envvar=_env("MAX_ITEMS"),
    show_envvar=True,
    help="Stop after this many items: exit 3, or 0 if the queue is drained by then.",
)
@click.option(
    "--grace-secs",
    metavar="SECS",
    type=click.FloatRange(min=0),
    default=25.0,
    envvar=_env("GRACE_SECS"),
    show_envvar=True,
    help="On SIGTERM/SIGINT, how long running items may take to finish before they are killed.",
)
@click.option(
    "--reconnect-secs",
    metavar="SECS",
    type=click.FloatRange(min=0),
    default=60.0,
    envvar=_env("RECONNECT_SECS"),
    show_envvar=True,
    help="How long to keep retrying while Redis is unreachable (at start or mid-run) before exit 1.",
)
@click.option(
    "--fail-on-dead",
    is_flag=True,
    envvar=_env("FAIL_ON_DEAD"),
    show_envvar=True,
    help="Once the queue drained, exit 4 instead of 0 if it holds dead letters, so a Job that "
    "left items undone is marked Failed (the manifests' podFailurePolicy does this).",
)
@click.option(
    "--worker-name",
    metavar="NAME",
    envvar=[_env("WORKER_NAME"), "POD_NAME", "HOSTNAME"],
    show_envvar=True,
    default=None,
    show_default="host:pid",
    help="This worker's name, shown as the lease holder by `rediswq stats`.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar=_env("LOG_FORMAT"),
    show_envvar=True,
    help="Log lines (on standard error) as text, or as one JSON object a line.",
)
@click.option(
    "--pass-env",
    "pass_env",
    metavar="NAME",
    multiple=True,
    envvar=_env("PASS_ENV"),
    show_envvar=True,
    help="Pass this credential variable (e.g. REDIS_URL) on to items after all; repeatable.",
)
@click.option(
    "--metrics-port",
    metavar="PORT",
    type=click.IntRange(min=1, max=65535),
    default=None,
    envvar=_env("METRICS_PORT"),
    show_envvar=True,
    help="Serve Prometheus metrics on http://0.0.0.0:PORT/metrics (needs the rediswq-k8s[metrics] extra). "
    "A scrape makes no Redis call.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    envvar=_env("VERBOSE"),
    show_envvar=True,
    help="Log every item started and done, not only failures.",
)
@click.pass_context
def work(
    ctx: click.Context,
    queue_name: str,
    command: tuple[str, ...],
    handler: str | None,
    lease_secs: float,
    timeout_secs: float | None,
    max_attempts: int,
    retry_backoff_secs: float,
    retry_backoff_cap_secs: float,
    concurrency: int,
    prefetch: int | None,
    until: str,
    max_items: int | None,
    grace_secs: float,
    reconnect_secs: float,
    fail_on_dead: bool,
    worker_name: str | None,
    log_format: str,
    pass_env: tuple[str, ...],
    metrics_port: int | None,
    verbose: bool,
) -> None:
    """Drain QUEUE: lease items, run COMMAND (or --handler) for each, exit 0 once the queue is done.

    Every option can also be set from the environment variable shown with it, so a Kubernetes Job
    can configure the worker in its pod template.
    """
    if handler and command:
        raise click.UsageError("give either --handler or a COMMAND after --, not both")
    if not handler and not command:
        raise click.UsageError("give a COMMAND after -- (e.g. rediswq work jobs -- ./run.sh {}) or --handler")
    if handler and timeout_secs is not None:
        raise click.UsageError("--timeout applies to commands only: a Python handler cannot be stopped")
    queue = open_queue(
        queue_name,
        max_attempts=max_attempts,
        retry_backoff_secs=retry_backoff_secs,
        retry_backoff_cap_secs=retry_backoff_cap_secs,
        worker=worker_name or None,
        socket_timeout=socket_timeout_secs(lease_secs),
        retry_settles=False,  # the runtime retries them itself, and tells unconfirmed ones apart
    )
    for name in credential_variables(os.environ, rediswq.url_secrets(settings().url), pass_env):
        del os.environ[name]
    runner: Runner
    try:
        if handler:
            runner = HandlerRunner(handler)
        else:
            runner = CommandRunner(command, queue_name=queue_name, timeout_secs=timeout_secs)
    except SetupError as e:
        raise ConfigError(str(e)) from e
    observer = _metrics(metrics_port, queue_name, queue.worker)
    log = logs.setup(
        "json" if log_format == "json" else "text",
        verbose=verbose,
        context={"queue": queue_name, "worker": queue.worker},
    )
    if shell_script_with_braces(command):
        log.warning(
            "the shell script string of the command holds {}: the payload becomes shell code there; "
            "pass it as an argument instead: sh -c '... \"$1\"' _ {} (see rediswq work --help)",
            extra={"fields": {"event": "unsafe_command"}},
        )
    options = Options(
        lease_secs=lease_secs,
        concurrency=concurrency,
        prefetch=prefetch,
        until="closed" if until == "closed" else "drained",
        max_items=max_items,
        grace_secs=grace_secs,
        reconnect_secs=reconnect_secs,
        fail_on_dead=fail_on_dead,
    )
    log.info(
        "worker %s: %s on queue %r (concurrency %d, prefetch %s, lease %g s, until %s)",
        queue.worker,
        runner.describe(),
        queue_name,
        concurrency,
        "auto" if prefetch is None else prefetch,
        lease_secs,
        until,
        extra={"fields": {"event": "start", "worker": queue.worker, "queue": queue_name}},
    )
    runtime = Runtime(queue, runner, options, log, observer)
    if observer is not None:
        observer.watch(runtime)
    summary = runtime.run()
    log.info(summary.line(queue_name), extra={"fields": {"queue": queue_name, **summary.fields()}})
    if summary.error:
        log.error(summary.error, extra={"fields": {"event": "error", "exit_code": summary.exit_code}})
    logging.shutdown()
    if summary.exit_code != EXIT_OK:
        ctx.exit(summary.exit_code)
