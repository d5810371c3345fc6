"""The package's imports point down (issue 12 item 3), read from the code with ``ast``.

``scripts/import_graph.py`` parses every module, at module level and inside functions, and
these tests fail on: an import cycle (a deferred import hides a cycle from Python, not from
this walk), a private name imported from another module, a function that imports late
anything but an optional dependency, and a docs page (docs/api/import-graph.md) that no
longer shows the graph the code has.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)

# Nowhere may a function import a module of the package (the training loops' late imports
# went with issue 12 item 1).
PENDING_LATE = set()


@pytest.fixture(scope="module")
def imports():
    return graph.read_imports()


def test_the_walk_sees_every_module_and_its_deferred_imports(imports):
    assert len(imports) == len(list((ROOT / "minialbert").rglob("*.py")))
    # the one deferred import every machine has: backend's CuPy probe
    assert any(t == "cupy" and late for t, _, late, _ in imports["minialbert.backend"])
    # "from . import x" is an edge to the submodule x
    assert "minialbert.layers" in graph.edges(imports)["minialbert.model"]


def test_a_cycle_is_found_even_behind_a_deferred_import(tmp_path):
    pkg = tmp_path / "minialbert"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import f\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g  # noqa\n")
    found = graph.cycles(graph.edges(graph.read_imports(pkg)))
    assert found == [["minialbert.a", "minialbert.b"]]
    # and a package's __init__ counts: sub-module -> other package -> back
    (pkg / "b.py").write_text("def f():\n    pass\n")
    (pkg / "d").mkdir()
    (pkg / "d" / "__init__.py").write_text("from .x import h\n")
    (pkg / "d" / "x.py").write_text("from ..a import f\ndef h():\n    pass\n")
    (pkg / "a.py").write_text("from .b import f\nfrom .d.x import h\n")
    assert graph.cycles(graph.edges(graph.read_imports(pkg))) == [["minialbert.a", "minialbert.d",
                                                                   "minialbert.d.x"]]


def test_no_import_cycles(imports):
    assert graph.cycles(graph.edges(imports)) == []


def test_no_private_names_across_modules(imports):
    bad = [p for p in graph.problems(imports) if "private" in p]
    assert bad == []


def test_functions_import_late_only_optional_dependencies(imports):
    bad = [p for p in graph.problems(imports)
           if "inside a function" in p and p.split(":")[0] not in PENDING_LATE]
    assert bad == []


def test_import_graph_page_is_current(imports):
    page = graph.PAGE.read_text(encoding="utf-8")
    assert page == graph.render(imports), "run: python scripts/import_graph.py --write"


def test_import_graph_script_runs():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "import_graph.py")], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# The import graph")


def test_readme_layout_maps_every_module():
    """Every module of the package has a row in the README's layout table (a module in a
    sub-package may be named in its folder's row)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `minialbert/")]
    missing = []
    for f in sorted((ROOT / "minialbert").rglob("*.py")):
        rel = f.relative_to(ROOT).as_posix()
        if f.name == "__init__.py":
            continue                                  # re-exports; the folder's row covers it
        if f.parent.name == "minialbert":
            ok = any(f"`{rel}`" in r for r in rows)
        else:
            folder = f.parent.relative_to(ROOT).as_posix() + "/"
            ok = any(f"`{folder}`" in r.split("|")[1] and f"`{f.name}`" in r for r in rows)
        if not ok:
            missing.append(rel)
    assert missing == [], f"README.md's layout table lacks {missing}"
