"""docs/security.md shows each role's rules exactly as `rediswq acl` prints them."""

from __future__ import annotations

from acldoc import doc_section, render


def test_docs_security_md_shows_each_roles_rules_as_rediswq_acl_prints_them() -> None:
    assert "user rediswq-worker reset on" in render()
    assert doc_section() == render(), "docs/security.md is stale: run `python tests/acldoc.py`"
