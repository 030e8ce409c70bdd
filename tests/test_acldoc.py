"""The README's security section shows each role's rules exactly as `rediswq acl` prints them."""

from __future__ import annotations

from acldoc import readme_section, render


def test_the_readme_shows_each_roles_rules_as_rediswq_acl_prints_them() -> None:
    assert "user rediswq-worker reset on" in render()
    assert readme_section() == render(), "README is stale: run `python tests/acldoc.py`"
