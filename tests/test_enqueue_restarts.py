"""`rediswq enqueue --unique` restarts exactly once: killed anywhere, re-run, every line once.

The kill test runs the producer Job's own command (read from k8s/components/producer/) with its
queue and file swapped for the test's, SIGKILLed at random points while real worker processes drain
and complete items, then once more to the end.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import yaml

from rediswq import Queue

ROOT = Path(__file__).resolve().parent.parent
RQ = str(Path(sys.executable).parent / "rediswq")
PRODUCER_JOB = ROOT / "k8s" / "components" / "producer" / "producer-job.yaml"

WORKER = """
import os, sys
import rediswq
queue = rediswq.Queue.from_url(sys.argv[1], sys.argv[2])
out = os.open(sys.argv[3], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
with queue.consume(lease_secs=30, prefetch=20, until="closed") as leases:
    for lease in leases:
        os.write(out, lease.payload + b"\\n")  # one write per item: O_APPEND keeps lines whole
"""


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RQ, "--url", url, *args], capture_output=True, text=True, timeout=60)


def producer_command(queue: str, path: Path) -> list[str]:
    """The producer Job's command, on the test's queue and file."""
    job = yaml.safe_load(PRODUCER_JOB.read_text())
    command: list[str] = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["rediswq", "enqueue", "jobs"] and "--unique" in command
    swapped = [queue if arg == "jobs" else arg for arg in command[1:]]
    swapped[swapped.index("--file") + 1] = str(path)
    return swapped


def test_a_rerun_adds_only_lines_after_the_checkpoint_even_once_completed(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    path = tmp_path / "items.txt"
    path.write_bytes(b"".join(b"line-%d\n" % n for n in range(10)))
    assert run(redis_url, "enqueue", "--unique", queue.name, "-f", str(path)).returncode == 0
    while (lease := queue.lease(30, timeout=0)) is not None:  # done and forgotten: no longer live
        queue.complete(lease)
    with path.open("ab") as f:
        f.write(b"line-10\nline-11\n")
    again = run(redis_url, "enqueue", "--unique", queue.name, "-f", str(path))
    assert again.stdout == "enqueued 2, skipped 0 duplicates, 10 put in by an earlier run\n", again
    assert [item.payload for item in queue.peek(10)] == [b"line-10", b"line-11"]


def test_a_different_input_under_the_same_name_is_refused_with_exit_2(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    path = tmp_path / "items.txt"
    path.write_bytes(b"a\nb\nc\n")
    assert run(redis_url, "enqueue", "--unique", queue.name, "-f", str(path)).returncode == 0
    path.write_bytes(b"x\nb\nc\nd\n")
    changed = run(redis_url, "enqueue", "--unique", queue.name, "-f", str(path))
    assert changed.returncode == 2, changed
    assert "not the same input" in changed.stderr and "Traceback" not in changed.stderr
    assert queue.stats().enqueued == 3
    assert run(redis_url, "reopen", queue.name).returncode == 0
    fresh = run(redis_url, "enqueue", "--unique", queue.name, "-f", str(path))
    assert fresh.stdout.startswith("enqueued 2, skipped 2 duplicates"), fresh  # a, b, c still live


def test_a_rerun_after_a_finished_closing_run_succeeds_with_nothing_to_add(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    path = tmp_path / "items.txt"
    path.write_bytes(b"a\nb\n")
    for _ in range(2):
        done = run(redis_url, *producer_command(queue.name, path))
        assert done.returncode == 0, done
    assert queue.stats().enqueued == 2 and queue.stats().closed


def _wait_for_progress(queue: Queue, source: str, producer: subprocess.Popen[bytes]) -> None:
    """Until the producer's checkpoint moves (it is streaming), or it ends."""
    before = queue.checkpoint(source)
    while producer.poll() is None and queue.checkpoint(source) == before:
        time.sleep(0.002)


def test_sigkilled_producer_reruns_process_every_line_exactly_once(
    redis_url: str, queue: Queue, tmp_path: Path
) -> None:
    lines = 40_000
    path = tmp_path / "items.txt"
    path.write_bytes(b"".join(b"item-%06d\n" % n for n in range(lines)))
    out = tmp_path / "processed.txt"
    # How long one whole run takes, on a queue of its own: the kills fall anywhere within it.
    started = time.monotonic()
    timing = run(redis_url, *producer_command(queue.name + "-timing", path))
    whole_run = time.monotonic() - started
    assert timing.returncode == 0, timing
    Queue.from_url(redis_url, queue.name + "-timing").purge()
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, redis_url, queue.name, str(out)]) for _ in range(3)
    ]
    command = [RQ, "--url", redis_url, *producer_command(queue.name, path)]
    rng = random.Random(int(os.environ.get("REDISWQ_TEST_SEED", "7")))
    mid_stream = 0
    try:
        for kill in range(20):
            producer = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if kill < 10:  # first while it streams (a kill anywhere may let it run to the end)
                _wait_for_progress(queue, f"file:{path}", producer)
                time.sleep(rng.uniform(0, 0.01))
            else:
                time.sleep(rng.uniform(0, whole_run))  # anywhere: starting, streaming, closing
            producer.send_signal(signal.SIGKILL)
            producer.wait()
            checkpoint = queue.checkpoint(f"file:{path}")
            mid_stream += checkpoint is not None and 0 < int(checkpoint.split(":")[0]) < lines
        last = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert last.returncode == 0, last.stderr
        for worker in workers:
            assert worker.wait(60) == 0
    finally:
        for worker in workers:
            worker.kill()
    counts = collections.Counter(out.read_bytes().splitlines())
    assert len(counts) == lines, f"{lines - len(counts)} lines never processed"
    twice = {line: n for line, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} lines processed more than once"
    stats = queue.stats()
    assert (stats.enqueued, stats.completed) == (lines, lines)
    print(f"20 SIGKILLs, {mid_stream} of them with a partial checkpoint; {lines} lines, each once")
    assert mid_stream >= 5, "too few kills landed while the producer was mid-stream to prove anything"


SUMMARY = re.compile(r"enqueued (\d+), skipped (\d+) duplicates(?:, (\d+) put in by an earlier run)?")


def _stop_at_random(q: Queue, command: list[str], signum: int, delay: float, streaming: bool) -> list[object]:
    """Run `command`; `delay` seconds after its start (`streaming`: after its first items went in),
    send it `signum`. Returns [exit code, stdout, stderr]."""
    before = q.stats().pending
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while streaming and producer.poll() is None and q.stats().pending == before:
        time.sleep(0.002)
    time.sleep(delay)
    producer.send_signal(signum)
    out, err = producer.communicate(timeout=60)
    return [producer.returncode, out, err]


def test_sigint_and_sigterm_stop_enqueue_with_the_exact_count_and_unique_reruns_add_the_rest(
    redis_url: str, client: redis.Redis, queue_name: str, tmp_path: Path
) -> None:
    lines = 200_000
    path = tmp_path / "items.txt"
    path.write_bytes(b"".join(b"item-%07d\n" % n for n in range(lines)))
    plain, unique = Queue(client, queue_name + "-plain"), Queue(client, queue_name + "-unique")
    # How long a whole run takes, and its streaming part: the signals fall anywhere within them.
    started = time.monotonic()
    timing = subprocess.Popen([RQ, "--url", redis_url, "enqueue", plain.name, "-f", str(path)])
    while timing.poll() is None and plain.stats().pending == 0:
        time.sleep(0.002)
    streamed = time.monotonic()
    assert timing.wait(60) == 0
    whole_run, streaming = time.monotonic() - started, time.monotonic() - streamed
    plain.purge()
    rng = random.Random(int(os.environ.get("REDISWQ_TEST_SEED", "11")))
    counted = {plain.name: 0, unique.name: 0}
    landed = 0  # signals that stopped a run part-way, with its count
    try:
        for kill in range(10):  # a plain and a --unique run side by side: 20 signals
            # One pair in three anywhere (starting, streaming, ending), the others while streaming.
            mid_stream = kill % 3 != 0
            runs = [
                (
                    q,
                    [RQ, "--url", redis_url, "enqueue", *flag, q.name, "-f", str(path)],
                    rng.choice([signal.SIGINT, signal.SIGTERM]),
                    rng.uniform(0, 0.6 * streaming if mid_stream else whole_run),
                    mid_stream,
                )
                for q, flag in ((plain, []), (unique, ["--unique"]))
            ]
            with ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda run: _stop_at_random(*run), runs))
            for (q, _command, signum, _delay, _), (code, out, err) in zip(runs, results, strict=True):
                assert isinstance(out, str) and isinstance(err, str)
                held = q.stats().pending
                said = SUMMARY.search(out + err)
                if said is None:  # stopped before its handlers were set: it sent nothing
                    assert code in (-signum, 1) and held == counted[q.name], (code, out, err)
                    continue
                counted[q.name] += int(said.group(1))
                assert held == counted[q.name], (signum, code, out, err, held)
                if out:  # it ran to the end; a signal as the process exits may still set its code
                    assert code in (0, -signum, 1), (code, out, err)
                    continue
                landed += 1
                assert code == 128 + signum, (code, out, err)
                (line,) = err.splitlines()
                assert line.startswith(f"interrupted by {signal.Signals(signum).name}: enqueued "), line
        rest = run(redis_url, "enqueue", "--unique", unique.name, "-f", str(path))
        assert rest.returncode == 0, rest
        assert unique.stats().pending == unique.stats().enqueued == lines
        earlier = SUMMARY.search(rest.stdout)
        assert earlier is not None and int(earlier.group(1)) == lines - counted[unique.name], rest.stdout
    finally:
        plain.purge()
        unique.purge()
    print(f"20 signals, {landed} of them mid-run; the counts printed matched the queues")
    assert landed >= 6, "too few signals landed while enqueue was running to prove anything"
