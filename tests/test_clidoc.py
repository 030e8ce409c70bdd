"""The command-line reference (docs/cli.md) matches what the commands say of themselves."""

from __future__ import annotations

from clidoc import command_paths, doc_section, render


def test_every_command_is_in_the_reference_in_docs_cli_md_as_its_help_says() -> None:
    assert len(list(command_paths())) > 10
    assert doc_section() == render(), "docs/cli.md is stale: run `python tests/clidoc.py`"
