"""The command-line reference (docs/cli.md), generated from the commands' own --help.

`python tests/clidoc.py` rewrites the section of docs/cli.md between the `cli` markers;
tests/test_clidoc.py fails when docs/cli.md and --help disagree.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click
from click.testing import CliRunner
from docsection import DocSection

from rediswq_cli.main import main

SECTION = DocSection("cli.md", "cli")


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
    return SECTION.read()


if __name__ == "__main__":
    SECTION.write(render())
    sys.exit(0)
