"""`rediswq job` against kmock's in-memory Kubernetes API emulator, with the test as the Job controller.

kmock (by the author of kopf) serves the Kubernetes REST API over real HTTP and keeps objects in memory:
create, read, list, merge-patch (including the status subresource) and delete. It runs no controllers,
so the test plays the Job controller: it patches the Job's status (active, succeeded, failed, and the
Complete or Failed condition) and creates the pods it would create. What kmock does not do, and so what
these tests do not prove: it does not validate objects against the schema, ignores label selectors on
lists (our code checks labels itself), ignores `propagationPolicy` (no garbage collector deletes pods),
and does not keep `status` apart from the rest of the object on ordinary patches.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from redis_server import RedisServer

from rediswq import Queue
from rediswq_cli.main import main

kmock = pytest.importorskip("kmock", reason="kmock (the Kubernetes API emulator) needs Python 3.11+")
kubernetes = pytest.importorskip("kubernetes")

from kubernetes import client, config  # noqa: E402
from kubernetes.client.exceptions import ApiException  # noqa: E402

TEMPLATE = Path(__file__).resolve().parent.parent / "k8s" / "base" / "worker-job.yaml"
RWQ = [sys.executable, "-m", "rediswq_cli"]
# The tests' queues have random names, which the bundled Redis's users (for queue `jobs`) do not cover:
# the template's own URL, given with -e, says the Redis the Job targets names them (as submit suggests).
OWN_REDIS = ["-e", "REDISWQ_URL=redis://rediswq-worker:$(REDIS_PASSWORD)@rediswq-redis:6379/0"]


@dataclass
class Emulator:
    """A running kmock server, a kubeconfig pointing at it, and a namespace of our own."""

    url: str
    kubeconfig: Path
    namespace: str
    handler: Any

    def api(self) -> client.ApiClient:
        api: client.ApiClient = config.new_client_from_config(str(self.kubeconfig))  # type: ignore[no-untyped-call]
        return api

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api())

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api())

    def job(self, name: str) -> client.V1Job:
        return self.batch.read_namespaced_job(name, self.namespace)

    def raw_job(self, name: str) -> dict[str, Any]:
        """The Job as the API server stores it (JSON), for exact comparisons."""
        path = f"{self.url}/apis/batch/v1/namespaces/{self.namespace}/jobs/{name}"
        with urllib.request.urlopen(path, timeout=10) as response:
            return dict(json.loads(response.read()))

    def parallelism(self, name: str) -> int | None:
        spec = self.job(name).spec
        return spec.parallelism if spec is not None else None

    def set_status(self, name: str, **status: Any) -> None:
        """What the Job controller would do: patch the status subresource."""
        self.batch.patch_namespaced_job_status(name, self.namespace, {"status": status})

    def finish(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        condition = {"type": kind, "status": "True", "reason": reason, "message": message}
        self.set_status(name, conditions=[condition])

    def add_pod(self, name: str, job_name: str, phase: str = "Running") -> None:
        """A pod as the Job controller would create it (the `job-name` label is what it sets)."""
        pod = {
            "metadata": {"name": name, "labels": {"job-name": job_name}},
            "spec": {"containers": [{"name": "worker", "image": "rediswq:test"}]},
            "status": {"phase": phase},
        }
        model = client.V1Pod.from_dict(pod)
        assert model is not None
        self.core.create_namespaced_pod(self.namespace, model)

    def kube_args(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig)]

    def requests(self, method: str) -> list[Any]:
        return list(self.handler[method.lower()])


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """kmock's KubernetesEmulator on a loopback port, served from its own event loop thread."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def serve() -> None:
        state["stop"] = asyncio.Event()
        state["loop"] = asyncio.get_running_loop()
        async with kmock.KubernetesEmulator() as handler, kmock.Server(handler) as server:
            # Declared up front so that listing them works before any object exists.
            handler.resources["batch/v1/jobs"] = kmock.ResourceInfo(
                kind="Job", namespaced=True, subresources={"status"}
            )
            handler.resources["v1/pods"] = kmock.ResourceInfo(kind="Pod", namespaced=True)
            state["url"] = str(server.url).rstrip("/")
            state["handler"] = handler
            started.set()
            await state["stop"].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    assert started.wait(10), "kmock did not start"
    namespace = f"ns-{uuid.uuid4().hex[:8]}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": state["url"]}}],
                "users": [{"name": "tester", "user": {"token": "not-a-secret"}}],
                "contexts": [
                    {
                        "name": "kmock",
                        "context": {"cluster": "kmock", "user": "tester", "namespace": namespace},
                    }
                ],
                "current-context": "kmock",
            }
        )
    )
    yield Emulator(state["url"], kubeconfig, namespace, state["handler"])
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def exists(emulator: Emulator, name: str) -> bool:
    try:
        emulator.job(name)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def template() -> dict[str, Any]:
    return dict(yaml.safe_load(TEMPLATE.read_text()))


def worker_of(job: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "worker")


# -- submit -------------------------------------------------------------------------------------------


def test_submit_creates_the_job_from_the_packaged_template_with_only_the_requested_changes(
    emulator: Emulator, redis_url: str
) -> None:
    result = run(
        "--url", redis_url, "job", "submit", "jobs", "--image", "example/thumbs:1.4", "-p", "7",
        "--name", "thumbs-run", *emulator.kube_args(), "--", "python", "-m", "thumbs", "{}",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"job.batch/thumbs-run created in namespace {emulator.namespace}" in result.output

    stored = emulator.raw_job("thumbs-run")
    expected = template()
    expected["metadata"]["name"] = "thumbs-run"
    expected["spec"]["parallelism"] = 7
    container = worker_of(expected)
    container["image"] = "example/thumbs:1.4"
    container["args"] = ["jobs", "--", "python", "-m", "thumbs", "{}"]
    # The client's model fills in the API's documented default for a pod-condition pattern's status.
    for rule in expected["spec"]["podFailurePolicy"]["rules"]:
        for pattern in rule.get("onPodConditions", []):
            pattern.setdefault("status", "True")
    assert stored == expected
    # The parts the pods depend on, spelled out: the Secret reference and the Downward API's POD_NAME.
    env = {e["name"]: e for e in worker_of(stored)["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "rediswq-redis"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "completions" not in stored["spec"]


def test_submit_of_a_job_that_exists_fails_with_one_line_and_exit_1(emulator: Emulator) -> None:
    args = ["job", "submit", "jobs", "--image", "img", "-p", "1", *emulator.kube_args(), "--", "true"]
    assert run(*args).exit_code == 0
    result = run(*args)
    assert result.exit_code == 1
    assert "(409)" in result.output and "rediswq-worker" not in result.output.split("(409)")[1]
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_submit_watch_with_a_bad_redis_url_fails_before_creating_the_job(emulator: Emulator) -> None:
    result = run(
        "--url",
        "nonsense://x",
        "job",
        "submit",
        "jobs",
        "--image",
        "i",
        "-p",
        "1",
        "--watch",
        *emulator.kube_args(),
        "--",
        "true",
    )
    assert result.exit_code == 2
    assert "URL" in result.output
    assert result.output.startswith("Error: ") and len(result.output.splitlines()) == 1
    assert not exists(emulator, "rediswq-worker")


def test_submit_of_a_queue_the_bundled_redis_would_refuse_exits_2_and_creates_nothing(
    emulator: Emulator,
) -> None:
    result = run("job", "submit", "thumbs", "--image", "i", "-p", "1", *emulator.kube_args(), "--", "true")
    assert result.exit_code == 2
    assert result.output.startswith("Error: the bundled Redis's ACL refuses user rediswq-worker")
    assert len(result.output.splitlines()) == 1
    assert emulator.requests("post") == []
    assert not exists(emulator, "rediswq-worker")


def watch_process(emulator: Emulator, redis_url: str, queue_name: str, name: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *RWQ, "--url", redis_url, "job", "submit", queue_name, "--image", "img", "-p", "2",
            "--name", name, "--watch", "--interval", "0.1", *emulator.kube_args(), *OWN_REDIS, "--", "true",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip


def test_submit_watch_shows_progress_and_exits_0_when_the_job_completes(
    emulator: Emulator, redis_url: str, queue: Queue
) -> None:
    queue.put_many([f"item-{i}" for i in range(10)])
    proc = watch_process(emulator, redis_url, queue.name, "watched")
    try:
        wait_for("the Job to be created", lambda: exists(emulator, "watched"))
        emulator.set_status("watched", active=2)
        for lease in queue.lease_many(4, 60, worker="watched-aaaaa"):
            queue.complete(lease)
        time.sleep(0.4)  # a few polls see the pods running and the queue moving
        for lease in queue.lease_many(6, 60, worker="watched-aaaaa"):
            queue.complete(lease)
        emulator.set_status("watched", active=0, succeeded=2)
        emulator.finish("watched", "Complete")
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "pods: 2 active, 0 succeeded, 0 failed (parallelism 2)" in out
    assert f"queue {queue.name}: 4/10 done (0 dead), 6 outstanding" in out
    assert f"queue {queue.name}: 10/10 done (0 dead), 0 outstanding" in out
    assert "items/s, ETA" in out
    assert out.rstrip().endswith("Job watched complete")
    assert "Traceback" not in err


def test_submit_watch_exits_1_with_the_reason_when_the_job_fails(
    emulator: Emulator, redis_url: str, queue: Queue
) -> None:
    queue.put("x")
    proc = watch_process(emulator, redis_url, queue.name, "doomed")
    try:
        wait_for("the Job to be created", lambda: exists(emulator, "doomed"))
        emulator.set_status("doomed", active=0, failed=7)
        emulator.finish(
            "doomed", "Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        )
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert "pods: 0 active, 0 succeeded, 7 failed" in out
    assert err.strip().splitlines()[-1] == (
        "rediswq: Job doomed failed: BackoffLimitExceeded: Job has reached the specified backoff limit"
    )
    assert "Traceback" not in err


# -- status -------------------------------------------------------------------------------------------


def test_status_shows_conditions_pods_parallelism_and_the_queue_named_in_the_job_args(
    emulator: Emulator, redis_url: str, queue: Queue
) -> None:
    queue.put_many(["a", "b", "c"])
    first = queue.lease(60, worker="w")
    assert first is not None and queue.lease(60, worker="w") is not None
    queue.complete(first)
    submitted = run(
        "job",
        "submit",
        queue.name,
        "--image",
        "img",
        "-p",
        "3",
        *emulator.kube_args(),
        *OWN_REDIS,
        "--",
        "true",
    )
    assert submitted.exit_code == 0
    emulator.set_status("rediswq-worker", active=2, succeeded=1, failed=1)
    emulator.finish("rediswq-worker", "Complete", "CompletionsReached")

    result = run("--url", redis_url, "job", "status", "rediswq-worker", *emulator.kube_args())
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"job:         rediswq-worker (namespace {emulator.namespace})",
        "conditions:  Complete=True (CompletionsReached)",
        "parallelism: 3",
        "pods:        2 active, 1 succeeded, 1 failed",
        f"queue:       {queue.name}: 1 pending, 1 leased, 0 delayed, 0 dead, 1 completed",
    ]


def test_status_of_a_missing_job_is_one_line_and_exit_1(emulator: Emulator) -> None:
    result = run("job", "status", "nope", "-n", "elsewhere", *emulator.kube_args())
    assert result.exit_code == 1
    assert result.output == "Error: Job nope not found in namespace elsewhere\n"


def test_forbidden_is_a_configuration_error_with_one_line_and_exit_2(emulator: Emulator) -> None:
    denial = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": 'jobs.batch "secret-job" is forbidden: User "tester" cannot get resource "jobs"',
    }
    emulator.handler[f"get /apis/batch/v1/namespaces/{emulator.namespace}/jobs/secret-job"] << 403 << denial
    result = run("job", "status", "secret-job", *emulator.kube_args())
    assert result.exit_code == 2
    assert result.output == (
        f'Error: Kubernetes API at {emulator.url}: jobs.batch "secret-job" is forbidden: '
        'User "tester" cannot get resource "jobs" (403)\n'
    )
    assert "not-a-secret" not in result.output


def test_a_redis_password_in_the_url_is_never_printed(emulator: Emulator, queue_name: str) -> None:

    server = RedisServer(password="hunter2-secret")
    try:
        assert (
            run(
                "job",
                "submit",
                queue_name,
                "--image",
                "img",
                "-p",
                "1",
                *emulator.kube_args(),
                *OWN_REDIS,
                "--",
                "true",
            ).exit_code
            == 0
        )
        good = run("--url", server.url, "job", "status", "rediswq-worker", *emulator.kube_args())
        assert good.exit_code == 0, good.output
        assert f"queue:       {queue_name}: 0 pending" in good.output
        wrong = server.url.replace("hunter2-secret", "hunter3-wrong")
        bad = run("--url", wrong, "job", "status", "rediswq-worker", *emulator.kube_args())
        assert bad.exit_code == 2
        assert bad.output.splitlines()[-1].startswith("Error: ")
    finally:
        server.stop()
    for output in (good.output, bad.output):
        assert "hunter2" not in output and "hunter3" not in output
        assert "Traceback" not in output


# -- scale --------------------------------------------------------------------------------------------


def submit(emulator: Emulator, queue_name: str, name: str, parallelism: int) -> None:
    args = ["job", "submit", queue_name, "--image", "img", "-p", str(parallelism), "--name", name]
    assert run(*args, *emulator.kube_args(), *OWN_REDIS, "--", "true").exit_code == 0


def scale_once(emulator: Emulator, redis_url: str, name: str, *options: str) -> Any:
    return run("--url", redis_url, "job", "scale", name, "--auto", "--once", *options, *emulator.kube_args())


def test_scale_once_sets_parallelism_from_the_outstanding_items_within_min_and_max(
    emulator: Emulator, redis_url: str, queue: Queue
) -> None:
    submit(emulator, queue.name, "sized", 1)
    queue.put_many([f"i{i}" for i in range(250)])

    result = scale_once(emulator, redis_url, "sized", "--items-per-pod", "100")
    assert result.exit_code == 0, result.output
    assert emulator.parallelism("sized") == 3  # ceil(250 / 100)
    assert (
        "parallelism 1 -> 3: 250 outstanding / 100 per pod, bounds 1..10, 0 pods hold leases" in result.output
    )

    assert scale_once(emulator, redis_url, "sized", "--items-per-pod", "10", "--max", "6").exit_code == 0
    assert emulator.parallelism("sized") == 6  # ceil(250 / 10) = 25, bounded by --max

    queue.purge()
    assert scale_once(emulator, redis_url, "sized", "--min", "2").exit_code == 0
    assert emulator.parallelism("sized") == 2  # nothing outstanding, bounded by --min


def test_scale_never_goes_below_the_pods_that_hold_leases(
    emulator: Emulator, redis_url: str, queue: Queue
) -> None:
    submit(emulator, queue.name, "busy", 6)
    queue.put_many([f"i{i}" for i in range(7)])
    pods = [f"busy-{suffix}" for suffix in ("aaaaa", "bbbbb", "ccccc", "ddddd")]
    for pod in pods:
        emulator.add_pod(pod, "busy")
    emulator.add_pod("busy-eeeee", "busy", phase="Succeeded")  # ended: its leases cannot be cut short
    emulator.add_pod("other-fffff", "other")  # another Job's pod
    for worker in [*pods, f"{pods[0]}:2", "busy-eeeee", "other-fffff"]:
        assert queue.lease(60, worker=worker) is not None
    # Leases held by the Job's 4 live pods (one of them twice), an ended pod and another Job's pod.

    result = scale_once(emulator, redis_url, "busy", "--items-per-pod", "100")
    assert result.exit_code == 0, result.output
    # ceil(7 / 100) = 1, but 4 live pods of this Job hold leases: scaling below 4 would kill work.
    assert emulator.parallelism("busy") == 4
    assert (
        "parallelism 6 -> 4: 7 outstanding / 100 per pod, bounds 1..10, 4 pods hold leases" in result.output
    )


def test_scale_without_permission_to_list_pods_counts_every_lease_holder(
    emulator: Emulator, redis_url: str, queue: Queue
) -> None:
    submit(emulator, queue.name, "blind", 1)
    (
        emulator.handler[f"get /api/v1/namespaces/{emulator.namespace}/pods"]
        << 403
        << {"message": "no", "code": 403}
    )
    queue.put_many(["a", "b", "c"])
    for worker in ("x", "y", "z"):
        queue.lease(60, worker=worker)
    result = scale_once(emulator, redis_url, "blind")
    assert result.exit_code == 0, result.output
    assert emulator.parallelism("blind") == 3
    assert "3 workers hold leases (pods not listable)" in result.output


def test_scale_auto_keeps_adjusting_and_stops_when_the_job_completes(
    emulator: Emulator, redis_url: str, queue: Queue
) -> None:
    submit(emulator, queue.name, "looping", 1)
    queue.put_many([f"i{i}" for i in range(30)])
    proc = subprocess.Popen(
        [
            *RWQ, "--url", redis_url, "job", "scale", "looping", "--auto", "--items-per-pod", "10",
            "--interval", "0.1", *emulator.kube_args(),
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for("parallelism 3", lambda: emulator.parallelism("looping") == 3)
        queue.put_many([f"j{i}" for i in range(30)])
        wait_for("parallelism 6", lambda: emulator.parallelism("looping") == 6)
        emulator.finish("looping", "Complete")
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines() == [
        "parallelism 1 -> 3: 30 outstanding / 10 per pod, bounds 1..10, 0 pods hold leases",
        "parallelism 3 -> 6: 60 outstanding / 10 per pod, bounds 1..10, 0 pods hold leases",
        "Job looping finished (Complete); stopping",
    ]


def test_scale_of_a_finished_job_changes_nothing(emulator: Emulator, redis_url: str, queue: Queue) -> None:
    submit(emulator, queue.name, "done", 2)
    emulator.finish("done", "Complete")
    queue.put_many([f"i{i}" for i in range(500)])
    result = scale_once(emulator, redis_url, "done")
    assert result.exit_code == 0
    assert result.output == "Job done finished (Complete); stopping\n"
    assert emulator.parallelism("done") == 2
    assert [r for r in emulator.requests("patch") if not str(r.url).endswith("/status")] == []


# -- delete -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("propagation", ["Background", "Foreground"])
def test_delete_removes_the_job_and_asks_for_its_pods_to_go_too(emulator: Emulator, propagation: str) -> None:
    assert (
        run(
            "job", "submit", "jobs", "--image", "img", "-p", "2", *emulator.kube_args(), "--", "true"
        ).exit_code
        == 0
    )
    args = ["job", "delete", "rediswq-worker", *emulator.kube_args()]
    if propagation != "Background":
        args += ["--propagation", propagation]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert (
        result.output
        == f"job.batch/rediswq-worker deleted from namespace {emulator.namespace} ({propagation})\n"
    )
    assert not exists(emulator, "rediswq-worker")
    (deletion,) = emulator.requests("delete")
    assert deletion.params == {"propagationPolicy": propagation}

    again = run("job", "delete", "rediswq-worker", *emulator.kube_args())
    assert again.exit_code == 1
    assert "(404)" in again.output and "Traceback" not in again.output


# -- the API server itself --------------------------------------------------------------------------


def test_an_unreachable_api_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    result = run("job", "status", "any", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot reach the Kubernetes API at http://127.0.0.1:9: ")
    assert len(result.output.splitlines()) == 1
