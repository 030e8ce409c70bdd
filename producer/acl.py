"""`rediswq acl`: the Redis ACL rules for a least-privilege user per role (worker, producer, admin)."""

from __future__ import annotations

import shlex

import click

from rediswq.acl import REDIS_VERSIONS, ROLES, RedisVersion, Role, acl_rules
from rediswq_kit import CONTEXT_SETTINGS, open_queue, queue_errors


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="worker",
    show_default=True,
    help="worker: `rediswq work`; producer: enqueue, close, stats, peek, dead list; admin: all commands.",
)
@click.option(
    "--redis-version",
    type=click.Choice(REDIS_VERSIONS),
    default="7",
    show_default=True,
    help="7: FCALL of rediswq's functions (run `rediswq install` once); 6.2: scripts (EVALSHA), weaker.",
)
@click.option("--user", metavar="NAME", help="The Redis user name.  [default: rediswq-ROLE]")
@click.option(
    "--format",
    "style",
    type=click.Choice(["command", "aclfile"]),
    default="command",
    show_default=True,
    help="A command for redis-cli (command), or a line for an ACL file (aclfile).",
)
@click.option(
    "--shards",
    type=click.IntRange(min=1, max=1024),
    default=1,
    show_default=True,
    metavar="S",
    help="The queue's shard count (`enqueue --shards`): the rules name every shard's keys.",
)
def acl(
    queue: str, role: Role, redis_version: RedisVersion, user: str | None, style: str, shards: int
) -> None:
    """Print the ACL SETUSER rules that let a Redis user do ROLE's work on QUEUE, and nothing more.

    Only QUEUE's keys, only the commands that role's calls run. Redis 7: FCALL of the role's own
    functions (no SCRIPT LOAD, EVAL or EVALSHA), reads of the queue's keys, and each write only on the
    keys the role writes it to (selectors); the library is loaded once by an admin (`rediswq install`).
    Redis 6.2: scripts (EVALSHA, so any Lua) and flat rules. Which one was printed is said on stderr.
    docs/security.md lists what each forbids. The rules hold no password: add one with
    `>PASSWORD`. A sharded queue: give its shard count (--shards), and the rules name each shard's keys.

    \b
    Examples:
      rediswq acl jobs --role worker | redis-cli     # then: ACL SETUSER rediswq-worker >PASSWORD
      rediswq acl jobs --role producer --format aclfile --user feeder >> users.acl
    """
    with queue_errors():
        rules = acl_rules(queue, role, redis_version, shards)
    kind = "functions (FCALL)" if redis_version == "7" else "scripts (EVALSHA), a weaker guarantee"
    click.echo(f"rediswq acl: rules for Redis {redis_version}+: {kind}", err=True)
    name = user or f"rediswq-{role}"
    if style == "aclfile":
        click.echo(" ".join(["user", name, *rules]))
    else:
        click.echo(" ".join(["ACL", "SETUSER", *(shlex.quote(word) for word in [name, *rules])]))


@click.command(context_settings=CONTEXT_SETTINGS)
def install() -> None:
    """Check the Redis of --url, and load (or replace) rediswq's function library there (every master
    of a cluster).

    As a user allowed FUNCTION LOAD and INFO (the admin role, or the default user). First the check
    the worker and producer roles may not make: a maxmemory-policy that may evict queue keys exits 2
    (unless --allow-eviction). Then, on Redis 7+, the library; on 6.2 there is none (the scripts
    load on first use). Idempotent: run it at deploy time and after each upgrade of rediswq; a
    worker whose version differs from the loaded library's exits 2 and says to run it. A client
    allowed FUNCTION LOAD loads a missing library by itself on first use.
    """
    with queue_errors():
        version = open_queue(_NO_QUEUE, one_shot=True).install()
    if version is None:
        click.echo("Redis without functions (6.2): nothing to load, the scripts load on first use")
    else:
        click.echo(f"rediswq function library version {version} loaded")


# `install` touches no queue's keys: a Queue is only how the library reaches a Redis of --url.
_NO_QUEUE = "rediswq-install"
