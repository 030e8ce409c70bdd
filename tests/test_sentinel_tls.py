"""Redis Sentinel over TLS with passwords, for real: a master, a replica and three sentinels that speak
TLS only (to each other too) and want client certificates; the master's password is in the URL, the
sentinels have a password of their own. Workers drain a queue through them given the --tls-* options
and $REDISWQ_SENTINEL_PASSWORD, the library takes the same as keyword arguments, an item's command
never sees the sentinels' password, and a missing or wrong sentinel password, or a certificate from
another CA, exits 2 at once with one line."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import PKI, make_pki
from hypothesis import HealthCheck, given, settings
from redis_server import needs_tls
from test_redaction import PASSWORDS, assert_hidden, error_outputs
from test_tls import AT_ONCE_SECS, rediswq_cli
from topologies import SentinelSet, check_every_operation

import rediswq
from rediswq import Queue
from rediswq._topology import describe

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
    needs_tls(),
]

MASTER_PASSWORD = "masters-own-Pw-2291"
SENTINEL_PASSWORD = "sentinels-own-Pw-8813"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def sentinels(pki: PKI) -> Iterator[SentinelSet]:
    topology = SentinelSet(
        tls=pki.server, client_tls=pki.client, password=MASTER_PASSWORD, sentinel_password=SENTINEL_PASSWORD
    )
    try:
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def name() -> str:
    return f"q-{uuid.uuid4().hex[:8]}"


def tls_env(pki: PKI, ca: Path | None = None) -> dict[str, str]:
    files = pki.client
    return {"REDISWQ_TLS_CA": str(ca or files.ca), "REDISWQ_TLS_CERT": str(files.cert),
            "REDISWQ_TLS_KEY": str(files.key)}  # fmt: skip


def open_queue(sentinels: SentinelSet, pki: PKI, name: str, **options: str | int) -> Queue:
    files = pki.client
    return Queue.from_url(
        sentinels.url, name, tls_ca=str(files.ca), tls_cert=str(files.cert), tls_key=str(files.key), **options
    )


def test_every_operation_works_through_tls_sentinels_that_have_a_password_of_their_own(
    sentinels: SentinelSet, pki: PKI, name: str
) -> None:
    queue = open_queue(sentinels, pki, name, sentinel_password=SENTINEL_PASSWORD)
    check_every_operation(queue)
    shown = f"{describe(queue.client)} {queue._conn.url}"
    assert SENTINEL_PASSWORD not in shown and MASTER_PASSWORD not in shown, shown
    assert describe(queue.client).startswith("rediss+sentinel://127.0.0.1:")


def test_workers_drain_through_tls_sentinels_given_their_password_in_the_environment(
    sentinels: SentinelSet, pki: PKI, name: str, tmp_path: Path
) -> None:
    items = 300
    env = {**tls_env(pki), "REDISWQ_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    done, _ = rediswq_cli("enqueue", name, "--range", f"0:{items}", env={**env, "REDISWQ_URL": sentinels.url})
    assert done.returncode == 0, done.stderr
    handler = ["--handler", "helpers_topology_handler:handle", "--prefetch", "10"]
    log = {"PYTHONPATH": str(Path(__file__).parent), "REDISWQ_TEST_LOG": str(tmp_path / "processed")}
    done, _ = rediswq_cli("work", name, *handler, env={**env, **log, "REDISWQ_URL": sentinels.url})
    assert done.returncode == 0, done.stderr
    processed = [line for path in tmp_path.glob("processed.*") for line in path.read_bytes().splitlines()]
    assert sorted(processed) == sorted(str(i).encode() for i in range(items))
    assert SENTINEL_PASSWORD not in done.stdout + done.stderr and "Warning" not in done.stderr


def test_an_items_command_never_sees_the_sentinels_password(
    sentinels: SentinelSet, pki: PKI, name: str, tmp_path: Path
) -> None:
    out = tmp_path / "env.txt"
    env = {
        **tls_env(pki),
        "REDISWQ_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        "MY_COPY": f"pw={SENTINEL_PASSWORD}",
    }
    done, _ = rediswq_cli("enqueue", name, "one", env={**env, "REDISWQ_URL": sentinels.url})
    assert done.returncode == 0, done.stderr
    item = ["--", "sh", "-c", f'env > "{out}"']
    done, _ = rediswq_cli("work", name, *item, env={**env, "REDISWQ_URL": sentinels.url})
    assert done.returncode == 0, done.stderr
    seen = out.read_text()
    assert "REDISWQ_QUEUE=" in seen and "REDISWQ_TLS_CA=" in seen  # it ran, with the harmless ones
    assert SENTINEL_PASSWORD not in seen and "\nMY_COPY=" not in f"\n{seen}"


@pytest.mark.parametrize(
    ("password", "said", "command"),
    [
        (None, "need a password, and none was given for them", "work"),
        (
            "a-wrong-one-Pw-0000",
            "refused the sentinel password or user: invalid username-password pair",
            "stats",
        ),
    ],
)
def test_a_missing_or_wrong_sentinel_password_exits_2_at_once_with_one_line(
    sentinels: SentinelSet, pki: PKI, name: str, password: str | None, said: str, command: str
) -> None:
    env = {**tls_env(pki), **({"REDISWQ_SENTINEL_PASSWORD": password} if password else {})}
    argv = {"stats": ["stats", name], "work": ["work", name, "--reconnect-secs", "60", "--", "true"]}[command]
    done, secs = rediswq_cli(*argv, env={**env, "REDISWQ_URL": sentinels.url})
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "the sentinels of rediss+sentinel://:***@127.0.0.1:" in lines[-1] and said in lines[-1], lines
    assert len(lines) == 1 or command == "work", lines  # a worker logs its start first
    assert MASTER_PASSWORD not in done.stderr and (password or SENTINEL_PASSWORD) not in done.stderr
    assert secs < AT_ONCE_SECS, f"{command}: {secs:.1f} s: it was retried"


def test_a_certificate_from_another_ca_exits_2_at_once(sentinels: SentinelSet, pki: PKI, name: str) -> None:
    env = {**tls_env(pki, ca=pki.other_ca), "REDISWQ_SENTINEL_PASSWORD": SENTINEL_PASSWORD}
    for command in (["stats", name], ["work", name, "--reconnect-secs", "60", "--", "true"]):
        done, secs = rediswq_cli(*command, env={**env, "REDISWQ_URL": sentinels.url})
        assert done.returncode == 2, (command, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert "TLS with the sentinels of rediss+sentinel://" in last and "certificate verify failed" in last
        assert secs < AT_ONCE_SECS, f"{command}: {secs:.1f} s: it was retried"


@pytest.mark.slow  # about 3 s: TLS handshakes with the sentinels, twice, for each password
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=PASSWORDS)
def test_a_refused_sentinel_password_is_never_shown(sentinels: SentinelSet, pki: PKI, password: str) -> None:
    with pytest.raises(rediswq.AuthenticationFailed) as caught:
        open_queue(sentinels, pki, "redaction", sentinel_password=password, retries=0).stats()
    assert "refused the sentinel password" in str(caught.value)
    assert_hidden(password, error_outputs(caught.value))
