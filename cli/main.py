"""The `rediswq` command: its root group and global options; subcommands live beside it."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import islice

import click
from click.core import ParameterSource

from rediswq.urls import url_secrets
from rediswq_kit import CONTEXT_SETTINGS, DEFAULT_URL, ConfigError, Settings, read_url_file


class _Root(click.Group):
    """The root group, whose options may also come after the subcommand (`rediswq stats q --url U`).

    They are moved in front of the subcommand before parsing; what follows a `--` (an item's command)
    is never touched.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ours = [o for o in self.params if isinstance(o, click.Option) and not o.is_eager]
        lifted, rest = _lift(
            args, _names(o for o in ours if o.is_flag), _names(o for o in ours if not o.is_flag)
        )
        return super().parse_args(ctx, [*lifted, *rest])


def _names(options: Iterable[click.Option]) -> set[str]:
    return {name for option in options for name in option.opts}


def _lift(args: list[str], flags: set[str], valued: set[str]) -> tuple[list[str], list[str]]:
    """Split `args` into the root group's options (with their values) and the rest, in order."""
    lifted: list[str] = []
    rest: list[str] = []
    words: Iterator[str] = iter(args)
    for word in words:
        if word == "--":
            rest += [word, *words]
            break
        name = word.split("=", 1)[0]
        if word in flags or (name in valued and "=" in word):
            lifted.append(word)
        elif word in valued:
            value = list(islice(words, 1))
            if not value:
                raise click.UsageError(f"Option '{word}' requires an argument.")
            lifted += [word, *value]
        else:
            rest.append(word)
    return lifted, rest


def _url_from(ctx: click.Context) -> str:
    """Which of --url, $REDISWQ_URL and $REDIS_URL gave the URL; empty for the default."""
    source = ctx.get_parameter_source("url")
    if source == ParameterSource.COMMANDLINE:
        return "--url"
    if source == ParameterSource.ENVIRONMENT:
        return "$REDISWQ_URL" if os.environ.get("REDISWQ_URL") else "$REDIS_URL"
    return ""


def _url_in_file(ctx: click.Context, path: str, url_from: str) -> tuple[str, str]:
    """The URL in --url-file's file, and where it came from; a URL given besides is an error (exit 2),
    except $REDIS_URL: a generic variable other tools may have set."""
    given_as = (
        "--url-file"
        if ctx.get_parameter_source("url_file") == ParameterSource.COMMANDLINE
        else "$REDISWQ_URL_FILE"
    )
    if url_from in ("--url", "$REDISWQ_URL"):
        raise ConfigError(f"give the Redis URL with {url_from} or with {given_as}, not both")
    return read_url_file(path, given_as), f"{given_as} {path}"


def _warn_of_passwords_in_argv(ctx: click.Context, url: str) -> None:
    """One line on standard error (no secret in it) when a password came on the command line, where
    `ps` shows it to every user of the machine for as long as the command runs."""
    given = {}
    if ctx.get_parameter_source("url") == ParameterSource.COMMANDLINE and url_secrets(url):
        given["--url"] = "--url-file or $REDISWQ_URL"
    if ctx.get_parameter_source("sentinel_password") == ParameterSource.COMMANDLINE:
        given["--sentinel-password"] = "$REDISWQ_SENTINEL_PASSWORD"
    if given:
        click.echo(
            f"Warning: a password given with {' and '.join(given)} shows in the process list (ps) of "
            f"this machine; give it with {' and '.join(given.values())} instead",
            err=True,
        )


@click.group(cls=_Root, context_settings={**CONTEXT_SETTINGS, "max_content_width": 100})
@click.option(
    "--url",
    envvar=["REDISWQ_URL", "REDIS_URL"],
    default=DEFAULT_URL,
    show_default=True,
    metavar="URL",
    help="Redis URL (redis://, rediss:// or unix://); for Redis Cluster "
    "redis+cluster://[USER:PASSWORD@]HOST:PORT,HOST:PORT/, for Sentinel "
    "redis+sentinel://[USER:PASSWORD@]HOST:PORT,HOST:PORT/SERVICE[/DB] (rediss+ for TLS; several "
    "seed hosts, one answering is enough). From $REDISWQ_URL, then $REDIS_URL. A password in it is "
    "never printed; percent-encode / ? # @ in it. A password on the command line shows in ps: give "
    "it in the environment or with --url-file. Query parameters (redis:// and rediss:// only): "
    "see the README (Connecting to Redis); an unknown one is an error.",
)
@click.option(
    "--url-file",
    metavar="PATH",
    envvar="REDISWQ_URL_FILE",
    show_envvar=True,
    help="Read the Redis URL from this file (e.g. a mounted Kubernetes Secret; one line, its newline "
    "stripped) instead of --url, $REDISWQ_URL and $REDIS_URL. Read once; its content is never printed.",
)
@click.option(
    "--min-replicas",
    envvar="REDISWQ_MIN_REPLICAS",
    show_envvar=True,
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="N",
    help="Adding items and closing a queue wait until N replicas have the write (Redis WAIT, up to "
    "--min-replicas-timeout), so an acknowledged enqueue survives a failover; fewer is an error "
    "(exit 1).",
)
@click.option(
    "--min-replicas-timeout",
    envvar="REDISWQ_MIN_REPLICAS_TIMEOUT",
    show_envvar=True,
    type=click.FloatRange(min=0, min_open=True),
    default=5.0,
    show_default=True,
    metavar="SECS",
    help="How long a write waits for --min-replicas replicas.",
)
@click.option(
    "--tls-ca",
    metavar="FILE",
    envvar="REDISWQ_TLS_CA",
    show_envvar=True,
    help="rediss:// and rediss+ URLs only: trust the CA in this PEM file instead of the system's.",
)
@click.option(
    "--tls-cert",
    metavar="FILE",
    envvar="REDISWQ_TLS_CERT",
    show_envvar=True,
    help="rediss:// and rediss+ URLs only: the client certificate (PEM), for a Redis with "
    "tls-auth-clients on.",
)
@click.option(
    "--tls-key",
    metavar="FILE",
    envvar="REDISWQ_TLS_KEY",
    show_envvar=True,
    help="rediss:// and rediss+ URLs only: the client certificate's private key (PEM).",
)
@click.option(
    "--tls-no-verify",
    is_flag=True,
    envvar="REDISWQ_TLS_NO_VERIFY",
    show_envvar=True,
    help="rediss:// and rediss+ URLs only: skip certificate and host name checks (prints a warning; "
    "tests only).",
)
@click.option(
    "--sentinel-username",
    metavar="USER",
    envvar="REDISWQ_SENTINEL_USERNAME",
    show_envvar=True,
    help="Sentinel URLs only: the ACL user the sentinels know us by (the URL's user is the master's).",
)
@click.option(
    "--sentinel-password",
    metavar="PASSWORD",
    envvar="REDISWQ_SENTINEL_PASSWORD",
    show_envvar=True,
    help="Sentinel URLs only: the sentinels' own password (their requirepass or ACL user's; the URL's "
    "password is the master's). Give it in the environment: a command line shows in ps. Never printed; "
    "an item's command does not get it.",
)
@click.option(
    "--allow-eviction",
    is_flag=True,
    envvar="REDISWQ_ALLOW_EVICTION",
    help="Use a Redis whose maxmemory-policy may evict keys (refused by default, exit 2: evicted "
    "queue keys lose items silently); from $REDISWQ_ALLOW_EVICTION.",
)
@click.version_option(package_name="rediswq-k8s")
@click.pass_context
def main(
    ctx: click.Context,
    url: str,
    url_file: str | None,
    allow_eviction: bool,
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_no_verify: bool,
    sentinel_username: str | None,
    sentinel_password: str | None,
    min_replicas: int,
    min_replicas_timeout: float,
) -> None:
    """rediswq: a Redis work queue for Kubernetes batch Jobs.

    Fill a queue with `rediswq enqueue`, drain it with `rediswq work` in every pod of a Job, and
    watch it with `rediswq stats`. Exit codes: 0 success (for `work`: the queue is drained, every
    item done), 1 runtime error, 2 usage or configuration error, 3 `work` stopped before the queue
    drained, 4 `work`: drained with dead letters, 5 `work`: an item's thread could not be stopped,
    6 `work`: stopped early on a broken handler, 7 `work --max-wait`: the queue was never closed.
    """
    url_from = _url_from(ctx)
    if url_file:
        url, url_from = _url_in_file(ctx, url_file, url_from)
    _warn_of_passwords_in_argv(ctx, url)
    tls = {"tls_ca": tls_ca, "tls_cert": tls_cert, "tls_key": tls_key}
    ctx.obj = Settings(
        url,
        allow_eviction,
        {name: value for name, value in tls.items() if value},
        min_replicas,
        min_replicas_timeout,
        url_from,
        sentinel_username or None,
        sentinel_password or None,
    )
    if tls_no_verify:
        ctx.obj.tls["tls_verify"] = False


# Subcommands are registered after `main` exists; each lives with the side it belongs to.
from rediswq_cli.demo import demo  # noqa: E402
from rediswq_cli.kube import autoscale, commands  # noqa: E402, F401  (they register the job subcommands)
from rediswq_cli.kube.group import job  # noqa: E402
from rediswq_producer.acl import acl, install  # noqa: E402
from rediswq_producer.admin import close, dead, peek, purge, reopen  # noqa: E402
from rediswq_producer.dashboard.command import dashboard  # noqa: E402
from rediswq_producer.enqueue import enqueue  # noqa: E402
from rediswq_producer.exporter import exporter  # noqa: E402
from rediswq_producer.ls import ls  # noqa: E402
from rediswq_producer.stats import stats  # noqa: E402
from rediswq_worker.work import work  # noqa: E402

for command in (
    enqueue,
    stats,
    ls,
    dead,
    peek,
    close,
    reopen,
    purge,
    acl,
    install,
    work,
    demo,
    job,
    exporter,
    dashboard,
):
    main.add_command(command)
