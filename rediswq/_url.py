"""Redis URLs: every shape rediswq takes, checked and parsed, and every secret in them hidden.

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]     one server (rediss://: TLS)
    unix://[[USER]:PASSWORD@]PATH[?db=DB&...]                 one server on a Unix socket
    redis+KIND://[USER:PASSWORD@]HOST[:PORT],HOST[:PORT]/PATH  several seeds (rediss+KIND://: TLS)

The last form is a topology's (redis+cluster, redis+sentinel: rediswq/_topology/): this module splits
it into seeds, the topology says what its path means and which port is the default.

Every URL, redis-py error text and connection description that rediswq shows goes through `Redactor`,
so a password can reach neither a message nor a log line, whatever shape the URL has. Nothing here
connects.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rediswq.errors import InsecureTLSWarning, InvalidArgument

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A query parameter whose name holds one of these is taken for a secret, whatever its exact spelling.
_SECRET_WORDS = ("pass", "pwd", "token", "secret", "auth", "key", "cred")
# Shorter secrets are not searched for in free text: they would blank out ordinary words.
_MIN_SECRET_CHARS = 4
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~-]*")
# The schemes of one server; redis+KIND and rediss+KIND name a topology of several seeds.
SERVER_SCHEMES = ("redis", "rediss", "unix")

# What is said of a text with no scheme:// in it, in place of the text itself (which may be a password).
NOT_A_URL = (
    "the value given is not shown, since it has no scheme:// and may be a password; expected "
    "redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://..., unix://PATH, redis+cluster://... or "
    "redis+sentinel://..."
)

_BOOL = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_CERT_REQS = ("none", "optional", "required")


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case ("" for a text with no scheme://)."""
    return url.partition("://")[0].lower() if "://" in url else ""


def plain_scheme(scheme: str) -> str:
    """The scheme without TLS: redis for rediss, redis+cluster for rediss+cluster."""
    return "redis" + scheme[len("rediss") :] if scheme.startswith("rediss") else scheme


def is_tls_scheme(scheme: str) -> bool:
    return scheme == "rediss" or scheme.startswith("rediss+")


def _tls_scheme(scheme: str) -> str:
    """The TLS form of a scheme: rediss+cluster for redis+cluster, else rediss."""
    return "rediss+" + scheme.partition("+")[2] if "+" in scheme else "rediss"


# -- hiding secrets ---------------------------------------------------------------------------------


class Redactor:
    """Hides the secrets of one URL, and any given besides it (the sentinels' password): in the URL
    itself, and in any text that might quote them."""

    def __init__(self, url: str, others: Iterable[str] = ()) -> None:
        self.url = redact(url)
        given = {secret for secret in others if len(secret) >= _MIN_SECRET_CHARS}
        self._secrets = sorted({*url_secrets(url), *given}, key=len, reverse=True)

    def text(self, text: str) -> str:
        """`text` with every secret (as written, or decoded) replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def redact(url: str) -> str:
    """The URL with its userinfo's password and every secret-bearing query value replaced by ***.

    Works on the text as written, before any parsing: a password holding `/`, `?`, `#` or `@`, a URL
    with no scheme and one no parser accepts are all hidden. What is hidden: everything before the
    last `@` (the user name is kept when it is plain), and the value of every query parameter whose
    name says it is a secret. The two may overlap; their union is hidden.
    """
    hidden = [False] * len(url)
    for begin, end in _hidden_spans(url):
        hidden[begin:end] = [True] * (end - begin)
    out: list[str] = []
    for i, char in enumerate(url):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append("***")
    return "".join(out)


def _hidden_spans(url: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each piece `redact` hides: the userinfo but a plain user, the secret query values."""
    start, at = _userinfo_bounds(url)
    if at >= 0:
        user, colon, _password = url[start:at].partition(":")
        first = start + len(user) + 1 if colon and _PLAIN_USER.fullmatch(user) else start
        yield first, at
    yield from _secret_query_values(url)


def _userinfo_bounds(url: str) -> tuple[int, int]:
    """Where the userinfo starts (after the scheme://, if any) and the last `@` (-1: none)."""
    start = m.end() if (m := _SCHEME.match(url)) else 0
    return start, url.rfind("@", start)


def _secret_query_values(url: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the text after each secret-bearing query parameter's `=`, scanning from every
    `?` (one may be a password's). It runs to the end of the URL: a password written raw may hold
    `&` or `#`, and what follows them is then a piece of it, not another parameter."""
    question = url.find("?")
    while question >= 0:
        pos = question + 1
        for piece in re.split(r"[&#]", url[pos:]):
            name, equals, _value = piece.partition("=")
            if equals and _is_secret_name(name):
                yield pos + len(name) + 1, len(url)
                break
            pos += len(piece) + 1
        question = url.find("?", question + 1)


def _is_secret_name(name: str) -> bool:
    plain = urllib.parse.unquote_plus(name).lower()
    return any(word in plain for word in _SECRET_WORDS)


def url_secrets(url: str) -> list[str]:
    """The secrets of a Redis URL (password, secret query values), as written and decoded, longest
    first: what must never be shown, nor passed on to code that should not connect."""
    return sorted(_secrets_of(url), key=len, reverse=True)


def _secrets_of(url: str) -> set[str]:
    """Every secret of the URL as it may appear in a message: as written, and percent-decoded."""
    found = _userinfo_secrets(url) | _query_secrets(url)
    decoded = {urllib.parse.unquote(s) for s in found} | {urllib.parse.unquote_plus(s) for s in found}
    return {s for s in found | decoded if len(s) >= _MIN_SECRET_CHARS}


def _userinfo_secrets(url: str) -> set[str]:
    """The userinfo's password, the whole userinfo, and each piece of the password."""
    start, at = _userinfo_bounds(url)
    if at < 0:
        return set()
    userinfo = url[start:at]
    # The user name is no secret (a pod name may hold it); with no ":" the whole is a password.
    user, colon, password = userinfo.partition(":")
    password = password if colon else user
    return {userinfo, password, *re.split(r"[/?#@:&=;]", password)}


def _query_secrets(url: str) -> set[str]:
    """Each secret query value to the URL's end, and its pieces that are not parameter names."""
    found: set[str] = set()
    known = set(_PARAMETERS) | set(_TLS_PARAMETERS)
    for begin, end in _secret_query_values(url):
        tail = url[begin:end]
        found.add(tail)
        found.update(p for p in re.split(r"[&#=;]", tail) if urllib.parse.unquote_plus(p) not in known)
    return found


# -- one server's URL: redis://, rediss://, unix:// ---------------------------------------------------


def _whole(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _flag(text: str) -> bool:
    return _BOOL[text.lower()]


def _cert_reqs(text: str) -> str:
    if text.lower() not in _CERT_REQS:
        raise ValueError
    return text.lower()


# The URL parameters rediswq accepts (README, "Connecting to Redis"), each with its parser and what
# a bad value should have been. Anything else is refused by name instead of failing at the first call.
_PARAMETERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "db": (_whole, "a whole number"),
    "username": (str, "a user name"),
    "password": (str, "a password"),
    "client_name": (str, "a name"),
    "socket_timeout": (_seconds, "a positive number of seconds"),
    "socket_connect_timeout": (_seconds, "a positive number of seconds"),
    "health_check_interval": (_whole, "a whole number of seconds"),
    "max_connections": (_whole, "a whole number"),
}
_TLS_PARAMETERS: dict[str, tuple[Callable[[str], Any], str]] = {
    "ssl_cert_reqs": (_cert_reqs, "none, optional or required"),
    "ssl_check_hostname": (_flag, "true or false"),
    "ssl_ca_certs": (str, "a file"),
    "ssl_ca_path": (str, "a directory"),
    "ssl_certfile": (str, "a file"),
    "ssl_keyfile": (str, "a file"),
    "ssl_password": (str, "a password"),
}


def check_url(url: str) -> dict[str, Any]:
    """Every mistake in one server's URL as `InvalidArgument` naming the part at fault; else its options.

    Checked before redis-py sees it, since redis-py passes an unknown parameter on to the connection
    (a TypeError at the first call) and quotes the URL in some of its errors. The options returned are
    the query's, parsed; warns with `InsecureTLSWarning` when the URL turns certificate checks off.
    """
    redactor = Redactor(url)
    try:
        return _checked(url, redactor.url)
    except InvalidArgument as e:
        # A secret pasted where no secret belongs (?db=PASSWORD) is hidden all the same.
        raise InvalidArgument(redactor.text(str(e))) from None


def _checked(url: str, shown: str) -> dict[str, Any]:
    scheme = _server_scheme(url, shown)
    parts = _split(url, shown, unix=scheme == "unix")
    options = _query_options(parts.query, shown, tls=scheme == "rediss")
    path = urllib.parse.unquote(parts.path).strip("/")
    if scheme != "unix" and path and "db" not in options and not path.isdigit():
        # The path is not quoted: with a raw password in the URL, it may be a piece of it.
        raise InvalidArgument(f"bad Redis URL {shown}: the path must be a database number, e.g. /0")
    if options.get("ssl_cert_reqs") == "none" or options.get("ssl_check_hostname") is False:
        warn_insecure(shown)
    return options


def _server_scheme(url: str, shown: str) -> str:
    if "://" not in url:
        # Not a URL at all: perhaps a password given where the URL belongs. Not one character of it
        # is shown.
        raise InvalidArgument(f"bad Redis URL: {NOT_A_URL}")
    scheme = scheme_of(url)
    if scheme not in SERVER_SCHEMES:
        raise InvalidArgument(f"bad Redis URL {shown}: it must start with redis://, rediss:// or unix://")
    return scheme


def _split(url: str, shown: str, *, unix: bool) -> urllib.parse.SplitResult:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidArgument(
            f"bad Redis URL {shown}: the host or port could not be parsed (a port is a number from 1 to "
            "65535; percent-encode / ? # @ : in a password)"
        ) from None
    if not unix and port == 0:
        raise InvalidArgument(f"bad Redis URL {shown}: the port must be a number from 1 to 65535")
    return parts


def _query_options(query: str, shown: str, *, tls: bool) -> dict[str, Any]:
    return dict(_option(piece, shown, tls=tls) for piece in query.split("&") if piece)


def _option(piece: str, shown: str, *, tls: bool) -> tuple[str, Any]:
    """One `name=value` of the query, checked and parsed."""
    raw_name, equals, raw_value = piece.partition("=")
    name = urllib.parse.unquote_plus(raw_name)
    known = _PARAMETERS.get(name) or _TLS_PARAMETERS.get(name)
    if known is None:
        hint = " (it needs a rediss:// URL)" if name.startswith("ssl_") else ""
        raise InvalidArgument(f"bad Redis URL {shown}: unknown parameter {name!r}{hint}")
    if name in _TLS_PARAMETERS and not tls:
        raise InvalidArgument(f"bad Redis URL {shown}: parameter {name!r} needs a rediss:// URL")
    if not equals or not raw_value:
        raise InvalidArgument(f"bad Redis URL {shown}: parameter {name!r} has no value")
    parse, expected = known
    try:
        return name, parse(urllib.parse.unquote_plus(raw_value))
    except (ValueError, KeyError, OverflowError):
        raise InvalidArgument(f"bad Redis URL {shown}: parameter {name!r} must be {expected}") from None


def warn_insecure(shown: str) -> None:
    warnings.warn(
        f"TLS certificate checks are off for {shown}: anyone on the path can read and change the queue",
        InsecureTLSWarning,
        stacklevel=3,
    )


def tls_options(
    url: str, *, ca: str | None, cert: str | None, key: str | None, verify: bool
) -> dict[str, Any]:
    """redis-py's SSL arguments for these TLS settings; they need a TLS URL (rediss://, rediss+cluster://,
    rediss+sentinel://) and existing files."""
    given = {"ssl_ca_certs": ca, "ssl_certfile": cert, "ssl_keyfile": key}
    chosen = {name: path for name, path in given.items() if path}
    if not verify:
        chosen["ssl_cert_reqs"] = "none"
    scheme = redact(url).partition(":")[0]
    if chosen and not is_tls_scheme(scheme.lower()):
        raise InvalidArgument(f"TLS settings need a {_tls_scheme(scheme.lower())}:// URL, not {scheme}://")
    for name, path in given.items():
        if path and not os.path.isfile(path):
            raise InvalidArgument(f"TLS file {path!r} ({name}) does not exist or is not a file")
    if not verify:
        warn_insecure(redact(url))
    return chosen


# -- a topology's URL: several seeds ------------------------------------------------------------------


@dataclass(frozen=True)
class SeedURL:
    """A parsed redis+KIND:// URL (or rediss+KIND://); `service` and `db` as its topology reads the path."""

    kind: str  # what follows "redis+": "cluster", "sentinel"
    tls: bool
    hosts: list[tuple[str, int]]
    username: str | None
    password: str | None
    service: str | None = None  # sentinel only: the master's name
    db: int = 0


def split_seeds(url: str, default_port: int) -> tuple[SeedURL, list[str]]:
    """The seeds, credentials and kind of a redis+KIND:// URL, and its path's parts (for the topology
    to read); `InvalidArgument` (the password never quoted) if the URL is bad."""
    scheme, _, rest = url.partition("://")
    netloc, _, path = rest.partition("/")
    path, _, query = path.partition("?")
    if query or "?" in netloc:
        raise InvalidArgument(f"a {scheme} URL takes no query options")
    userinfo, _, host_list = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    seeds = SeedURL(
        kind=scheme.lower().partition("+")[2],
        tls=is_tls_scheme(scheme.lower()),
        hosts=[_host(h.strip(), default_port) for h in host_list.split(",")],
        username=urllib.parse.unquote(username) or None,
        password=urllib.parse.unquote(password) if ":" in userinfo else None,
    )
    return seeds, [p for p in path.split("/") if p]


def _host(text: str, default_port: int) -> tuple[str, int]:
    if not text:
        raise InvalidArgument("an empty host in the host list")
    try:
        parts = urllib.parse.urlsplit("//" + text)
        port = parts.port
    except ValueError:
        raise InvalidArgument(f"bad host {text!r}: the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise InvalidArgument(f"bad host {text!r}")
    return parts.hostname, port or default_port
