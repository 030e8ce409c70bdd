"""Which TLS errors no retry can fix: shared by the error wrapping of calls and of client set-up."""

from __future__ import annotations

import re
import ssl

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
