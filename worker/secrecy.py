"""Keep the worker's Redis secrets out of an item's reach: its items run as the same user.

Two steps, both Linux only (elsewhere they do nothing and say so):

- `make_undumpable()`: prctl(PR_SET_DUMPABLE, 0). The kernel then makes /proc/PID/environ, mem,
  maps, fd ... root-owned and refuses ptrace from processes of the same user, so an item can no
  longer read the worker's memory or its environment block. /proc/PID/cmdline stays world-readable,
  hence the second step. An item's exec resets the flag for the item itself.
- `scrub_process_memory(secrets, names)`: overwrite the secrets, and the values of the variables
  `names`, with `*` in the argument and environment blocks the kernel shows as /proc/PID/cmdline and
  /proc/PID/environ. Deleting from os.environ does not change those (they are the process's original
  memory, which Python copied at start), and Python cannot reassign its argv.

Why overwrite in place rather than re-exec with the secret moved out of argv: a re-exec must still
hand the secret to the new process (the environment block is what we clean; a pipe is more
machinery), starts Python twice, resets the dumpable flag, and is a window of its own; writing the
bytes keeps the PID (PID 1 in a pod) and takes a few lines. It is done through /proc/self/mem rather
than ctypes pointers, so a wrong address is an OSError rather than a crash. Lengths and NUL bytes are
kept: `ps` still shows the words, with `*` where the secret was.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

_PR_SET_DUMPABLE = 4
# Fields 48 to 51 of /proc/PID/stat (proc(5)): arg_start, arg_end, env_start, env_end.
_FIRST_BLOCK_FIELD = 48


def make_undumpable() -> bool:
    """Close this process's /proc/PID/environ, mem and ptrace to its own user; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def scrub_process_memory(secrets: Iterable[str], names: Iterable[str] = ()) -> bool:
    """Overwrite `secrets` and the values of the variables `names` in this process's argument and
    environment blocks (what /proc/PID/cmdline, ps and /proc/PID/environ show); False if it could
    not be done. sys.argv and sys.orig_argv are cleaned as well."""
    wanted = sorted({os.fsencode(s) for s in secrets if s}, key=len, reverse=True)
    prefixes = [os.fsencode(name) + b"=" for name in names]
    _scrub_sys_argv([os.fsdecode(s) for s in wanted])
    blocks = _blocks()
    if blocks is None:
        return False
    try:
        fd = os.open("/proc/self/mem", os.O_RDWR)
    except OSError:
        return False
    try:
        for start, end in blocks:
            old = os.pread(fd, end - start, start)
            new = _scrubbed(old, wanted, prefixes)
            if new != old:
                os.pwrite(fd, new, start)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _blocks() -> list[tuple[int, int]] | None:
    """(start, end) addresses of this process's argument and environment blocks, from /proc."""
    try:
        stat = Path("/proc/self/stat").read_text()
    except OSError:
        return None
    # The name (field 2) may hold spaces and parentheses: count the fields after its last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    first = _FIRST_BLOCK_FIELD - 3
    try:
        arg_start, arg_end, env_start, env_end = (int(f) for f in fields[first : first + 4])
    except ValueError:
        return None
    blocks = [(arg_start, arg_end), (env_start, env_end)]
    return [(start, end) for start, end in blocks if 0 < start < end]


def _scrubbed(block: bytes, secrets: Sequence[bytes], prefixes: Sequence[bytes]) -> bytes:
    """`block` (NUL-separated strings) with the values after `prefixes` and every secret starred."""
    words = block.split(b"\0")
    for i, word in enumerate(words):
        for prefix in prefixes:
            if word.startswith(prefix):
                word = prefix + b"*" * (len(word) - len(prefix))
        for secret in secrets:
            word = word.replace(secret, b"*" * len(secret))
        words[i] = word
    return b"\0".join(words)


def _scrub_sys_argv(secrets: Sequence[str]) -> None:
    for argv in (sys.argv, getattr(sys, "orig_argv", [])):
        for i, word in enumerate(argv):
            for secret in secrets:
                word = word.replace(secret, "*" * len(secret))
            argv[i] = word
