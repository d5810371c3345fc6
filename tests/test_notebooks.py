"""Execute every notebook (jupytext percent-format ``notebooks/*.py``) top to bottom.

One test per notebook, marked ``notebook`` so it can be left out (``pytest -m "not
notebook"``) but included by default. Each runs in a fresh ``python3`` kernel, in a
temporary working directory (notebooks write tokenizers, runs and plots there), with a
per-cell timeout. Budget: all notebooks together under 10 minutes on CI's 2 cores.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
CELL_TIMEOUT_S = 600          # one cell; generous for a loaded machine (each notebook takes seconds to ~1 min)


def _error_text(nb) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out['ename']}: {out['evalue']}\n" + "\n".join(out.get("traceback", []))
    return ""


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    nb = jupytext.read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", \
        f"{path.name}: the jupytext header must name the kernel python3"
    client = nbclient.NotebookClient(
        nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    t0 = time.perf_counter()
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
    elapsed = time.perf_counter() - t0
    assert not _error_text(nb), _error_text(nb)
    print(f"{path.name}: {elapsed:.1f} s")
