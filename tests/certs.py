"""A throwaway PKI for TLS tests, made with openssl in a temporary directory: CAs, and certificates
they sign for servers and clients."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d: Path, name: str) -> None:
    """A self-signed CA: `name`.pem and `name`.key in `d`."""
    key, pem = f"{name}.key", f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", key, "-out", pem, cwd=d)  # fmt: skip


def make_cert(d: Path, name: str, ca: str, san: str) -> None:
    """A certificate `name` signed by `ca`, valid for the subjectAltName `san`."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    signing = ["-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial"]
    _openssl("x509", "-req", "-in", f"{name}.csr", *signing, "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.pem", cwd=d)  # fmt: skip


@dataclass(frozen=True)
class TLSFiles:
    """One side's TLS files: the CA it trusts, and its own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def of(cls, d: Path, ca: str, name: str) -> TLSFiles:
        return cls(d / f"{ca}.pem", d / f"{name}.pem", d / f"{name}.key")

    def server_args(self) -> list[str]:
        """redis-server's TLS options; its certificate doubles as its client one (replication, bus)."""
        return ["--tls-cert-file", str(self.cert), "--tls-key-file", str(self.key),
                "--tls-ca-cert-file", str(self.ca)]  # fmt: skip

    def client_options(self) -> dict[str, Any]:
        """redis-py's arguments for a client that presents this certificate."""
        return {"ssl": True, "ssl_ca_certs": str(self.ca), "ssl_certfile": str(self.cert),
                "ssl_keyfile": str(self.key)}  # fmt: skip

    def cli_options(self, ca: Path | None = None) -> list[str]:
        """`rediswq`'s options for this certificate, trusting `ca` (another CA, say) or our own."""
        return ["--tls-ca", str(ca or self.ca), "--tls-cert", str(self.cert), "--tls-key", str(self.key)]


@dataclass(frozen=True)
class PKI:
    """The servers' and the clients' files, signed by one CA, and another CA that signed neither."""

    server: TLSFiles
    client: TLSFiles
    other_ca: Path


def make_pki(d: Path) -> PKI:
    """A CA, a server certificate for localhost and 127.0.0.1 (the address a cluster's nodes and the
    sentinels give out), a client certificate, and another CA."""
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "ca", "DNS:localhost,IP:127.0.0.1")
    make_cert(d, "client", "ca", "DNS:rediswq-client")
    return PKI(TLSFiles.of(d, "ca", "server"), TLSFiles.of(d, "ca", "client"), d / "other-ca.pem")
