"""The executed notebooks and the built site, made once per test process and shared.

Not a test module: ``tests/test_notebooks.py``, ``tests/test_docs.py`` and
``tests/test_browser.py`` import it, so that each notebook is executed once per run (the
notebook test and the published site read the same execution) and the site is built once
per flavour:

* :func:`execute_notebook` runs ``notebooks/NN_name.py`` top to bottom in a fresh ``python3``
  kernel (nbclient), in a scratch working directory (notebooks write tokenizers, runs and
  plots there), and writes the executed notebook, outputs and figures included, to
  ``<scratch>/executed-notebooks/NN_name.ipynb``.
* :func:`build_site` runs ``mkdocs build --strict`` into a scratch folder. With
  ``with_outputs=True`` every notebook is executed first (or taken from the cache) and the
  build publishes the executed copies (``MINIALBERT_NOTEBOOK_OUTPUTS``, read by
  ``mkdocs_hooks.py``); a notebook that failed is published without outputs (its own test
  reports the failure).

Everything lives in one temporary folder, removed when the process exits.
"""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))
CELL_TIMEOUT_S = 600          # one cell; generous for a loaded machine (each notebook takes seconds to ~1 min)

_scratch: Path | None = None
_executed: dict[Path, "Executed"] = {}
_sites: dict[bool, "Site"] = {}


def scratch() -> Path:
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="minialbert-tests-"))
        atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    return _scratch


def outputs_dir() -> Path:
    d = scratch() / "executed-notebooks"      # the name mkdocs.yml's include pattern expects
    d.mkdir(exist_ok=True)
    return d


@dataclass
class Executed:
    nb: object            # the executed nbformat notebook
    seconds: float
    error: str            # "" when every cell ran
    path: Path | None     # the executed .ipynb (None if the notebook could not be read)


def _error_text(nb) -> str:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return f"{out['ename']}: {out['evalue']}\n" + "\n".join(out.get("traceback", []))
    return ""


def execute_notebook(path: Path) -> Executed:
    """Execute one notebook (once per process; later calls return the same result)."""
    path = Path(path).resolve()
    if path in _executed:
        return _executed[path]
    import jupytext
    import nbclient
    import nbformat

    nb = jupytext.read(path)
    workdir = scratch() / "work" / path.stem
    workdir.mkdir(parents=True, exist_ok=True)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    t0 = time.perf_counter()
    error = ""
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as e:
        error = str(e)
    except Exception as e:      # a kernel that died or timed out: report it, don't hide it
        error = f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    error = error or _error_text(nb)
    out = None
    if not error:
        out = outputs_dir() / (path.stem + ".ipynb")
        nbformat.write(nb, str(out))
    _executed[path] = Executed(nb, seconds, error, out)
    return _executed[path]


@dataclass
class Site:
    root: Path
    log: str


def build_site(with_outputs: bool) -> Site:
    """``mkdocs build --strict`` once per process and flavour; fails loudly on any warning."""
    if with_outputs in _sites:
        return _sites[with_outputs]
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env.pop("MINIALBERT_NOTEBOOK_OUTPUTS", None)
    env.pop("MINIALBERT_DOCS_EXECUTE", None)
    if with_outputs:
        for nb in NOTEBOOKS:
            execute_notebook(nb)
        env["MINIALBERT_NOTEBOOK_OUTPUTS"] = str(outputs_dir())
    site = scratch() / ("site-with-outputs" if with_outputs else "site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise AssertionError(f"mkdocs build --strict failed:\n{log}")
    warnings = [line for line in log.splitlines() if line.lstrip().startswith(("WARNING", "ERROR"))]
    if warnings:
        raise AssertionError("mkdocs build --strict warned:\n" + "\n".join(warnings))
    _sites[with_outputs] = Site(site, log)
    return _sites[with_outputs]
