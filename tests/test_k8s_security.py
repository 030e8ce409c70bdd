"""The k8s/ security manifests, checked without a cluster: the Role for `rediswq job` grants exactly
the API calls the code makes, and the NetworkPolicy lets worker and producer pods reach Redis and DNS
only. (Schemas and kustomize builds are checked with every other manifest in test_k8s_manifests.py.)"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis_server import needs_tls
from test_k8s_manifests import matches
from test_k8s_support import ACL_KEYS, K8S, ROOT, Doc, find, kustomize, load, pod_templates

from rediswq import Queue

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
    """(API group, resource, verb) of every namespaced call the `rediswq job` commands make."""
    found = set()
    for path in (ROOT / "cli" / "kube").glob("*.py"):
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


# -- components/tls -----------------------------------------------------------------------------------


def test_the_tls_overlay_passes_strict_schema_validation() -> None:
    from test_k8s_manifests import VERSIONS, schema_errors

    docs = kustomize("overlays/example-tls")
    for version in VERSIONS:
        assert schema_errors(docs, version) == [], version


def test_with_tls_every_client_uses_rediss_and_trusts_the_ca_alone() -> None:
    docs = kustomize("overlays/example-tls")
    clients = 0
    for owner, template in pod_templates(docs):
        if owner == "StatefulSet rediswq-redis":
            continue
        (c,) = template["spec"]["containers"]
        env = {v["name"]: v.get("value") for v in c["env"]}
        assert re.fullmatch(
            r"rediss://rediswq-[a-z]+:\$\(REDIS_PASSWORD\)@rediswq-redis:6379/0", env["REDISWQ_URL"]
        )
        mount = next(m for m in c["volumeMounts"] if env["REDISWQ_TLS_CA"].startswith(m["mountPath"] + "/"))
        volume = next(v for v in template["spec"]["volumes"] if v["name"] == mount["name"])
        assert volume["secret"] == {
            "secretName": "rediswq-redis-tls",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }
        clients += 1
    assert clients == 4  # the install Job, the worker, the producer and the exporter


def test_with_tls_redis_loads_the_tls_settings_and_is_probed_over_tls() -> None:
    docs = kustomize("overlays/example-tls")
    config = find(docs, "ConfigMap", "rediswq-redis-config")["data"]
    tls = find(docs, "ConfigMap", "rediswq-redis-tls-config")["data"]["tls.conf"]
    assert "port 0\n" in tls and "tls-port 6379\n" in tls
    assert (
        'if [ -f /etc/redis-tls/tls.conf ]; then echo "include /etc/redis-tls/tls.conf"; fi'
        in config["start.sh"]
    )
    template = find(docs, "StatefulSet", "rediswq-redis")["spec"]["template"]
    (c,) = template["spec"]["containers"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert volumes[mounts["/etc/redis-tls"]]["configMap"]["name"] == "rediswq-redis-tls-config"
    assert volumes[mounts["/etc/redis-tls/certs"]]["secret"]["secretName"] == "rediswq-redis-tls"
    for line in ("tls-cert-file", "tls-key-file", "tls-ca-cert-file"):
        path = next(x.split()[1] for x in tls.splitlines() if x.startswith(line))
        assert path.startswith("/etc/redis-tls/certs/"), line
    for probe in ("readinessProbe", "livenessProbe"):
        assert "redis-cli --tls --cacert /etc/redis-tls/certs/ca.crt" in " ".join(c[probe]["exec"]["command"])


@needs_tls()
def test_with_tls_the_manifests_redis_and_worker_run_for_real(tmp_path: Path) -> None:
    """The TLS overlay's Redis start script, TLS settings and probes, and its worker's command and env,
    run as local processes with a CA made here (only the Service name, port and paths substituted)."""
    from certs import make_ca, make_cert
    from redis_server import find_binary, free_port
    from test_k8s_pod_commands import redis_cli
    from test_k8s_support import command_line, container, container_env, dockerfile_entrypoint

    docs = kustomize("overlays/example-tls")
    pki = tmp_path / "pki"
    pki.mkdir()
    make_ca(pki, "ca")
    make_cert(pki, "server", "ca", "DNS:localhost")
    config = find(docs, "ConfigMap", "rediswq-redis-config")["data"]
    port = free_port()
    etc, tls, run, data = (tmp_path / d for d in ("etc", "etc-tls", "run", "data"))
    for d in (etc, tls, run, data):
        d.mkdir()
    # Never 6379 here: the plain port is closed (tls.conf closes it too), TLS gets a free one.
    conf = config["redis.conf"].replace("port 6379\n", "port 0\nbind 127.0.0.1\n")
    (etc / "redis.conf").write_text(
        conf.replace("dir /data\n", f"dir {data}\n").replace("/run/redis/", f"{run}/")
    )
    for key in ACL_KEYS:
        (etc / key).write_text(config[key])
    tls_conf = find(docs, "ConfigMap", "rediswq-redis-tls-config")["data"]["tls.conf"]
    tls_conf = tls_conf.replace("tls-port 6379", f"tls-port {port}")
    for name, file in (("tls.crt", "server.pem"), ("tls.key", "server.key"), ("ca.crt", "ca.pem")):
        tls_conf = tls_conf.replace(f"/etc/redis-tls/certs/{name}", str(pki / file))
    (tls / "tls.conf").write_text(tls_conf)
    script = config["start.sh"].replace("/run/redis/", f"{run}/").replace("/etc/redis-tls/", f"{tls}/")
    (etc / "start.sh").write_text(script.replace("/etc/redis/", f"{etc}/"))
    passwords = {
        "REDIS_PASSWORD": "admin-pw-1234",
        "REDIS_WORKER_PASSWORD": "worker-pw-1234",
        "REDIS_PRODUCER_PASSWORD": "producer-pw-1234",
    }
    env = {
        "PATH": f"{Path(find_binary()).parent}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "REDISWQ_QUEUE": "jobs",
        **passwords,
    }
    redis_process = subprocess.Popen(
        ["sh", str(etc / "start.sh")], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        c = container(find(docs, "StatefulSet", "rediswq-redis")["spec"]["template"], "redis")
        probe = [
            a.replace(" -h 127.0.0.1", f" -h 127.0.0.1 -p {port}").replace(
                "/etc/redis-tls/certs/ca.crt", str(pki / "ca.pem")
            )
            for a in c["readinessProbe"]["exec"]["command"]
        ]
        probe_env = {"PATH": f"{Path(redis_cli()).parent}:/usr/bin:/bin"}
        deadline = time.monotonic() + 10
        while subprocess.run(probe, env=probe_env, capture_output=True, timeout=10).returncode != 0:
            assert redis_process.poll() is None, redis_process.stderr.read() if redis_process.stderr else ""
            assert time.monotonic() < deadline, "Redis never became ready over TLS"
            time.sleep(0.1)

        worker = container(find(docs, "Job", "rediswq-worker")["spec"]["template"], "worker")
        worker["args"] = [*worker["args"], "--", "echo", "processed", "{}"]  # the manifests ship no command
        secrets = {
            ("rediswq-redis", "password"): passwords["REDIS_PASSWORD"],
            ("rediswq-redis", "worker-password"): passwords["REDIS_WORKER_PASSWORD"],
            ("rediswq-redis", "producer-password"): passwords["REDIS_PRODUCER_PASSWORD"],
        }
        base = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
        worker_env = container_env(worker, secrets, {"metadata.name": "rediswq-worker-0"}, base)
        assert worker_env["REDISWQ_URL"].startswith(
            "rediss://rediswq-worker:worker-pw-1234@rediswq-redis:6379/"
        )
        worker_env["REDISWQ_URL"] = worker_env["REDISWQ_URL"].replace(
            "@rediswq-redis:6379/", f"@localhost:{port}/"
        )
        assert worker_env["REDISWQ_TLS_CA"] == "/etc/rediswq-tls/ca.crt"
        worker_env["REDISWQ_TLS_CA"] = str(pki / "ca.pem")
        admin = f"rediss://rediswq-admin:admin-pw-1234@localhost:{port}/0"
        filled = Queue.from_url(admin, "jobs", tls_ca=str(pki / "ca.pem"))
        filled.put_many([b"a", b"b", b"c"])
        filled.close()  # the example's workers run --until closed, for its producer
        argv = command_line(worker, dockerfile_entrypoint(), worker_env)
        done = subprocess.run(argv, env=worker_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["processed", "a", "processed", "b", "processed", "c"]
        # The wrong CA: the worker fails at once with exit 2, which fails the Job (podFailurePolicy).
        worker_env["REDISWQ_TLS_CA"] = str(pki / "server.pem")
        done = subprocess.run(argv, env=worker_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "certificate verify failed" in done.stderr, done.stderr
    finally:
        redis_process.terminate()
        redis_process.wait(10)
