"""Every relative link in the README and docs/ leads somewhere: the file exists, and a
`#section` names a heading of that file (GitHub's anchor rules)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


@functools.cache
def anchors(page: Path) -> frozenset[str]:
    """The anchors GitHub gives the headings of `page`: lowercase, punctuation dropped,
    spaces to dashes, a repeated one numbered (read once per page, however many links)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(f"{slug}-{count}" if count else slug)
    return frozenset(found)


def links(page: Path) -> list[str]:
    """Relative link targets of `page`, outside code blocks."""
    return [
        target
        for target in LINK.findall(FENCE.sub("", page.read_text()))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)
    ]


def shown(path: Path) -> str:
    """`path` relative to the repository where it lies inside it, else as it is."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {shown(linked)}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_anchors_follow_githubs_rules(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## Where it runs (UTC), today\n\n## Where it runs (UTC), today\n")
    assert anchors(page) == {"title", "where-it-runs-utc-today", "where-it-runs-utc-today-1"}
    assert "where-it-runs" not in anchors(page)


def test_a_missing_target_outside_the_repository_is_named_whole(tmp_path: Path) -> None:
    assert shown(ROOT / "docs" / "x.md") == "docs/x.md"
    assert shown(tmp_path / "x.md") == str(tmp_path / "x.md")
