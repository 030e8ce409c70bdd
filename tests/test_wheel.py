"""The build steps the Dockerfile runs, without a container engine.

The wheel is built from a copy of exactly the files the image's build context holds (the
.dockerignore allow-list), so a file that only works from the source tree fails here rather than in
the image. It is installed, not editable, into a fresh venv, and the CLI is run from there.

The dependencies' wheels are kept in a wheelhouse under ~/.cache/rediswq-tests, keyed by the wheel's
requirements and the interpreter, and refreshed weekly: pip revalidates every index page with PyPI,
which costs more than the rest of this module. The image build resolves from PyPI every time its
pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import venv
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rediswq-tests"
WHEELHOUSE_MAX_AGE_SECS = 7 * 24 * 3600
# Every top-level package the wheel installs (each source folder under a name of its own).
PACKAGES = ("rediswq", "rediswq_kit", "rediswq_producer", "rediswq_worker", "rediswq_cli")

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Built:
    src: Path
    wheel: Path
    venv: Path
    workdir: Path

    @property
    def names(self) -> set[str]:
        with zipfile.ZipFile(self.wheel) as zf:
            return set(zf.namelist())

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv from a directory outside the repo, so nothing imports from it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDISWQ_", "REDIS_URL"))}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return subprocess.run(
            list(args), cwd=self.workdir, env=env, capture_output=True, text=True, timeout=60
        )


def _copy_build_context(dest: Path) -> None:
    """What .dockerignore lets into the image's build context (its `!` lines), less the Dockerfile."""
    names = [
        line[1:].strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]")
    for name in names:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--quiet", *args], check=True, timeout=240)


def _wheelhouse(wheel: Path) -> Path:
    """Wheels of every dependency of `wheel`, fetched from PyPI once a week at most."""
    with zipfile.ZipFile(wheel) as zf:
        metadata = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        requires = sorted(
            line for line in zf.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")
        )
    key = hashlib.sha256("\n".join([sys.version, sysconfig.get_platform(), *requires]).encode()).hexdigest()
    house = CACHE / "wheelhouse" / key[:16]
    if house.is_dir() and time.time() - house.stat().st_mtime < WHEELHOUSE_MAX_AGE_SECS:
        return house
    house.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=house.parent, prefix=f"{house.name}.partial-"))
    _pip("wheel", "--wheel-dir", str(partial), str(wheel))
    for ours in partial.glob("rediswq_k8s-*.whl"):
        ours.unlink()
    shutil.rmtree(house, ignore_errors=True)
    try:
        partial.rename(house)
    except OSError:  # another test session finished first: its wheelhouse serves as well
        shutil.rmtree(partial, ignore_errors=True)
    return house


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("wheel")
    src, wheels, env_dir, workdir = root / "src", root / "wheels", root / "venv", root / "work"
    src.mkdir()
    workdir.mkdir()
    _copy_build_context(src)
    # The Dockerfile's build step.
    _pip("wheel", "--no-deps", "--wheel-dir", str(wheels), str(src))
    (wheel,) = wheels.glob("rediswq_k8s-*.whl")
    # A bare venv filled by this interpreter's pip, from the wheelhouse only; bytecode is not
    # compiled, as nothing here needs it.
    venv.EnvBuilder(with_pip=False).create(env_dir)
    _pip(
        "--python",
        str(env_dir / "bin" / "python"),
        "install",
        "--no-compile",
        "--no-index",
        "--find-links",
        str(_wheelhouse(wheel)),
        str(wheel),
    )
    yield Built(src, wheel, env_dir, workdir)


def _source_files(built: Built, folder: str, *patterns: str) -> set[str]:
    base = built.src / folder
    return {p.relative_to(base).as_posix() for pattern in patterns for p in base.rglob(pattern)}


def test_wheel_carries_every_lua_script(built: Built) -> None:
    scripts = _source_files(built, "rediswq/lua", "*.lua")
    assert scripts, "no Lua scripts in rediswq/lua"
    in_wheel = {n.removeprefix("rediswq/lua/") for n in built.names if n.startswith("rediswq/lua/")}
    assert scripts <= in_wheel


def test_wheel_carries_every_python_module_of_the_five_packages(built: Built) -> None:
    # Each source folder and the name it installs under.
    installed = {
        "rediswq": "rediswq",
        "kit": "rediswq_kit",
        "producer": "rediswq_producer",
        "worker": "rediswq_worker",
        "cli": "rediswq_cli",
    }
    for folder, name_in_wheel in installed.items():
        modules = {f"{name_in_wheel}/{name}" for name in _source_files(built, folder, "*.py")}
        assert modules, f"no modules in {folder}/"
        missing = modules - built.names
        assert not missing, f"modules left out of the wheel (see packages in pyproject.toml): {missing}"


def test_wheel_carries_py_typed_for_every_package(built: Built) -> None:
    typed = {f"{name}/py.typed" for name in PACKAGES}
    assert typed <= built.names


def test_wheel_installs_no_top_level_worker_or_producer_package(built: Built) -> None:
    tops = {name.split("/", 1)[0] for name in built.names if not name.startswith("rediswq_k8s-")}
    assert tops == set(PACKAGES)


def test_wheel_carries_every_k8s_manifest_under_the_kube_commands(built: Built) -> None:
    manifests = _source_files(built, "k8s", "*.yaml", "*.yml")
    assert manifests, "k8s/ has no manifests"
    prefix = "rediswq_cli/kube/manifests/"
    in_wheel = {n.removeprefix(prefix) for n in built.names if n.startswith(prefix)}
    missing = manifests - in_wheel
    assert not missing, f"k8s files left out of the wheel (see package-data in pyproject.toml): {missing}"


def test_installed_package_is_the_wheel_not_the_source_tree(built: Built) -> None:
    result = built.run(
        "python",
        "-c",
        f"import {', '.join(PACKAGES)}\nprint({', '.join(name + '.__file__' for name in PACKAGES)})",
    )
    assert result.returncode == 0, result.stderr
    site_packages = next((built.venv / "lib").glob("python3*/site-packages"))
    for path in result.stdout.split():
        assert Path(path).is_relative_to(site_packages), path


def test_installed_manifests_are_readable_as_package_resources(built: Built) -> None:
    code = (
        "from importlib.resources import files\n"
        "def walk(node, prefix=''):\n"
        "    for child in node.iterdir():\n"
        "        if child.is_dir():\n"
        "            yield from walk(child, prefix + child.name + '/')\n"
        "        elif child.name.endswith(('.yaml', '.yml')):\n"
        "            yield prefix + child.name\n"
        "print('\\n'.join(walk(files('rediswq_cli.kube.manifests'))))\n"
    )
    result = built.run("python", "-c", code)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == _source_files(built, "k8s", "*.yaml", "*.yml")


def test_rediswq_help_runs_from_the_installed_wheel(built: Built) -> None:
    result = built.run("rediswq", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: rediswq")
    commands = result.stdout.split("Commands:", 1)[1].split()
    assert "work" in commands


def test_rediswq_work_help_runs_from_the_installed_wheel(built: Built) -> None:
    result = built.run("rediswq", "work", "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: rediswq work" in result.stdout


def test_installed_version_is_the_wheels_version(built: Built) -> None:
    version = built.wheel.name.split("-")[1]
    result = built.run("rediswq", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == version


def test_a_users_worker_py_is_the_handler_module_not_a_package_of_ours(built: Built, redis_url: str) -> None:
    """The Kubernetes docs name the worker's file worker.py: beside it, --handler worker:handle loads it."""
    (built.workdir / "worker.py").write_text(
        "import pathlib\n\ndef handle(lease):\n"
        "    with pathlib.Path('done.txt').open('a') as f:\n"
        "        f.write(lease.payload.decode() + '\\n')\n"
    )
    (built.workdir / "producer.py").write_text("raise SystemExit('a user module named producer.py')\n")
    name = f"wheel-{os.getpid()}"
    put = built.run("rediswq", "--url", redis_url, "enqueue", name, "a", "b")
    assert put.returncode == 0, put.stderr
    done = built.run("rediswq", "--url", redis_url, "work", name, "--handler", "worker:handle")
    assert done.returncode == 0, done.stderr
    assert sorted((built.workdir / "done.txt").read_text().split()) == ["a", "b"]


def test_the_wheel_without_extras_has_no_kubernetes_and_job_says_how_to_get_it(built: Built) -> None:
    assert built.run("python", "-c", "import kubernetes").returncode == 1
    result = built.run("rediswq", "job", "status", "q")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Error: rediswq job needs the Kubernetes client: pip install 'rediswq-k8s[kube]'"
    )
