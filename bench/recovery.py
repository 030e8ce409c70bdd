"""Recovery: how soon a SIGKILLed worker's item is done by another worker, and what an idle worker costs.

kills: per trial, a fresh worker process leases the queue's one item for L seconds and hangs "mid-item";
a second, long-lived worker process is already waiting in `lease()` (the library's own wait: it sleeps
until the lease deadline the script reports, polling at most 20 times a second). The harness SIGKILLs
the first worker right after its lease (the worst moment: the whole lease is still to run) and times
until the second worker has completed that same item. Worst case over K kills.
idle: one worker waiting in `lease(until="closed")` on an empty, open queue, and one waiting in
`lease()` while another worker holds the only item for an hour; their Redis calls per second over
S seconds, from `INFO commandstats`. Also `rediswq work --until closed` on an empty queue, when present.
Targets (issue 4, #7): worst recovery <= L + 1 s; an idle worker <= 20 calls per second.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

import redis
from _common import (
    Mp,
    Target,
    base_parser,
    calls_between,
    client_sent,
    command_calls,
    environment,
    finish,
    load_scripts,
    now,
    private_redis,
    script_commands,
    table,
)
from _drain import unique_name
from worker_runtime import rediswq_command, work_available

from rediswq import Queue


def doomed_worker(url: str, name: str, lease_secs: float, conn: Connection) -> None:
    """Lease the one item, say which, then hang as if working on it until killed."""
    lease = Queue.from_url(url, name).lease(lease_secs, timeout=10)
    conn.send(None if lease is None else (lease.id, now()))
    time.sleep(3600)


def rescuer(url: str, name: str, lease_secs: float, conn: Connection) -> None:
    """On each "go": wait in lease() for an item, complete it, report (id, attempt, when done)."""
    q = Queue.from_url(url, name)
    while conn.recv() == "go":
        conn.send("waiting")
        lease = q.lease(lease_secs, until="closed")
        if lease is None:
            conn.send(None)
            return
        q.complete(lease)
        conn.send((lease.id, lease.attempt, now()))


def kill_trials(url: str, client: redis.Redis, trials: int, lease_secs: float) -> list[dict[str, Any]]:
    name = unique_name("kill")
    q = Queue(client, name)
    here, there = Mp.Pipe()
    helper = Mp.Process(target=rescuer, args=(url, name, lease_secs, there), daemon=True)
    helper.start()
    out = []
    try:
        for trial in range(trials):
            item_id = q.put(f"item-{trial}")
            mine, theirs = Mp.Pipe()
            doomed = Mp.Process(target=doomed_worker, args=(url, name, lease_secs, theirs), daemon=True)
            doomed.start()
            if not mine.poll(30):
                raise RuntimeError("the doomed worker did not lease within 30 s")
            held = mine.recv()
            if held is None or held[0] != item_id:
                raise RuntimeError(f"the doomed worker leased {held!r}, not {item_id}")
            leased_at = held[1]
            here.send("go")
            if here.recv() != "waiting":
                raise RuntimeError("the rescuer did not start waiting")
            assert doomed.pid is not None
            os.kill(doomed.pid, signal.SIGKILL)
            killed_at = now()
            doomed.join(10)
            if not here.poll(lease_secs + 30):
                raise RuntimeError(f"item {item_id} was not completed within {lease_secs + 30} s of the kill")
            done = here.recv()
            if done is None or done[0] != item_id or done[1] != 2:
                raise RuntimeError(f"the rescuer completed {done!r}, not item {item_id} on attempt 2")
            out.append(
                {
                    "trial": trial,
                    "kill after lease s": killed_at - leased_at,
                    "recovery s": done[2] - killed_at,
                    "past deadline s": done[2] - (leased_at + lease_secs),
                }
            )
    finally:
        here.send("stop")
        helper.join(10)
        if helper.is_alive():
            helper.kill()
        q.purge()
    return out


def idle_waiter(url: str, name: str, until: str, ready: Any) -> None:
    q = Queue.from_url(url, name)
    q.client.ping()
    ready.set()
    q.lease(60, until="closed" if until == "closed" else "drained")


def idle_calls(url: str, client: redis.Redis, case: str, seconds: float, warmup: float) -> dict[str, Any]:
    """Calls per second of one waiting library worker, over `seconds` seconds."""
    name = unique_name("idle")
    q = Queue(client, name)
    if case == "other holds a lease":
        q.put("held")
        q.lease(3600)
    ready = Mp.Event()
    proc = Mp.Process(
        target=idle_waiter,
        args=(url, name, "closed" if case == "empty open queue" else "drained", ready),
        daemon=True,
    )
    proc.start()
    ready.wait(30)
    time.sleep(warmup)  # past its first polls: the steady state is what counts
    before = command_calls(client)
    time.sleep(seconds)
    diff = calls_between(before, command_calls(client))
    proc.kill()
    proc.join(10)
    q.purge()
    sent = client_sent(diff, inside_scripts=script_commands())
    return {"case": f"library lease(), {case}", "calls": sent, "seconds": seconds, "calls/s": sent / seconds}


def idle_cli_calls(exe: str, url: str, client: redis.Redis, seconds: float, warmup: float) -> dict[str, Any]:
    """Calls per second of `rediswq work --until closed` waiting on an empty, open queue."""
    name = unique_name("idlecli")
    proc = subprocess.Popen(
        [exe, "--url", url, "work", name, "--until", "closed", "--", "true"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(warmup)  # start-up and first polls
        if proc.poll() is not None:
            raise RuntimeError(f"rediswq work exited {proc.returncode} on an empty open queue")
        before = command_calls(client)
        time.sleep(seconds)
        diff = calls_between(before, command_calls(client))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        Queue(client, name).purge()
    sent = client_sent(diff, inside_scripts=script_commands())
    return {
        "case": "rediswq work --until closed, empty open queue",
        "calls": sent,
        "seconds": seconds,
        "calls/s": sent / seconds,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(__doc__ or "")
    parser.add_argument("--kills", type=int, default=20, help="workers to SIGKILL mid-item")
    parser.add_argument("--lease-secs", type=float, default=2.0, help="their lease length")
    parser.add_argument(
        "--idle-secs", type=float, default=5.0, help="how long to count an idle worker's calls"
    )
    parser.add_argument(
        "--warmup-secs", type=float, default=3.0, help="how long an idle worker waits before counting starts"
    )
    args = parser.parse_args(argv)

    exe = rediswq_command()
    available, why = work_available(exe)
    with private_redis(args.redis_server, args.redis_config) as server:
        client = server.client()
        load_scripts(client)
        env = environment(server)
        kills = kill_trials(server.url, client, args.kills, args.lease_secs)
        idle = [
            idle_calls(server.url, client, "empty open queue", args.idle_secs, args.warmup_secs),
            idle_calls(server.url, client, "other holds a lease", args.idle_secs, args.warmup_secs),
        ]
        if available and exe is not None:
            idle.append(idle_cli_calls(exe, server.url, client, args.idle_secs, args.warmup_secs))

    worst = max(kills, key=lambda k: k["recovery s"])
    rows = [
        {
            "measure": f"recovery after SIGKILL, worst of {len(kills)}",
            "seconds": worst["recovery s"],
            "past deadline s": worst["past deadline s"],
        },
        {
            "measure": f"recovery after SIGKILL, median of {len(kills)}",
            "seconds": sorted(k["recovery s"] for k in kills)[len(kills) // 2],
            "past deadline s": sorted(k["past deadline s"] for k in kills)[len(kills) // 2],
        },
    ]
    idle_worst = max(i["calls/s"] for i in idle)
    targets = [
        Target(
            f"recovery: worst of {len(kills)} SIGKILLs (lease {args.lease_secs:g} s)",
            worst["recovery s"],
            "<=",
            args.lease_secs + 1.0,
            " s",
        ),
        Target("recovery: idle worker's calls per second (worst case)", idle_worst, "<=", 20.0, "/s"),
    ]
    notes = [] if available else [f"`rediswq work` could not run: {why}"]
    result = finish(
        "recovery",
        "Recovery and idle cost",
        args,
        env,
        vars(args),
        rows,
        ["measure", "seconds", "past deadline s"],
        targets,
        notes=notes,
        extra={"kills": kills, "idle": idle},
    )
    print()
    print(table(idle, ["case", "calls", "seconds", "calls/s"]))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
