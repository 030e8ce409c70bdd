"""Instructions redis-server runs per lease.lua call, by variant: a Lua cost that load cannot blur.

`lua_cost.py` times each call with Redis's own clock, and on a shared machine its rounds spread by
20-50 %. This runs the same `complete_and_lease` loop on a private redis-server under valgrind's
callgrind and counts the instructions the server runs (callgrind's `Ir`) while the loop runs: the same
count each time for the same binary and inputs, whatever else the machine does, so a change of 1 %
shows. Not part of run_all.py (it needs valgrind, and runs the server some 50x slower); a tool for
working on the Lua, as lua_cost.py is. Instructions are not microseconds (cache misses and the cost of
each instruction differ), so a target in microseconds is still judged with lua_cost.py.

Variants are lease.lua texts, as in lua_cost.py (`--variant NAME=FILE[,PRELUDE]`); `--token` starts the
queue's lease tokens there (a long-lived queue's tokens are 5-byte msgpack, a new one's shorter).
"""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import private_redis
from lua_cost import Caller, new_handles, parser_with_variants, variants_of
from redis_server import find_binary

from rediswq import Queue


def _callgrind(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _wrapper(binary: str, out: Path) -> str:
    """A script that starts `binary` under callgrind with counting off (we switch it on per round)."""
    script = out / "redis-under-callgrind"
    script.write_text(
        "#!/bin/sh\n"
        f'exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="{out}/cg.%p" '
        f'"{binary}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def _count(
    call: Caller, pid: int, out: Path, label: str, batch: int, calls: int, token: int, keep: Path | None
) -> int:
    """Instructions the server ran over `calls` complete-and-lease calls of `batch` items."""
    client = call.client
    call.prepare()
    queue = Queue(client, "instructions")
    queue.purge()
    queue.put_many([b"%016d" % i for i in range(batch * (calls + 1))])
    if token:
        client.hset(queue.keys.meta, "token", token)
    keys = queue.keys.all()
    args: list[Any] = [batch, 60_000, 5, 100, "w", 0]
    reply = call(keys, args)
    _callgrind("--zero", str(pid))
    _callgrind("--instr=on", str(pid))
    for _ in range(calls):
        handles = new_handles(reply)
        reply = call(keys, [*args, *handles])
        assert reply[0] == 0 and int(reply[3]) == 0, reply[:4]
    _callgrind("--instr=off", str(pid))
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", label)  # it goes to a shell, and names a file
    for old in out.glob("cg.*"):  # callgrind may write a dump into the file of the one before
        old.unlink()
    _callgrind(f"--dump={safe}", str(pid))
    queue.purge()
    deadline = time.monotonic() + 30  # the server writes the dump when it next wakes up
    while time.monotonic() < deadline:
        lines = [line for dump in out.glob("cg.*") for line in dump.read_text().splitlines()]
        totals = [line for line in lines if line.startswith("totals:")]
        if totals:
            if keep is not None:  # the whole dump, for callgrind_annotate: where the instructions go
                for dump in out.glob("cg.*"):
                    shutil.copy(dump, keep / f"callgrind.{safe}.out")
            return int(totals[-1].split()[1])
        time.sleep(0.1)
    raise RuntimeError(f"callgrind wrote no totals for {label}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = parser_with_variants(__doc__ or "", 1000, "calls counted per variant and path")
    parser.add_argument("--token", type=int, default=1_000_000, help="the queue's lease token to start at")
    parser.add_argument(
        "--keep-dumps",
        type=Path,
        metavar="DIR",
        help="copy each variant's callgrind dump here (callgrind_annotate)",
    )
    args = parser.parse_args(argv)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            parser.exit(2, f"lua_instructions.py: {tool} not found (Debian: apt-get install valgrind)\n")
    variants = variants_of(args)
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="rediswq-callgrind-") as tmp:
        out = Path(tmp)
        binary = args.redis_server or find_binary()
        with private_redis(_wrapper(binary, out), args.redis_config) as server:
            client = server.client()
            version = client.info("server")["redis_version"]
            paths = ["functions", "scripts"] if args.path == "both" else [args.path]
            if int(version.split(".")[0]) < 7:
                paths = ["scripts"]
            for variant in variants:
                for path in paths:
                    call = Caller(client, variant, path)
                    label = f"{variant.name} ({path})"
                    total = _count(
                        call,
                        server.process.pid,
                        out,
                        label,
                        args.batch,
                        args.calls,
                        args.token,
                        args.keep_dumps,
                    )
                    results[label] = total / args.calls
    print(
        f"lease.lua on Redis {version}, {args.batch} item(s) a call, {args.calls} calls, "
        f"tokens from {args.token}: server instructions (callgrind Ir)"
    )
    print(f"{'variant (path)':<32} {'per call':>12} {'per item':>10}")
    for label, per_call in results.items():
        print(f"{label:<32} {per_call:>12,.0f} {per_call / args.batch:>10,.0f}")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
