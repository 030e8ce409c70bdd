"""The command-line reference (docs/cli.md), generated from the commands' own --help.

`python tests/clidoc.py` rewrites the section of docs/cli.md between the `cli` markers;
tests/test_clidoc.py fails when docs/cli.md and --help disagree.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from rediswq_cli.main import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
SECTION = re.compile(r"(<!-- BEGIN cli -->\n)(.*?)(<!-- END cli -->)", re.S)


def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        main, [*path, "--help"], prog_name="rediswq", terminal_width=100, env={"COLUMNS": "100"}
    )
    assert result.exit_code == 0, result.output
    return result.output.rstrip() + "\n"


def render() -> str:
    parts = ["Generated from `--help` by `python tests/clidoc.py` (a test checks they agree).\n\n"]
    for path in command_paths():
        title = " ".join(("rediswq", *path))
        parts.append(f"### `{title}`\n\n```text\n{help_text(path)}```\n\n")
    return "".join(parts)


def doc_section() -> str:
    found = SECTION.search(DOC.read_text(encoding="utf-8"))
    return found.group(2) if found else ""


def write() -> None:
    text = DOC.read_text(encoding="utf-8")
    DOC.write_text(SECTION.sub(lambda m: m.group(1) + render() + m.group(3), text), encoding="utf-8")


if __name__ == "__main__":
    write()
    sys.exit(0)
