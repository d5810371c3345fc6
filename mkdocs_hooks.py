"""MkDocs hooks for the minialbert site (named in mkdocs.yml under ``hooks:``).

Offline math: the site ships its own MathJax 3 instead of loading it from a CDN, so a
page opened without a network (a course lab, a train) typesets its formulas. The MathJax
files come from the PyPI package ``django-static-mathjax`` (pinned in the ``docs`` extra;
it is MathJax's own ``es5`` build and needs no Django) and are added to the site at
``javascripts/mathjax/`` on every build and ``mkdocs serve``.
"""
from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

MATHJAX_DEST = "javascripts/mathjax"


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


def on_files(files, config):
    es5 = _mathjax_es5()
    for path in sorted(es5.rglob("*")):
        if path.is_file():
            rel = path.relative_to(es5).as_posix()
            files.append(File.generated(config, f"{MATHJAX_DEST}/{rel}", abs_src_path=str(path)))
    return files
