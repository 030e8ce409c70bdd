"""The README's command-line reference matches what the commands say of themselves."""

from __future__ import annotations

from clidoc import command_paths, readme_section, render


def test_every_command_is_in_the_readme_reference_as_its_help_says() -> None:
    assert len(list(command_paths())) > 10
    assert readme_section() == render(), "README is stale: run `python tests/clidoc.py`"
