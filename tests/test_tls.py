"""TLS for real: a CA made here with openssl, redis-servers on --tls-port (one requiring client
certificates), and `rediswq` connecting with --tls-ca/--tls-cert/--tls-key, the environment or URL
parameters. Certificate and host name failures exit 2 at once, never retried."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from certs import make_ca, make_cert
from redis_server import find_binary, free_port, needs_tls, tls_missing

import rediswq

REDISWQ = str(Path(sys.executable).with_name("rediswq"))

pytestmark = [
    pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed"),
    needs_tls(),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "ca", "DNS:localhost")
    make_cert(d, "client", "ca", "DNS:rediswq-client")
    return d


class TLSRedis:
    """A redis-server that speaks TLS only (--port 0), with or without client certificates."""

    def __init__(self, pki: Path, *, client_certs: bool) -> None:
        why = tls_missing()  # test_redaction uses these servers too
        if why:
            pytest.skip(why)
        self.port = free_port()
        self.dir = pki
        clients = "yes" if client_certs else "no"
        args = [find_binary(), "--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1",
                "--tls-cert-file", str(pki / "server.pem"), "--tls-key-file", str(pki / "server.key"),
                "--tls-ca-cert-file", str(pki / "ca.pem"), "--tls-auth-clients", clients,
                "--save", "", "--appendonly", "no", "--dir", str(pki)]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"exited at start: {self.process.returncode}") from None
                time.sleep(0.025)
        raise RuntimeError("TLS redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture(scope="module")
def tls(pki: Path) -> Iterator[TLSRedis]:
    server = TLSRedis(pki, client_certs=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls(pki: Path) -> Iterator[TLSRedis]:
    server = TLSRedis(pki, client_certs=True)
    yield server
    server.stop()


# A refusal no retry can fix ends at once: well within this, even on a loaded 2-core machine, where a
# worker that retried would wait out its --reconnect-secs of 60 s.
AT_ONCE_SECS = 20


def rediswq_cli(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS"))}
    started = time.monotonic()
    done = subprocess.run(
        [REDISWQ, *args], env={**base, **(env or {})}, capture_output=True, text=True, timeout=60
    )
    return done, time.monotonic() - started


def test_a_queue_over_tls_works_with_the_ca_given_by_option_env_or_url(
    tls: TLSRedis, pki: Path, queue_name: str
) -> None:
    url = f"rediss://localhost:{tls.port}/0"
    done, _ = rediswq_cli("--url", url, "--tls-ca", str(pki / "ca.pem"), "enqueue", queue_name, "a", "b")
    assert done.returncode == 0, done.stderr
    done, _ = rediswq_cli("--url", url, "stats", queue_name, env={"REDISWQ_TLS_CA": str(pki / "ca.pem")})
    assert done.returncode == 0 and "pending" in done.stdout, done.stderr
    q = rediswq.Queue.from_url(f"{url}?ssl_ca_certs={pki / 'ca.pem'}", queue_name)
    assert q.stats().pending == 2
    done, _ = rediswq_cli("--url", url, "--tls-ca", str(pki / "ca.pem"), "work", queue_name, "--", "true")
    assert done.returncode == 0, done.stderr
    assert "Warning" not in done.stderr


def test_a_certificate_from_another_ca_exits_2_at_once(tls: TLSRedis, pki: Path, queue_name: str) -> None:
    url = f"rediss://localhost:{tls.port}/0"
    for command in (["stats", queue_name], ["work", queue_name, "--reconnect-secs", "60", "--", "true"]):
        done, secs = rediswq_cli("--url", url, "--tls-ca", str(pki / "other-ca.pem"), *command)
        assert done.returncode == 2, (command, done.stderr)
        assert "certificate verify failed" in done.stderr.splitlines()[-1], done.stderr
        assert "Traceback" not in done.stderr
        assert secs < AT_ONCE_SECS, f"{command}: {secs:.1f} s: it was retried"


def test_a_host_name_the_certificate_does_not_name_exits_2(tls: TLSRedis, pki: Path, queue_name: str) -> None:
    done, secs = rediswq_cli(
        "--url", f"rediss://127.0.0.1:{tls.port}/0", "--tls-ca", str(pki / "ca.pem"), "stats", queue_name
    )
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert "TLS with Redis" in line and ("IP address mismatch" in line or "hostname" in line), line
    assert secs < AT_ONCE_SECS


def test_a_server_that_wants_a_client_certificate_refuses_one_without_and_accepts_one_with(
    mtls: TLSRedis, pki: Path, queue_name: str
) -> None:
    url = f"rediss://localhost:{mtls.port}/0"
    ca = ["--tls-ca", str(pki / "ca.pem")]
    done, secs = rediswq_cli("--url", url, *ca, "stats", queue_name)
    assert done.returncode == 2, done.stderr
    said = done.stderr.strip().splitlines()[-1]
    # TLS 1.3 alerts after the handshake: redis-py mostly meets a closed connection (9 in 10 here),
    # which rediswq tells from an outage by listening for the alert on a connection of its own.
    assert "TLS with Redis" in said and "CERTIFICATE_REQUIRED" in said, done.stderr
    assert secs < AT_ONCE_SECS
    client = ["--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]
    done, _ = rediswq_cli("--url", url, *ca, *client, "enqueue", queue_name, "x")
    assert done.returncode == 0, done.stderr


def test_turning_verification_off_works_and_warns(tls: TLSRedis, queue_name: str) -> None:
    url = f"rediss://127.0.0.1:{tls.port}/0"
    done, _ = rediswq_cli("--url", f"{url}?ssl_cert_reqs=none", "enqueue", queue_name, "x")
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("Warning: TLS certificate checks are off") == 1, done.stderr
    done, _ = rediswq_cli("--url", url, "--tls-no-verify", "stats", queue_name)
    assert done.returncode == 0 and "Warning: TLS certificate checks are off" in done.stderr, done.stderr


def test_tls_options_need_a_rediss_url_and_existing_files(pki: Path, queue_name: str) -> None:
    done, _ = rediswq_cli(
        "--url", "redis://localhost:1/0", "--tls-ca", str(pki / "ca.pem"), "stats", queue_name
    )
    assert done.returncode == 2 and "need a rediss:// URL" in done.stderr, done.stderr
    done, _ = rediswq_cli(
        "--url", "rediss://localhost:1/0", "--tls-ca", str(pki / "nope.pem"), "stats", queue_name
    )
    assert done.returncode == 2 and "does not exist" in done.stderr, done.stderr


def test_the_library_raises_tls_failed_for_a_bad_certificate(
    tls: TLSRedis, pki: Path, queue_name: str
) -> None:
    q = rediswq.Queue.from_url(
        f"rediss://localhost:{tls.port}/0", queue_name, tls_ca=str(pki / "other-ca.pem")
    )
    with pytest.raises(rediswq.TLSFailed):
        q.stats()
