"""`rediswq ls`, `rediswq.survey` and `rediswq dashboard` on a 3-master Redis Cluster and behind Sentinel.

A cluster's queues live on the master of their slot: the survey walks every master and reads each
with one pipeline sent straight to it. Each topology runs on each Redis at hand (tests/topologies.py).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from click.testing import CliRunner
from helpers_dashboard import RunningDashboard
from topologies import Cluster, SentinelSet, per_server

import rediswq
from rediswq import Queue
from rediswq_cli.main import main

cluster = per_server(Cluster, "cluster")
sentinels = per_server(SentinelSet, "sentinels")


def queues_on_every_master(url: str, prefix: str, count: int = 30) -> dict[str, rediswq.Stats]:
    """`count` queues (their slots spread them over the masters), some items in each: name -> stats."""
    made = {}
    for i in range(count):
        q = Queue.from_url(url, f"{prefix}{i:02d}")
        q.put_many([b"x"] * (i % 4 + 1))
        if i % 3 == 0:
            q.close()
        if i % 5 == 0:
            q.lease(30)
        made[q.name] = q.stats()
    return made


def test_a_survey_of_a_cluster_reads_the_queues_of_every_master(cluster: Cluster) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}-"
    made = queues_on_every_master(cluster.url, prefix)
    client = Queue.from_url(cluster.url, "probe").client
    owners = {cluster.owner(client.keyslot(Queue(client, name).keys.meta)) for name in made}
    assert len(owners) == 3  # the queues are on every master
    found = rediswq.survey(client, pattern=prefix + "*")
    assert found.complete
    assert {s.name: s.stats for s in found.queues} == made


def test_ls_lists_every_queue_of_a_cluster_url(cluster: Cluster) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}-"
    made = queues_on_every_master(cluster.url, prefix, count=12)
    result = CliRunner().invoke(main, ["ls", prefix + "*", "--json"], env={"REDISWQ_URL": cluster.url})
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [q["name"] for q in listed] == sorted(made)
    assert [q["pending"] for q in listed] == [made[name].pending for name in sorted(made)]


def test_ls_lists_the_queues_behind_a_sentinel_url(sentinels: SentinelSet) -> None:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    made = queues_on_every_master(sentinels.url, prefix, count=6)
    result = CliRunner().invoke(main, ["ls", prefix + "*"], env={"REDISWQ_URL": sentinels.url})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()[1:]
    assert [(line.split()[0], int(line.split()[2])) for line in lines] == [
        (name, made[name].pending) for name in sorted(made)
    ]


def _dashboard_sees(url: str, made: dict[str, rediswq.Stats], prefix: str, log: Path) -> None:
    """The dashboard at `url` lists exactly `made`'s queues, with their pending counts."""
    running = RunningDashboard(url, log, actions=False)
    try:
        want = {name: stats.pending for name, stats in made.items()}

        def ours(data: dict[str, list[dict[str, object]]]) -> dict[str, object]:
            return {q["name"]: q["pending"] for q in data["queues"] if str(q["name"]).startswith(prefix)}

        data = running.wait_for("/api/queues", lambda d: ours(d) == want)
        assert ours(data) == want
    finally:
        running.stop()


def test_the_dashboard_shows_the_queues_of_every_master_of_a_cluster(
    cluster: Cluster, tmp_path: Path
) -> None:
    prefix = f"d{uuid.uuid4().hex[:6]}-"
    made = queues_on_every_master(cluster.url, prefix, count=12)
    _dashboard_sees(cluster.url, made, prefix, tmp_path / "log")


def test_the_dashboard_shows_the_queues_behind_a_sentinel_url(sentinels: SentinelSet, tmp_path: Path) -> None:
    prefix = f"d{uuid.uuid4().hex[:6]}-"
    made = queues_on_every_master(sentinels.url, prefix, count=6)
    _dashboard_sees(sentinels.url, made, prefix, tmp_path / "log")
