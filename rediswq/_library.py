"""The scripts as one Redis function library (Redis 7+), generated from the same `rediswq/lua/*.lua` files.

Why functions: `FUNCTION LOAD` is done once, by an admin (`rediswq install`, or the first call of a
client allowed to load it), and is persisted and replicated with the data. A role then gets `FCALL` of
named functions and no `SCRIPT LOAD`/`EVAL`/`EVALSHA`: it cannot run Lua of its own (an endless loop
that blocks the server, forged log lines, writes kept from the replicas). On Redis 6.2 the same files
run as scripts (EVALSHA), with that weaker guarantee.

The prelude (`rediswq/lua/prelude.lua`, the helpers every operation shares) comes first, once; then
each operation's file becomes the body of a local Lua function `(KEYS, ARGV)`, its contract header
intact, so one source serves both (a script on 6.2 is the prelude and the file, joined: `script`).
The registered function `rediswq_<name>` checks the library's version (its first argument) and calls
it with the rest. The version is a hash of the library's own
code: a client whose files differ gets one clear error and is told to run `rediswq install`, instead
of calling a function with other semantics. Lines of the library and of a script map back to the
file and line they came from (`where`, `script_where`), for error messages.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import redis

from rediswq.errors import LibraryMismatch, LibraryMissing

NAME = "rediswq"
#: The operations, each a `rediswq/lua/<name>.lua` file and a function `rediswq_<name>`.
OPERATIONS = (
    "put", "lease", "fail", "extend", "release", "requeue_dead", "purge_dead", "purge", "reopen", "stats",
)  # fmt: skip
#: Functions that write nothing: callable with FCALL_RO (on a replica too).
READ_ONLY = frozenset({"stats", "version"})
#: Functions Redis runs on a full (maxmemory) server, as it runs scripts: they settle or free, the
#: rest (put, requeue_dead, lease) are refused before they run. A script on a full Redis is refused
#: only its first write when it has written nothing (rediswq/lua/README.md, Out of memory); a function
#: is refused whole unless flagged `allow-oom`, and then is refused nothing. So lease, whose first write
#: decides, has a twin: `rediswq_settle`, lease.lua with count 0 (the completions only, under allow-oom),
#: which a client calls when Redis refuses `rediswq_lease` for memory.
ALLOW_OOM = frozenset({"fail", "extend", "release", "purge_dead", "purge", "reopen"})
SETTLE = "settle"
#: The error a function answers when the caller's version differs from the library's.
MISMATCH = "RWQVERSION"
INSTALL = "load it with Queue.install() (as a user allowed FUNCTION LOAD)"


def function_name(operation: str) -> str:
    return f"{NAME}_{operation}"


#: The helpers every operation shares: joined before each script, once at the top of the library.
PRELUDE = "prelude"


@functools.cache
def source(name: str) -> str:
    """The text of `rediswq/lua/<name>.lua` (an operation, or the prelude)."""
    return resources.files("rediswq.lua").joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _lines(name: str) -> int:
    return len(source(name).splitlines())


def script(operation: str) -> str:
    """What Redis runs as the operation's script (EVALSHA, on 6.2): the prelude, then its file."""
    return source(PRELUDE) + source(operation)


def script_where(operation: str, line: int) -> tuple[str, int] | None:
    """(file name, line in that .lua file) of a line of `script(operation)`; None past its end."""
    prelude = _lines(PRELUDE)
    if 0 < line <= prelude:
        return PRELUDE, line
    return (operation, line - prelude) if 0 < line - prelude <= _lines(operation) else None


@dataclass(frozen=True)
class Library:
    code: str  # what FUNCTION LOAD takes
    version: str
    files: list[str]  # the prelude, then the operations, in the order the library holds them
    starts: list[int]  # the library line just before each file's first line, in `files` order

    def where(self, line: int) -> tuple[str, int] | None:
        """(file name, line in that .lua file) of a line of the library; None outside the files."""
        i = bisect.bisect_right(self.starts, line - 1) - 1
        if i < 0:
            return None
        name = self.files[i]
        number = line - self.starts[i]
        return (name, number) if number <= _lines(name) else None


@functools.cache
def library() -> Library:
    """The library's code, built once from the shipped files."""
    return build({name: source(name) for name in (PRELUDE, *OPERATIONS)})


def build(texts: dict[str, str]) -> Library:
    """The library made of these files' texts (the prelude's and each operation's, by name); bench/
    builds one with a scratch lease.lua to time it as users call it."""
    files = [PRELUDE, *OPERATIONS]
    bodies = [texts[name] for name in files]
    version = hashlib.sha1("\0".join(bodies).encode(), usedforsecurity=False).hexdigest()[:16]
    lines = [f"#!lua name={NAME}", f"local VERSION = '{version}'"]
    starts = [len(lines)]
    lines.extend(bodies[0].splitlines())  # one prelude: its locals are the functions' upvalues
    for op, body in zip(OPERATIONS, bodies[1:], strict=True):
        lines.append(f"local function {op}(KEYS, ARGV)")
        starts.append(len(lines))
        lines.extend(body.splitlines())
        lines.append("end")
    lines += [
        "-- The caller's version comes first: a client with other files gets an error, not other semantics.",
        "local function versioned(operation)",
        "  return function(keys, args)",
        "    if args[1] ~= VERSION then",
        f"      return redis.error_reply('{MISMATCH} ' .. VERSION .. ' ' .. tostring(args[1]))",
        "    end",
        "    table.remove(args, 1)",
        "    return operation(keys, args)",
        "  end",
        "end",
    ]
    for op in OPERATIONS:
        flags = "{'no-writes'}" if op in READ_ONLY else "{'allow-oom'}" if op in ALLOW_OOM else "{}"
        lines.append(
            f"redis.register_function{{function_name='{function_name(op)}', callback=versioned({op}), "
            f"flags={flags}}}"
        )
    lines += [
        "-- lease's completions on a full Redis: count 0, whatever the caller sent (it takes no item).",
        f"redis.register_function{{function_name='{function_name(SETTLE)}', callback=versioned("
        "function(keys, args) args[1] = '0' return lease(keys, args) end), flags={'allow-oom'}}",
    ]
    lines.append(
        f"redis.register_function{{function_name='{function_name('version')}', "
        "callback=function() return VERSION end, flags={'no-writes'}}"
    )
    return Library("\n".join(lines) + "\n", version, files, starts)


def is_missing(reply: object) -> bool:
    """True for Redis's answer to an FCALL of a function no loaded library has."""
    return isinstance(reply, Exception) and "Function not found" in str(reply)


def load(node: redis.Redis, *, replace: bool = False) -> str:
    """Load rediswq's function library on one server; its version. `LibraryMismatch` when this user
    may not, or (without `replace`) another version is loaded."""
    args = ("FUNCTION", "LOAD", *(["REPLACE"] if replace else []), library().code)
    try:
        node.execute_command(*args)  # type: ignore[no-untyped-call]
    except redis.exceptions.ResponseError as e:
        raise not_loaded(e) from None
    return library().version


def not_loaded(error: redis.exceptions.ResponseError) -> Exception:
    """Why FUNCTION LOAD failed: `LibraryMissing` (waited for) when this user may not load it,
    `LibraryMismatch` when another version is loaded; the fix of both is `rediswq install`."""
    text = str(error)
    if "NOPERM" in text or isinstance(error, redis.exceptions.NoPermissionError):
        return LibraryMissing(f"rediswq's function library is not loaded on this Redis yet: {INSTALL}")
    if "already exists" in text:
        return LibraryMismatch(f"Redis holds another version of rediswq's function library: {INSTALL}")
    return error


def install(nodes: list[redis.Redis], before: Callable[[redis.Redis], None] | None = None) -> str | None:
    """Load (or replace) rediswq's function library on each of `nodes`: the server, or every master of
    a cluster (`_topology.master_clients`; replicas copy it), calling `before` with each first; its
    version, None on a Redis without functions (6.2: the scripts load on first use). What `rediswq
    install` runs, as an admin."""
    functions = True
    for node in nodes:
        if before is not None:
            before(node)  # on every node, with functions or not
        if not functions:
            continue
        try:
            load(node, replace=True)
        except redis.exceptions.ResponseError as e:
            if "unknown command" not in str(e):
                raise
            functions = False
    return library().version if functions else None
