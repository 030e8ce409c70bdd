"""The k8s/ security manifests, checked without a cluster: the Role for `rediswq job` grants exactly
the API calls the code makes, and the NetworkPolicy lets worker and producer pods reach Redis and DNS
only. (Schemas and kustomize builds are checked with every other manifest in test_k8s_manifests.py.)"""

from __future__ import annotations

import re

import pytest
from test_k8s_manifests import matches
from test_k8s_support import K8S, ROOT, Doc, find, kustomize, load, pod_templates

# kubernetes client method prefix -> RBAC verb
_VERBS = {
    "create": "create",
    "read": "get",
    "patch": "patch",
    "delete": "delete",
    "list": "list",
    "replace": "update",
}
_CALL = re.compile(r"cluster\.(batch|core)\.(create|read|patch|delete|list|replace)_namespaced_(job|pod)\b")


def api_calls() -> set[tuple[str, str, str]]:
    """(API group, resource, verb) of every namespaced call the worker package makes."""
    found = set()
    for path in (ROOT / "worker").glob("*.py"):
        for api, method, kind in _CALL.findall(path.read_text(encoding="utf-8")):
            found.add(("batch" if api == "batch" else "", f"{kind}s", _VERBS[method]))
    return found


def role_grants(role: Doc) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_the_job_role_grants_exactly_what_rediswq_job_calls() -> None:
    calls = api_calls()
    assert ("batch", "jobs", "create") in calls and ("", "pods", "list") in calls
    (role,) = [d for d in load(K8S / "components" / "job-role" / "role.yaml") if d["kind"] == "Role"]
    assert role_grants(role) == calls


@pytest.mark.parametrize("overlay", ["overlays/example", "overlays/nightly"])
def test_the_overlays_bind_the_job_role_to_its_service_account(overlay: str) -> None:
    docs = kustomize(overlay)
    binding = find(docs, "RoleBinding", "rediswq-job")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "rediswq-job",
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "rediswq-job",
            "namespace": find(docs, "Role", "rediswq-job")["metadata"]["namespace"],
        }
    ]
    assert find(docs, "ServiceAccount", "rediswq-job")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("build", ["base", "overlays/example", "overlays/nightly"])
def test_worker_and_producer_pods_may_reach_redis_and_dns_only(build: str) -> None:
    docs = kustomize(build)
    policy = find(docs, "NetworkPolicy", "rediswq-clients")["spec"]
    assert policy["policyTypes"] == ["Egress"]
    clients = [t for owner, t in pod_templates(docs) if owner != "StatefulSet rediswq-redis"]
    assert clients and all(matches(policy["podSelector"], t["metadata"]["labels"]) for t in clients)
    redis = find(docs, "StatefulSet", "rediswq-redis")["spec"]["template"]["metadata"]["labels"]
    assert not matches(policy["podSelector"], redis)
    to_redis, to_dns = policy["egress"]
    (peer,) = to_redis["to"]
    assert set(peer) == {"podSelector"} and matches(peer["podSelector"], redis)
    assert to_redis["ports"] == [{"protocol": "TCP", "port": 6379}]
    (dns,) = to_dns["to"]
    assert dns["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    assert dns["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert sorted(p["protocol"] for p in to_dns["ports"]) == ["TCP", "UDP"] and {
        p["port"] for p in to_dns["ports"]
    } == {53}
    assert not any("ipBlock" in peer for rule in policy["egress"] for peer in rule["to"])
