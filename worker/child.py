"""One item's child process for command mode: spawn it, copy its stderr through, reap or kill it.

Children are started with posix_spawn (vfork and exec, about a third cheaper than subprocess.Popen
with an environment of its own), each in a new session, so a kill reaches its whole process group;
no descriptor of the worker leaks into them, since Python opens every one close-on-exec.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import sys
import threading
import time
from typing import Any

# How much of a failed command's standard error is kept with its error text, in bytes.
STDERR_TAIL_BYTES = 2000

# Python ignores these; an exec keeps ignored signals ignored, so each child gets them back at their
# defaults (as subprocess's restore_signals does), e.g. for `producer | head` in a command.
_DEFAULT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signal, name)
)
# Without a pidfd (not Linux), how often the child's exit is checked.
_CHECK_MS = 50


class Child:
    """A running item's process; `status` is set once it is reaped, under the child's own lock.

    Reaping and killing take the same lock, so a kill never reaches a process group id reused after
    the reap.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None
        self._lock = threading.Lock()

    @classmethod
    def spawn(
        cls, program: str | None, argv: list[str], env: dict[str, str], payload: bytes
    ) -> tuple[Child, int]:
        """Start `argv` (found on PATH if `program` is None) with `payload` on its stdin.

        Returns the child and the read end of its stderr pipe (the caller closes it).
        """
        stdin_r, stdin_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            rest = _prefill(stdin_w, payload)
            options: dict[str, Any] = {
                "file_actions": [(os.POSIX_SPAWN_DUP2, stdin_r, 0), (os.POSIX_SPAWN_DUP2, err_w, 2)],
                "setsid": True,
                "setsigdef": _DEFAULT_SIGNALS,
                "setsigmask": (),
            }
            if program is not None:
                pid = os.posix_spawn(program, argv, env, **options)
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
        return cls(pid), err_r

    def reap(self, *, block: bool) -> bool:
        """Collect the exit status; True once reaped."""
        with self._lock:
            if self.status is None:
                pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
                if pid == self.pid:
                    self.status = status
            return self.status is not None

    def kill(self) -> None:
        """SIGKILL its process group (it leads its own session: the group id is its pid)."""
        with self._lock:
            if self.status is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)

    def end(self) -> None:
        """Leave no process and no zombie behind (if `watch` did not reap it)."""
        if self.status is None:
            self.kill()
            self.reap(block=True)

    def watch(self, err_r: int, deadline: float | None) -> tuple[bytes, bool]:
        """Copy the child's stderr through until it exits, killing it at `deadline`; reap it.

        Returns stderr's last STDERR_TAIL_BYTES and whether it timed out. The exit is seen on a pidfd
        (Linux), so a grandchild that keeps stderr open cannot hold the item.
        """
        poller = select.poll()
        stderr = _Stderr(err_r, poller)
        pidfd = _pidfd(self.pid)
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        timed_out = False
        try:
            while True:
                events = {fd for fd, _ in poller.poll(_wait_ms(pidfd, deadline))}
                exited = self._exited(pidfd, events)
                stderr.copy(exited or err_r in events)
                if exited:
                    return bytes(stderr.tail), timed_out
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out, deadline = True, None
                    self.kill()
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _exited(self, pidfd: int | None, events: set[int]) -> bool:
        """Reaped: at once when the pidfd says it exited, else by checking (no pidfd)."""
        if pidfd is None:
            return self.reap(block=False)
        return pidfd in events and self.reap(block=True)


class _Stderr:
    """The child's stderr: copied through to ours as it comes, its tail kept."""

    def __init__(self, fd: int, poller: select.poll) -> None:
        self.fd = fd
        self.poller = poller
        self.tail = bytearray()
        self.reading = True
        poller.register(fd, select.POLLIN)
        os.set_blocking(fd, False)

    def copy(self, ready: bool) -> None:
        if self.reading and ready:
            self.reading = _copy(self.fd, sys.stderr.buffer, self.tail)
            if not self.reading:
                self.poller.unregister(self.fd)


def _wait_ms(pidfd: int | None, deadline: float | None) -> int | None:
    """How long to poll: until an event with a pidfd, else _CHECK_MS; never past the deadline."""
    wait_ms = None if pidfd is not None else _CHECK_MS
    if deadline is None:
        return wait_ms
    left_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
    return left_ms if wait_ms is None else min(wait_ms, left_ms)


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


__all__ = ["STDERR_TAIL_BYTES", "Child"]
