"""Cluster and Sentinel URLs, parsed (rediswq/_topology.py), and topology errors, classified
(rediswq/_connection.py): pure logic, no server. The real topologies are in test_cluster.py and
test_sentinel.py."""

from __future__ import annotations

import pytest
import redis.exceptions

from rediswq import ConnectionFailed, InvalidArgument, Queue, ServerError, _topology
from rediswq._connection import Connection


def test_a_cluster_url_lists_its_seeds_with_the_default_port() -> None:
    parsed = _topology.parse("redis+cluster://10.0.0.1:7000,10.0.0.2,[::1]:7002/")
    assert parsed.kind == "cluster" and not parsed.tls
    assert parsed.hosts == [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)]
    assert (parsed.username, parsed.password, parsed.db) == (None, None, 0)


def test_a_sentinel_url_names_its_service_database_and_the_master_s_credentials() -> None:
    parsed = _topology.parse("rediss+sentinel://app:p%40ss@s1,s2:26380/my%20master/3")
    assert parsed.kind == "sentinel" and parsed.tls
    assert parsed.hosts == [("s1", 26379), ("s2", 26380)]
    assert (parsed.username, parsed.password, parsed.service, parsed.db) == ("app", "p@ss", "my master", 3)


def test_a_password_without_a_user_is_the_default_user_s() -> None:
    parsed = _topology.parse("redis+cluster://:secret@h:1/")
    assert (parsed.username, parsed.password) == (None, "secret")


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss://h/0", "unix:///tmp/r.sock", "redis+other://h/"])
def test_other_schemes_are_not_topology_urls(url: str) -> None:
    assert not _topology.is_topology_url(url)


def test_a_bad_topology_url_names_the_problem_but_not_the_password() -> None:
    with pytest.raises(InvalidArgument) as caught:
        Queue.from_url("redis+cluster://u:hunter2@h:99999,h2/", "q")
    assert "port" in str(caught.value) and "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (redis.exceptions.MovedError("3999 10.0.0.7:6379"), "MOVED 3999 10.0.0.7:6379"),
        (redis.exceptions.AskError("3999 10.0.0.8:6379"), "ASK 3999 10.0.0.8:6379"),
        (redis.exceptions.TryAgainError("Multiple keys request during rehashing"), "TRYAGAIN Multiple keys"),
        (redis.exceptions.ClusterDownError("The cluster is down"), "CLUSTERDOWN The cluster is down"),
        (redis.exceptions.MasterDownError("Link with MASTER is down"), "MASTERDOWN Link with MASTER"),
        (
            redis.exceptions.ReadOnlyError("You can't write against a read only replica."),
            "READONLY You can't",
        ),
        (redis.exceptions.ClusterError("TTL exhausted."), "TTL exhausted."),
        (redis.exceptions.SlotNotCoveredError("Slot 3999 not covered"), "Slot 3999 not covered"),
        (redis.exceptions.BusyLoadingError("Redis is loading"), "Redis is loading"),
    ],
)
def test_topology_errors_are_connection_trouble_retried_for_idempotent_calls(
    error: Exception, shown: str
) -> None:
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise error

    connection = Connection("redis+cluster://h1:6379/", retries=1)
    with pytest.raises(ConnectionFailed) as caught:
        connection.call(failing, idempotent=True)
    assert calls == 2
    assert shown in str(caught.value) and "redis+cluster://h1:6379/" in str(caught.value)
    calls = 0
    with pytest.raises(ConnectionFailed):
        connection.call(failing, idempotent=False)
    assert calls == 1


def test_other_error_replies_stay_server_errors_and_are_not_retried() -> None:
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")

    with pytest.raises(ServerError):
        Connection("redis://h:1/0", retries=2).call(failing, idempotent=True)
    assert calls == 1
