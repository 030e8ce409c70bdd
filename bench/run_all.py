"""Run every bench script, print one table of issue 4's targets, and write it into docs/performance.md.

Each script runs as its own process (each starts its own private redis-server) and writes its JSON into
the results directory; this script then reads them back, writes `summary.json` beside them, and
replaces the Performance section of docs/performance.md (between its BEGIN/END markers) with the table,
the machine, the Redis version, the date and the command that regenerates it.

    python bench/run_all.py                 # everything at the issue's sizes (about 10 minutes)
    python bench/run_all.py --tiny          # everything on tiny inputs, docs untouched (seconds)
    python bench/run_all.py --only memory,recovery
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import BENCH_DIR, REPO, RESULTS_DIR, Target, fmt, targets_table, verdict

SCRIPTS = [
    "drain_one", "drain_batched", "worker_runtime", "enqueue", "flat_cost", "memory", "recovery", "ls",
    "dashboard",
]  # fmt: skip

# Sizes for --tiny: every code path runs, nothing is measured worth the name.
TINY: dict[str, list[str]] = {
    name: args.split()
    for name, args in {
        "drain_one": "--items 300 --baseline-items 100 --floor-items 2000 --repeat 1",
        "drain_batched": "--items 2000 --bulk-items 2000 --repeat 1",
        "worker_runtime": "--items 1000 --command-items 10 --repeat 1",
        "enqueue": "--items 5000 --file-lines 5000 --repeat 1",
        "flat_cost": "--small 200 --big 5000 --few-leases 2 --many-leases 100 --expired 300 --sample 200 "
        "--round 100",
        "memory": "--items 5000 --leased 500",
        "ls": "--queues 50 --repeat 1",
        "recovery": "--kills 1 --lease-secs 0.3 --idle-secs 1.2 --warmup-secs 1",
        "dashboard": "--queues 5 --tabs 1 --secs 1 --interval 0.5",
    }.items()
}

BEGIN = "<!-- BEGIN performance -->"
END = "<!-- END performance -->"


def run_script(name: str, extra: list[str], results_dir: Path, redis_server: str | None) -> dict[str, Any]:
    """Run one bench script; its JSON result, or a record of its failure."""
    out = results_dir / f"{name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(BENCH_DIR / f"{name}.py"), *extra, "--json", str(out)]
    if redis_server:
        cmd += ["--redis-server", redis_server]
    print(f"== {name}: {' '.join(shlex.quote(c) for c in cmd[1:])}", flush=True)
    done = subprocess.run(cmd, cwd=REPO)
    if done.returncode != 0 or not out.exists():
        return {"bench": name, "failed": f"exit status {done.returncode}", "targets": []}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def readme_section(results: list[dict[str, Any]], command: str) -> str:
    """docs/performance.md's section: where and when, how to regenerate, the targets, the figures."""
    env: dict[str, Any] = next((r["environment"] for r in results if "environment" in r), {})
    lines = [
        BEGIN,
        f"Measured {env.get('date', '?')} on {env.get('cpu', '?')} ({env.get('cores', '?')} cores, shared), "
        f"Redis {env.get('redis_version', '?')} on loopback, Python {env.get('python', '?')}, "
        f"redis-py {env.get('redis_py', '?')} ({'with' if env.get('hiredis') else 'without'} hiredis). "
        "Targets are ratios measured in the same run (absolute figures drift on a shared machine). "
        "Regenerate this section with:",
        "",
        "```sh",
        command,
        "```",
        "",
        "`bench/README.md` says what each script measures and how; each writes its figures as JSON into "
        "`bench/results/`.",
        "",
        "| Target (issue 4) | Measured | Wanted | |",
        "|---|---:|---:|---|",
    ]
    for result in results:
        if result.get("failed"):
            lines.append(f"| `{result['bench']}` | failed: {result['failed']} | | MISS |")
        for t in result["targets"]:
            measured = "n/a" if t["value"] is None else f"{fmt(t['value'])}{t['unit']}"
            if t["value"] is None and t["detail"]:
                measured = f"n/a ({t['detail']})"
            lines.append(
                f"| {t['name']} | {measured} | {t['op']} {fmt(t['limit'])}{t['unit']} | {verdict(t['ok'])} |"
            )
    lines += ["", "| Bench | Variant | Figure |", "|---|---|---:|"]
    for result in results:
        for row in result.get("rows", []):
            label = row.get("variant") or row.get("case") or row.get("measure")
            for key in ("items/s", "us/item", "bytes/item", "seconds"):
                if key in row and row[key] is not None:
                    lines.append(f"| {result['bench']} | {label} | {fmt(row[key])} {key} |")
                    break
    lines.append(END)
    return "\n".join(lines)


def write_readme(path: Path, section: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {BEGIN} ... {END} section")
    path.write_text(pattern.sub(lambda _m: section, text, count=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny inputs: a smoke run, not a measurement")
    parser.add_argument("--only", help="comma-separated scripts to run (default: all)")
    parser.add_argument("--redis-server", metavar="PATH", help="the redis-server binary every script starts")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where the JSON goes")
    parser.add_argument(
        "--readme", type=Path, help="the page to update (default: docs/performance.md, except with --tiny)"
    )
    parser.add_argument("--no-readme", action="store_true", help="leave every page alone")
    args = parser.parse_args(argv)

    names = args.only.split(",") if args.only else SCRIPTS
    unknown = sorted(set(names) - set(SCRIPTS))
    if unknown:
        parser.error(f"unknown scripts: {', '.join(unknown)} (known: {', '.join(SCRIPTS)})")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    results = [
        run_script(name, TINY[name] if args.tiny else [], args.results_dir, args.redis_server)
        for name in names
    ]

    print("\n== summary")
    targets = [Target(**{k: v for k, v in t.items() if k != "ok"}) for r in results for t in r["targets"]]
    print(targets_table(targets))
    failed = [r["bench"] for r in results if r.get("failed")]
    for name in failed:
        print(f"{name}: FAILED")
    summary = args.results_dir / "summary.json"
    summary.write_text(json.dumps({"results": results}, indent=2, default=str) + "\n")
    print(f"wrote {summary}")

    readme = args.readme or (None if args.tiny else REPO / "docs" / "performance.md")
    if readme is not None and not args.no_readme:
        shown = [".venv/bin/python", "bench/run_all.py", *(argv if argv is not None else sys.argv[1:])]
        command = " ".join(shlex.quote(a) for a in shown if a)
        write_readme(readme, readme_section(results, command))
        print(f"updated the Performance section of {readme}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
