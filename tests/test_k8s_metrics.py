"""The KEDA and exporter components, checked without a cluster.

KEDA's resources against the OpenAPI schemas of KEDA's own CRDs (tests/data/keda/, with
jsonschema, unknown fields refused as the API server's pruning would drop them); the Job KEDA would
create against Kubernetes' schema (kubernetes-validate); the rest of the overlay as test_k8s_manifests
checks every build; and the cross-references a schema cannot see (list keys, Secret, ports, policy).
"""

from __future__ import annotations

import copy
import functools
import signal
import time
import urllib.request
import uuid
from typing import Any

import jsonschema
import pytest
import redis
import test_k8s_pod_commands as pods
import yaml
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer, free_port
from test_k8s_manifests import VERSIONS, matches, schema_errors
from test_k8s_pod_commands import PASSWORD, pod_env, start
from test_k8s_support import (
    ROOT,
    Doc,
    builtin,
    command_line,
    container,
    dockerfile_entrypoint,
    find,
    find_all,
    kustomize,
    load,
    raw_base,
)

from rediswq import Queue
from rediswq._keys import Keys
from rediswq_producer.exporter import exporter
from rediswq_worker.work import work

KEDA_SCHEMAS = ROOT / "tests" / "data" / "keda"
KEDA = ROOT / "k8s" / "components" / "keda"
AUTOSCALED = "overlays/autoscaled"


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the known ones."""
    if isinstance(schema, dict):
        out = {key: strict(value) for key, value in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [strict(value) for value in schema]
    return schema


@functools.cache
def keda_schemas() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> the CRD's OpenAPI v3 schema, made strict."""
    if not KEDA_SCHEMAS.is_dir():
        pytest.fail(f"KEDA's CRDs are missing: {KEDA_SCHEMAS}")
    schemas = {}
    for path in sorted(KEDA_SCHEMAS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    return schemas


def keda_errors(documents: list[Doc]) -> list[str]:
    errors = []
    for d in documents:
        schema = keda_schemas()[(d["apiVersion"], d["kind"])]
        for e in jsonschema.Draft7Validator(schema).iter_errors(d):
            errors.append(f"{d['kind']} {d['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
    return errors


def keda_docs(documents: list[Doc]) -> list[Doc]:
    return [d for d in documents if d["apiVersion"].startswith("keda.sh/")]


def keda_files() -> list[Doc]:
    return [
        d for path in sorted(KEDA.glob("*.yaml")) if path.name != "kustomization.yaml" for d in load(path)
    ]


def job_of(scaled_job: Doc) -> Doc:
    """The Job KEDA creates from a ScaledJob: its jobTargetRef is the Job's spec."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": scaled_job["metadata"]["name"]},
        "spec": copy.deepcopy(scaled_job["spec"]["jobTargetRef"]),
    }


@pytest.fixture(scope="module")
def built() -> list[Doc]:
    return kustomize(AUTOSCALED)


# -- schemas ------------------------------------------------------------------------------------------


def test_the_keda_files_and_the_autoscaled_build_pass_kedas_crd_schemas(built: list[Doc]) -> None:
    files = keda_files()
    assert (
        {d["kind"] for d in files}
        == {d["kind"] for d in keda_docs(built)}
        == {"ScaledJob", "TriggerAuthentication"}
    )
    assert keda_errors(files) == []
    assert keda_errors(keda_docs(built)) == []


def test_the_crd_check_refuses_a_misspelled_field_a_wrong_type_and_a_bad_enum(built: list[Doc]) -> None:
    scaled = find(built, "ScaledJob", "rediswq-worker")
    misspelled, wrong_type, bad_enum = (copy.deepcopy(scaled) for _ in range(3))
    misspelled["spec"]["pollingIntervall"] = 10
    wrong_type["spec"]["maxReplicaCount"] = "16"
    bad_enum["spec"]["scalingStrategy"]["strategy"] = "fastest"
    for bad in (misspelled, wrong_type, bad_enum):
        assert len(keda_errors([bad])) == 1
    missing_key = copy.deepcopy(find(built, "TriggerAuthentication", "rediswq-redis"))
    del missing_key["spec"]["secretTargetRef"][0]["key"]
    assert len(keda_errors([missing_key])) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_the_job_keda_creates_and_the_rest_of_the_build_pass_strict_kubernetes_schemas(
    built: list[Doc], version: str
) -> None:
    scaled = find(built, "ScaledJob", "rediswq-worker")
    assert schema_errors([job_of(scaled)], version) == []
    assert schema_errors(builtin(built), version) == []
    broken = job_of(scaled)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    assert len(schema_errors([broken], version)) == 1


# -- what the schemas cannot see ------------------------------------------------------------------------


def test_the_scaled_job_replaces_the_worker_job_and_runs_its_pod_template(built: list[Doc]) -> None:
    # The ScaledJob replaces the worker Job; the install Job stays (it loads the function library).
    assert [j["metadata"]["name"] for j in find_all(built, "Job")] == ["rediswq-install"]
    scaled = find(built, "ScaledJob", "rediswq-worker")["spec"]
    base = find(raw_base(), "Job", "rediswq-worker")["spec"]
    worker, base_worker = (
        container(scaled["jobTargetRef"]["template"], "worker"),
        container(base["template"], "worker"),
    )
    assert worker["args"] == base_worker["args"]
    assert worker["env"][: len(base_worker["env"])] == base_worker["env"]
    assert scaled["jobTargetRef"]["podFailurePolicy"] == base["podFailurePolicy"]
    # Every Job KEDA starts ends, by the same deadline as the base's.
    assert scaled["jobTargetRef"]["activeDeadlineSeconds"] == base["activeDeadlineSeconds"] > 0
    assert scaled["jobTargetRef"]["template"]["spec"]["restartPolicy"] == "Never"
    # One pod per Job: KEDA decides how many Jobs, each pod drains until the queue is done.
    assert scaled["jobTargetRef"]["parallelism"] == 1 and "completions" not in scaled["jobTargetRef"]


def test_the_triggers_read_the_queues_pending_list_and_inbox_with_the_secrets_password(
    built: list[Doc],
) -> None:
    scaled = find(built, "ScaledJob", "rediswq-worker")
    queue_name = container(scaled["spec"]["jobTargetRef"]["template"], "worker")["args"][0]
    expected = Keys.for_queue(queue_name)
    triggers = scaled["spec"]["triggers"]
    assert sorted(t["metadata"]["listName"] for t in triggers) == sorted([expected.pending, expected.inbox])
    assert scaled["spec"]["scalingStrategy"]["multipleScalersCalculation"] == "sum"
    service = find(built, "Service", "rediswq-redis")
    port = service["spec"]["ports"][0]["port"]
    auth = find(built, "TriggerAuthentication", "rediswq-redis")["spec"]["secretTargetRef"]
    assert auth == [{"parameter": "password", "name": "rediswq-redis", "key": "worker-password"}]
    find(built, "Secret", "rediswq-redis")
    for t in triggers:
        assert t["type"] == "redis"
        assert t["metadata"]["address"] == f"{service['metadata']['name']}:{port}"
        assert t["authenticationRef"] == {"name": "rediswq-redis"}
        assert t["metadata"]["username"] == "rediswq-worker"  # the user whose password that is
        assert int(t["metadata"]["listLength"]) >= 1 and t["metadata"]["activationListLength"] == "0"


def test_the_network_policy_admits_workers_the_exporter_and_kedas_operator_only(built: list[Doc]) -> None:
    (rule,) = find(built, "NetworkPolicy", "rediswq-redis")["spec"]["ingress"]

    def admitted(labels: dict[str, str], namespace: str = "rediswq") -> bool:
        for peer in rule["from"]:
            spaces = peer.get("namespaceSelector")
            same = spaces is None and namespace == "rediswq"
            other = spaces is not None and matches(spaces, {"kubernetes.io/metadata.name": namespace})
            if (same or other) and matches(peer["podSelector"], labels):
                return True
        return False

    scaled = find(built, "ScaledJob", "rediswq-worker")["spec"]["jobTargetRef"]["template"]
    exporter_pods = find(built, "Deployment", "rediswq-exporter")["spec"]["template"]
    for template in (scaled, exporter_pods):
        assert admitted(template["metadata"]["labels"])
    assert admitted({"app.kubernetes.io/name": "keda-operator"}, namespace="keda")
    assert not admitted({"app.kubernetes.io/name": "keda-operator"}, namespace="rediswq")
    assert not admitted({"app.kubernetes.io/name": "other"}, namespace="keda")
    assert not admitted({"app.kubernetes.io/name": "rediswq", "app.kubernetes.io/component": "redis"})


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("directory", [AUTOSCALED, "overlays/example"])
def test_prometheus_finds_the_exporter_and_the_workers_on_the_ports_they_serve(directory: str) -> None:
    docs = kustomize(directory)
    deployment = find(docs, "Deployment", "rediswq-exporter")
    pod = deployment["spec"]["template"]
    c = container(pod, "exporter")
    assert c["command"][:2] == ["rediswq", "exporter"]
    args = c["command"][2:]
    exporter.make_context("exporter", list(args))  # the options parse as `rediswq exporter` takes them
    port = int(option(args, "--port"))
    assert [p["containerPort"] for p in c["ports"]] == [port]
    service = find(docs, "Service", "rediswq-exporter")
    notes = service["metadata"]["annotations"]
    assert notes == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }
    assert matches({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    assert matches(deployment["spec"]["selector"], pod["metadata"]["labels"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}

    if directory == AUTOSCALED:
        worker_pod = find(docs, "ScaledJob", "rediswq-worker")["spec"]["jobTargetRef"]["template"]
    else:
        worker_pod = find(docs, "Job", "rediswq-worker")["spec"]["template"]
    worker = container(worker_pod, "worker")
    env = {v["name"]: v.get("value") for v in worker["env"]}
    worker_port = int(env["REDISWQ_METRICS_PORT"])
    work.make_context("work", ["jobs", "--metrics-port", str(worker_port), "--", "true"])
    assert [p["containerPort"] for p in worker["ports"]] == [worker_port]
    assert worker_pod["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(worker_port),
        "prometheus.io/path": "/metrics",
    }


def test_the_keda_readme_section_names_the_lists_and_the_choice_with_job_scale_auto() -> None:
    text = " ".join((ROOT / "k8s" / "README.md").read_text(encoding="utf-8").split())
    for needed in (
        "components/keda",
        "rediswq:{jobs}:pending",
        "rediswq job scale --auto",
        "components/exporter",
    ):
        assert needed in text, needed


# The Redis with the manifests' ACL users, as test_k8s_pod_commands runs the pods against (a fixture).
server = pods.server


def test_the_exporter_pod_command_runs_with_the_pods_env_and_user_and_serves_its_queue(
    server: RedisServer,
) -> None:
    docs = kustomize("overlays/example")
    c = container(find(docs, "Deployment", "rediswq-exporter")["spec"]["template"], "exporter")
    argv = command_line(c, dockerfile_entrypoint(), {})
    # Substitutions: a queue name the test users' ACL covers, a free port for the pod's own.
    queue = Queue(server.client(), f"k8s-{uuid.uuid4().hex[:10]}")
    assert argv[2] == "jobs"
    argv[2] = queue.name
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    queue.put_many(["a", "b", "c"])
    queue.fail(queue.lease(5), "boom", retry=False)
    exporter_pod = start(argv, pod_env(c, server, "rediswq-exporter-0"))
    try:
        give_up = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
                break
            except OSError:
                assert time.monotonic() < give_up and exporter_pod.poll() is None, exporter_pod.stderr
                time.sleep(0.05)
        samples = {
            (s.name, s.labels.get("queue")): s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
        }
        stats = queue.stats()
        assert samples[("rediswq_exporter_up", None)] == 1
        assert samples[("rediswq_queue_pending", queue.name)] == stats.pending == 2
        assert samples[("rediswq_queue_dead", queue.name)] == stats.dead == 1
        assert samples[("rediswq_queue_dead_lettered_total", queue.name)] == stats.dead_lettered == 1
    finally:
        exporter_pod.send_signal(signal.SIGTERM)
        _, err = exporter_pod.communicate(timeout=10)
        queue.purge()
    assert exporter_pod.returncode == 0, err
    assert PASSWORD not in err


def test_the_scalers_user_may_read_the_lengths_of_both_lists_and_nothing_else(server: RedisServer) -> None:
    """KEDA's redis scaler sends TYPE, then LLEN, on each listName: the worker user's ACL allows them."""
    name = f"k8s-{uuid.uuid4().hex[:10]}"  # the test users' ACL covers k8s-* for the manifests' `jobs`
    keys = Keys.for_queue(name)
    Queue(server.client(), name).put_many(["a", "b"])
    server.client().rpush(keys.inbox, "c")
    scaler = redis.Redis(port=server.port, username="rediswq-worker", password=PASSWORD)
    try:
        assert [scaler.type(k) for k in (keys.pending, keys.inbox)] == [b"list", b"list"]
        assert [scaler.llen(k) for k in (keys.pending, keys.inbox)] == [2, 1]
        with pytest.raises(redis.exceptions.NoPermissionError):
            scaler.llen("some-other-list")
    finally:
        scaler.close()
        Queue(server.client(), name).purge()
