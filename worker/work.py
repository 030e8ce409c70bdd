"""`rediswq work`: drain a queue in this pod, running a command or a Python handler for each item.

Parsing and validation only; the runtime (threads, leases, signals) is worker.runtime, and what is
done with one item is worker.runners.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from rediswq_kit import (
    CONTEXT_SETTINGS,
    EXIT_BROKEN,
    EXIT_DEAD,
    EXIT_ERROR,
    EXIT_IDLE,
    EXIT_ITEM_TIMEOUT,
    EXIT_OK,
    EXIT_STOPPED,
    EXIT_USAGE,
    ConfigError,
    check_max_wait,
    check_target,
    open_queue,
    parse_prefetch,
    prom,
    settings,
)
from rediswq_kit.complete import complete_queue
from rediswq_worker import logs
from rediswq_worker.runners import (
    CommandRunner,
    HandlerRunner,
    Runner,
    SetupError,
    credential_variables,
    shell_script_with_braces,
)
from rediswq_worker.runtime import Ending, Options, Runtime, Summary
from rediswq_worker.secrecy import make_undumpable, scrub_process_memory
from rediswq_worker.work_help import EPILOG

if TYPE_CHECKING:
    from rediswq_worker.metrics import WorkerMetrics

# A Redis call waits for its reply a third of the lease: a renewal that hangs then fails (and is
# retried) while the leases it renews still hold. Bounded below so a short lease does not turn
# ordinary latency into errors, and above so a dead connection on a long lease is noticed.
MIN_SOCKET_TIMEOUT_SECS = 0.5
MAX_SOCKET_TIMEOUT_SECS = 30.0


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


@click.command(epilog=EPILOG, context_settings={**CONTEXT_SETTINGS, "show_default": True})
@click.argument("queue_name", metavar="QUEUE", envvar=_env("QUEUE"), shell_complete=complete_queue)
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
    "--item-timeout",
    "item_timeout_secs",
    metavar="SECS",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    envvar=_env("ITEM_TIMEOUT"),
    show_envvar=True,
    help="Fail an item that runs this long: a command's process group is killed, a handler gets "
    "TimeLimitExceeded raised in its thread; the worker goes on. A handler still running 2 s later "
    "cannot be stopped: its item is failed and the worker stops early (exit 5).",
)
@click.option(
    "--timeout",
    "timeout_secs",
    metavar="SECS",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    envvar=_env("TIMEOUT"),
    hidden=True,
    help="The old name of --item-timeout.",
)
@click.option(
    "--warn-after",
    "warn_after_secs",
    metavar="SECS",
    type=click.FloatRange(min=0),
    default=None,
    envvar=_env("WARN_AFTER"),
    show_envvar=True,
    show_default="--lease-secs",
    help="Log a warning (item id, attempt, running time) once per lease period while an item runs "
    "longer than this; 0: never.",
)
@click.option(
    "--stop-after-failures",
    metavar="N",
    type=click.IntRange(min=0),
    default=10,
    envvar=_env("STOP_AFTER_FAILURES"),
    show_envvar=True,
    help="Stop early (exit 6) once the last N items all failed with the same error (exception type "
    "and message; a command's exit status and last stderr line): a broken handler or command "
    "then charges N items one attempt instead of dead-lettering the queue. 0: never.",
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
    "--fail-on-dead/--allow-dead",
    default=True,
    envvar=_env("FAIL_ON_DEAD"),
    show_envvar=True,
    help="Once the queue drained, exit 4 if it holds dead letters (items that spent their "
    "attempts): exit 0 means every item was done. --allow-dead (or REDISWQ_FAIL_ON_DEAD=false) "
    "exits 0 all the same.",
)
@click.option(
    "--progress-secs",
    metavar="SECS",
    type=click.FloatRange(min=0),
    default=30.0,
    envvar=_env("PROGRESS_SECS"),
    show_envvar=True,
    help="Log a progress line this often: done, failed, running, rate, the queue's pending and "
    "leased, and what the worker waits for (one Redis call each). 0: off.",
)
@click.option(
    "--max-wait",
    "max_wait_secs",
    metavar="SECS",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    envvar=_env("MAX_WAIT"),
    show_envvar=True,
    help="With --until closed: exit 7 once nothing was leased for this long and the queue is "
    "still open (its producer is missing). Default: wait for ever.",
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
def work(ctx: click.Context, /, **options: Any) -> None:
    """Drain QUEUE: lease items, run COMMAND (or --handler) for each, exit 0 once the queue is done.

    Every option can also be set from the environment variable shown with it, so a Kubernetes Job
    can configure the worker in its pod template.
    """
    code = exit_code(_work(_Args(**options)))
    if code != EXIT_OK:
        ctx.exit(code)


# How each way a run can end is told to the Job controller (rediswq_kit's table of exit codes; the
# manifests' podFailurePolicy acts on them).
EXIT_CODES: dict[Ending, int] = {
    Ending.DRAINED: EXIT_OK,
    Ending.DRAINED_WITH_DEAD: EXIT_DEAD,
    Ending.STOPPED: EXIT_STOPPED,
    Ending.ITEM_STUCK: EXIT_ITEM_TIMEOUT,
    Ending.HANDLER_BROKEN: EXIT_BROKEN,
    Ending.PRODUCER_MISSING: EXIT_IDLE,
    Ending.FAILED: EXIT_ERROR,
    Ending.MISCONFIGURED: EXIT_USAGE,
}


def exit_code(summary: Summary) -> int:
    """The exit code for how the run ended; a run with no recorded ending never claims success."""
    return EXIT_ERROR if summary.ending is None else EXIT_CODES[summary.ending]


@dataclass(frozen=True)
class _Args:
    """The command's arguments and options, as click parsed them."""

    queue_name: str
    command: tuple[str, ...]
    handler: str | None
    lease_secs: float
    item_timeout_secs: float | None
    timeout_secs: float | None
    warn_after_secs: float | None
    stop_after_failures: int
    max_attempts: int
    retry_backoff_secs: float
    retry_backoff_cap_secs: float
    concurrency: int
    prefetch: int | None
    until: str
    max_items: int | None
    grace_secs: float
    reconnect_secs: float
    fail_on_dead: bool
    progress_secs: float
    max_wait_secs: float | None
    worker_name: str | None
    log_format: str
    pass_env: tuple[str, ...]
    metrics_port: int | None
    verbose: bool


def _work(args: _Args) -> Summary:
    """Open the queue, set up the runner, the metrics and the log; run; log the summary."""
    _check_mode(args)
    hidden = make_undumpable()  # first: nothing of ours may be read by what runs later
    queue = open_queue(
        args.queue_name,
        max_attempts=args.max_attempts,
        retry_backoff_secs=args.retry_backoff_secs,
        retry_backoff_cap_secs=args.retry_backoff_cap_secs,
        worker=args.worker_name or None,
        socket_timeout=socket_timeout_secs(args.lease_secs),
        retry_settles=False,  # the runtime retries them itself, and tells unconfirmed ones apart
    )
    hidden = _hide_secrets(args.pass_env) and hidden
    runner = _runner(args)  # imports a handler: user code runs from here on
    observer = _metrics(args.metrics_port, args.queue_name, queue.worker)
    log = logs.setup(
        "json" if args.log_format == "json" else "text",
        verbose=args.verbose,
        context={"queue": args.queue_name, "worker": queue.worker},
    )
    _log_start(log, args, runner, queue.worker)
    if not hidden and sys.platform.startswith("linux"):
        log.warning(
            "could not hide the Redis password from items (prctl or /proc/self/mem refused): an item "
            "of this user may read it in /proc/%d/environ or cmdline",
            os.getpid(),
            extra={"fields": {"event": "secrets_exposed"}},
        )
    runtime = Runtime(queue, runner, _options(args), log, observer)
    if observer is not None:
        observer.watch(runtime)
    summary = runtime.run()
    code = exit_code(summary)
    fields = {"queue": args.queue_name, **summary.fields(), "exit_code": code}
    log.info(summary.line(args.queue_name), extra={"fields": fields})
    if summary.error:
        log.error(summary.error, extra={"fields": {"event": "error", "exit_code": code}})
    logging.shutdown()
    return summary


def _hide_secrets(pass_env: tuple[str, ...]) -> bool:
    """Take the Redis secrets out of what an item or a handler could read: os.environ (items inherit
    it), and this process's argument and environment blocks (/proc/PID/cmdline and environ). A
    variable given to --pass-env stays in os.environ for the items, but not in those blocks."""
    secrets = settings().secrets()
    scrubbed = scrub_process_memory(secrets, credential_variables(os.environ, secrets))
    for name in credential_variables(os.environ, secrets, pass_env):
        del os.environ[name]
    return scrubbed


def _check_mode(args: _Args) -> None:
    check_target(args.handler, args.command)
    check_max_wait(args.until, args.max_wait_secs)
    if not args.handler and not args.command:
        raise click.UsageError("give a COMMAND after -- (e.g. rediswq work jobs -- ./run.sh {}) or --handler")


def _runner(args: _Args) -> Runner:
    try:
        if args.handler:
            return HandlerRunner(args.handler)
        return CommandRunner(args.command, queue_name=args.queue_name, timeout_secs=_item_timeout(args))
    except SetupError as e:
        raise ConfigError(str(e)) from e


def _item_timeout(args: _Args) -> float | None:
    """--item-timeout, or its old name --timeout (REDISWQ_TIMEOUT) when only that is given."""
    return args.item_timeout_secs if args.item_timeout_secs is not None else args.timeout_secs


def _options(args: _Args) -> Options:
    return Options(
        lease_secs=args.lease_secs,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        until="closed" if args.until == "closed" else "drained",
        max_items=args.max_items,
        grace_secs=args.grace_secs,
        reconnect_secs=args.reconnect_secs,
        fail_on_dead=args.fail_on_dead,
        item_timeout_secs=_item_timeout(args),
        warn_after_secs=args.warn_after_secs,
        stop_after_failures=args.stop_after_failures,
        progress_secs=args.progress_secs,
        max_wait_secs=args.max_wait_secs,
    )


def _log_start(log: logging.Logger, args: _Args, runner: Runner, worker: str) -> None:
    if args.timeout_secs is not None and args.item_timeout_secs is None:
        log.warning("--timeout (REDISWQ_TIMEOUT) is the old name of --item-timeout (REDISWQ_ITEM_TIMEOUT)")
    if shell_script_with_braces(args.command):
        log.warning(
            "the shell script string of the command holds {}: the payload becomes shell code there; "
            "pass it as an argument instead: sh -c '... \"$1\"' _ {} (see rediswq work --help)",
            extra={"fields": {"event": "unsafe_command"}},
        )
    log.info(
        "worker %s: %s on queue %r (concurrency %d, prefetch %s, lease %g s, until %s)",
        worker,
        runner.describe(),
        args.queue_name,
        args.concurrency,
        "auto" if args.prefetch is None else args.prefetch,
        args.lease_secs,
        args.until,
        extra={"fields": {"event": "start", "worker": worker, "queue": args.queue_name}},
    )
