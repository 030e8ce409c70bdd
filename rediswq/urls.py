"""Redis URLs as rediswq shows them: with every secret hidden.

For code around the library (a command line, a log formatter) that shows or passes on a URL the user
gave: `redact(url)` is the URL as every rediswq message names it, `url_secrets(url)` what must never be
shown. The parsing itself lives in rediswq/_url.py; this module is its public face.
"""

from __future__ import annotations

from rediswq._url import redact, url_secrets

__all__ = ["redact", "url_secrets"]
