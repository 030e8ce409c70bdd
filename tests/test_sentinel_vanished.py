"""A replica promoted without the queue's keys (it never got them): the workers must not call the
queue drained. A Sentinel set of its own (the test leaves it without a replica).

Timeline: the master's writes are paused (CLIENT PAUSE WRITE, so nothing more reaches the replica),
the replica's copy of the queue is deleted, the master is SIGKILLed; the sentinels promote the empty
replica, and every worker's next lease call finds the queue gone (QueueNotFound).
"""

from __future__ import annotations

from pathlib import Path

import redis
from topologies import SentinelSet, drain_through, per_server, wait_for

sentinels = per_server(SentinelSet, "sentinels")


def test_workers_exit_1_when_an_empty_replica_is_promoted_never_0(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    old = sentinels.master()

    def promote_an_empty_replica() -> None:
        redis.Redis(port=old).execute_command("CLIENT", "PAUSE", 10000, "WRITE")
        replica = redis.Redis(port=sentinels.replica_port)
        replica.config_set("replica-read-only", "no")
        replica.flushall()  # a Redis this test started, standing for a replica that never synced
        sentinels.kill(old)

    drain = drain_through(sentinels.url, "vanishing", 1500, promote_an_empty_replica, tmp_path / "log")
    print("\n" + drain.line(f"sentinel failover to an empty replica on {sentinels.version}"))
    assert drain.exits == [1, 1], drain.logs
    # Only the promoted, empty replica can have said so: the old master had every key.
    wait_for(lambda: sentinels.master() == sentinels.replica_port, "the sentinels name the new master")
    assert all("vanished" in log for log in drain.logs), drain.logs
    assert drain.lost > 0  # the items were on the dead master only: the workers said so, not "drained"
