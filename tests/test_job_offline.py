"""`rediswq job` without an API server: the Job built from the packaged template, the scaling rule,
the progress figures, and the configuration errors (exit 2, one line, no traceback)."""

from __future__ import annotations

import importlib.resources
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from test_k8s_manifests import VERSIONS, schema_errors
from test_k8s_support import find, kustomize

from rediswq import LeaseInfo
from rediswq_cli.kube.manifest import ManifestError, WorkerJob, build, load_template, split_args
from rediswq_cli.kube.scale import desired_parallelism, holding_pods
from rediswq_cli.main import main
from rediswq_kit.progress import Rate, eta_text

K8S_TEMPLATE = Path(__file__).resolve().parent.parent / "k8s" / "base" / "worker-job.yaml"


def run(*args: str, env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def container(job: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "worker")


# -- the Job manifest ---------------------------------------------------------------------------------


def test_the_packaged_template_is_the_file_k8s_ships() -> None:
    packaged = (
        importlib.resources.files("rediswq_cli.kube.manifests").joinpath("base/worker-job.yaml").read_text()
    )
    assert packaged == K8S_TEMPLATE.read_text()
    assert load_template() == yaml.safe_load(K8S_TEMPLATE.read_text())


def test_the_template_has_what_submit_relies_on() -> None:
    template = load_template()
    queue, _options, command = split_args(container(template)["args"])
    assert queue, "the template's args must be QUEUE [OPTION]..."
    # No placeholder command: one like `echo {}` would complete every item with no work done.
    assert command == []
    assert "completions" not in template["spec"]


def test_build_changes_only_name_image_parallelism_and_args() -> None:
    template = load_template()
    job = build(
        WorkerJob(queue="thumbs", image="ex/thumbs:2", parallelism=9, name="t1", command=("run", "{}"))
    )
    expected = yaml.safe_load(K8S_TEMPLATE.read_text())
    expected["metadata"]["name"] = "t1"
    expected["spec"]["parallelism"] = 9
    container(expected)["image"] = "ex/thumbs:2"
    _, options, _ = split_args(container(template)["args"])
    container(expected)["args"] = ["thumbs", *options, "--", "run", "{}"]
    assert job == expected
    assert load_template() == template  # the template itself is untouched


def test_worker_options_and_command_go_into_the_args_in_order() -> None:
    job = build(
        WorkerJob(
            queue="q",
            image="i",
            parallelism=1,
            worker_options=("--until", "closed", "--lease-secs", "30"),
            command=("python", "-m", "handle", "{}"),
        )
    )
    assert container(job)["args"] == [
        "q",
        "--until",
        "closed",
        "--lease-secs",
        "30",
        "--",
        "python",
        "-m",
        "handle",
        "{}",
    ]


def test_a_handler_replaces_the_template_command() -> None:
    job = build(WorkerJob(queue="q", image="i", parallelism=1, worker_options=("--handler", "pkg.mod:fn")))
    assert container(job)["args"] == ["q", "--handler", "pkg.mod:fn"]


def test_env_overrides_keep_their_place_and_new_ones_are_appended() -> None:
    job = build(
        WorkerJob(
            queue="q",
            image="i",
            parallelism=1,
            command=("true",),
            env=(("REDISWQ_URL", "redis://:$(REDIS_PASSWORD)@elsewhere:6380/1"), ("EXTRA", "1")),
            secret="my-redis",
        )
    )
    env = container(job)["env"]
    names = [e["name"] for e in env]
    template_names = [e["name"] for e in container(load_template())["env"]]
    assert names == [*template_names, "EXTRA"]  # REDIS_PASSWORD stays before the URL that uses it
    by_name = {e["name"]: e for e in env}
    assert by_name["REDISWQ_URL"] == {
        "name": "REDISWQ_URL",
        "value": "redis://:$(REDIS_PASSWORD)@elsewhere:6380/1",
    }
    password = by_name["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": "my-redis", "key": "worker-password"}
    assert by_name["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("name", ["Upper", "-dash", "dash-", "a" * 64, "under_score"])
def test_a_job_name_kubernetes_would_refuse_is_refused_first(name: str) -> None:
    with pytest.raises(ManifestError, match="bad Job name"):
        build(WorkerJob(queue="q", image="i", parallelism=1, name=name, command=("true",)))


def test_a_job_with_neither_a_command_nor_a_handler_is_refused() -> None:
    with pytest.raises(ManifestError, match="nothing to run"):
        build(WorkerJob(queue="q", image="i", parallelism=1))


def test_submit_without_a_command_or_handler_exits_2_with_one_line_and_creates_nothing(
    tmp_path: Path,
) -> None:
    # No kubeconfig at all: had it got as far as the cluster, it would say so instead.
    env = {"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": None}
    for extra in ([], ["--dry-run"]):
        result = run("job", "submit", "thumbs", "--image", "i", "-p", "2", *extra, env=env)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: the Job has nothing to run: give a COMMAND after --")
        assert len(result.output.splitlines()) == 1


def test_submit_dry_run_prints_the_job_the_client_would_send() -> None:
    result = run(
        "job", "submit", "jobs", "--image", "img:1", "-p", "3", "--until", "closed", "--dry-run", "--", "wc"
    )
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["metadata"]["name"] == "rediswq-worker"
    assert job["spec"]["parallelism"] == 3
    assert container(job)["args"] == ["jobs", "--until", "closed", "--", "wc"]
    # What the client's models keep of the template: everything the pods depend on.
    template = load_template()
    assert container(job)["env"] == container(template)["env"]
    assert container(job)["securityContext"] == container(template)["securityContext"]
    assert container(job)["resources"] == container(template)["resources"]
    assert job["spec"]["template"]["spec"]["volumes"] == template["spec"]["template"]["spec"]["volumes"]
    assert job["spec"]["backoffLimit"] == template["spec"]["backoffLimit"]
    # Every Job ends: the template's deadline and exit-code rules (0-7) come along.
    assert job["spec"]["activeDeadlineSeconds"] == template["spec"]["activeDeadlineSeconds"] > 0
    assert job["spec"]["podFailurePolicy"] == template["spec"]["podFailurePolicy"]


def test_submit_dry_run_shows_the_namespace_given_with_n() -> None:
    submit = ["job", "submit", "q", "--image", "i", "-p", "1", "--dry-run", "--", "wc"]
    result = run(*submit[:2], "-n", "batch", *submit[2:])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["metadata"]["namespace"] == "batch"
    assert "namespace" not in json.loads(run(*submit).stdout)["metadata"]


def test_submit_url_from_secret_gives_the_pods_the_env_the_external_redis_component_gives() -> None:
    submit = ["job", "submit", "q", "--image", "i", "-p", "2", "--dry-run"]
    result = run(*submit, "--url-from-secret", "rediswq-redis", "--", "wc")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    for version in VERSIONS:
        assert schema_errors([job], version) == []
    overlay = find(kustomize("overlays/cluster"), "Job", "rediswq-worker")
    assert container(job)["env"] == container(overlay)["env"]
    assert container(job)["env"][0] == {
        "name": "REDISWQ_URL",
        "valueFrom": {"secretKeyRef": {"name": "rediswq-redis", "key": "url"}},
    }
    # Another Secret, another key.
    other = build(
        WorkerJob(queue="q", image="i", parallelism=1, command=("wc",), url_secret=("my.redis", "redis-url"))
    )
    assert container(other)["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "my.redis", "key": "redis-url"}
    assert "REDIS_PASSWORD" not in {var["name"] for var in container(other)["env"]}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--url-from-secret", "Redis"], "bad Secret name 'Redis'"),
        (["--url-from-secret", "redis/a/b"], "bad Secret key 'a/b'"),
        (["--url-from-secret", "redis", "--secret", "other"], "give one of them"),
        (["--url-from-secret", "redis", "-e", "REDISWQ_URL=redis://h/0"], "do not set it with --env"),
    ],
)
def test_submit_url_from_secret_refuses_what_would_not_start_with_one_line_and_exit_2(
    args: list[str], says: str
) -> None:
    result = run("job", "submit", "q", "--image", "i", "-p", "1", *args, "--dry-run", "--", "wc")
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1 and says in result.output, result.output


def test_the_args_submit_writes_are_ones_rediswq_work_accepts() -> None:
    work = pytest.importorskip("rediswq_worker.work", reason="the `work` command is not in this tree").work
    options = ["--until", "closed", "--lease-secs", "0.5", "--timeout", "9", "--concurrency", "4"]
    options += ["--prefetch", "10", "--max-attempts", "3", "--log-format", "json"]
    options += ["--max-wait", "600", "--allow-dead"]
    result = run(
        "job", "submit", "q", "--image", "i", "-p", "1", *options, "--dry-run", "--", "sh", "-c", "x {}"
    )
    assert result.exit_code == 0, result.output
    args = container(json.loads(result.stdout))["args"]
    params = work.make_context("work", list(args)).params
    assert params["queue_name"] == "q"
    assert params["command"] == ("sh", "-c", "x {}")
    assert (params["until"], params["lease_secs"], params["item_timeout_secs"]) == ("closed", 0.5, 9.0)
    assert (params["concurrency"], params["prefetch"], params["max_attempts"]) == (4, 10, 3)
    assert params["log_format"] == "json"
    assert (params["max_wait_secs"], params["fail_on_dead"]) == (600.0, False)


def test_submit_max_wait_without_until_closed_is_a_usage_error_with_one_line() -> None:
    result = run("job", "submit", "q", "--image", "i", "-p", "1", "--max-wait", "60", "--dry-run", "--", "wc")
    assert result.exit_code == 2, result.output
    assert "--max-wait applies with --until closed only" in result.output


def test_submit_with_both_a_handler_and_a_command_is_a_usage_error() -> None:
    result = run(
        "job", "submit", "q", "--image", "i", "-p", "1", "--handler", "m:f", "--dry-run", "--", "cat"
    )
    assert result.exit_code == 2
    assert "either --handler or a COMMAND" in result.output


def test_submit_with_a_bad_name_exits_2_with_one_line() -> None:
    result = run("job", "submit", "q", "--image", "i", "-p", "1", "--name", "Bad_Name", "--dry-run")
    assert result.exit_code == 2
    assert result.output.startswith("Error: bad Job name 'Bad_Name'")
    assert len(result.output.splitlines()) == 1


# -- the bundled Redis's users: submit refuses a queue they do not cover --------------------------------


def test_submit_dry_run_warns_in_one_line_when_the_bundled_redis_would_refuse_the_queue() -> None:
    result = run("job", "submit", "thumbs", "--image", "i", "-p", "1", "--dry-run", "--", "wc")
    assert result.exit_code == 0, result.output
    assert container(json.loads(result.stdout))["args"][0] == "thumbs"
    warning = result.stderr.splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: the bundled Redis's ACL refuses user")
    assert "queue 'thumbs'" in warning[0] and "~rediswq:{jobs}:* ~jobs" in warning[0]
    assert "k8s/base/queue.yaml or in an overlay" in warning[0]


def test_submit_refuses_a_queue_the_bundled_redis_would_refuse_with_exit_2_before_the_cluster(
    tmp_path: Path,
) -> None:
    # No kubeconfig: had it got as far as the cluster, it would say that instead.
    env = {"KUBECONFIG": str(tmp_path / "missing"), "KUBERNETES_SERVICE_HOST": None}
    result = run("job", "submit", "thumbs", "--image", "i", "-p", "1", "--", "wc", env=env)
    assert result.exit_code == 2, result.output
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith("Error: the bundled Redis's ACL refuses user rediswq-worker the keys")
    assert "-e 'REDISWQ_URL=redis://rediswq-worker:$(REDIS_PASSWORD)@rediswq-redis:6379/0'" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["jobs"],  # the queue the shipped users cover
        ["jobs", "--secret", "other"],  # the same Redis, the password from another Secret
        ["thumbs", "--url-from-secret", "redis"],  # a Redis of the caller's
        ["thumbs", "-e", "REDISWQ_URL=redis://rediswq-worker:$(REDIS_PASSWORD)@rediswq-redis:6379/0"],
    ],
)
def test_submit_says_nothing_of_the_acl_when_the_users_cover_the_queue_or_the_url_is_the_callers(
    args: list[str],
) -> None:
    result = run("job", "submit", *args, "--image", "i", "-p", "1", "--dry-run", "--", "wc")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("rediswq:{jobs}:*", "rediswq:{jobs}:*", True),
        ("*", "rediswq:{thumbs}:*", True),
        ("rediswq:{jobs}:*", "rediswq:{jobs2}:*", False),
        ("jobs", "jobs2", False),
        ("a\\*b", "a*b", True),  # an escaped star matches a star only
        ("a\\*b", "axb", False),
        ("q[0-9]", "q7", True),
        ("q[^0-9]", "q7", False),
        ("q?", "qq", True),
    ],
)
def test_the_bundled_acl_check_reads_key_patterns_as_redis_globs(
    pattern: str, key: str, matches: bool
) -> None:
    from rediswq_cli.kube.bundled import _glob_matches

    assert _glob_matches(pattern, key) is matches


# -- configuration errors -----------------------------------------------------------------------------


def no_cluster_env(home: Path) -> dict[str, str | None]:
    return {"HOME": str(home), "KUBECONFIG": None, "KUBERNETES_SERVICE_HOST": None}


def test_no_kubeconfig_and_not_in_a_pod_is_exit_2_with_one_line(tmp_path: Path) -> None:
    result = run("job", "status", "x", env=no_cluster_env(tmp_path))
    assert result.exit_code == 2
    assert result.output == (
        "Error: no Kubernetes configuration: no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config) "
        "and not running in a pod\n"
    )


@pytest.mark.skipif(
    Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists(), reason="running in a pod"
)
def test_without_a_kubeconfig_it_falls_back_to_the_in_cluster_service_account(tmp_path: Path) -> None:
    env = {
        **no_cluster_env(tmp_path),
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
    }
    result = run("job", "status", "x", env=env)
    assert result.exit_code == 2
    assert result.output == "Error: Kubernetes configuration: Service token file does not exist.\n"


def test_a_missing_kubeconfig_file_is_exit_2(tmp_path: Path) -> None:
    result = run("job", "delete", "x", "--kubeconfig", str(tmp_path / "nope"), env=no_cluster_env(tmp_path))
    assert result.exit_code == 2
    assert result.output == f"Error: kubeconfig not found: {tmp_path / 'nope'}\n"


def test_kubeconfig_comes_from_the_environment_like_kubectl(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    result = run("job", "status", "x", env={**no_cluster_env(tmp_path), "KUBECONFIG": str(kubeconfig)})
    assert result.exit_code == 2
    assert result.output.startswith("Error: Kubernetes configuration: ")
    assert len(result.output.splitlines()) == 1


def test_an_unknown_context_is_exit_2(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "secret-token"}}],
                "contexts": [{"name": "real", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "real",
            }
        )
    )
    result = run("job", "status", "x", "--kubeconfig", str(kubeconfig), "--context", "imaginary")
    assert result.exit_code == 2
    assert result.output.startswith("Error: Kubernetes configuration: ")
    assert "imaginary" in result.output and "secret-token" not in result.output


def test_malformed_yaml_in_the_kubeconfig_is_exit_2(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kc"
    kubeconfig.write_text("clusters: [unclosed\n")
    result = run("job", "status", "x", "--kubeconfig", str(kubeconfig))
    assert result.exit_code == 2
    assert result.output.startswith("Error: Kubernetes configuration: ")
    assert len(result.output.splitlines()) == 1


def test_scale_needs_either_auto_or_a_number() -> None:
    assert run("job", "scale", "x").exit_code == 2
    assert run("job", "scale", "x", "--auto", "-p", "3").exit_code == 2
    result = run("job", "scale", "x", "--auto", "--min", "5", "--max", "2")
    assert result.exit_code == 2
    assert "--min 5 is above --max 2" in result.output


# -- the scaling rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outstanding", "holding", "per_pod", "low", "high", "expected"),
    [
        (250, 0, 100, 1, 10, 3),  # ceil(250 / 100)
        (200, 0, 100, 1, 10, 2),  # exact multiple: no extra pod
        (5000, 0, 100, 1, 10, 10),  # capped by max
        (0, 0, 100, 1, 10, 1),  # nothing left: min
        (0, 0, 100, 0, 10, 0),  # min 0 lets it reach zero
        (3, 6, 100, 1, 10, 6),  # in-flight work keeps its pods
        (50, 12, 1, 1, 10, 12),  # even above max: lowering would kill pods mid-item
    ],
)
def test_desired_parallelism(
    outstanding: int, holding: int, per_pod: int, low: int, high: int, expected: int
) -> None:
    assert desired_parallelism(outstanding, holding, per_pod, low, high) == expected


def lease_by(worker: str) -> LeaseInfo:
    return LeaseInfo(id="1", attempt=1, worker=worker, leased_at_ms=0, deadline_ms=1)


def test_holding_pods_match_worker_names_to_pod_names_as_whole_tokens() -> None:
    holders = [lease_by(w) for w in ("job-aaaaa", "job-aaaaa:2", "7@job-bbbbb", "job-ccccc-x", "laptop", "")]
    assert holding_pods(holders, {"job-aaaaa", "job-bbbbb", "job-ccccc"}) == {"job-aaaaa", "job-bbbbb"}
    # Without the pod list every distinct worker counts, the safe side.
    assert len(holding_pods(holders, None)) == 5


# -- progress figures ---------------------------------------------------------------------------------


def test_rate_is_items_per_second_over_the_window() -> None:
    rate = Rate(window_secs=10)
    assert rate.per_sec() is None
    rate.add(0.0, 0)
    rate.add(2.0, 100)
    assert rate.per_sec() == 50.0
    rate.add(20.0, 200)  # the first samples fall out of the window
    assert rate.per_sec() == 100 / 18


@pytest.mark.parametrize(
    ("outstanding", "rate", "text"),
    [
        (0, None, "0s"),
        (10, None, "?"),
        (10, 0.0, "?"),
        (100, 10.0, "10.0s"),
        (900, 2.0, "7m30s"),
        (7300, 1.0, "2h01m"),
    ],
)
def test_eta_text(outstanding: int, rate: float | None, text: str) -> None:
    assert eta_text(outstanding, rate) == text


def test_job_without_the_kube_extra_exits_2_naming_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "kubernetes", None)  # what `import kubernetes` meets without it
    for args in (["status", "q"], ["submit", "q", "--image", "i", "-p", "1", "--dry-run", "--", "true"]):
        result = CliRunner().invoke(main, ["job", *args])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [
            "Error: rediswq job needs the Kubernetes client: pip install 'rediswq-k8s[kube]'"
        ]
    assert CliRunner().invoke(main, ["job", "submit", "--help"]).exit_code == 0
