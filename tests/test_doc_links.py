"""Every relative Markdown link of the project's pages leads somewhere: a file that exists, and a
heading that exists when the link names one (`docs/cli.md#shell-completion`, `#quick-start`).

The README sends readers to docs/*.md for the long parts and the pages link back and to each other;
a section renamed or moved must not leave a link pointing at nothing. Links to web addresses are not
checked (the suite runs offline).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {"build", "node_modules", "__pycache__"}
FENCE = re.compile(r"^```.*?^```[^\n]*$", re.DOTALL | re.MULTILINE)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.MULTILINE)


def pages() -> list[Path]:
    """The project's Markdown files: README.md, docs/*.md and the other READMEs (no venv, no build)."""
    return sorted(
        path
        for path in REPO.rglob("*.md")
        if not any(part.startswith(".") or part in SKIPPED_DIRS for part in path.relative_to(REPO).parts)
    )


def prose(text: str) -> str:
    """The text without code blocks and code spans, where `[x](y)` is code, not a link."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a page: lower case, punctuation dropped, spaces to
    hyphens, and -1, -2 ... after a repeated one."""
    seen: dict[str, int] = {}
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked}")
    return broken


def test_the_readme_and_the_docs_pages_are_among_the_pages_checked() -> None:
    checked = {path.relative_to(REPO).as_posix() for path in pages()}
    assert {"README.md", "docs/cli.md", "docs/security.md", "k8s/README.md"} <= checked


@pytest.mark.parametrize("page", pages(), ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_of_a_page_leads_to_a_file_and_heading_that_exist(page: Path) -> None:
    assert broken_links(page) == []


def test_a_link_to_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## Shell completion\n", encoding="utf-8")
    page.write_text(
        "# Page\n\n[ok](other.md#shell-completion) [ok](#page) `[code](nowhere.md)`\n"
        "[gone](missing.md) [no heading](other.md#nothing) ![picture](missing.png)\n",
        encoding="utf-8",
    )
    assert [line.split(":")[0] for line in broken_links(page)] == [
        "missing.md",
        "other.md#nothing",
        "missing.png",
    ]
