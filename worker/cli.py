"""The `rediswq` command: its root group and global options; subcommands live beside it."""

from __future__ import annotations

import click

from worker.clikit import DEFAULT_URL, Settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--url",
    envvar=["REDISWQ_URL", "REDIS_URL"],
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Redis URL (redis://, rediss:// or unix://); from $REDISWQ_URL, then $REDIS_URL. "
    "A password in it is never printed.",
)
@click.option(
    "--allow-eviction",
    is_flag=True,
    envvar="REDISWQ_ALLOW_EVICTION",
    help="Use a Redis whose maxmemory-policy may evict keys (refused by default, exit 2: evicted "
    "queue keys lose items silently); from $REDISWQ_ALLOW_EVICTION.",
)
@click.version_option(package_name="rediswq")
@click.pass_context
def main(ctx: click.Context, url: str, allow_eviction: bool) -> None:
    """rediswq: a Redis work queue for Kubernetes batch Jobs.

    Fill a queue with `rediswq enqueue`, drain it with `rediswq work` in every pod of a Job, and
    watch it with `rediswq stats`. Exit codes: 0 success (for `work`: the queue is drained), 1 runtime
    error, 2 usage or configuration error, 3 `work` stopped before the queue drained, 4 `work
    --fail-on-dead`: drained with dead letters.
    """
    ctx.obj = Settings(url, allow_eviction)


# Subcommands are registered after `main` exists; each lives with the side it belongs to.
from producer.admin import close, dead, peek, purge, reopen  # noqa: E402
from producer.enqueue import enqueue  # noqa: E402
from producer.stats import stats  # noqa: E402
from worker.demo import demo  # noqa: E402
from worker.job import job  # noqa: E402
from worker.work import work  # noqa: E402

for command in (enqueue, stats, dead, peek, close, reopen, purge, work, demo, job):
    main.add_command(command)
