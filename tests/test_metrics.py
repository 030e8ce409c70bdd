"""Prometheus metrics, scraped from real endpoints: a worker draining a real Redis, the queue exporter.

The scrapes are parsed with prometheus_client's own parser and compared, number for number, with
`Queue.stats()` and with the summary the worker prints at exit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer, find_binary, free_port

from rediswq import Queue, Stats
from rediswq_cli.main import main
from rediswq_producer import exporter as exporter_module

REDISWQ = str(Path(sys.executable).with_name("rediswq"))
# Fails each payload "bad"; fails a payload "flaky-N" on its first attempt only (REDISWQ_ATTEMPT).
COMMAND = 'case "$1" in bad) exit 7;; flaky*) test "$REDISWQ_ATTEMPT" -gt 1;; esac'
PAYLOADS = ["ok-1", "ok-2", "ok-3", "flaky-1", "flaky-2", "bad", "ok-4", "bad"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of http://127.0.0.1:port/metrics: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def answers(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


@pytest.fixture
def env() -> dict[str, str]:
    drop = ("REDISWQ_", "REDIS_URL", "POD_NAME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def start(procs: list[subprocess.Popen[str]], argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    return proc


STATS_COUNTERS = (
    "enqueued",
    "completed",
    "failed",
    "retried",
    "expired",
    "dead_lettered",
    "released",
    "dropped",
    "quarantined",
)


def exported_stats(samples: Samples, name: str) -> Stats:
    """What the exporter says of queue `name`, as a Stats to compare with Queue.stats()."""
    counts = {
        what: int(value(samples, f"rediswq_queue_{what}", queue=name))
        for what in ("pending", "leased", "delayed", "dead")
    }
    counters = {
        what: int(value(samples, f"rediswq_queue_{what}_total", queue=name)) for what in STATS_COUNTERS
    }
    return Stats(closed=value(samples, "rediswq_queue_closed", queue=name) == 1, **counts, **counters)


# -- the worker's endpoint ------------------------------------------------------------------------


def test_a_worker_scrape_after_a_drain_with_failures_matches_stats_its_summary_and_its_log_fields(
    client: redis.Redis, redis_url: str, queue: Queue, env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    queue.put_many(PAYLOADS)
    port = free_port()
    argv = [
        REDISWQ,
        "--url",
        redis_url,
        "work",
        queue.name,
        "--max-attempts",
        "2",
        "--retry-backoff-secs",
        "0.05",
    ]
    argv += [
        "--until",
        "closed",
        "--metrics-port",
        str(port),
        "--worker-name",
        "pod-7",
        "--log-format",
        "json",
    ]
    worker = start(procs, [*argv, "-v", "--", "sh", "-c", COMMAND, "item", "{}"], env)
    wait_for(lambda: queue.stats().drained and answers(port))
    wait_for(lambda: value(scrape(port), "rediswq_worker_state", queue=queue.name, state="waiting") == 1)
    samples = scrape(port)
    stats = queue.stats()
    assert (stats.completed, stats.failed, stats.retried, stats.dead_lettered) == (6, 6, 4, 2)

    def worker_counter(what: str) -> float:
        return value(samples, f"rediswq_worker_{what}_total", queue=queue.name)

    assert worker_counter("items_completed") == stats.completed
    assert worker_counter("items_failed") == stats.failed
    assert worker_counter("items_retried") == stats.retried
    assert worker_counter("items_dead_lettered") == stats.dead_lettered
    assert worker_counter("items_released") == stats.released == 0
    assert worker_counter("leases_lost") == stats.expired == 0
    assert worker_counter("redis_errors") == worker_counter("redis_reconnects") == 0
    # Every run of the command is timed: 6 completed and 6 failed runs, all in buckets up to 1 h.
    runs = stats.completed + stats.failed
    assert value(samples, "rediswq_worker_item_duration_seconds_count", queue=queue.name) == runs
    assert value(samples, "rediswq_worker_item_duration_seconds_bucket", queue=queue.name, le="+Inf") == runs
    assert (
        value(samples, "rediswq_worker_item_duration_seconds_bucket", queue=queue.name, le="3600.0") == runs
    )
    assert 0 < value(samples, "rediswq_worker_item_duration_seconds_sum", queue=queue.name) < 10
    assert value(samples, "rediswq_worker_items_in_flight", queue=queue.name) == 0
    assert value(samples, "rediswq_worker_leases_held", queue=queue.name) == 0
    states = {
        s: value(samples, "rediswq_worker_state", queue=queue.name, state=s)
        for s in ("leasing", "waiting", "draining", "stopping", "stopped")
    }
    assert states == {"leasing": 0, "waiting": 1, "draining": 0, "stopping": 0, "stopped": 0}
    assert value(samples, "rediswq_worker_info", queue=queue.name, worker="pod-7") == 1

    queue.close()
    _, err = worker.communicate(timeout=15)
    assert worker.returncode == 4, err  # drained, with dead letters
    lines = [json.loads(line) for line in err.splitlines()]
    summary = next(line for line in lines if line.get("event") == "summary")
    assert (summary["ending"], summary["exit_code"]) == ("drained_with_dead", 4)
    assert (
        summary["done"],
        summary["failed"],
        summary["dead_lettered"],
        summary["given_back"],
        summary["lost"],
    ) == (
        worker_counter("items_completed"),
        worker_counter("items_failed"),
        worker_counter("items_dead_lettered"),
        worker_counter("items_released"),
        worker_counter("leases_lost"),
    )
    # Every line about an item names its queue, item, attempt and worker: they join with the metrics.
    item_lines = [line for line in lines if "item" in line]
    assert len(item_lines) >= 2 * runs  # started and done/failed, for each run
    for line in item_lines:
        assert line["queue"] == queue.name and line["worker"] == "pod-7", line
        assert isinstance(line["attempt"], int) and line["attempt"] >= 1, line
    assert {
        line["attempt"] for line in item_lines if line["message"].startswith(f"item {line['item']} failed")
    } == {1, 2}
    assert all(line["queue"] == queue.name and line["worker"] == "pod-7" for line in lines)


def test_a_handlers_own_log_lines_carry_the_queue_and_the_worker_too(
    redis_url: str, queue: Queue, env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "chatty.py").write_text(
        "import logging\n\ndef handle(lease):\n    logging.getLogger('mine').info('handling %s', lease.id)\n"
    )
    queue.put_many(["a", "b"])
    argv = [
        REDISWQ,
        "--url",
        redis_url,
        "work",
        queue.name,
        "--handler",
        "chatty:handle",
        "--log-format",
        "json",
    ]
    done = subprocess.run(
        [*argv, "--worker-name", "pod-3"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    mine = [json.loads(line) for line in done.stderr.splitlines() if '"logger": "mine"' in line]
    assert len(mine) == 2
    assert all(line["queue"] == queue.name and line["worker"] == "pod-3" for line in mine)


def test_a_scrape_makes_no_redis_call_it_is_answered_while_redis_is_paused(
    client: redis.Redis, redis_url: str, queue: Queue, env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    queue.put_many(["a", "b"])
    port = free_port()
    argv = [REDISWQ, "--url", redis_url, "work", queue.name, "--until", "closed", "--metrics-port", str(port)]
    start(procs, [*argv, "--", "true"], env)
    wait_for(lambda: queue.stats().completed == 2 and answers(port))
    client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
    try:
        began = time.monotonic()
        samples = scrape(port)
        took = time.monotonic() - began
    finally:
        client.execute_command("CLIENT", "UNPAUSE")
    assert took < 0.5  # a Redis call would have waited for the pause to end
    assert value(samples, "rediswq_worker_items_completed_total", queue=queue.name) == 2


def test_redis_errors_and_the_reconnect_after_a_restart_are_counted(queue_name: str, tmp_path: Path) -> None:
    from rediswq_worker.metrics import WorkerMetrics
    from rediswq_worker.runners import CommandRunner
    from rediswq_worker.runtime import Ending, Options, Runtime

    port = free_port()
    argv = [find_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    argv += ["--appendonly", "yes", "--appendfsync", "always", "--loglevel", "warning"]

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _answers(redis.Redis(port=port)), timeout=5)
        return proc

    server = start_redis()
    try:
        # No retries inside the library: each failed call reaches the runtime, which counts it.
        queue = Queue.from_url(f"redis://127.0.0.1:{port}/0", queue_name, retries=0)
        queue.put_many(f"n{i}" for i in range(6))
        done = tmp_path / "done"
        runner = CommandRunner(
            ("sh", "-c", f"sleep 0.2; echo x >> {done}"), queue_name=queue_name, timeout_secs=None
        )
        metrics = WorkerMetrics(queue_name, "w")
        runtime = Runtime(queue, runner, Options(install_signals=False, reconnect_secs=30), observer=metrics)
        metrics.watch(runtime)
        result: list[Any] = []
        thread = threading.Thread(target=lambda: result.append(runtime.run()))
        thread.start()
        wait_for(done.exists)
        server.terminate()
        server.wait()
        time.sleep(1.0)
        server = start_redis()
        thread.join(timeout=30)
        (summary,) = result
        assert summary.ending is Ending.DRAINED and summary.done == 6
        families = {f.name: f.samples for f in metrics.collect()}
        assert families["rediswq_worker_redis_errors"][0].value >= 1
        assert families["rediswq_worker_redis_reconnects"][0].value == 1
        assert families["rediswq_worker_items_completed"][0].value == 6
        assert [s.labels["state"] for s in families["rediswq_worker_state"] if s.value == 1] == ["stopped"]
    finally:
        server.kill()
        server.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_metrics_port_from_the_environment_and_a_taken_port_exits_2_with_one_line(
    redis_url: str, queue: Queue, env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    first = start(
        procs,
        [REDISWQ, "--url", redis_url, "work", queue.name, "--until", "closed", "--", "true"],
        {**env, "REDISWQ_METRICS_PORT": str(port)},
    )
    wait_for(lambda: answers(port))
    second = subprocess.run(
        [REDISWQ, "--url", redis_url, "work", queue.name, "--metrics-port", str(port), "--", "true"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"Error: cannot serve metrics on port {port}: Address already in use"
    ]
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=15) == 3


@pytest.mark.parametrize(
    "args",
    [["work", "q", "--metrics-port", "9100", "--", "true"], ["exporter", "q"]],
    ids=["work", "exporter"],
)
def test_without_prometheus_client_installed_metrics_exit_2_with_a_one_line_hint(
    args: list[str], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # what find_spec sees when it is missing
    result = CliRunner().invoke(main, ["--url", redis_url, *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "needs the prometheus_client package: pip install 'rediswq-k8s[metrics]'"
    )


# -- the exporter -------------------------------------------------------------------------------------


@pytest.fixture
def queues(client: redis.Redis, queue_name: str) -> Iterator[list[Queue]]:
    """Three queues in three different states: fresh items, a drained and closed one with a dead letter,
    one with an item leased and one delayed."""
    made = [Queue(client, f"{queue_name}-{i}", retry_backoff_secs=30) for i in range(3)]
    fresh, done, busy = made
    fresh.put_many(["a", "b", "c"])
    done.put_many(["x", "y"])
    first = done.lease(5)
    done.complete(first)
    done.fail(done.lease(5), "boom", retry=False)
    done.close()
    busy.put_many(["p", "q", "r"])
    busy.fail(busy.lease(5), "later")
    busy.lease(5)
    yield made
    for q in made:
        q.purge()


def test_the_exporter_serves_exactly_what_stats_says_for_named_queues_and_for_all(
    redis_url: str, queues: list[Queue], env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    named, every = free_port(), free_port()
    start(
        procs, [REDISWQ, "--url", redis_url, "exporter", *(q.name for q in queues), "--port", str(named)], env
    )
    start(procs, [REDISWQ, "--url", redis_url, "exporter", "--all", "--port", str(every)], env)
    wait_for(lambda: answers(named) and answers(every))
    for port in (named, every):
        samples = scrape(port)
        for q in queues:
            assert exported_stats(samples, q.name) == q.stats()
        assert value(samples, "rediswq_exporter_up") == 1
    assert value(scrape(named), "rediswq_exporter_queues") == 3
    assert exported_stats(scrape(named), queues[1].name).dead == 1
    assert exported_stats(scrape(named), queues[2].name).delayed == 1


def test_the_exporter_reports_down_while_redis_is_unreachable_and_exits_0_on_sigterm(
    env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    port = free_port()
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    proc = start(procs, [REDISWQ, "--url", unreachable, "exporter", "jobs", "--port", str(port)], env)
    wait_for(lambda: answers(port))
    samples = scrape(port)
    assert value(samples, "rediswq_exporter_up") == 0
    assert value(samples, "rediswq_exporter_queues") == 0
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "cannot reach Redis" in err and "Traceback" not in err


def test_the_exporter_exits_2_with_one_line_when_redis_refuses_the_password_and_never_prints_it() -> None:
    server = RedisServer(password="s3cret-Pa55word")
    try:
        wrong = f"redis://:not-s3cret-Pa55word@127.0.0.1:{server.port}/0"
        for args in (["q"], ["--all"]):
            exporter = ["exporter", *args, "--port", str(free_port())]
            result = CliRunner().invoke(main, exporter, env={"REDISWQ_URL": wrong})
            assert result.exit_code == 2, result.output
            assert len(result.output.strip().splitlines()) == 1 and "refused the credentials" in result.output
            assert "s3cret" not in result.output
    finally:
        server.stop()


def test_a_key_that_only_looks_like_a_queue_marks_the_scrape_down_and_the_other_queues_still_count(
    client: redis.Redis, queues: list[Queue], queue_name: str
) -> None:
    bogus = f"{queue_name}-bogus"
    client.set(f"rediswq:{{{bogus}}}:meta", "another application's string")
    try:
        collector = exporter_module.QueueCollector(lambda: client, (bogus, *(q.name for q in queues)))
        families = {f.name: f for f in collector.collect()}
    finally:
        client.delete(f"rediswq:{{{bogus}}}:meta")
    assert families["rediswq_exporter_up"].samples[0].value == 0
    assert families["rediswq_exporter_queues"].samples[0].value == len(queues)
    pending = {s.labels["queue"]: s.value for s in families["rediswq_queue_pending"].samples}
    assert pending == {q.name: q.stats().pending for q in queues}


def test_discovery_walks_the_keyspace_a_few_scan_calls_per_step_and_forgets_deleted_queues(
    client: redis.Redis, queue_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporter_module, "SCAN_CALLS", 1)
    monkeypatch.setattr(exporter_module, "SCAN_COUNT", 2)
    made = [Queue(client, f"{queue_name}-{i}") for i in range(6)]
    for q in made:
        q.put("x")
    mine = {q.name for q in made}
    discovery = exporter_module.Discovery(lambda: client)
    steps, seen = 0, set()
    keys = client.dbsize()
    while steps < keys + 5:
        seen = discovery.step()
        steps += 1
        if mine <= seen:
            break
    assert mine <= seen
    assert steps > 1  # one SCAN call of COUNT 2 a step cannot find six queues at once
    made[0].purge()
    for _ in range(keys + 5):  # a complete walk later, the purged queue is gone
        if made[0].name not in discovery.step():
            break
    assert made[0].name not in discovery.step() and made[1].name in discovery.step()
    for q in made[1:]:
        q.purge()


# -- the dashboard and alert rules use only names the endpoints serve ----------------------------------

MONITORING = Path(__file__).resolve().parent.parent / "k8s" / "monitoring"
FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "rate", "increase", "changes", "count_over_time",
    "histogram_quantile", "label_values", "abs", "clamp_min", "time",
}  # fmt: skip
KEYWORDS = {
    "by",
    "without",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana's label_values query) reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"label_values\(([^,()]+),\s*\w+\)", r"label_values(\1)", text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"\b[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group()
        if word in KEYWORDS:
            continue
        if text[m.end() :].lstrip().startswith("("):
            assert word in FUNCTIONS, f"unknown function {word} in {expr}"
        else:
            names.add(word)
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((MONITORING / "alerts.rules.yml").read_text(encoding="utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_the_name_check_catches_a_misspelled_metric_and_skips_functions_labels_and_strings() -> None:
    expr = 'sum by (queue) (rate(rediswq_queue_pendng{queue=~"a|b"}[5m])) > 0 and on (queue) up'
    assert metric_names(expr) == {"rediswq_queue_pendng", "up"}
    assert metric_names("label_values(rediswq_queue_pending, queue)") == {"rediswq_queue_pending"}


def test_every_dashboard_and_alert_query_uses_only_metrics_a_worker_and_the_exporter_serve(
    redis_url: str, queue: Queue, env: dict[str, str], procs: list[subprocess.Popen[str]]
) -> None:
    queue.put_many(["ok", "bad"])
    worker_port, exporter_port = free_port(), free_port()
    argv = [REDISWQ, "--url", redis_url, "work", queue.name, "--max-attempts", "1", "--until", "closed"]
    start(procs, [*argv, "--metrics-port", str(worker_port), "--", "sh", "-c", COMMAND, "item", "{}"], env)
    start(procs, [REDISWQ, "--url", redis_url, "exporter", queue.name, "--port", str(exporter_port)], env)
    wait_for(lambda: queue.stats().drained and answers(worker_port) and answers(exporter_port))
    served = {name for port in (worker_port, exporter_port) for name, _labels in scrape(port)}
    queries = dashboard_queries() + [rule["expr"] for rule in alert_rules()]
    assert len(queries) >= 25
    used = set().union(*(metric_names(q) for q in queries))
    assert used - served == set()
    # The three alerts the rules promise, on the metrics that carry them.
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    assert metric_names(by_name["RediswqDeadLetters"]["expr"]) == {"rediswq_queue_dead"}
    assert "rediswq_queue_completed_total" in metric_names(by_name["RediswqQueueStalled"]["expr"])
    assert "[10m]" in by_name["RediswqQueueStalled"]["expr"]
    assert metric_names(by_name["RediswqWorkersCrashLooping"]["expr"]) == {
        "rediswq_worker_start_time_seconds"
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]
