"""The docs' code listings are the code (issue 12 item 6).

A listing marked ``<!-- code: path::function -->`` in docs/ is written by
``scripts/sync_listings.py`` from the function's source; this test fails when one differs
from what the script would write (the code changed, or someone edited the copy), and when
a "The code, line by line" section has no marker (a hand copy, which drifts).
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sync_listings", ROOT / "scripts" / "sync_listings.py")
listings = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(listings)

PAGES = listings.pages()


def test_the_derivation_pages_have_marked_listings():
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    for page in ("docs/layers/linear.md", "docs/layers/attention.md", "docs/layers/layernorm.md",
                 "docs/model/shared-layer-gradient.md"):
        assert page in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_listing_is_the_code(page):
    text = page.read_text(encoding="utf-8")
    assert text == listings.sync(text, str(page)), "run: python scripts/sync_listings.py"


def test_every_line_by_line_section_is_a_marked_listing():
    unmarked = []
    for page in sorted((ROOT / "docs").rglob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if re.match(r"#+ The code, line by line", line):
                block = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```python"), None)
                if block is None or not listings.MARKER.match(lines[block - 1].strip()):
                    unmarked.append(f"{page.relative_to(ROOT)}:{i + 1}")
    assert unmarked == []


def test_linear_listing_shows_the_reshape():
    """The hand copy said ``dx = dy @ W``; the code reshapes to one 2-d GEMM."""
    text = (ROOT / "docs" / "layers" / "linear.md").read_text(encoding="utf-8")
    assert "dx = matmul(dy2, W).reshape(" in text and "\ndx = dy @ W " not in text


def test_a_listing_that_drifted_is_caught(tmp_path):
    page = (ROOT / "docs" / "layers" / "linear.md").read_text(encoding="utf-8")
    drifted = page.replace("dx = matmul(dy2, W).reshape(", "dx = matmul(dy, W).reshape(", 1)
    assert drifted != page and listings.sync(drifted) == page
