"""Execute every notebook (jupytext percent-format ``notebooks/*.py``) top to bottom.

One test per notebook, marked ``notebook`` so it can be left out (``pytest -m "not
notebook"``) but included by default. Each runs in a fresh ``python3`` kernel, in a
temporary working directory (notebooks write tokenizers, runs and plots there), with a
per-cell timeout. Budget: all notebooks together under 10 minutes on CI's 2 cores.

The execution is shared (``tests/sitebuild.py``): the executed notebooks, outputs and
figures included, are what the site built by ``tests/test_browser.py`` publishes, so a run
of the suite executes each notebook once, whichever test asks first.
"""
from __future__ import annotations

import pytest

pytest.importorskip("jupytext")
pytest.importorskip("nbclient")

import sitebuild  # noqa: E402  (tests/sitebuild.py)

NOTEBOOKS = sitebuild.NOTEBOOKS


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {sitebuild.NOTEBOOK_DIR}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path):
    import jupytext
    nb = jupytext.read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", \
        f"{path.name}: the jupytext header must name the kernel python3"
    result = sitebuild.execute_notebook(path)
    if result.error:
        pytest.fail(f"{path.name} failed:\n{result.error}", pytrace=False)
    print(f"{path.name}: {result.seconds:.1f} s")
