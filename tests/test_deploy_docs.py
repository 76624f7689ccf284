"""Every relative link in README.md and docs/*.md points at a file or folder of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

# [text](target) and [text](target "title"); images too. Reference definitions: [id]: target
_INLINE = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def links(markdown: str) -> list[str]:
    """Link targets outside code blocks and code spans, in order of appearance."""
    prose = _CODE_SPAN.sub("", _FENCE.sub("", markdown))
    return [m.group(1) for m in _INLINE.finditer(prose)] + [
        m.group(1) for m in _REFERENCE.finditer(prose)
    ]


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in links(page.read_text(encoding="utf-8"))
        if not _EXTERNAL.match(target) and not target.startswith("#")
    ]


def test_the_pages_exist_and_have_relative_links() -> None:
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"README.md", "docs/architecture.md", "docs/guarantees.md"} <= names
    assert {"docs/benchmarks.md", "docs/operations.md"} <= names
    assert all(relative_links(page) for page in PAGES)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path = target.split("#", 1)[0]
        resolved = (page.parent / path).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_the_readme_links_to_the_docs_not_to_files_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/operations.md" in relative_links(ROOT / "README.md")
    for missing in ("DESIGN.md", "BENCHMARKS.md"):
        assert missing not in readme


def test_the_link_finder_sees_links_and_skips_code() -> None:
    text = (
        '[a](x.md) ![img](p.png "t") [ext](https://e.org) [in](#top)\n'
        "`[not](code.md)`\n```\n[not](fenced.md)\n```\n[ref]: docs/y.md\n"
    )
    assert links(text) == ["x.md", "p.png", "https://e.org", "#top", "docs/y.md"]
