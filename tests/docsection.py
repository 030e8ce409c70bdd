"""A generated section of a doc page, between `<!-- BEGIN name -->` and `<!-- END name -->` markers.

tests/clidoc.py (docs/cli.md from --help) and tests/acldoc.py (docs/security.md from `rediswq acl`)
each render their section; this reads what the page holds and rewrites it.
"""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


class DocSection:
    def __init__(self, page: str, name: str) -> None:
        self.path = DOCS / page
        self.pattern = re.compile(rf"(<!-- BEGIN {name} -->\n)(.*?)(<!-- END {name} -->)", re.S)

    def read(self) -> str:
        """What the page holds between the markers ("" without them)."""
        found = self.pattern.search(self.path.read_text(encoding="utf-8"))
        return found.group(2) if found else ""

    def write(self, rendered: str) -> None:
        text = self.path.read_text(encoding="utf-8")
        self.path.write_text(
            self.pattern.sub(lambda m: m.group(1) + rendered + m.group(3), text), encoding="utf-8"
        )
