"""What `rediswq work` does with one leased item: run a command, or call a Python handler.

A runner turns a lease into an `Outcome` and never raises: whatever goes wrong with one item is that
item's failure, kept with it as its error text (and, once its attempts are spent, with its dead letter).
Runners are called from the runtime's slot threads, several at once when --concurrency is above 1.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import re
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
from rediswq_worker.child import STDERR_TAIL_BYTES, Child


@dataclass(frozen=True)
class Outcome:
    """How one item ended: ok, or failed with an error text; `retry=False` dead-letters it at once.

    `cause` is the failure without what is particular to the item: an exception's type and message
    (not its traceback), a command's exit status and last line of standard error. Items that keep
    failing with the same cause point at a broken handler or command (worker.runtime.streak).
    """

    ok: bool
    error: str = ""
    retry: bool = True
    cause: str = ""

    @property
    def same_as(self) -> str:
        """What two failures must share to count as the same error: the cause, else the first line."""
        return self.cause or self.error.partition("\n")[0]


OK = Outcome(True)


class Runner(Protocol):
    """Runs one item; `kill` stops the items still running when the shutdown grace period ends."""

    def run(self, lease: Lease) -> Outcome: ...

    def kill(self, leases: Sequence[Lease]) -> None: ...

    def describe(self) -> str: ...


@runtime_checkable
class Interruptible(Protocol):
    """A runner whose running item the runtime stops when it overruns --item-timeout."""

    def interrupt(self, lease: Lease, limit_secs: float) -> None:
        """Make the item stop now; its outcome is then a failure: "time limit of N s exceeded"."""
        ...


class TimeLimitExceeded(BaseException):
    """Raised inside a handler that overran --item-timeout (a BaseException: `except Exception` in
    the handler does not swallow it)."""


def time_limit_text(limit_secs: float) -> str:
    return f"time limit of {limit_secs:g} s exceeded"


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
CREDENTIAL_VARIABLES = (
    "REDISWQ_URL",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "REDISCLI_AUTH",
    "REDISWQ_TLS_KEY",
    "REDISWQ_SENTINEL_PASSWORD",
)


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

    Python cannot stop a thread from outside. An item that overruns --item-timeout gets a
    TimeLimitExceeded raised in its thread (`interrupt`, with PyThreadState_SetAsyncExc): it lands at
    the handler's next Python bytecode, so a loop of short sleeps stops, but a call blocked in C (one
    long `time.sleep`, a socket read without a timeout) does not until it returns. Whatever the
    handler does then, the item has failed. A handler that goes on regardless is the runtime's to
    deal with (worker.runtime.overruns); one still running when the shutdown grace period ends is
    abandoned (its lease given back, the process exits under it).
    """

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self._handler = load_handler(spec)
        self._lock = threading.Lock()
        self._threads: dict[Lease, int] = {}  # the running items' threads
        self._overran: dict[Lease, float] = {}  # items interrupted: their time limit

    def run(self, lease: Lease) -> Outcome:
        error: BaseException | None = None
        # The exception `interrupt` sends arrives at some bytecode of this thread while the item is
        # registered, or is cancelled by `_leave`: either way inside this `try`, never in the slot.
        try:
            with self._lock:
                self._threads[lease] = threading.get_ident()
            try:
                self._handler(lease)
            finally:
                self._leave(lease)
        except BaseException as e:  # a handler's SystemExit must not end its slot thread silently
            error = e
        with self._lock:
            self._threads.pop(lease, None)  # if an interrupt arrived before `_leave` did it
            limit = self._overran.pop(lease, None)
        if limit is not None:
            return Outcome(False, time_limit_text(limit), cause=time_limit_text(limit))
        if error is not None:
            return Outcome(False, exception_text(error), cause=exception_head(error))
        return OK

    def _leave(self, lease: Lease) -> None:
        with self._lock:
            ident = self._threads.pop(lease, None)
            if ident is not None and lease in self._overran:
                _raise_in(ident, None)  # cancel the exception if it has not arrived yet

    def interrupt(self, lease: Lease, limit_secs: float) -> None:
        """Raise TimeLimitExceeded in the thread running `lease` (once; nothing if it has ended)."""
        with self._lock:
            ident = self._threads.get(lease)
            if ident is None or lease in self._overran:
                return
            self._overran[lease] = limit_secs
            _raise_in(ident, TimeLimitExceeded)

    def kill(self, leases: Sequence[Lease]) -> None:
        """Nothing can be done for a running handler: its lease is given back all the same."""

    def describe(self) -> str:
        return f"handler {self.spec}"


def _raise_in(ident: int, exception: type[BaseException] | None) -> None:
    """Have thread `ident` raise `exception` at its next bytecode; None cancels one not yet raised."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), None if exception is None else ctypes.py_object(exception)
    )


def exception_head(error: BaseException) -> str:
    """`Type: message`: the exception without its traceback."""
    return f"{type(error).__name__}: {error}".rstrip(": ")


def exception_text(error: BaseException) -> str:
    """`Type: message`, then the traceback's last lines: what a dead letter needs to be understood."""
    head = exception_head(error)
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


class CommandRunner:
    """Runs `argv` once per item, in a new session (so --item-timeout can kill its whole process group).

    The payload is the child's standard input, and replaces every `{}` in the arguments: as UTF-8 text,
    with bytes that are not UTF-8 passed through unchanged (Python's surrogateescape, undone by the
    exec), so an argument carries exactly the payload's bytes. A payload with a NUL byte cannot be an
    argument at all, nor can one over the system's limit on arguments (exec fails with E2BIG); such an
    item is dead-lettered at once (it can never succeed).

    The child's standard output is the worker's; its standard error is copied through to the worker's
    as it comes, and its last bytes are kept for the error text of a failed item. Children are started
    with posix_spawn (vfork and exec, about a third cheaper than subprocess.Popen with an environment
    of its own; worker.child).
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
        self._children: dict[Lease, Child] = {}
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
            if e.errno == errno.E2BIG and self._substitute:
                return too_big_for_arguments(len(lease.payload))
            return Outcome(False, f"cannot run {argv[0]!r}: {e.strerror or e}")

    def _spawn(
        self, lease: Lease, argv: list[str], env: dict[str, str], meanwhile: Callable[[], None]
    ) -> Outcome:
        child, err_r = Child.spawn(self._program, argv, env, lease.payload)
        with self._lock:
            self._children[lease] = child
        try:
            deadline = None if self.timeout_secs is None else time.monotonic() + self.timeout_secs
            meanwhile()
            tail, timed_out = child.watch(err_r, deadline)
        finally:
            os.close(err_r)
            child.end()  # only if watch failed: leave no process and no zombie behind
            with self._lock:
                self._children.pop(lease, None)
        assert child.status is not None
        code = os.waitstatus_to_exitcode(child.status)
        if timed_out:
            assert self.timeout_secs is not None
            error = f"{time_limit_text(self.timeout_secs)}; its process group was killed"
        elif code == 0:
            return OK
        elif code < 0:
            error = f"killed by {signal_name(-code)}"
        else:
            error = f"exit code {code}"
        text = tail.decode("utf-8", "replace").strip()
        last = text.rpartition("\n")[2].strip()
        return Outcome(
            False, f"{error}; stderr: {text}" if text else error, cause=f"{error}; {last}" if last else error
        )

    def kill(self, leases: Sequence[Lease]) -> None:
        """SIGKILL the process groups of these items (those still running)."""
        with self._lock:
            children = [self._children[lease] for lease in leases if lease in self._children]
        for child in children:
            child.kill()


def too_big_for_arguments(payload_bytes: int) -> Outcome:
    """exec refused the arguments (E2BIG): the same payload fails the same way every time, so the item
    is dead-lettered at once instead of retried until its attempts are spent."""
    return Outcome(
        False,
        f"the command's arguments are too long for the system (Argument list too long): the payload "
        f"({payload_bytes} bytes) in place of {{}} is over the limit on one argument (128 KiB on "
        "Linux) or on all of them; read the payload from standard input instead of {}",
        retry=False,
    )


def _nothing() -> None:
    pass


def signal_name(number: int) -> str:
    """SIGTERM, not 15 (a number the platform does not name stays a number)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
