"""The k8s/ manifests, checked without a cluster: schemas, kustomize builds and what schemas cannot see.

No API server or Job controller runs here. What is checked: every manifest file and every kustomize
build against Kubernetes' OpenAPI schemas (kubernetes-validate, strict: unknown fields fail) for the
oldest and newest supported versions, and the rules a schema cannot express (variable pod count,
podFailurePolicy against the worker's real exit codes, cross-references, labels, quoting, security).
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.resources
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from test_k8s_support import (
    K8S,
    KUSTOMIZATIONS,
    NEWEST,
    OLDEST,
    ROOT,
    Doc,
    builtin,
    container,
    find,
    find_all,
    job_specs,
    kubectl,
    kustomize,
    load,
    pod_templates,
    raw_base,
    resource_files,
    started_users,
)

import rediswq_kit as clikit

VERSIONS = (OLDEST, NEWEST)
# What each set of manifests is: the base's files as written, and each kustomize build.
RENDERED = ("base files", *KUSTOMIZATIONS)
SECRET = "rediswq-redis"
# The passwords of Redis's users rediswq-admin, rediswq-worker and rediswq-producer.
SECRET_KEYS = ("password", "worker-password", "producer-password")
# Which user each pod logs in as, and the Secret key of its password.
USERS = {
    "Job rediswq-worker": ("rediswq-worker", "worker-password"),
    "Job rediswq-producer": ("rediswq-producer", "producer-password"),
    "CronJob rediswq-nightly": ("rediswq-admin", "password"),
    # Loads the function library (FUNCTION LOAD): the admin's alone, and it runs no items.
    "Job rediswq-install": ("rediswq-admin", "password"),
    # Reads queue jobs's stats: the producer's ACL covers them (components/exporter).
    "Deployment rediswq-exporter": ("rediswq-producer", "producer-password"),
    # Reads queue jobs's stats, holders and dead letters: the producer's ACL covers them too.
    "Deployment rediswq-dashboard": ("rediswq-producer", "producer-password"),
}


def rendered(which: str) -> list[Doc]:
    return raw_base() if which == "base files" else kustomize(which)


@pytest.fixture(params=RENDERED)
def docs(request: pytest.FixtureRequest) -> list[Doc]:
    return rendered(request.param)


def schema_errors(documents: list[Doc], version: str) -> list[str]:
    errors = []
    for d in documents:
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            errors.append(f"{d['kind']} {d['metadata']['name']}: {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(e.message)
    return errors


def is_worker(c: Doc) -> bool:
    """A container that runs `rediswq work` (the image's entrypoint, or an explicit command)."""
    command = c.get("command")
    return command is None or "rediswq work" in " ".join(command)


def worker_containers(docs: list[Doc]) -> Iterator[tuple[str, Doc, Doc]]:
    for owner, template in pod_templates(docs):
        for c in template["spec"]["containers"]:
            if c["image"].split("/")[-1].split(":")[0] == "rediswq" and is_worker(c):
                yield owner, template, c


# -- schemas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_file_passes_strict_schema_validation(version: str) -> None:
    files = resource_files()
    documents = [d for path in files for d in load(path)]
    assert len(files) >= 10 and len(documents) == len(files)
    assert schema_errors(builtin(documents), version) == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_every_kustomize_build_passes_strict_schema_validation(directory: str, version: str) -> None:
    documents = kustomize(directory)
    assert len(documents) >= 5
    assert schema_errors(documents, version) == []


def test_strict_schema_validation_rejects_a_misspelled_field_and_a_wrong_type() -> None:
    job = find(raw_base(), "Job", "rediswq-worker")
    misspelled = copy.deepcopy(job)
    misspelled["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["parallelism"] = "4"
    for bad in (misspelled, wrong_type):
        assert len(schema_errors([bad], NEWEST)) == 1
    assert schema_errors([job], NEWEST) == []


# -- Jobs ---------------------------------------------------------------------------------------------


def test_worker_jobs_run_in_variable_pod_count_mode(docs: list[Doc]) -> None:
    workers = {owner for owner, _, _ in worker_containers(docs)}
    assert workers, "no worker pods"
    for owner, spec in job_specs(docs):
        if owner in workers:
            # completions set would cap parallelism at the completions left: it must stay unset.
            assert "completions" not in spec, owner
            assert isinstance(spec["parallelism"], int) and spec["parallelism"] >= 2, owner
        else:
            assert spec.get("completions", 1) == 1 and spec.get("parallelism", 1) == 1, owner


def test_jobs_never_restart_always_and_bound_their_retries(docs: list[Doc]) -> None:
    specs = list(job_specs(docs))
    assert specs
    for owner, spec in specs:
        assert spec["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never"), owner
        assert isinstance(spec["backoffLimit"], int) and 0 <= spec["backoffLimit"] <= 10, owner


def exit_code_actions(spec: Doc) -> dict[int, str]:
    actions: dict[int, str] = {}
    for rule in spec["podFailurePolicy"]["rules"]:
        on = rule.get("onExitCodes")
        if on:
            assert on["operator"] == "In"
            for code in on["values"]:
                actions[code] = rule["action"]
    return actions


def test_pod_failure_policies_follow_the_worker_exit_codes(docs: list[Doc]) -> None:
    for owner, spec in job_specs(docs):
        if "podFailurePolicy" not in spec:
            continue
        pod = spec["template"]["spec"]
        # podFailurePolicy is only allowed with restartPolicy Never.
        assert pod["restartPolicy"] == "Never", owner
        names = {c["name"] for c in pod["containers"]}
        for rule in spec["podFailurePolicy"]["rules"]:
            if "onExitCodes" in rule:
                assert rule["onExitCodes"]["containerName"] in names, owner
        actions = exit_code_actions(spec)
        # A usage or configuration error fails the Job at once: retrying cannot fix a bad password.
        assert actions.get(clikit.EXIT_USAGE) == "FailJob", owner
        # A runtime error (Redis unreachable) counts against backoffLimit: the default, no rule.
        assert clikit.EXIT_ERROR not in actions, owner
        assert clikit.EXIT_OK not in actions, owner
        worker = any(is_worker(c) for c in pod["containers"])
        # A worker stopped on purpose (SIGTERM, --max-items) gave its leases back: not a failure.
        assert actions.get(clikit.EXIT_STOPPED) == ("Ignore" if worker else None), owner
        # A queue drained with dead letters (the worker's default: exit 4) marks the Job Failed, a
        # broken handler (6) and a producer that never closed the queue (7) too; a pod whose item
        # thread could not be stopped (5) is replaced, not counted.
        for code, action in ((clikit.EXIT_DEAD, "FailJob"), (5, "Ignore"), (6, "FailJob")):
            assert actions.get(code) == (action if worker else None), (owner, code)
        assert actions.get(clikit.EXIT_IDLE) == ("FailJob" if worker else None), owner
        for c in pod["containers"]:
            if is_worker(c):
                env = {v["name"]: v.get("value") for v in c.get("env", [])}
                assert "REDISWQ_FAIL_ON_DEAD" not in env, owner  # the default now: nothing to set
                # Every worker Job ends, even one that hangs where no exit code can tell.
                assert isinstance(spec.get("activeDeadlineSeconds"), int), owner
                assert spec["activeDeadlineSeconds"] > 0, owner
        disruption = [
            rule["action"]
            for rule in spec["podFailurePolicy"]["rules"]
            for c in rule.get("onPodConditions", [])
            if c["type"] == "DisruptionTarget" and c.get("status", "True") == "True"
        ]
        assert disruption == ["Ignore"], owner


def worker_grace_secs(c: Doc) -> float:
    """The SIGTERM grace `rediswq work` would use with this container's args and env."""
    from rediswq_cli.main import main

    work = main.commands.get("work")
    assert work is not None, "`rediswq work` is not registered"
    grace = [p for p in work.params if "--grace-secs" in getattr(p, "opts", [])]
    assert len(grace) == 1, "`rediswq work` has no --grace-secs option"
    param = grace[0]
    args = [str(a) for a in c.get("args", [])]
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--grace-secs":
            return float(args[i + 1])
        if arg.startswith("--grace-secs="):
            return float(arg.split("=", 1)[1])
    envvars = param.envvar if isinstance(param.envvar, list) else [param.envvar] if param.envvar else []
    for var in c.get("env", []):
        if var["name"] in envvars:
            return float(var["value"])
    return float(param.default)  # type: ignore[arg-type]


def test_termination_grace_covers_the_worker_sigterm_grace(docs: list[Doc]) -> None:
    for owner, template, c in worker_containers(docs):
        grace = worker_grace_secs(c)
        period = template["spec"]["terminationGracePeriodSeconds"]
        # The kubelet sends SIGKILL at the end of the period: the worker must have given its leases
        # back by then, so its grace must end a few seconds earlier, and not much earlier than that.
        assert grace + 3 <= period <= grace + 15, f"{owner}: grace {grace}s, period {period}s"


# -- cross-references ---------------------------------------------------------------------------------


def secret_keys(docs: list[Doc]) -> dict[str, set[str]]:
    keys: dict[str, set[str]] = {}
    for s in find_all(docs, "Secret"):
        keys[s["metadata"]["name"]] = set(s.get("data", {})) | set(s.get("stringData", {}))
    return keys


def test_every_secret_and_config_map_reference_resolves(docs: list[Doc]) -> None:
    secrets = secret_keys(docs)
    if not secrets:
        # The base alone expects the Secret to be made outside it (an overlay, or kubectl create).
        secrets = {SECRET: set(SECRET_KEYS)}
    config_maps = {m["metadata"]["name"]: set(m["data"]) for m in find_all(docs, "ConfigMap")}
    referenced = set()
    for owner, template in pod_templates(docs):
        spec = template["spec"]
        for c in spec["containers"]:
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{owner}: {ref}"
                    referenced.add(ref["name"])
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, f"{owner}: {volume}"
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, f"{owner}: {volume}"
    assert referenced == {SECRET}


def test_mounted_files_the_commands_read_exist_in_their_config_maps(docs: list[Doc]) -> None:
    config_maps = {m["metadata"]["name"]: m["data"] for m in find_all(docs, "ConfigMap")}
    checked = 0
    for owner, template in pod_templates(docs):
        spec = template["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            words = " ".join(c.get("command", []) + [str(a) for a in c.get("args", [])])
            for path in re.findall(r"/etc/[\w./-]+", words):
                mounts = [m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"] + "/")]
                assert len(mounts) == 1, f"{owner}: {path} is not under one volume mount"
                volume = volumes[mounts[0]["name"]]
                key = path[len(mounts[0]["mountPath"]) + 1 :]
                assert key in config_maps[volume["configMap"]["name"]], f"{owner}: {path}"
                checked += 1
    redis = find(docs, "StatefulSet", "rediswq-redis")
    assert container(redis["spec"]["template"], "redis")["command"] == ["sh", "/etc/redis/start.sh"]
    assert checked >= 1


def test_env_references_name_variables_defined_before_them(docs: list[Doc]) -> None:
    """The kubelet expands `$(VAR)` only for variables defined earlier; others stay literal text."""
    for owner, template in pod_templates(docs):
        for c in template["spec"]["containers"]:
            defined: set[str] = set()
            for var in c.get("env", []):
                for name in re.findall(r"(?<!\$)\$\(([^)]+)\)", str(var.get("value", ""))):
                    assert name in defined, f"{owner}: env {var['name']} uses $({name}) before it is set"
                defined.add(var["name"])
            for word in c.get("command", []) + [str(a) for a in c.get("args", [])]:
                for name in re.findall(r"(?<!\$)\$\(([^)]+)\)", word):
                    assert name in defined, f"{owner}: $({name}) is not set"


def test_redis_url_points_at_the_redis_service_and_its_port(docs: list[Doc]) -> None:
    service = find(docs, "Service", "rediswq-redis")
    ports = {p["port"] for p in service["spec"]["ports"]}
    urls = 0
    for owner, template in pod_templates(docs):
        for c in template["spec"]["containers"]:
            for var in c.get("env", []):
                if var["name"] == "REDISWQ_URL":
                    m = re.fullmatch(r"redis://([a-z-]+):\$\(REDIS_PASSWORD\)@([^:/]+):(\d+)/0", var["value"])
                    assert m, f"{owner}: {var['value']}"
                    user, key = USERS[owner]
                    assert m.group(1) == user, owner
                    password = next(v for v in c["env"] if v["name"] == "REDIS_PASSWORD")
                    assert password["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": key}, owner
                    m = re.fullmatch(r"redis://[a-z-]+:\$\(REDIS_PASSWORD\)@([^:/]+):(\d+)/0", var["value"])
                    assert m
                    assert m.group(1) == service["metadata"]["name"] and int(m.group(2)) in ports
                    urls += 1
    assert urls >= 1


def matches(selector: Doc, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against a set of labels."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions", []):
        key, op, values = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def test_the_redis_service_and_statefulset_select_the_redis_pods(docs: list[Doc]) -> None:
    redis = find(docs, "StatefulSet", "rediswq-redis")
    service = find(docs, "Service", "rediswq-redis")
    labels = redis["spec"]["template"]["metadata"]["labels"]
    assert matches(redis["spec"]["selector"], labels)
    assert matches({"matchLabels": service["spec"]["selector"]}, labels)
    assert redis["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    port_names = {p["name"] for p in container(redis["spec"]["template"], "redis")["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
    # No other workload's pods may fall under the Redis Service.
    for owner, template in pod_templates(docs):
        if owner != "StatefulSet rediswq-redis":
            assert not matches({"matchLabels": service["spec"]["selector"]}, template["metadata"]["labels"])


def test_the_network_policy_admits_worker_and_producer_pods_only(docs: list[Doc]) -> None:
    policy = find(docs, "NetworkPolicy", "rediswq-redis")["spec"]
    redis = find(docs, "StatefulSet", "rediswq-redis")["spec"]["template"]
    assert matches(policy["podSelector"], redis["metadata"]["labels"])
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert [p["port"] for p in rule["ports"]] == [6379]
    assert 6379 in {p["containerPort"] for p in container(redis, "redis")["ports"]}

    def admitted(labels: dict[str, str]) -> bool:
        return any(matches(peer["podSelector"], labels) for peer in rule["from"])

    clients = 0
    for owner, template in pod_templates(docs):
        labels = template["metadata"]["labels"]
        if owner == "StatefulSet rediswq-redis":
            continue
        uses_redis = any(
            var["name"] == "REDISWQ_URL" for c in template["spec"]["containers"] for var in c.get("env", [])
        )
        assert uses_redis and admitted(labels), owner
        clients += 1
    assert clients >= 1
    assert not admitted({"app.kubernetes.io/name": "rediswq", "app.kubernetes.io/component": "redis"})
    assert not admitted({"app.kubernetes.io/name": "other", "app.kubernetes.io/component": "worker"})
    assert not admitted({"run": "debug"})


# -- quantities and security --------------------------------------------------------------------------

_UNITS = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?", text)
    assert m, f"not a quantity: {text!r}"
    return float(m.group(1)) * _UNITS[m.group(2) or ""]


def quantities(node: yaml.Node, path: str = "") -> Iterator[tuple[str, yaml.ScalarNode]]:
    """Every scalar under a `requests`, `limits` or `sizeLimit` key, as written in the file."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = f"{path}.{key.value}"
            if key.value in ("requests", "limits") and isinstance(value, yaml.MappingNode):
                for name, q in value.value:
                    yield f"{here}.{name.value}", q
            elif key.value == "sizeLimit":
                yield here, value
            else:
                yield from quantities(value, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from quantities(item, f"{path}[{i}]")


@pytest.mark.parametrize("path", resource_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_quantities_are_written_as_quoted_strings(path: Path) -> None:
    """Quoted in the source, so no YAML reader turns `1` or `0.5` into a number."""
    with path.open(encoding="utf-8") as f:
        for document in yaml.compose_all(f):
            for where, node in quantities(document):
                assert isinstance(node, yaml.ScalarNode) and node.style in ('"', "'"), (
                    f"{where} is not quoted"
                )
                quantity(node.value)


def test_requests_fit_within_limits(docs: list[Doc]) -> None:
    for owner, template in pod_templates(docs):
        for c in template["spec"]["containers"]:
            resources = c["resources"]
            assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}, owner
            for name, request in resources["requests"].items():
                assert quantity(request) <= quantity(resources["limits"][name]), f"{owner} {name}"


def test_pods_run_with_secure_defaults(docs: list[Doc]) -> None:
    for owner, template in pod_templates(docs):
        spec = template["spec"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, owner
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, owner
        assert spec["automountServiceAccountToken"] is False, owner
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, owner
            assert sc["readOnlyRootFilesystem"] is True, owner
            assert sc["capabilities"] == {"drop": ["ALL"]}, owner
            assert "privileged" not in sc and "runAsUser" not in sc, owner


def test_worker_and_producer_pods_run_as_the_image_user() -> None:
    """The Dockerfile's numeric USER is the one the pods ask for, so the image's files are theirs."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    users = re.findall(r"^USER (\d+):(\d+)$", text, flags=re.M)
    assert users, "the Dockerfile sets no numeric USER"
    uid, gid = map(int, users[-1])
    docs = raw_base() + [
        d
        for component in ("producer", "cronjob")
        for path in sorted((K8S / "components" / component).glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for d in load(path)
    ]
    checked = 0
    for owner, template in pod_templates(docs):
        if any(c["image"].startswith("rediswq:") for c in template["spec"]["containers"]):
            context = template["spec"]["securityContext"]
            assert (context["runAsUser"], context["runAsGroup"]) == (uid, gid), owner
            checked += 1
    assert checked == 4  # the install Job, the worker, the producer, the CronJob


# -- Redis --------------------------------------------------------------------------------------------


def redis_conf(docs: list[Doc]) -> dict[str, str]:
    text = find(docs, "ConfigMap", "rediswq-redis-config")["data"]["redis.conf"]
    conf = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value
    return conf


def test_redis_keeps_the_queue_on_disk_and_never_evicts(docs: list[Doc]) -> None:
    conf = redis_conf(docs)
    assert conf["appendonly"] == "yes"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["dir"] == "/data"
    redis = find(docs, "StatefulSet", "rediswq-redis")
    c = container(redis["spec"]["template"], "redis")
    assert "/data" in {m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data"}
    assert [t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]] == ["data"]
    m = re.fullmatch(r"(\d+)mb", conf["maxmemory"])
    assert m, conf["maxmemory"]
    # Room for the copy-on-write of an append-only-file rewrite: at most half the memory limit.
    assert int(m.group(1)) * 2**20 * 2 <= quantity(c["resources"]["limits"]["memory"])


def test_redis_is_probed_by_a_ping_only_user_with_no_password_near_it(docs: list[Doc]) -> None:
    c = container(find(docs, "StatefulSet", "rediswq-redis")["spec"]["template"], "redis")
    for probe in ("readinessProbe", "livenessProbe"):
        command = " ".join(c[probe]["exec"]["command"])
        assert "redis-cli --user rediswq-health" in command and " -a " not in command, probe
        assert "PASSWORD" not in command and "AUTH" not in command, probe
    env = {v["name"]: v for v in c["env"]}
    assert "REDISCLI_AUTH" not in env
    keys = {v["valueFrom"]["secretKeyRef"]["key"] for v in c["env"] if "valueFrom" in v}
    assert keys == set(SECRET_KEYS)
    assert "REDIS_PASSWORD" not in " ".join(c["command"])


def installed_acl(queue: str, role: str) -> list[str]:
    """The rules the installed `rediswq acl` prints for `role` on `queue` (aclfile format)."""
    rediswq = Path(sys.executable).parent / "rediswq"
    return subprocess.run(
        [str(rediswq), "acl", queue, "--role", role, "--format", "aclfile"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()


def test_the_redis_users_are_the_ones_the_installed_rediswq_acl_prints() -> None:
    config = find(raw_base(), "ConfigMap", "rediswq-redis-config")["data"]
    assert [line.split() for line in started_users(config, "jobs")] == [
        installed_acl("jobs", role) for role in ("worker", "producer")
    ]


@pytest.mark.parametrize("queue", ["thumbs", "img-2.v1", "a*b?[c]\\d", "QUEUE_NAME-x"])
def test_the_redis_container_writes_the_users_rediswq_acl_prints_for_any_queue_name(queue: str) -> None:
    """start.sh puts the name in the key patterns and in every selector, glob characters escaped as
    `rediswq acl` escapes them, and leaves no trace of the shipped name."""
    config = find(raw_base(), "ConfigMap", "rediswq-redis-config")["data"]
    users = started_users(config, queue)
    assert [line.split() for line in users] == [installed_acl(queue, role) for role in ("worker", "producer")]
    assert not any("jobs" in line or "QUEUE_NAME}" in line for line in users)


def test_generate_users_check_agrees_and_finds_a_stale_user(tmp_path: Path) -> None:
    """k8s/tools/generate-users --check passes on k8s/ as shipped, and fails once a rule is dropped."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    script = [sys.executable, str(K8S / "tools" / "generate-users"), "--check"]
    assert subprocess.run(script, env=env, capture_output=True, timeout=60).returncode == 0
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    config = tree / "base" / "redis-config.yaml"
    config.write_text(config.read_text().replace(" +zmscore", "", 1))
    stale = [sys.executable, str(tree / "tools" / "generate-users"), "--check"]
    done = subprocess.run(stale, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "run k8s/tools/generate-users" in done.stdout


# -- the fill-and-drain overlay, the nightly CronJob, the overlays' own settings ----------------------


def worker_args(job: Doc) -> list[str]:
    return [str(a) for a in container(job["spec"]["template"], "worker")["args"]]


def test_the_producer_fills_the_queue_the_workers_drain_and_they_wait_for_its_close() -> None:
    docs = kustomize("overlays/example")
    workers = worker_args(find(docs, "Job", "rediswq-worker"))
    producer = container(find(docs, "Job", "rediswq-producer")["spec"]["template"], "producer")["command"]
    assert producer[:3] == ["rediswq", "enqueue", workers[0]]
    assert "--close" in producer and "--unique" in producer
    assert "--" not in workers, "no placeholder command: the user's own goes after --"
    options = workers[1:]
    assert options[options.index("--until") + 1] == "closed"
    # A producer that fails before closing the queue ends the workers (exit 7), not leaves them waiting.
    assert float(options[options.index("--max-wait") + 1]) > 0
    # Without the producer the workers run in the default mode: exit once the queue is drained.
    assert "--until" not in worker_args(find(raw_base(), "Job", "rediswq-worker"))


def test_the_nightly_overlay_runs_a_forbid_cronjob_on_a_fresh_queue_per_run() -> None:
    docs = kustomize("overlays/nightly")
    assert find_all(docs, "Job") == [], "the one-shot worker Job is replaced by the CronJob"
    cron = find(docs, "CronJob", "rediswq-nightly")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    c = container(job["template"], "worker")
    env = {v["name"]: v for v in c["env"]}
    assert (
        env["QUEUE"]["valueFrom"]["fieldRef"]["fieldPath"]
        == "metadata.labels['batch.kubernetes.io/job-name']"
    )
    script = c["command"][2]
    assert 'rediswq enqueue "$QUEUE" --unique --close' in script
    # The item command is the container's args, the user's own: none is shipped.
    assert 'exec rediswq work "$QUEUE" --until closed --max-wait 1800 -- "$@"' in script
    assert "args" not in c


@pytest.mark.parametrize(
    ("directory", "namespace", "kind", "parallelism"),
    [("overlays/example", "rediswq", "Job", 8), ("overlays/nightly", "rediswq-nightly", "CronJob", 16)],
)
def test_overlays_set_namespace_image_parallelism_and_generate_the_secret(
    directory: str, namespace: str, kind: str, parallelism: int
) -> None:
    docs = kustomize(directory)
    assert find(docs, "Namespace", namespace)
    for d in docs:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == namespace, f"{d['kind']} {d['metadata']['name']}"
    for _, _, c in worker_containers(docs):
        assert c["image"] == "registry.example.com/rediswq:0.1.0"
    worker_owners = {owner for owner, _, _ in worker_containers(docs)}
    assert worker_owners == {f"{kind} rediswq-{'worker' if kind == 'Job' else 'nightly'}"}
    for owner, spec in job_specs(docs):
        if owner in worker_owners:
            assert spec["parallelism"] == parallelism
    # A fixed name: `rediswq job submit` refers to the Secret by the template's name.
    secret = find(docs, "Secret", SECRET)
    assert set(secret["data"]) == set(SECRET_KEYS)


# -- packaging ----------------------------------------------------------------------------------------


def test_the_worker_job_template_is_packaged_as_worker_manifests() -> None:
    packaged = importlib.resources.files("rediswq_cli.kube.manifests").joinpath("base/worker-job.yaml")
    source = (K8S / "base" / "worker-job.yaml").read_text(encoding="utf-8")
    assert packaged.read_text(encoding="utf-8") == source
    assert yaml.safe_load(source)["metadata"]["name"] == "rediswq-worker"


def test_every_manifest_under_k8s_is_in_the_wheels_package_data() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("reading pyproject.toml needs tomllib (Python 3.11)")
    else:
        import tomllib

        config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
        assert config["package-dir"]["rediswq_cli.kube.manifests"] == "k8s"
        patterns = config["package-data"]["rediswq_cli.kube.manifests"]
        for path in K8S.rglob("*.yaml"):
            relative = str(path.relative_to(K8S))
            depth = relative.count("/")
            assert any(fnmatch.fnmatch(relative, p) and p.count("/") == depth for p in patterns), relative


def test_the_k8s_readme_states_the_versions_and_grace_that_are_checked() -> None:
    text = " ".join((K8S / "README.md").read_text(encoding="utf-8").split())
    assert f"**{OLDEST} to {NEWEST}**" in text
    assert f"against Kubernetes {OLDEST} and {NEWEST}" in text
    job = find(raw_base(), "Job", "rediswq-worker")
    period = job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    grace = worker_grace_secs(container(job["spec"]["template"], "worker"))
    assert (
        f"`terminationGracePeriodSeconds: {period}` against the worker's `--grace-secs` default of {grace:g}"
        in text
    )


# -- the external-redis component: workers on a Redis Cluster or Sentinel run elsewhere ----------------


@pytest.mark.parametrize("version", VERSIONS)
def test_the_cluster_overlay_passes_strict_schema_validation(version: str) -> None:
    documents = kustomize("overlays/cluster")
    assert len(documents) >= 4
    assert schema_errors(documents, version) == []


def test_the_cluster_overlay_drops_the_bundled_redis_and_takes_the_url_from_the_secret() -> None:
    docs = kustomize("overlays/cluster")
    assert not [d for d in docs if d["kind"] in ("StatefulSet", "Service", "NetworkPolicy")]
    assert not [d for d in docs if d["metadata"]["name"] == "rediswq-redis-config"]
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Job"}
    assert set(jobs) == {"rediswq-worker", "rediswq-producer"}
    for name, job in jobs.items():
        env = {var["name"]: var for var in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert "REDIS_PASSWORD" not in env, name
        assert env["REDISWQ_URL"]["valueFrom"]["secretKeyRef"] == {"name": SECRET, "key": "url"}, name
    producer_env = jobs["rediswq-producer"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "REDISWQ_MIN_REPLICAS", "value": "1"} in producer_env
    secret = find(docs, "Secret", SECRET)
    assert set(secret["data"]) == {"url"}


def test_the_cluster_overlay_s_producer_makes_a_sharded_queue_its_workers_learn_of() -> None:
    from rediswq_producer.enqueue import enqueue

    jobs = {d["metadata"]["name"]: d for d in kustomize("overlays/cluster") if d["kind"] == "Job"}
    producer = jobs["rediswq-producer"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert producer[:2] == ["rediswq", "enqueue"] and producer[-2:] == ["--shards", "12"]
    enqueue.make_context("enqueue", producer[2:])  # the options parse as written
    worker = jobs["rediswq-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert "--shards" not in [*worker.get("command", []), *worker.get("args", [])]


def test_the_cluster_overlay_s_example_url_is_one_rediswq_parses() -> None:
    from rediswq import _topology

    text = (K8S / "overlays" / "cluster" / "redis-secret.env").read_text(encoding="utf-8")
    url = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))["url"]
    parsed = _topology.parse(url)
    assert parsed.kind == "cluster" and len(parsed.hosts) == 3 and parsed.password == "REPLACE-ME"


def queue_names(docs: list[Doc]) -> dict[str, str]:
    """Where a build names the queue -> the name it gives there (the users' by their key patterns)."""

    named: dict[str, str] = {}
    for kind, name, container_name, field in (
        ("Job", "rediswq-worker", "worker", "args"),
        ("Job", "rediswq-producer", "producer", "command"),
        ("Deployment", "rediswq-exporter", "exporter", "command"),
        ("Deployment", "rediswq-dashboard", "dashboard", "command"),
    ):
        for d in docs:
            if d["kind"] == kind and d["metadata"]["name"] == name:
                c = container(d["spec"]["template"], container_name)
                named[f"{kind} {name}"] = c[field][0 if field == "args" else 2]
    for scaled in find_all(docs, "ScaledJob"):
        named["ScaledJob args"] = container(scaled["spec"]["jobTargetRef"]["template"], "worker")["args"][0]
        # The exporter's URL KEDA reads the count from: http://HOST:PORT/queues/NAME.
        (url,) = (t["metadata"]["url"] for t in scaled["spec"]["triggers"])
        named["ScaledJob url"] = url.split("/queues/", 1)[1]
    for config in (
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "rediswq-redis-config"
    ):
        redis = container(find(docs, "StatefulSet", "rediswq-redis")["spec"]["template"], "redis")
        given = {v["name"]: v.get("value") for v in redis["env"]}["REDISWQ_QUEUE"]
        for line in started_users(config["data"], given):
            user = line.split()[1]
            # The user covers exactly one queue's keys: the ones `rediswq acl` gives for that name,
            # in its key patterns and in every selector.
            queue = line.split()[6].removeprefix("~")
            assert line.split() == installed_acl(queue, user.removeprefix("rediswq-"))
            named[f"user {user}"] = queue
    return named


def build_copy(tree: Path, directory: str) -> list[Doc]:
    """`kubectl kustomize` of a directory of a changed copy of k8s/ (`tree`)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tree.parent), "KUBECONFIG": str(tree.parent / "none")}
    built = subprocess.run(
        [str(kubectl()), "kustomize", str(tree / directory)], env=env, capture_output=True, text=True
    )
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


def test_the_queue_name_is_set_in_one_place(tmp_path: Path) -> None:
    """base/queue.yaml's name reaches the users and every command and list that names the queue."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    queue_file = tree / "base" / "queue.yaml"
    queue_file.write_text(queue_file.read_text().replace("  name: jobs\n", "  name: thumbs\n"))
    for directory, places in (
        ("base", 3),
        ("overlays/example", 5),
        ("overlays/autoscaled", 5),
        ("overlays/dashboard", 6),
    ):
        named = queue_names(build_copy(tree, directory))
        assert len(named) == places and set(named.values()) == {"thumbs"}, (directory, named)


def test_the_thumbs_overlay_renames_the_queue_in_the_users_and_every_command() -> None:
    named = queue_names(kustomize("overlays/thumbs"))
    assert set(named) == {
        "Job rediswq-worker",
        "Job rediswq-producer",
        "Deployment rediswq-exporter",
        "user rediswq-worker",
        "user rediswq-producer",
    }
    assert set(named.values()) == {"thumbs"}, named
    assert set(queue_names(kustomize("overlays/example")).values()) == {"jobs"}


def test_one_configmap_generator_renames_the_queue_of_the_keda_overlay(tmp_path: Path) -> None:
    """The edit overlays/thumbs makes, on overlays/autoscaled: KEDA's URL follows it too."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    overlay = tree / "overlays" / "autoscaled" / "kustomization.yaml"
    rename = "configMapGenerator:\n  - name: rediswq-queue\n    behavior: merge\n    literals: [name=img-2]\n"
    overlay.write_text(overlay.read_text() + rename)
    named = queue_names(build_copy(tree, "overlays/autoscaled"))
    assert len(named) == 5 and set(named.values()) == {"img-2"}, named


@pytest.mark.parametrize("version", VERSIONS)
def test_the_thumbs_overlay_passes_strict_schema_validation(version: str) -> None:
    assert schema_errors(kustomize("overlays/thumbs"), version) == []


def test_the_dashboard_shows_its_queue_with_actions_off_and_is_probed_without_redis() -> None:
    """components/dashboard: `rediswq dashboard` as the command parses it, on the queue the overlay
    names, never with --allow-actions; its probes hit /healthz on the port the Service targets."""
    from rediswq_producer.dashboard.command import dashboard

    docs = kustomize("overlays/dashboard")
    pod = find(docs, "Deployment", "rediswq-dashboard")["spec"]["template"]
    c = container(pod, "dashboard")
    assert c["command"][:3] == ["rediswq", "dashboard", "jobs"]
    params = dashboard.make_context("dashboard", list(c["command"][2:])).params
    assert params["allow_actions"] is False and params["queues"] == ("jobs",)
    assert params["host"] == "0.0.0.0"
    assert {p["containerPort"] for p in c["ports"]} == {params["port"]}
    for probe in (c["readinessProbe"], c["livenessProbe"]):
        assert probe["httpGet"] == {"path": "/healthz", "port": "http"}
    service = find(docs, "Service", "rediswq-dashboard")["spec"]
    assert service["ports"][0]["targetPort"] == "http" and "type" not in service  # ClusterIP only
