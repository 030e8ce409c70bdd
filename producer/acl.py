"""`rediswq acl`: the Redis ACL rules for a least-privilege user per role (worker, producer, admin)."""

from __future__ import annotations

import shlex

import click

from rediswq.acl import ROLES, Role, acl_rules
from rediswq_kit import CONTEXT_SETTINGS, queue_errors


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("queue")
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="worker",
    show_default=True,
    help="worker: `rediswq work`; producer: enqueue, close, stats, peek, dead list; admin: all commands.",
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
def acl(queue: str, role: Role, user: str | None, style: str) -> None:
    """Print the ACL SETUSER rules that let a Redis user do ROLE's work on QUEUE, and nothing more.

    Only QUEUE's keys, only the commands that role's calls run (scripts run with EVALSHA; no EVAL,
    no admin commands; INFO, for the check that Redis does not evict keys). Redis grants commands, not
    scripts: the worker role can also close the queue, and the producer role requeue or delete dead
    letters (the same commands). The
    rules hold no password: add one with `>PASSWORD`.

    \b
    Examples:
      rediswq acl jobs --role worker | redis-cli     # then: ACL SETUSER rediswq-worker >PASSWORD
      rediswq acl jobs --role producer --format aclfile --user feeder >> users.acl
    """
    with queue_errors():
        rules = acl_rules(queue, role)
    name = user or f"rediswq-{role}"
    if style == "aclfile":
        click.echo(" ".join(["user", name, *rules]))
    else:
        click.echo(" ".join(["ACL", "SETUSER", *(shlex.quote(word) for word in [name, *rules])]))
