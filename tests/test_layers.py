"""Imports run one way: rediswq <- rediswq_kit <- rediswq_producer, rediswq_worker <- rediswq_cli.

An AST walk over every module of the five source folders (no dependency: the rules are few, and a
failure names the file, the line and the rule). It checks:

- each layer imports nothing above it, and producer/ and worker/ nothing of each other;
- rediswq/ imports the standard library, redis (with hiredis) and msgpack only (no click, no command code);
- outside the package that owns it, nobody imports or uses a private name (`rediswq._x`,
  `from rediswq_kit import _y`);
- outside rediswq/, the library is used through its public surface only: the names in
  `rediswq.__all__`, and the public submodules (those that declare `__all__`) for their listed names;
- no string in rediswq/ (docstrings and comments aside) names a command-line option or subcommand;
- redis-py's topology types (redis.cluster's and redis.sentinel's: RedisCluster, ClusterNode,
  Sentinel, SentinelConnectionPool, MasterNotFoundError ...) are imported, tested with isinstance or
  issubclass, or caught, in the topology seam (rediswq/_topology/) only: everywhere else asks the seam.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Source folder -> the name it installs under (pyproject.toml's package-dir).
FOLDERS = {
    "rediswq": "rediswq",
    "kit": "rediswq_kit",
    "producer": "rediswq_producer",
    "worker": "rediswq_worker",
    "cli": "rediswq_cli",
}
OURS = set(FOLDERS.values())

# What each package may not import: everything above it, and its sibling.
FORBIDDEN = {
    "rediswq": OURS - {"rediswq"} | {"click"},
    "rediswq_kit": {"rediswq_producer", "rediswq_worker", "rediswq_cli"},
    "rediswq_producer": {"rediswq_worker", "rediswq_cli"},
    "rediswq_worker": {"rediswq_producer", "rediswq_cli"},
    "rediswq_cli": set(),
}
# Besides the standard library, the library's only dependencies (hiredis: redis[hiredis]'s parser).
LIBRARY_DEPENDENCIES = {"rediswq", "redis", "hiredis", "msgpack"}


@dataclass(frozen=True)
class Import:
    """One imported module (and the names taken from it, for `from M import a, b`) at a line."""

    path: Path
    line: int
    module: str
    names: tuple[str, ...]

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def sources(folder: str) -> list[Path]:
    return sorted(p for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def package_of(path: Path) -> str:
    return FOLDERS[path.relative_to(REPO).parts[0]]


def module_name(path: Path) -> str:
    parts = [package_of(path), *path.relative_to(REPO).with_suffix("").parts[1:]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, tree: ast.AST) -> Iterator[Import]:
    """Every import in the module, relative ones resolved, wherever it stands (TYPE_CHECKING too)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, ())
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                here = module_name(path).split(".")
                package = here if path.name == "__init__.py" else here[:-1]
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, module] if module else base)
            yield Import(path, node.lineno, module, tuple(alias.name for alias in node.names))


def parsed(folders: tuple[str, ...] = tuple(FOLDERS)) -> Iterator[tuple[Path, ast.Module]]:
    for folder in folders:
        for path in sources(folder):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def declared_all(tree: ast.Module) -> list[str] | None:
    """The module's `__all__`, or None when it declares none."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            return list(value)
    return None


def public_surface() -> tuple[set[str], dict[str, set[str]]]:
    """`rediswq.__all__`, and each public submodule (no `_` in its name, an `__all__`) with its names."""
    top: set[str] = set()
    submodules: dict[str, set[str]] = {}
    for path, tree in parsed(("rediswq",)):
        names = declared_all(tree)
        module = module_name(path)
        if module == "rediswq":
            top = set(names or [])
        elif names is not None and not any(part.startswith("_") for part in module.split(".")):
            submodules[module] = set(names)
    return top, submodules


def violations_of_layers() -> list[str]:
    found = []
    for path, tree in parsed():
        package = package_of(path)
        for imp in imports(path, tree):
            top = imp.module.split(".")[0]
            if top in FORBIDDEN[package]:
                found.append(f"{imp.where()}: {package} imports {imp.module} (a layer above it, or beside)")
            elif package == "rediswq" and top not in LIBRARY_DEPENDENCIES | set(sys.stdlib_module_names):
                found.append(f"{imp.where()}: the library imports {imp.module} (only redis and msgpack)")
    return found


def private_names(imp: Import) -> list[str]:
    """The private parts of an import: a `_module` on its path, or a `_name` taken from it."""
    parts = [p for p in imp.module.split(".")[1:] if p.startswith("_") and not p.startswith("__")]
    return parts + [n for n in imp.names if n.startswith("_") and not n.startswith("__")]


def violations_of_privacy() -> list[str]:
    top, submodules = public_surface()
    found = []
    for path, tree in parsed():
        package = package_of(path)
        for imp in imports(path, tree):
            owner = imp.module.split(".")[0]
            if owner not in OURS or owner == package:
                continue
            private = private_names(imp)
            if private:
                found.append(f"{imp.where()}: {imp.module} {private}: private to {owner}")
            elif owner == "rediswq":
                found += [f"{imp.where()}: {m}" for m in not_public(imp, top, submodules)]
        if package != "rediswq":
            found += [f"{path.relative_to(REPO)}:{m}" for m in attributes_not_public(tree, top, submodules)]
    return found


def not_public(imp: Import, top: set[str], submodules: dict[str, set[str]]) -> list[str]:
    if imp.module == "rediswq":
        return [f"rediswq.{n} is not in rediswq.__all__" for n in imp.names if n not in top | set(submodules)]
    if imp.module not in submodules:
        return [f"{imp.module} is not a public module of rediswq (one with an __all__)"]
    listed = submodules[imp.module]
    return [f"{imp.module}.{n} is not in its __all__" for n in imp.names if n not in listed]


def attributes_not_public(tree: ast.Module, top: set[str], submodules: dict[str, set[str]]) -> list[str]:
    """`rediswq.X` used as an attribute (after `import rediswq`) where X is not public."""
    public = top | {m.split(".", 1)[1] for m in submodules}
    return [
        f"{node.lineno}: rediswq.{node.attr} is not public"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "rediswq"
        and node.attr not in public
    ]


def test_no_package_imports_a_layer_above_it_or_beside_it() -> None:
    assert violations_of_layers() == []


def test_no_package_uses_another_ones_private_names_nor_more_of_rediswq_than_its_public_surface() -> None:
    assert violations_of_privacy() == []


def test_the_public_surface_is_what_the_package_really_exports() -> None:
    import rediswq

    top, submodules = public_surface()
    assert top == set(rediswq.__all__)
    assert {"rediswq.urls", "rediswq.acl"} <= set(submodules)
    for name in top:
        assert hasattr(rediswq, name), name


# A command-line option (`--allow-eviction`) or a subcommand (`rediswq work`) in a string.
CLI_WORDS = re.compile(r"(?<![\w-])--[a-z][a-z-]+|\brediswq (?:work|enqueue|install|stats|acl|job)\b")


def library_strings(tree: ast.Module) -> Iterator[ast.Constant]:
    """Every string constant but docstrings (those may explain how the command line uses a thing)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_no_library_message_names_a_command_line_option() -> None:
    found = [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
        for path, tree in parsed(("rediswq",))
        for node in library_strings(tree)
        if CLI_WORDS.search(node.value)
    ]
    assert found == []


# The seam: the one place that may know which kind of client it holds.
TOPOLOGY_SEAM = REPO / "rediswq" / "_topology"
TOPOLOGY_MODULES = ("redis.cluster", "redis.sentinel")


def topology_types() -> set[str]:
    """The names of the classes redis-py defines in its topology modules."""
    import importlib
    import inspect

    return {
        name
        for module in TOPOLOGY_MODULES
        for name, value in vars(importlib.import_module(module)).items()
        if inspect.isclass(value) and value.__module__ == module
    }


def names_in(node: ast.AST | None) -> Iterator[str]:
    """Every name (`X`) and attribute (`a.b.X`) inside an expression."""
    for sub in ast.walk(node) if node is not None else ():
        if isinstance(sub, ast.Name):
            yield sub.id
        elif isinstance(sub, ast.Attribute):
            yield sub.attr


def type_tests(tree: ast.AST) -> Iterator[tuple[int, ast.AST | None]]:
    """(line, the types) of every isinstance and issubclass call and every except clause."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 2:
            if node.func.id in ("isinstance", "issubclass"):
                yield node.lineno, node.args[1]
        elif isinstance(node, ast.ExceptHandler):
            yield node.lineno, node.type


def violations_of_the_topology_seam() -> list[str]:
    types = topology_types()
    found = []
    for path, tree in parsed():
        if path.is_relative_to(TOPOLOGY_SEAM):
            continue
        where = path.relative_to(REPO)
        found += [
            f"{imp.where()}: imports {imp.module}: ask the topology seam (rediswq/_topology/) instead"
            for imp in imports(path, tree)
            if imp.module in TOPOLOGY_MODULES
            or (imp.module == "redis" and set(imp.names) & {"cluster", "sentinel"})
        ]
        for line, tested in type_tests(tree):
            named = sorted(set(names_in(tested)) & types)
            if named:
                found.append(f"{where}:{line}: tests the client's type ({', '.join(named)}): ask the seam")
    return found


def test_only_the_topology_seam_knows_redis_py_s_topology_types() -> None:
    assert violations_of_the_topology_seam() == []


def with_probe(monkeypatch: pytest.MonkeyPatch, folder: str, code: str, under: str = "") -> None:
    """The walk sees one more module in `folder` (in its subfolder `under`), `_probe.py`, holding
    `code` (no file is written)."""
    probe = REPO / folder / under / "_probe.py"
    real_sources, real_read = sources, Path.read_text
    monkeypatch.setattr(
        sys.modules[__name__],
        "sources",
        lambda name: [*real_sources(name), probe] if name == folder else real_sources(name),
    )
    monkeypatch.setattr(Path, "read_text", lambda p, **kw: code if p == probe else real_read(p, **kw))


@pytest.mark.parametrize(
    ("folder", "code", "rule"),
    [
        ("worker", "from rediswq_cli.main import main", "a layer above it"),
        ("producer", "import rediswq_worker.runtime", "a layer above it, or beside"),
        ("kit", "from rediswq_producer import acl", "a layer above it"),
        ("rediswq", "import click", "a layer above it"),
        ("rediswq", "import yaml", "only redis and msgpack"),
    ],
)
def test_the_layer_check_catches_an_upward_import(
    folder: str, code: str, rule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_probe(monkeypatch, folder, code)
    found = violations_of_layers()
    assert len(found) == 1 and rule in found[0] and "_probe.py:1" in found[0], found


@pytest.mark.parametrize(
    "code",
    [
        "from rediswq.queue import Until",
        "from rediswq._url import redact",
        "import rediswq._keys",
        "from rediswq import url_secrets",
        "from rediswq_kit import _loopback_address",
        "import rediswq\nrediswq.acl_rules('q', 'worker')",
    ],
)
def test_the_privacy_check_catches_a_private_or_unlisted_name(
    code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_probe(monkeypatch, "worker", code)
    found = violations_of_privacy()
    assert len(found) == 1 and "_probe.py" in found[0], found


@pytest.mark.parametrize(
    ("folder", "code"),
    [
        ("rediswq", "import redis\nisinstance(c, redis.cluster.RedisCluster)"),
        (
            "rediswq",
            "import redis\nisinstance(pool, (redis.ConnectionPool, redis.sentinel.SentinelConnectionPool))",
        ),
        ("producer", "from redis.cluster import ClusterNode"),
        ("worker", "import redis.sentinel"),
        ("rediswq", "import redis\ntry:\n    pass\nexcept redis.sentinel.MasterNotFoundError:\n    pass"),
    ],
)
def test_the_seam_check_catches_a_topology_type_outside_the_seam(
    folder: str, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_probe(monkeypatch, folder, code)
    found = violations_of_the_topology_seam()
    assert len(found) == 1 and "_probe.py" in found[0], found


def test_the_seam_itself_may_test_the_client_s_type(monkeypatch: pytest.MonkeyPatch) -> None:
    with_probe(
        monkeypatch,
        "rediswq",
        "from redis.cluster import RedisCluster\nisinstance(c, RedisCluster)",
        "_topology",
    )
    assert violations_of_the_topology_seam() == []


def test_the_worker_runtime_reports_an_ending_and_only_the_command_picks_the_exit_code() -> None:
    """worker/runtime/ is usable inside a custom worker: it names no exit code; worker/work.py maps."""
    found = [
        f"{imp.where()}: {name}"
        for path, tree in parsed(("worker",))
        if "runtime" in path.relative_to(REPO).parts
        for imp in imports(path, tree)
        for name in imp.names
        if name.startswith("EXIT_")
    ]
    assert found == []
