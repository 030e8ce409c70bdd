"""The image build's Python dependencies are pinned with hashes, and the pins agree with pyproject.toml.

The Dockerfile installs requirements/image.txt and build.txt with --require-hashes; here, without
building the image, each pin is checked against pyproject.toml's ranges, and pip (offline from the
index it is configured with, or PyPI in CI) resolves each file in hash-checking mode: every
dependency is pinned, and every hash matches a file the index serves.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PINS = ROOT / "requirements"
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", re.M)


def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())  # type: ignore[no-any-return]


def pins(name: str) -> dict[str, str]:
    text = (PINS / name).read_text()
    found = {m.group(1).lower().replace("_", "-"): m.group(2) for m in _PIN.finditer(text)}
    entries = [line for line in text.splitlines() if line and not line.startswith(("#", "    "))]
    assert len(found) == len(entries), f"{name}: a line without an exact pin and hash"
    return found


@pytest.mark.parametrize(("name", "section"), [("image.txt", "dependencies"), ("build.txt", "requires")])
def test_every_dependency_is_pinned_within_pyprojects_ranges(name: str, section: str) -> None:
    project = pyproject()
    if section == "dependencies":  # the image carries the metrics extra too
        wanted = [*project["project"][section], *project["project"]["optional-dependencies"]["metrics"]]
    else:
        wanted = project["build-system"][section]
    pinned = pins(name)
    for spec in wanted:
        req = Requirement(spec)
        key = req.name.lower().replace("_", "-")
        assert key in pinned, f"{req.name} is not pinned in {name}"
        assert req.specifier.contains(pinned[key]), f"{req.name}=={pinned[key]} is outside {req.specifier}"
        for extra in req.extras:  # redis[hiredis]: its extra's packages are pinned too
            assert extra in pinned, f"{req.name}[{extra}] is not pinned in {name}"


def test_the_dockerfile_installs_the_pins_with_hashes_and_builds_without_isolation() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements/image.txt requirements/build.txt ./" in dockerfile
    assert "/opt/rediswq/bin/pip install --require-hashes --only-binary :all: -r image.txt" in dockerfile
    assert "/opt/build/bin/pip install --require-hashes --only-binary :all: -r build.txt" in dockerfile
    assert "--no-build-isolation" in dockerfile
    # No other pip install reaches an index: the wheel goes in from its directory alone.
    commands = "\n".join(line for line in dockerfile.splitlines() if not line.lstrip().startswith("#"))
    installs = re.findall(r"pip install ([^\n\\]*)", commands)
    assert len(installs) == 3, installs
    assert all("--require-hashes" in i or "--no-index" in i for i in installs), installs
    assert "!requirements/" in (ROOT / ".dockerignore").read_text()


@pytest.mark.parametrize("name", ["image.txt", "build.txt"])
def test_pip_resolves_each_pin_file_in_hash_checking_mode(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--require-hashes",
         "--only-binary", ":all:", "--quiet", "--report", str(tmp_path / "r.json"), "-r", str(PINS / name)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_image_carries_no_kubernetes_client() -> None:
    """`rediswq work` never needs it; `rediswq job` runs outside the image, with the [kube] extra."""
    assert "kubernetes" not in pins("image.txt")
    assert "kubernetes" not in " ".join(pyproject()["project"]["dependencies"])
