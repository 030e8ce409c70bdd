"""An item (command mode) and a handler look for the worker's Redis password where a process of the
same user could find it: /proc/PARENT/environ, /proc/PARENT/cmdline, `ps`, os.environ and sys.argv.
They must find nothing, however the password was given to the worker.

The worker and its items run as one user with no capability, as in a pod: root could read a
non-dumpable process's environ all the same (CAP_SYS_PTRACE). Run as root, the test starts the worker
as nobody (uid 65534); when this interpreter is out of nobody's reach (a Python under /root), as
root with every capability dropped, where the kernel's checks are those of any user: /proc/PID/environ
of a non-dumpable process is refused for want of CAP_SYS_PTRACE. Run as another user, the worker
runs as that user.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer

from rediswq import Queue

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's /proc and prctl")

REDISWQ = str(Path(sys.executable).with_name("rediswq"))
PASSWORD = "Zq1K7q9X-not-for-items"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(password=PASSWORD)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def as_worker_user() -> list[str]:
    """The command prefix that starts the worker as a user with no privilege over other processes."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("run as root, the worker must be started unprivileged, and setpriv is missing")
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    if subprocess.run([*nobody, REDISWQ, "--version"], capture_output=True).returncode == 0:
        return nobody
    return [setpriv, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--"]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged worker and its items can write to (tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="rediswq-reach-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


ITEM = """\
#!/bin/sh
{
  echo "== environ"; tr '\\0' ' ' < /proc/$PPID/environ; echo
  echo "== cmdline"; tr '\\0' ' ' < /proc/$PPID/cmdline; echo
  echo "== ps"; ps -ww -o args= -p $PPID
  echo "== own environment"; env
} > item-saw.txt 2>&1
"""

HANDLER = """\
import os, subprocess, sys

def handle(lease):
    pid = os.getpid()
    seen = []
    for name in ("environ", "cmdline"):
        with open(f"/proc/{pid}/{name}", "rb") as f:
            seen.append(f"== {name}\\n" + f.read().replace(b"\\0", b" ").decode(errors="replace"))
    ps = subprocess.run(["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    seen.append("== ps\\n" + ps.stdout + ps.stderr)
    seen.append("== os.environ\\n" + repr(dict(os.environ)))
    seen.append("== sys.argv\\n" + repr(sys.argv) + repr(getattr(sys, "orig_argv", [])))
    with open("handler-saw.txt", "w") as f:
        f.write("\\n".join(seen) + "\\n")
"""

# How the worker is given the password: (its arguments before `work`, its environment).
Given = Callable[[RedisServer, Path], tuple[list[str], dict[str, str]]]


def _url_file(server: RedisServer, where: Path) -> tuple[list[str], dict[str, str]]:
    path = where / "redis-url"
    path.write_text(server.url + "\n")
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return ["--url-file", str(path)], {}


SOURCES: dict[str, Given] = {
    "--url": lambda server, where: (["--url", server.url], {}),
    "$REDISWQ_URL": lambda server, where: ([], {"REDISWQ_URL": server.url}),
    # The manifests' way: the Secret's password in $REDIS_PASSWORD, expanded into $REDISWQ_URL.
    "$REDIS_PASSWORD beside $REDISWQ_URL": lambda server, where: (
        [],
        {"REDIS_PASSWORD": PASSWORD, "REDISWQ_URL": server.url},
    ),
    "--url-file": _url_file,
}


def _run_worker(
    server: RedisServer, prefix: list[str], where: Path, given: Given, *target: str
) -> subprocess.CompletedProcess[str]:
    queue_name = f"reach-{where.name}"
    Queue(server.client(), queue_name).put(b"item")
    before, env = given(server, where)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS"))}
    argv = [*prefix, REDISWQ, *before, "work", queue_name, "--max-attempts", "1", *target]
    return subprocess.run(argv, env={**clean, **env}, cwd=where, capture_output=True, text=True, timeout=60)


def _section(text: str, name: str) -> str:
    return text.split(f"== {name}\n", 1)[1].split("\n== ", 1)[0]


@pytest.mark.parametrize("source", list(SOURCES))
def test_an_item_finds_no_password_in_its_workers_environ_cmdline_or_ps(
    server: RedisServer, as_worker_user: list[str], shared_dir: Path, source: str
) -> None:
    item = shared_dir / "item.sh"
    item.write_text(ITEM)
    item.chmod(0o755)
    done = _run_worker(server, as_worker_user, shared_dir, SOURCES[source], "--", str(item))
    assert done.returncode == 0, done.stderr
    seen = (shared_dir / "item-saw.txt").read_text()
    assert PASSWORD not in seen, seen
    assert "Permission denied" in _section(seen, "environ"), seen  # non-dumpable: closed to the item
    assert " work reach-" in _section(seen, "cmdline"), seen  # what was read is the worker's
    if shutil.which("ps"):
        assert " work reach-" in _section(seen, "ps"), seen
    assert PASSWORD not in done.stderr


@pytest.mark.parametrize("source", list(SOURCES))
def test_a_handler_finds_no_password_in_its_own_environ_cmdline_ps_os_environ_or_argv(
    server: RedisServer, as_worker_user: list[str], shared_dir: Path, source: str
) -> None:
    (shared_dir / "peek.py").write_text(textwrap.dedent(HANDLER))
    done = _run_worker(server, as_worker_user, shared_dir, SOURCES[source], "--handler", "peek:handle")
    assert done.returncode == 0, done.stderr
    seen = (shared_dir / "handler-saw.txt").read_text()
    assert PASSWORD not in seen, seen
    assert " work reach-" in _section(seen, "cmdline"), seen
    assert "PATH=" in _section(seen, "environ"), seen  # its own block: readable, and scrubbed
