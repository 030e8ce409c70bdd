"""Redis Cluster over TLS, for real: three masters (no replicas, for speed) that speak TLS only, on the
cluster bus too, and want client certificates, with a CA made here by openssl. Workers drain a queue
through it given the --tls-* options, the library takes the same as keyword arguments, certificate
checks can be turned off (with a warning), and a certificate from another CA exits 2 at once."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import PKI, make_pki
from redis_server import needs_tls
from test_tls import AT_ONCE_SECS, rediswq_cli
from topologies import Cluster, check_every_operation

from rediswq import Queue

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
    needs_tls(),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cluster(pki: PKI) -> Iterator[Cluster]:
    topology = Cluster(replicas=0, tls=pki.server, client_tls=pki.client)
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def test_every_operation_works_on_a_tls_cluster_with_a_private_ca_and_a_client_certificate(
    cluster: Cluster, pki: PKI, name: str
) -> None:
    files = pki.client
    queue = Queue.from_url(
        cluster.url, name, tls_ca=str(files.ca), tls_cert=str(files.cert), tls_key=str(files.key)
    )
    check_every_operation(queue)


def test_workers_drain_a_tls_cluster_given_the_tls_options_or_their_environment(
    cluster: Cluster, pki: PKI, name: str, tmp_path: Path
) -> None:
    items = 300
    done, _ = rediswq_cli(
        "--url", cluster.url, *pki.client.cli_options(), "enqueue", name, "--range", f"0:{items}"
    )
    assert done.returncode == 0, done.stderr
    log = tmp_path / "processed"
    env = {
        "REDISWQ_TLS_CA": str(pki.client.ca),
        "REDISWQ_TLS_CERT": str(pki.client.cert),
        "REDISWQ_TLS_KEY": str(pki.client.key),
        "PYTHONPATH": str(Path(__file__).parent),
        "REDISWQ_TEST_LOG": str(log),
    }
    handler = ["--handler", "helpers_topology_handler:handle", "--prefetch", "10"]
    done, _ = rediswq_cli("--url", cluster.url, "work", name, *handler, env=env)
    assert done.returncode == 0, done.stderr
    processed = [line for path in tmp_path.glob("processed.*") for line in path.read_bytes().splitlines()]
    assert sorted(processed) == sorted(str(i).encode() for i in range(items))
    assert "Warning" not in done.stderr


def test_a_certificate_from_another_ca_exits_2_at_once(cluster: Cluster, pki: PKI, name: str) -> None:
    for command in (["stats", name], ["work", name, "--reconnect-secs", "60", "--", "true"]):
        done, secs = rediswq_cli("--url", cluster.url, *pki.client.cli_options(ca=pki.other_ca), *command)
        assert done.returncode == 2, (command, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert "TLS with Redis at rediss+cluster://" in last and "certificate verify failed" in last, last
        assert "Traceback" not in done.stderr
        assert secs < AT_ONCE_SECS, f"{command}: {secs:.1f} s: it was retried"


def test_turning_certificate_checks_off_works_and_warns(cluster: Cluster, pki: PKI, name: str) -> None:
    client_certificate = ["--tls-cert", str(pki.client.cert), "--tls-key", str(pki.client.key)]
    done, _ = rediswq_cli("--url", cluster.url, "--tls-no-verify", *client_certificate, "enqueue", name, "x")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Warning: TLS certificate checks are off for rediss+cluster://") == 1, (
        done.stderr
    )
    files = pki.client
    queue = Queue.from_url(
        cluster.url, name, tls_ca=str(files.ca), tls_cert=str(files.cert), tls_key=str(files.key)
    )
    assert queue.stats().pending == 1
