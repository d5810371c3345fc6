r"""Corpora: documents as lists of sentences.

A *document* is a ``list[str]`` of sentences, a *corpus* a ``list`` of documents; this is
what :func:`minialbert.data.create_pretraining_examples` and ``Tokenizer.train`` take.

**The embedded default corpus** (:func:`load_default_corpus`) is the English docstrings
of the Python standard library (and of NumPy when it is installed), read from the
source files with :mod:`ast` -- nothing is imported or downloaded, so it exists
wherever minialbert installs. One document per module (module docstring + the
docstrings of its top-level functions) and one per class (class docstring + its
methods'), in sorted file order, so the corpus is the same on every run of one Python
and NumPy version.

**Sentence-splitting rule** (:func:`split_sentences`), applied to each docstring:

1. ``inspect.cleandoc``, then split into paragraphs at blank lines; a paragraph always
   ends a sentence.
2. Drop paragraphs that hold a doctest (a line starting ``>>>``), reST directive lines
   (starting ``..``) and section titles (a line followed by an underline made only of
   ``-=~^*#+``); such a line also cuts the paragraph in two.
3. Join the lines of each piece with single spaces.
4. Split after ``.``, ``!`` or ``?`` when whitespace and then an upper-case letter, a
   digit, a quote or an opening bracket follow (so "e.g. foo" and "3.14" stay whole).
5. Keep sentences with at least 3 letters; drop documents left with no sentence.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import os
import re
import sys
import sysconfig
from pathlib import Path
from importlib.metadata import version as _dist_version

from ..textfiles import iter_text_files, read_text_file  # noqa: F401  (public here too)

_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[`])")
_UNDERLINE = re.compile(r"^\s*[-=~^*#+]{3,}\s*$")
_LETTERS = re.compile(r"[A-Za-z]")
# folders of the standard library that hold tests, demos or vendored code, not docs
_SKIP_DIRS = {"test", "tests", "idle_test", "idlelib", "turtledemo", "lib2to3", "ensurepip",
              "site-packages", "dist-packages", "__pycache__", "tkinter", "pydoc_data", "_pyrepl"}


def split_sentences(text: str) -> list[str]:
    """Split a docstring (or any paragraph text) into sentences by the rule above.

    Inputs: text, a str (may hold many paragraphs). Returns: list of sentence strs.
    """
    out = []
    for para in re.split(r"\n\s*\n", inspect.cleandoc(text)):
        lines = para.splitlines()
        if any(l.lstrip().startswith(">>>") for l in lines):
            continue
        # a section title is the line above an underline: drop both, and cut the paragraph there
        blocks, cur = [], []
        for j, line in enumerate(lines):
            if _UNDERLINE.match(line) or line.lstrip().startswith(".."):
                if cur and _UNDERLINE.match(line):
                    cur.pop()
                blocks.append(cur)
                cur = []
            else:
                cur.append(line)
        blocks.append(cur)
        for block in blocks:
            joined = " ".join(" ".join(block).split())
            for s in _SENT_END.split(joined) if joined else ():
                if len(_LETTERS.findall(s)) >= 3:
                    out.append(s)
    return out


def docs_of_source(source: str, filename: str) -> list[list[str]]:
    """Documents of one Python file: the module's and one per class, in source order."""
    try:
        tree = ast.parse(source, filename=filename)
    except (SyntaxError, ValueError):
        return []
    module_doc: list[str] = []
    class_docs: list[list[str]] = []

    def add(target, node):
        d = ast.get_docstring(node, clean=False)
        if d:
            target.extend(split_sentences(d))

    add(module_doc, tree)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            add(module_doc, node)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            doc: list[str] = []
            add(doc, node)
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                        (not sub.name.startswith("_") or sub.name == "__init__"):
                    add(doc, sub)
            class_docs.append(doc)
    return [d for d in [module_doc, *class_docs] if d]


def _stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    names = sorted(n for n in getattr(sys, "stdlib_module_names", ()) if not n.startswith("_"))
    files: list[Path] = []
    for name in names:
        if name in _SKIP_DIRS or name in {"this", "antigravity"}:
            continue
        f = root / f"{name}.py"
        if f.is_file():
            files.append(f)
        elif (root / name).is_dir():
            files.extend(_py_files(root / name))
    return files


def _py_files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return out


# installed packages whose docstrings follow the standard library's in the default corpus:
# minialbert's own runtime dependencies, so they exist wherever minialbert installs
DEFAULT_PACKAGES = ("numpy", "scipy", "matplotlib")


def _package_root(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _package_files(name: str) -> list[Path]:
    root = _package_root(name)
    return _py_files(root) if root is not None else []


def _numpy_files() -> list[Path]:
    return _package_files("numpy")


def _resolve_packages(include_numpy: bool, packages) -> tuple[str, ...]:
    if packages is None:
        return DEFAULT_PACKAGES if include_numpy else ()
    if isinstance(packages, str):
        packages = (packages,)
    return tuple(packages)


def default_corpus_files(include_numpy: bool = True, packages=None) -> list[Path]:
    """The source files the default corpus is read from, in corpus order: the standard
    library's, then each package's of ``packages`` (default :data:`DEFAULT_PACKAGES` when
    ``include_numpy``, none otherwise) that is installed."""
    files = list(_stdlib_files())
    for name in _resolve_packages(include_numpy, packages):
        files.extend(_package_files(name))
    return files


def cache_dir() -> Path:
    """Where minialbert caches what it derives from installed files: ``$MINIALBERT_CACHE``,
    default ``~/.cache/minialbert``."""
    return Path(os.environ.get("MINIALBERT_CACHE", Path.home() / ".cache" / "minialbert"))


def _package_version(name: str) -> str:
    try:
        return _dist_version(name)
    except Exception:  # noqa: BLE001 - not installed, or no metadata: the files still key the cache
        return "?"


def load_default_corpus(include_numpy: bool = True, cache: bool = True, packages=None) -> list[list[str]]:
    """The embedded default corpus: the standard library's docstrings, then those of the
    installed packages minialbert depends on; one document per module or class.

    Inputs:
    - include_numpy: also read the packages' docstrings (NumPy, SciPy, matplotlib:
      :data:`DEFAULT_PACKAGES`); False: the standard library alone. (The name predates
      SciPy and matplotlib joining.)
    - cache: keep the extracted corpus in ``$MINIALBERT_CACHE`` (default
      ``~/.cache/minialbert``) as JSON, keyed by the Python and package versions and this
      module's source; reading it back is faster than parsing the sources again.
    - packages: names of installed packages to read after the standard library, in this
      order, instead of the default (a package that is not installed is skipped).

    Returns: list of documents, each a list of sentence strings (stdlib alone: about
    1.1 MB of text; with the default packages about 6 MB).
    """
    pkgs = _resolve_packages(include_numpy, packages)
    key = f"py{sys.version_info[0]}.{sys.version_info[1]}.{sys.version_info[2]}"
    for name in pkgs:
        root = _package_root(name)
        key += f"-{name}{_package_version(name)}@{root}"
    # the key also covers this file, so a change to the extraction rules invalidates the cache
    key += sysconfig.get_paths()["stdlib"] + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    cache_file = cache_dir() / f"default-corpus-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    if cache and cache_file.is_file():
        try:
            return json.loads(cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a broken cache is rebuilt below
    docs: list[list[str]] = []
    for f in default_corpus_files(include_numpy, pkgs):
        try:
            src = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        docs.extend(docs_of_source(src, str(f)))
    if cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(cache_file.name + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(docs), encoding="utf-8")
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only home is fine: no cache
    return docs


# -- the user's own text ------------------------------------------------------------
def load_text_corpus(paths, mode: str = "blank_lines", split: str = "lines") -> list[list[str]]:
    """Documents from the user's text files or folders.

    Inputs:
    - paths: a path or a list of paths (files or folders; folders are read recursively
      in sorted order).
    - mode: ``"blank_lines"`` -- documents are separated by blank lines (the reference
      format: one sentence per line, blank line between documents); ``"file"`` -- one
      document per file.
    - split: ``"lines"`` -- every non-blank line is a sentence; ``"sentences"`` -- a
      document's text is split by :func:`split_sentences`' rule.

    Returns: list of documents (lists of sentence strs); empty documents are dropped.
    Raises ValueError naming file and byte offset on invalid UTF-8.
    """
    if mode not in ("blank_lines", "file"):
        raise ValueError(f"mode: expected 'blank_lines' or 'file', got {mode!r}")
    if split not in ("lines", "sentences"):
        raise ValueError(f"split: expected 'lines' or 'sentences', got {split!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    docs: list[list[str]] = []
    for p in paths:
        for f in iter_text_files(p):
            text = read_text_file(f)
            chunks = re.split(r"\n\s*\n", text) if mode == "blank_lines" else [text]
            for chunk in chunks:
                if split == "lines":
                    doc = [" ".join(l.split()) for l in chunk.splitlines()]
                    doc = [s for s in doc if s]
                else:
                    doc = split_sentences(chunk)
                if doc:
                    docs.append(doc)
    return docs


def corpus_hash(documents) -> str:
    """SHA-256 over the documents' sentences (for manifests)."""
    h = hashlib.sha256()
    for doc in documents:
        for s in doc:
            h.update(s.encode("utf-8"))
            h.update(b"\n")
        h.update(b"\n")
    return h.hexdigest()
