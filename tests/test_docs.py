"""The documentation site builds strictly, and derivations and code link both ways.

* ``mkdocs build --strict`` (never with ``-q``: ``--strict -q`` exits 0 on a broken link)
  into a temporary directory: any broken link, unresolved API reference, page missing from
  the nav or docstring that fails to render is an error.
* Every derivation page (``docs/layers/``, ``docs/model/``) links to a function or class it
  derives (an API reference such as
  ``[layernorm_backward][minialbert.layers.layernorm.layernorm_backward]``), and every layer
  and model module's docstring links to its derivation page
  (``[docs/layers/layernorm.md](../layers/layernorm.md)``, relative to ``docs/api/``), which
  the API reference renders as a link: from any function to its derivation and back in one
  click.
"""
from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import pytest

import sitebuild  # tests/sitebuild.py

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PKG = ROOT / "minialbert"
DERIVATION_DIRS = ("layers", "model")
# modules whose docstring must link to a derivation page
DERIVED_MODULES = sorted([p for p in (PKG / "layers").glob("*.py") if not p.name.startswith("_")]
                         + [PKG / "config.py", PKG / "model.py", PKG / "heads.py"])

# An API reference to a minialbert object: [text][minialbert.x.y] (mkdocs-autorefs) or a
# Markdown link into the API pages: (../api/layers.md#minialbert.x.y).
API_REF = re.compile(r"\]\[(minialbert(?:\.\w+)+)\]|\]\([./]*api/\w+\.md#(minialbert(?:\.\w+)+)\)")
# A Markdown link from a docstring to a derivation page, relative to docs/api/*.md.
SCRIPT_SRC = re.compile(r"""<script\b[^>]*\bsrc=["']([^"']*)["']""", re.I)
DERIVATION_LINK = re.compile(r"\]\(\.\./((?:%s)/[\w-]+)\.md(?:#[\w-]+)?\)" % "|".join(DERIVATION_DIRS))


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _module_docstring(path: Path) -> str:
    return ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""


def _public_names(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
            and not n.name.startswith("_")]


def _refs(page: Path) -> set[str]:
    return {a or b for a, b in API_REF.findall(page.read_text(encoding="utf-8"))}


@pytest.mark.skipif(shutil.which("mkdocs") is None and
                    not (Path(sys.executable).parent / "mkdocs").exists(),
                    reason="mkdocs is not installed (pip install -e '.[docs]')")
def test_site_builds_strictly():
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("mkdocs_jupyter")
    # mkdocs build --strict, no warning (shared with tests/test_browser.py: built once)
    site = sitebuild.build_site(with_outputs=False).root
    api_layers = site / "api" / "layers" / "index.html"
    assert api_layers.exists()
    # math in a raw docstring (layernorm_backward's $$...$$) reaches MathJax through arithmatex
    assert 'class="arithmatex"' in api_layers.read_text(encoding="utf-8"), \
        "the API reference renders no math: is pymdownx.arithmatex (generic) still configured?"
    # offline: every script a page loads is the site's own (no CDN), MathJax included
    assert (site / "javascripts" / "mathjax" / "tex-mml-chtml.js").is_file(), \
        "MathJax is not shipped with the site (mkdocs_hooks.py copies it from django-static-mathjax)"
    outside = sorted({f"{page.relative_to(site)}: {src}" for page in site.rglob("*.html")
                      for src in SCRIPT_SRC.findall(page.read_text(encoding="utf-8"))
                      if re.match(r"(?i)([a-z][a-z0-9+.-]*:|//)", src)})
    assert not outside, "pages load scripts from outside the site (no network in a lab):\n" + "\n".join(outside[:10])


@pytest.mark.parametrize("folder", DERIVATION_DIRS)
def test_every_derivation_page_links_to_code(folder):
    pages = sorted((DOCS / folder).glob("*.md"))
    assert pages, f"no derivation pages in docs/{folder}"
    missing = [p.name for p in pages if not any(r.count(".") >= 2 for r in _refs(p))]
    assert not missing, (f"these derivation pages link to no function (use an API reference, e.g. "
                         f"[layernorm_backward][minialbert.layers.layernorm.layernorm_backward]): {missing}")


@pytest.mark.parametrize("module", DERIVED_MODULES, ids=lambda p: p.stem)
def test_every_module_links_to_its_derivation(module):
    doc = _module_docstring(module)
    targets = DERIVATION_LINK.findall(doc)
    assert targets, (f"{module.name}: the module docstring must link to its derivation, e.g. "
                     f"'Derivation: [docs/layers/{module.stem}.md](../layers/{module.stem}.md)'")
    name = _module_name(module)
    here = {f"{name}.{f}" for f in _public_names(module)} | {name}
    if name.startswith("minialbert.layers."):      # re-exported: minialbert.layers.<function>
        here |= {f"minialbert.layers.{f}" for f in _public_names(module)}
    for t in targets:
        page = DOCS / f"{t}.md"
        assert page.exists(), f"{module.name} links to {page.relative_to(ROOT)}, which does not exist"
        refs = _refs(page)
        back = {r for r in refs if r in here or any(r.startswith(h + ".") for h in here)}
        assert back, (f"{page.relative_to(ROOT)} is linked from {module.name} but links back to none "
                      f"of its functions or classes {sorted(_public_names(module))}")


def _pair_functions():
    out = []
    for module in DERIVED_MODULES:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        out += [(module, n) for n in tree.body if isinstance(n, ast.FunctionDef)
                and n.name.endswith(("_forward", "_backward")) and not n.name.startswith("_")]
    return out


@pytest.mark.parametrize("module,fn", _pair_functions(), ids=lambda x: getattr(x, "name", None))
def test_every_forward_backward_function_links_to_its_derivation(module, fn):
    """One click each way from the function's own API entry, not only from its module's."""
    targets = DERIVATION_LINK.findall(ast.get_docstring(fn) or "")
    assert targets, (f"{module.name}: {fn.name}'s docstring must link to its derivation, e.g. "
                     f"'Derivation: [docs/layers/{module.stem}.md](../layers/{module.stem}.md).'")
    name = _module_name(module)
    for t in targets:
        page = DOCS / f"{t}.md"
        assert page.exists(), f"{fn.name} links to {page.relative_to(ROOT)}, which does not exist"
        refs = _refs(page)
        assert {f"{name}.{fn.name}", f"minialbert.layers.{fn.name}"} & refs, \
            f"{page.relative_to(ROOT)} is linked from {fn.name} but does not link back to it"


def test_getting_started_python_runs(tmp_path, monkeypatch):
    """The library snippet on the getting-started page runs as printed."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / "getting-started.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/getting-started.md shows no Python"
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, "getting-started.md", "exec"), {"__name__": "__docs__"})


def test_getting_started_shows_the_readme_commands():
    """Getting started opens with the README's two quick-start commands, character for character."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S)
    assert quick, "README.md has no Quick start bash block"
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", page, re.S)
    assert first and first.group(1) == quick.group(1), \
        "docs/getting-started.md's first command block must be the README's quick start"
