"""The documentation site builds strictly, and derivations and functions link both ways.

* ``mkdocs build --strict`` (never with ``-q``: ``--strict -q`` exits 0 on a broken link)
  into a temporary directory: any broken link, unresolved API reference, page missing from
  the nav or docstring that fails to render is an error.
* Every derivation page in ``docs/layers/`` links to a function it derives (an API
  reference such as ``[layernorm_backward][minialbert.layers.layernorm.layernorm_backward]``),
  and every layer module's docstring links to its derivation page
  (``[docs/layers/layernorm.md](../layers/layernorm.md)``), which the API reference renders
  as a link: from any function to its derivation and back in one click.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
LAYER_DOCS = DOCS / "layers"
LAYER_SRC = ROOT / "minialbert" / "layers"

# An API reference to a minialbert object: [text][minialbert.x.y] (mkdocs-autorefs) or a
# Markdown link into the API pages: (../api/layers.md#minialbert.x.y).
API_REF = re.compile(r"\]\[(minialbert(?:\.\w+)+)\]|\]\([./]*api/\w+\.md#(minialbert(?:\.\w+)+)\)")
# A Markdown link from a docstring to a derivation page, relative to docs/api/*.md.
DERIVATION_LINK = re.compile(r"\]\(\.\./layers/([\w-]+)\.md(?:#[\w-]+)?\)")


def _layer_modules():
    return sorted(p for p in LAYER_SRC.glob("*.py") if not p.name.startswith("_"))


def _module_docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _public_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]


@pytest.mark.skipif(shutil.which("mkdocs") is None and
                    not (Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_jupyter")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    warnings = [line for line in log.splitlines() if line.lstrip().startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "site" / "api" / "layers" / "index.html").exists()


def test_every_layer_page_links_to_a_function():
    pages = sorted(LAYER_DOCS.glob("*.md"))
    if not pages:
        pytest.skip("no derivation pages in docs/layers yet")
    missing = []
    for page in pages:
        refs = [a or b for a, b in API_REF.findall(page.read_text(encoding="utf-8"))]
        if not any(r.startswith("minialbert.") and r.count(".") >= 2 for r in refs):
            missing.append(page.name)
    assert not missing, (f"these derivation pages link to no function (use an API reference, "
                         f"e.g. [layernorm_backward][minialbert.layers.layernorm.layernorm_backward]): "
                         f"{missing}")


@pytest.mark.parametrize("module", _layer_modules(), ids=lambda p: p.stem)
def test_every_layer_module_links_to_its_derivation(module):
    doc = _module_docstring(module)
    targets = DERIVATION_LINK.findall(doc)
    assert targets, (f"{module.name}: the module docstring must link to its derivation, "
                     f"e.g. 'Derivation: [docs/layers/{module.stem}.md](../layers/{module.stem}.md)'")
    for t in targets:
        page = LAYER_DOCS / f"{t}.md"
        assert page.exists(), f"{module.name} links to {page.relative_to(ROOT)}, which does not exist"
        # ... and the page links back to a function of this module
        refs = {a or b for a, b in API_REF.findall(page.read_text(encoding="utf-8"))}
        here = {f"minialbert.layers.{module.stem}.{f}" for f in _public_functions(module)}
        here |= {f"minialbert.layers.{f}" for f in _public_functions(module)}
        assert refs & here, (f"{page.relative_to(ROOT)} is linked from {module.name} but links back "
                             f"to none of its functions {sorted(_public_functions(module))}")
