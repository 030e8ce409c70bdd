"""Cluster and Sentinel URLs, parsed (rediswq/_topology.py), and topology errors, classified
(rediswq/_connection.py): pure logic, no server (sentinels that do not answer are free ports). The
real topologies are in test_cluster.py, test_sentinel.py and test_reach.py."""

from __future__ import annotations

import pytest
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel
from topologies import free_ports

from rediswq import AuthenticationFailed, ConnectionFailed, InvalidArgument, Queue, ServerError, _topology
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


def cluster_unreachable(cause: Exception) -> redis.exceptions.RedisClusterException:
    """What a cluster client raises when no node answered: redis-py's words, from the last node's error."""
    try:
        raise redis.exceptions.RedisClusterException(
            f"Redis Cluster cannot be connected. Please provide at least one reachable node: {cause}"
        ) from cause
    except redis.exceptions.RedisClusterException as e:
        return e


@pytest.mark.parametrize(
    ("cause", "kind", "says", "calls"),
    [
        (
            redis.exceptions.ConnectionError("Error 111 connecting to h2:7001."),
            ConnectionFailed,
            "cannot reach",
            2,
        ),
        (
            redis.exceptions.AuthenticationError("invalid username-password pair"),
            AuthenticationFailed,
            "refused the credentials",
            1,
        ),
    ],
)
def test_a_cluster_no_node_of_which_answered_is_an_outage_or_a_refusal_as_one_server_is(
    cause: Exception, kind: type[Exception], says: str, calls: int
) -> None:
    tried = 0

    def failing() -> None:
        nonlocal tried
        tried += 1
        raise cluster_unreachable(cause)

    with pytest.raises(kind) as caught:
        Connection("redis+cluster://h1:7000,h2:7001/", retries=1).call(failing, idempotent=True)
    assert tried == calls  # a refused password is not retried
    assert says in str(caught.value) and str(cause) in str(caught.value)
    assert type(caught.value) is kind


def test_no_master_found_names_the_sentinels_that_did_not_answer_by_address() -> None:
    ports = free_ports(2)
    quiet = {"retry": Retry(NoBackoff(), 0)}
    sentinel = Sentinel([("127.0.0.1", port) for port in ports], sentinel_kwargs=quiet)
    with pytest.raises(ConnectionFailed) as caught:
        Connection("redis+sentinel://s1,s2/mymaster", retries=0).call(
            lambda: sentinel.discover_master("mymaster"), idempotent=True
        )
    message = str(caught.value)
    shown = ", ".join(f"127.0.0.1:{port}" for port in ports)
    assert f"No master found for 'mymaster' (these sentinels did not answer: {shown})" in message
    assert "redis.client.Redis" not in message, message
