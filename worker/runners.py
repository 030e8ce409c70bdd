"""What `rediswq work` does with one leased item: run a command, or call a Python handler.

A runner turns a lease into an `Outcome` and never raises: whatever goes wrong with one item is that
item's failure, kept with it as its error text (and, once its attempts are spent, with its dead letter).
Runners are called from the runtime's slot threads, several at once when --concurrency is above 1.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import os
import re
import select
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from rediswq import Lease

# How much of a failed command's standard error is kept with its error text, in bytes.
STDERR_TAIL_BYTES = 2000


@dataclass(frozen=True)
class Outcome:
    """How one item ended: ok, or failed with an error text; `retry=False` dead-letters it at once."""

    ok: bool
    error: str = ""
    retry: bool = True


OK = Outcome(True)


class Runner(Protocol):
    """Runs one item; `kill` stops the items still running when the shutdown grace period ends."""

    def run(self, lease: Lease) -> Outcome: ...

    def kill(self, leases: Sequence[Lease]) -> None: ...

    def describe(self) -> str: ...


@runtime_checkable
class Overlapping(Protocol):
    """A runner that can let the runtime make a call while an item runs, off the critical path."""

    def run_overlapped(self, lease: Lease, meanwhile: Callable[[], None]) -> Outcome:
        """Run the item; call `meanwhile()` at most once, from this thread, once it has started."""
        ...


class SetupError(Exception):
    """The runner cannot work at all (handler not importable, command not found): exit 2."""


# -- Python handlers -------------------------------------------------------------------------------


def load_handler(spec: str) -> Callable[[Lease], Any]:
    """Import `module:function` (dots allowed on both sides), as uvicorn and gunicorn resolve apps.

    The current directory is searched first while the handler's module is imported, so a handler
    module next to where the worker starts is found without installing it; then it is taken off
    `sys.path` again (with any "" entry, which would follow an `os.chdir`), so a later `import
    statistics` in the handler cannot pick up a `statistics.py` lying in whatever directory it is in.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SetupError(f"--handler must look like module:function, not {spec!r}")
    here = os.getcwd()
    sys.path.insert(0, here)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as e:
        raise SetupError(f"cannot import handler module {module_name!r}: {type(e).__name__}: {e}") from e
    finally:
        sys.path[:] = [entry for entry in sys.path if entry not in ("", here)]
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise SetupError(f"handler {spec!r}: module {module_name!r} has no {attr!r}") from None
    if not callable(target):
        raise SetupError(f"handler {spec!r} is a {type(target).__name__}, not a callable")
    return target  # type: ignore[no-any-return]


# Where Redis credentials live by convention; the worker drops them from the items' environment.
CREDENTIAL_VARIABLES = ("REDISWQ_URL", "REDIS_URL", "REDIS_PASSWORD", "REDISCLI_AUTH", "REDISWQ_TLS_KEY")


def credential_variables(
    environ: Mapping[str, str], secrets: Sequence[str], pass_env: Sequence[str] = ()
) -> list[str]:
    """The variables an item must not see: the usual credential names, and any whose value holds one
    of `secrets` (the connection's URL and password, wherever the worker was given them); those named
    in `pass_env` are kept."""
    found = [name for name in CREDENTIAL_VARIABLES if name in environ]
    found += [
        name
        for name, value in environ.items()
        if name not in found and any(secret and secret in value for secret in secrets)
    ]
    return [name for name in found if name not in pass_env]


class HandlerRunner:
    """Calls `handler(lease)`: returning completes the item, raising fails it with the exception text.

    Python cannot stop a thread from outside, so a handler still running when the shutdown grace
    period ends is abandoned (its lease given back, the process exits under it).
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._handler = load_handler(spec)

    def run(self, lease: Lease) -> Outcome:
        try:
            self._handler(lease)
        except BaseException as e:  # a handler's SystemExit must not end its slot thread silently
            return Outcome(False, exception_text(e))
        return OK

    def kill(self, leases: Sequence[Lease]) -> None:
        """Nothing can be done for a running handler: its lease is given back all the same."""

    def describe(self) -> str:
        return f"handler {self.spec}"


def exception_text(error: BaseException) -> str:
    """`Type: message`, then the traceback's last lines: what a dead letter needs to be understood."""
    head = f"{type(error).__name__}: {error}".rstrip(": ")
    frames = "".join(traceback.format_tb(error.__traceback__)[1:])  # [0] is our own call
    text = f"{head}\n{frames}".rstrip()
    return text if len(text) <= STDERR_TAIL_BYTES else head + "\n..." + text[-STDERR_TAIL_BYTES:]


_SHELLS = ("sh", "bash", "dash", "zsh", "ksh", "ash")


def shell_script_with_braces(argv: Sequence[str]) -> bool:
    """True when `argv` runs a shell script string (sh -c SCRIPT) that holds {}: the payload would be
    pasted into it as shell code."""
    for i, arg in enumerate(argv[:-1]):
        if os.path.basename(arg) in _SHELLS and re.fullmatch(r"-[a-z]*c[a-z]*", argv[i + 1]):
            return "{}" in argv[i + 2] if i + 2 < len(argv) else False
    return False


# -- commands --------------------------------------------------------------------------------------


@dataclass
class _Child:
    """A running item's process; `status` is set once it is reaped (under the runner's lock)."""

    pid: int
    status: int | None = None


# Python ignores these; an exec keeps ignored signals ignored, so each child gets them back at their
# defaults (as subprocess's restore_signals does), e.g. for `producer | head` in a command.
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)


class CommandRunner:
    """Runs `argv` once per item, in a new session (so --timeout can kill its whole process group).

    The payload is the child's standard input, and replaces every `{}` in the arguments: as UTF-8 text,
    with bytes that are not UTF-8 passed through unchanged (Python's surrogateescape, undone by the
    exec), so an argument carries exactly the payload's bytes. A payload with a NUL byte cannot be an
    argument at all; such an item is dead-lettered at once (it can never succeed).

    The child's standard output is the worker's; its standard error is copied through to the worker's
    as it comes, and its last bytes are kept for the error text of a failed item. Children are started
    with posix_spawn (vfork and exec, about a third cheaper than subprocess.Popen with an environment
    of its own); no descriptor of the worker leaks into them, since Python opens every one close-on-exec.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        queue_name: str,
        timeout_secs: float | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise SetupError("no command given")
        self.argv = list(argv)
        self.timeout_secs = timeout_secs
        self._substitute = any("{}" in arg for arg in self.argv)
        self._env = dict(os.environ if environ is None else environ)
        self._env["REDISWQ_QUEUE"] = queue_name
        self._program = self._find_program()
        self._children: dict[Lease, _Child] = {}
        self._lock = threading.Lock()

    def _find_program(self) -> str | None:
        """The program's path, found once; None when `{}` makes it known only per item."""
        program = self.argv[0]
        if "{}" in program:
            return None
        if os.sep in program:
            if not (os.path.isfile(program) and os.access(program, os.X_OK)):
                raise SetupError(f"command {program!r} is not an executable file")
            return program
        found = shutil.which(program, path=self._env.get("PATH", os.defpath))
        if found is None:
            raise SetupError(f"command {program!r} not found on PATH")
        return found

    def describe(self) -> str:
        return "command " + " ".join(self.argv)

    def run(self, lease: Lease) -> Outcome:
        return self.run_overlapped(lease, _nothing)

    def run_overlapped(self, lease: Lease, meanwhile: Callable[[], None]) -> Outcome:
        """Run the item; `meanwhile()` is called once the child is started (the runtime leases the
        next item then, in this thread: no hand-off to another thread, and the round trip to Redis
        overlaps the child's run). An item that cannot start returns without calling it."""
        argv = self.argv
        if self._substitute:
            if b"\0" in lease.payload:
                return Outcome(
                    False,
                    "the payload has a NUL byte, which no command argument can hold; "
                    "read it from standard input instead of {}",
                    retry=False,
                )
            text = lease.payload.decode("utf-8", "surrogateescape")
            argv = [arg.replace("{}", text) for arg in argv]
        env = self._env.copy()
        env["REDISWQ_ITEM_ID"] = lease.id
        env["REDISWQ_ATTEMPT"] = str(lease.attempt)
        try:
            return self._spawn(lease, argv, env, meanwhile)
        except OSError as e:
            return Outcome(False, f"cannot run {argv[0]!r}: {e.strerror or e}")

    def _spawn(
        self, lease: Lease, argv: list[str], env: dict[str, str], meanwhile: Callable[[], None]
    ) -> Outcome:
        stdin_r, stdin_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            rest = _prefill(stdin_w, lease.payload)
            actions = [(os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, err_w, 2)]
            options: dict[str, Any] = {
                "file_actions": actions,
                "setsid": True,
                "setsigdef": _DEFAULT_SIGNALS,
                "setsigmask": (),
            }
            if self._program is not None:
                pid = os.posix_spawn(self._program, argv, env, **options)
            else:
                pid = os.posix_spawnp(argv[0], argv, env, **options)
        except BaseException:
            for fd in (stdin_r, stdin_w, err_r, err_w):
                _close(fd)
            raise
        os.close(stdin_r)
        os.close(err_w)
        if rest:
            threading.Thread(target=_feed, args=(stdin_w, rest), daemon=True).start()
        else:
            os.close(stdin_w)
        child = _Child(pid)
        with self._lock:
            self._children[lease] = child
        try:
            deadline = None if self.timeout_secs is None else time.monotonic() + self.timeout_secs
            meanwhile()
            tail, timed_out = self._watch(child, err_r, deadline)
        finally:
            os.close(err_r)
            if child.status is None:  # only if _watch failed: leave no process and no zombie behind
                self._kill(child)
                self._reap(child, block=True)
            with self._lock:
                self._children.pop(lease, None)
        assert child.status is not None
        code = os.waitstatus_to_exitcode(child.status)
        if timed_out:
            error = f"timed out after {self.timeout_secs:g} s; its process group was killed"
        elif code == 0:
            return OK
        elif code < 0:
            error = f"killed by {signal_name(-code)}"
        else:
            error = f"exit code {code}"
        text = tail.decode("utf-8", "replace").strip()
        return Outcome(False, f"{error}; stderr: {text}" if text else error)

    def _watch(self, child: _Child, err_r: int, deadline: float | None) -> tuple[bytes, bool]:
        """Copy the child's stderr through until it exits (or times out); reap it; return the tail.

        The child's exit is seen on a pidfd (Linux), so a grandchild that keeps stderr open cannot
        hold the item; elsewhere the exit is checked every 50 ms.
        """
        tail = bytearray()
        out = sys.stderr.buffer
        poller = select.poll()
        poller.register(err_r, select.POLLIN)
        pidfd = _pidfd(child.pid)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        os.set_blocking(err_r, False)
        reading = True
        timed_out = False
        try:
            while True:
                wait_ms: int | None = None if pidfd is not None else 50
                if deadline is not None:
                    left_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
                    wait_ms = left_ms if wait_ms is None else min(wait_ms, left_ms)
                events = poller.poll(wait_ms)
                if pidfd is not None:
                    exited = any(fd == pidfd for fd, _ in events) and self._reap(child, block=True)
                else:
                    exited = self._reap(child, block=False)
                if reading and (exited or any(fd == err_r for fd, _ in events)):
                    reading = _copy(err_r, out, tail)
                    if not reading:
                        poller.unregister(err_r)
                if exited:
                    return bytes(tail), timed_out
                if deadline is not None and not timed_out and time.monotonic() >= deadline:
                    timed_out = True
                    deadline = None
                    self._kill(child)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _reap(self, child: _Child, *, block: bool) -> bool:
        """Collect the child's exit status; True once it is reaped."""
        with self._lock:
            if child.status is None:
                pid, status = os.waitpid(child.pid, 0 if block else os.WNOHANG)
                if pid == child.pid:
                    child.status = status
            return child.status is not None

    def _kill(self, child: _Child) -> None:
        # The child leads its own session, so its process group id is its pid; it is reaped only
        # under this lock, so until then that id cannot have been reused.
        with self._lock:
            if child.status is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)

    def kill(self, leases: Sequence[Lease]) -> None:
        """SIGKILL the process groups of these items (those still running)."""
        with self._lock:
            children = [self._children[lease] for lease in leases if lease in self._children]
        for child in children:
            self._kill(child)


def _nothing() -> None:
    pass


def _prefill(fd: int, payload: bytes) -> bytes:
    """Write what fits into the empty pipe now (grown to hold up to 1 MiB on Linux); return the rest,
    which a feeder thread writes while the child reads."""
    if not payload:
        return b""
    if len(payload) > 65536 and hasattr(fcntl, "F_SETPIPE_SZ"):
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(len(payload), 1 << 20))
    os.set_blocking(fd, False)
    try:
        written = os.write(fd, payload)
    except BlockingIOError:
        written = 0
    os.set_blocking(fd, True)
    return payload[written:]


def _feed(fd: int, data: bytes) -> None:
    """Write a large payload to a child's stdin; a child that exits without reading it is fine."""
    try:
        with open(fd, "wb", closefd=True) as pipe:
            pipe.write(data)
    except OSError:
        pass


def _copy(fd: int, out: Any, tail: bytearray) -> bool:
    """Copy what is readable now to `out`, keeping the tail; False once the pipe is at its end."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        try:
            out.write(chunk)
            out.flush()
        except (OSError, ValueError):
            pass  # our own stderr is gone: keep working, keep the tail
        tail += chunk
        if len(tail) > STDERR_TAIL_BYTES:
            del tail[: len(tail) - STDERR_TAIL_BYTES]


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def signal_name(number: int) -> str:
    """SIGTERM, not 15 (a number the platform does not name stays a number)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
