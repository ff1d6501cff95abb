"""The README stays a front door (under 200 lines) and every link between it and docs/ leads
somewhere: the file exists and, for `file#anchor`, the page has that heading."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import PROJ_ROOT

PAGES = [PROJ_ROOT / "README.md", *sorted((PROJ_ROOT / "docs").glob("*.md"))]
PAGES.append(PROJ_ROOT / "serve" / "README.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchor for each heading of `page`."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


def test_readme_is_short() -> None:
    assert len((PROJ_ROOT / "README.md").read_text().splitlines()) < 200


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJ_ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(linked), f"{page.name}: no heading for #{anchor}"
