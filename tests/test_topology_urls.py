"""Cluster and Sentinel URLs, parsed (rediswq/_url.py, rediswq/_topology/), and topology errors,
classified (rediswq/_redis_errors.py): pure logic, no server (sentinels that do not answer are free
ports). The real topologies are in test_cluster.py, test_sentinel.py and test_reach.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.exceptions
from click.testing import CliRunner
from redis.sentinel import MasterNotFoundError, SentinelConnectionPool

from rediswq import AuthenticationFailed, ConnectionFailed, InvalidArgument, Queue, ServerError, _topology
from rediswq._connection import Connection
from rediswq_cli.main import main


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


@pytest.mark.parametrize("kind", ["cluster", "sentinel"])
def test_tls_settings_need_the_rediss_form_of_a_topology_url(kind: str) -> None:
    url = f"redis+{kind}://127.0.0.1:1/" + ("mymaster" if kind == "sentinel" else "")
    with pytest.raises(
        InvalidArgument, match=rf"^TLS settings need a rediss\+{kind}:// URL, not redis\+{kind}://$"
    ):
        Queue.from_url(url, "q", tls_verify=False)
    result = CliRunner().invoke(main, ["--url", url, "--tls-ca", __file__, "stats", "q"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: TLS settings need a rediss+{kind}:// URL, not redis+{kind}://"
    ]


@pytest.mark.parametrize("url", ["redis://h:1/0", "rediss+cluster://h:1/", "unix:///tmp/r.sock"])
def test_sentinel_credentials_need_a_sentinel_url(url: str) -> None:
    with pytest.raises(InvalidArgument, match=r"sentinel password or user needs a redis\+sentinel://"):
        Queue.from_url(url, "q", sentinel_username="watcher")
    result = CliRunner().invoke(
        main, ["--url", url, "stats", "q"], env={"REDISWQ_SENTINEL_PASSWORD": "s3cret-pw"}
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "s3cret-pw" not in result.output


def test_the_tls_settings_reach_every_connection_and_the_sentinel_password_only_the_sentinels(
    tmp_path: Path,
) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "cert.pem", "key.pem"))
    for path in (ca, cert, key):
        path.write_text("")  # only their existence is checked before connecting
    queue = Queue.from_url(
        "rediss+sentinel://:master-pw@s1,s2/mymaster/2", "q", tls_ca=str(ca), tls_cert=str(cert),
        tls_key=str(key), sentinel_username="watcher", sentinel_password="sentinel-pw",
    )  # fmt: skip
    pool = queue.client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    tls = {"ssl_ca_certs": str(ca), "ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    assert tls.items() <= pool.connection_kwargs.items()
    assert pool.connection_kwargs["password"] == "master-pw" and pool.connection_kwargs["db"] == 2
    for sentinel in pool.sentinel_manager.sentinels:
        kwargs = sentinel.connection_pool.connection_kwargs
        assert tls.items() <= kwargs.items()
        assert (kwargs["username"], kwargs["password"]) == ("watcher", "sentinel-pw")
    plain = _topology.of(Queue.from_url("redis://h:1/0", "q").client)
    assert plain.diagnose(MasterNotFoundError("none"), "redis://h:1/0", str) is None
