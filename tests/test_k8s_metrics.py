"""The KEDA and exporter components, checked without a cluster.

KEDA's resources against the OpenAPI schemas of KEDA's own CRDs (tests/data/keda/, with
jsonschema, unknown fields refused as the API server's pruning would drop them); the Job KEDA would
create against Kubernetes' schema (kubernetes-validate); the rest of the overlay as test_k8s_manifests
checks every build; and the cross-references a schema cannot see (list keys, Secret, ports, policy).
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import signal
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import test_k8s_pod_commands as pods
import yaml
from prometheus_client.parser import text_string_to_metric_families
from redis_server import RedisServer, free_port
from test_k8s_manifests import VERSIONS, build_copy, matches, schema_errors
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
from rediswq_producer.exporter import QUEUES_PATH, exporter
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
    assert {d["kind"] for d in files} == {d["kind"] for d in keda_docs(built)} == {"ScaledJob"}
    assert keda_errors(files) == []
    assert keda_errors(keda_docs(built)) == []


def test_the_crd_check_refuses_a_misspelled_field_a_wrong_type_and_a_bad_enum(built: list[Doc]) -> None:
    scaled = find(built, "ScaledJob", "rediswq-worker")
    misspelled, wrong_type, bad_enum = (copy.deepcopy(scaled) for _ in range(3))
    misspelled["spec"]["pollingIntervall"] = 10
    wrong_type["spec"]["maxReplicaCount"] = "16"
    bad_enum["spec"]["scalingStrategy"]["strategy"] = "fastest"
    untyped = copy.deepcopy(scaled)
    del untyped["spec"]["triggers"][0]["type"]
    for bad in (misspelled, wrong_type, bad_enum, untyped):
        assert len(keda_errors([bad])) == 1


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


def keda_reaches(docs: list[Doc]) -> list[str]:
    """What is wrong with the URL a build's ScaledJob reads its count from: it must be the exporter's
    Service, by name and namespace, on its port, reaching a pod that exports the worker's queue."""
    scaled = find(docs, "ScaledJob", "rediswq-worker")
    queue = container(scaled["spec"]["jobTargetRef"]["template"], "worker")["args"][0]
    (trigger,) = scaled["spec"]["triggers"]
    url = urllib.parse.urlsplit(trigger["metadata"]["url"])
    services = {(d["metadata"]["name"], d["metadata"].get("namespace")): d for d in find_all(docs, "Service")}
    name, namespace, svc = ([*(url.hostname or "").split("."), "", "", ""])[:3]
    service = services.get((name, namespace))
    if svc != "svc" or service is None:
        return [f"{url.hostname}: no Service of this build (is components/exporter included?)"]
    ports = [p["targetPort"] for p in service["spec"]["ports"] if p["port"] == url.port]
    pod = find(docs, "Deployment", "rediswq-exporter")["spec"]["template"]
    if not matches({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"]):
        return [f"Service {name} selects no exporter pod"]
    c = container(pod, "exporter")
    args = exporter.make_context("exporter", list(c["command"][2:])).params
    errors = []
    if [p["containerPort"] for p in c["ports"] if p["name"] in ports] != [args["port"]]:
        errors.append(f"port {url.port} does not reach the exporter's --port {args['port']}")
    if url.scheme != "http" or url.path != f"{QUEUES_PATH}{queue}" or queue not in args["queue_names"]:
        errors.append(f"{trigger['metadata']['url']} is not the exporter's URL of queue {queue}")
    return errors


def test_the_trigger_reads_the_queues_waiting_count_from_the_exporter_service(built: list[Doc]) -> None:
    scaled = find(built, "ScaledJob", "rediswq-worker")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "metrics-api" and "authenticationRef" not in trigger
    meta = trigger["metadata"]
    assert keda_reaches(built) == []
    assert meta["url"] == "http://rediswq-exporter.rediswq.svc:9180/queues/jobs"
    assert (meta["format"], meta["valueLocation"]) == ("json", "waiting")
    assert (meta["targetValue"], meta["activationTargetValue"]) == ("5", "0")
    # KEDA needs no Redis credentials now.
    assert not find_all(built, "TriggerAuthentication")


def test_the_keda_component_requires_the_exporter_and_follows_the_overlays_namespace(tmp_path: Path) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", tree)
    overlay = tree / "overlays" / "autoscaled" / "kustomization.yaml"
    text = overlay.read_text(encoding="utf-8")
    overlay.write_text(text.replace("namespace: rediswq\n", "namespace: batch\n"), encoding="utf-8")
    moved = build_copy(tree, AUTOSCALED)
    assert find(moved, "ScaledJob", "rediswq-worker")["spec"]["triggers"][0]["metadata"]["url"] == (
        "http://rediswq-exporter.batch.svc:9180/queues/jobs"
    )
    assert keda_reaches(moved) == []
    # Without components/exporter (and the overlay's replacement that reads its Service): nothing answers.
    without = text.replace("  - ../../components/exporter\n", "").split("replacements:")[0]
    overlay.write_text(without, encoding="utf-8")
    assert keda_reaches(build_copy(tree, AUTOSCALED)) == [
        "rediswq-exporter.rediswq.svc: no Service of this build (is components/exporter included?)"
    ]


def test_the_network_policy_admits_workers_and_the_exporter_only(built: list[Doc]) -> None:
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
    # KEDA reads the exporter, not Redis: its operator is not admitted.
    assert not admitted({"app.kubernetes.io/name": "keda-operator"}, namespace="keda")
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


def test_the_keda_readme_section_names_the_url_and_the_choice_with_job_scale_auto() -> None:
    text = " ".join((ROOT / "k8s" / "README.md").read_text(encoding="utf-8").split())
    for needed in (
        "components/keda",
        "metrics-api",
        "/queues/jobs",
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
        # What KEDA reads, as the pod's user (its ACL covers it).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{QUEUES_PATH}{queue.name}", timeout=5) as r:
            assert json.loads(r.read())["waiting"] == stats.pending == 2
    finally:
        exporter_pod.send_signal(signal.SIGTERM)
        _, err = exporter_pod.communicate(timeout=10)
        queue.purge()
    assert exporter_pod.returncode == 0, err
    assert PASSWORD not in err
