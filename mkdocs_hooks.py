"""MkDocs hooks for the minialbert site (named in mkdocs.yml under ``hooks:``).

* Offline math: the site ships its own MathJax 3 instead of loading it from a CDN, so a
  page opened without a network (a course lab, a train) typesets its formulas. The
  MathJax files come from the PyPI package ``django-static-mathjax`` (pinned in the
  ``docs`` extra; it is MathJax's own ``es5`` build and needs no Django) and are added to
  the site at ``javascripts/mathjax/`` on every build and ``mkdocs serve``.
* Notebooks with their outputs: when ``MINIALBERT_NOTEBOOK_OUTPUTS`` names a folder of
  executed notebooks (``NN_name.ipynb``, as ``tests/sitebuild.py`` writes them while
  ``tests/test_notebooks.py`` runs them), the page of ``notebooks/NN_name.py`` is rendered
  from the executed copy: outputs and figures, without running anything a second time.
  Without it, pages show the code only (or set ``MINIALBERT_DOCS_EXECUTE=true`` to let
  mkdocs-jupyter execute them during the build).
"""
from __future__ import annotations

import os
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

MATHJAX_DEST = "javascripts/mathjax"
OUTPUTS_ENV = "MINIALBERT_NOTEBOOK_OUTPUTS"
OUTPUTS_DIRNAME = "executed-notebooks"   # mkdocs.yml's mkdocs-jupyter `include` names it


def _mathjax_es5() -> Path:
    try:
        import mathjax  # the django-static-mathjax distribution's package
    except ImportError as e:  # pragma: no cover - the docs extra installs it
        raise PluginError("offline math needs MathJax's files: pip install -e '.[docs]' "
                          "(package django-static-mathjax)") from e
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    if not (es5 / "tex-mml-chtml.js").is_file():
        raise PluginError(f"{es5}: expected MathJax's es5 build (tex-mml-chtml.js) there, found none")
    return es5


def _executed_notebooks(files, config) -> None:
    outputs = os.environ.get(OUTPUTS_ENV)
    if not outputs:
        return
    folder = Path(outputs)
    if not folder.is_dir() or folder.name != OUTPUTS_DIRNAME:
        raise PluginError(f"{OUTPUTS_ENV}={outputs}: expected an existing folder named "
                          f"{OUTPUTS_DIRNAME!r} holding executed notebooks (NN_name.ipynb)")
    for f in files:
        if f.src_uri.startswith("notebooks/") and f.src_uri.endswith(".py"):
            executed = folder / (Path(f.src_uri).stem + ".ipynb")
            if executed.is_file():
                # Same src_uri (the nav entry, links and URL stay), executed content. Set on
                # the file object mkdocs-jupyter made (it re-derives abs_src_path otherwise).
                f.abs_src_path = str(executed)


@event_priority(-100)   # after mkdocs-jupyter wrapped the notebook files
def on_files(files, config):
    _executed_notebooks(files, config)
    es5 = _mathjax_es5()
    for path in sorted(es5.rglob("*")):
        if path.is_file():
            rel = path.relative_to(es5).as_posix()
            files.append(File.generated(config, f"{MATHJAX_DEST}/{rel}", abs_src_path=str(path)))
    return files
