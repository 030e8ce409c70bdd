"""The repository carries what its tests, scripts and build read: a fresh clone passes its own suite.

A test once read KEDA's CRDs from a folder beside the checkout that only the developers' machines had;
a user's clone failed two tests. These tests look for paths that leave the checkout, and run the tests
that read the repository's data from a copy of the repository alone (with nothing beside it).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from test_k8s_support import ROOT, kubectl

# What a checkout holds that is not the project: environments, caches, build output (all git-ignored).
NOT_THE_PROJECT = {
    ".git", ".venv", ".cache", "build", "dist", "__pycache__", ".pytest_cache", ".mypy_cache",
    ".ruff_cache", ".hypothesis", "results",
}  # fmt: skip
# Code and build files, where a path out of the checkout would be read.
CODE = {".py", ".sh", ".toml", ".cfg", ".ini", ".txt"}
CODE_NAMES = {"Dockerfile", "run"}
# A path that climbs out of the repository's root (tests/x.py's parent.parent is the root), or an
# absolute path into the machine the project was written on.
ESCAPES = re.compile(r"ROOT\.parent|\.parent\.parent\.parent|[\"'](\.\./)+|/work/|shared/schemas")
# A relative reference in a manifest (kustomize's resources, components, files).
RELATIVE = re.compile(r"(?:\.\./)+[\w./-]*")


def project_files() -> Iterator[Path]:
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [
            d for d in subdirectories if d not in NOT_THE_PROJECT and not d.endswith(".egg-info")
        ]
        for name in files:
            yield Path(directory, name)


def test_no_code_script_or_build_file_names_a_path_outside_the_checkout() -> None:
    me = Path(__file__).resolve()
    found = []
    for path in project_files():
        if path == me or (path.suffix not in CODE and path.name not in CODE_NAMES):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if ESCAPES.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_every_relative_path_in_a_manifest_stays_inside_the_checkout() -> None:
    checked, outside = 0, []
    for path in project_files():
        if path.suffix not in {".yaml", ".yml"} or "data" in path.relative_to(ROOT).parts:
            continue
        for reference in RELATIVE.findall(path.read_text(encoding="utf-8")):
            checked += 1
            if not (path.parent / reference).resolve().is_relative_to(ROOT):
                outside.append(f"{path.relative_to(ROOT)}: {reference}")
    assert checked > 0  # the overlays refer to ../../base: the pattern finds them
    assert outside == []


def test_the_tests_that_read_the_repositorys_data_pass_in_a_copy_with_nothing_beside_it(
    tmp_path: Path,
) -> None:
    """The KEDA schema tests and the checks above, from a copy of the project's files in an empty folder."""
    copy = tmp_path / "clone"
    shutil.copytree(ROOT, copy, ignore=lambda _dir, names: [n for n in names if n in NOT_THE_PROJECT])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-q",
         "tests/test_k8s_metrics.py::test_the_keda_files_and_the_autoscaled_build_pass_kedas_crd_schemas",
         "tests/test_k8s_metrics.py::test_the_crd_check_refuses_a_misspelled_field_a_wrong_type_and_a_bad_enum",
         "tests/test_self_contained.py::test_no_code_script_or_build_file_names_a_path_outside_the_checkout",
         "tests/test_self_contained.py::test_every_relative_path_in_a_manifest_stays_inside_the_checkout"],
        cwd=copy,
        env={**os.environ, "REDISWQ_KUBECTL": str(kubectl())},
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout, done.stdout[-3000:]
