"""Which TLS errors no retry can fix: shared by the error wrapping of calls and of client set-up."""

from __future__ import annotations

import re
import ssl

import redis
import redis.connection

# A certificate refused (ours or the server's), or TLS spoken to a plain port. Others (an EOF
# mid-connection when Redis restarts) are an outage like any other.
_REFUSALS = re.compile(r"CERTIFICATE|UNKNOWN_CA|WRONG_VERSION_NUMBER|certificate verify failed", re.I)


def is_tls_failure(error: BaseException) -> bool:
    """True when the chain holds an SSL error that refuses a certificate (or a plain port)."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if (isinstance(seen, ssl.SSLError) or "[SSL" in str(seen)) and _REFUSALS.search(str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# What a TLS 1.3 server that wants a client certificate, given none, mostly looks like to redis-py.
_CLOSED_AT_ONCE = "EOF occurred in violation of protocol"


def closed_at_once(error: BaseException) -> bool:
    """True for a TLS connection the server closed as soon as it was made (see `certificate_wanted`)."""
    return _CLOSED_AT_ONCE in str(error)


def certificate_wanted(client: object) -> ssl.SSLError | None:
    """The server's alert when it closes new connections because it wants a client certificate and
    was given none; None otherwise (or when it cannot tell: a cluster). Asked by one server's
    topology only (rediswq/_topology/standalone.py): a Sentinel-managed master is not asked.

    TLS 1.3 sends that alert only after the handshake, so redis-py, which writes at once, mostly meets
    a closed connection ("EOF occurred in violation of protocol") that reads as an outage, and nine
    tries in ten were retried as one here. A connection that only listens gets the alert every time:
    this opens one, as the client's own pool would, and reads.
    """
    pool = getattr(client, "connection_pool", None)
    if (
        pool is None
        or not issubclass(pool.connection_class, redis.connection.SSLConnection)
        or pool.connection_kwargs.get("ssl_certfile")
    ):
        return None
    connection = pool.connection_class(**pool.connection_kwargs)
    try:
        sock = connection._connect()  # TCP and the TLS handshake, no command: redis-py's own steps
    except (OSError, redis.exceptions.RedisError):
        return None
    try:
        sock.settimeout(_LISTEN_SECS)
        sock.recv(1)
    except ssl.SSLError as e:
        return e if is_tls_failure(e) else None
    except OSError:
        return None
    finally:
        sock.close()
    return None


# A server that wants a certificate answers the handshake's end at once; one that does not, never.
_LISTEN_SECS = 1.0
