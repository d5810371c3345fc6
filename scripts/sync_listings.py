"""Copy the code listings of the docs from the code, so that they cannot drift.

    python scripts/sync_listings.py            # rewrite every marked listing in docs/
    python scripts/sync_listings.py --check    # exit 1 if a listing differs from the code

A listing is a ```python block right after a marker line::

    <!-- code: minialbert/layers/linear.py::linear_backward -->
    <!-- code: minialbert/model.py::AlbertPreTrainedModel._encode_backward from "for ka, kf" to "dh = albert" -->

The first form is the function's body after its docstring; the second the lines of the
body from the first one containing the ``from`` text to the next one containing the
``to`` text. Either is dedented and copied verbatim, comments included: a comment that
helps the reader belongs in the code. ``tests/test_listings.py`` fails when a listing is
not what this script would write.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKER = re.compile(r'^<!-- code: (?P<path>\S+)::(?P<name>[\w.]+)'
                    r'(?: from "(?P<start>[^"]+)" to "(?P<end>[^"]+)")? -->$')


def function_body(path: str, qualname: str) -> list[str]:
    """The source lines of ``qualname``'s body in ``path`` (after the docstring), dedented."""
    source = (ROOT / path).read_text(encoding="utf-8")
    node = ast.parse(source)
    for part in qualname.split("."):
        found = [n for n in ast.iter_child_nodes(node)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part]
        if not found:
            raise ValueError(f"{path} has no {qualname}")
        node = found[0]
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]                                      # the docstring
    lines = source.splitlines()
    return textwrap.dedent("\n".join(lines[body[0].lineno - 1:node.end_lineno])).splitlines()


def listing(path: str, name: str, start: str | None = None, end: str | None = None) -> list[str]:
    lines = function_body(path, name)
    if start is None:
        return lines
    i = next((k for k, line in enumerate(lines) if start in line), None)
    j = next((k for k in range(i or 0, len(lines)) if end in lines[k]), None) if i is not None else None
    if i is None or j is None:
        raise ValueError(f"{path}::{name} has no line with {start!r} followed by one with {end!r}")
    while j + 1 < len(lines) and _open_brackets(lines[i:j + 1]) > 0:
        j += 1                                               # to the end of the statement
    return textwrap.dedent("\n".join(lines[i:j + 1])).splitlines()


def _open_brackets(lines) -> int:
    code = "\n".join(line.split("#")[0] for line in lines)
    return sum(code.count(c) for c in "([{") - sum(code.count(c) for c in ")]}")


def sync(text: str, where: str = "page") -> str:
    """``text`` with every marked listing replaced by the current code."""
    lines = text.splitlines()
    out, k = [], 0
    while k < len(lines):
        out.append(lines[k])
        m = MARKER.match(lines[k].strip())
        if m:
            if k + 1 >= len(lines) or lines[k + 1].strip() != "```python":
                raise ValueError(f"{where}:{k + 1}: a code marker must be followed by a ```python block")
            close = next((j for j in range(k + 2, len(lines)) if lines[j].strip() == "```"), None)
            if close is None:
                raise ValueError(f"{where}:{k + 2}: the ```python block is not closed")
            out += ["```python", *listing(m["path"], m["name"], m["start"], m["end"]), "```"]
            k = close
        k += 1
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def pages():
    return sorted(p for p in DOCS.rglob("*.md") if "<!-- code: " in p.read_text(encoding="utf-8"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report listings that differ from the code")
    args = ap.parse_args(argv)
    stale = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        new = sync(text, str(page.relative_to(ROOT)))
        if new != text:
            stale.append(str(page.relative_to(ROOT)))
            if not args.check:
                page.write_text(new, encoding="utf-8")
    verb = "differ from the code" if args.check else "rewritten"
    print(f"{len(stale)} page(s) {verb}" + (": " + ", ".join(stale) if stale else ""))
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
