"""Draw minialbert's import graph from the code, and check that it points down.

    python scripts/import_graph.py                 # print the docs page (Markdown)
    python scripts/import_graph.py --write         # rewrite docs/api/import-graph.md
    python scripts/import_graph.py --check         # exit 1 on a cycle, a private import or a
                                                   # deferred import without a reason

Nothing is imported: every ``minialbert/**/*.py`` file is parsed with :mod:`ast`, and every
``import`` statement is read, at module level and inside functions ("deferred"). An edge
``a -> b`` means module ``a`` needs module ``b`` to be imported first, so importing
``minialbert.data.corpus`` from outside ``minialbert.data`` also adds an edge to the
package ``minialbert.data`` (its ``__init__`` runs first). ``tests/test_imports.py``
runs the checks and compares the page with this script's output.
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "minialbert"
PAGE = ROOT / "docs" / "api" / "import-graph.md"
# third-party modules a function may import late: optional, or slow to import and rarely needed
OPTIONAL = {"cupy", "cupyx", "scipy", "matplotlib", "mpi4py", "ml_dtypes"}
FILES = {}                      # module -> its file, relative to the package's parent


def module_name(path: Path, pkg: Path = PKG) -> str:
    parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(importer: str, is_package: bool, level: int, module: str | None) -> str:
    """The absolute module name of ``from <level dots><module> import ...`` in ``importer``."""
    if level == 0:
        return module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def read_imports(pkg: Path = PKG) -> dict:
    """{module: [(imported module, line, deferred, names)]} for every module of the package.
    ``imported module`` is absolute; names are those of ``from x import names``."""
    files = sorted(pkg.rglob("*.py"))
    modules = {module_name(f, pkg): f for f in files}
    FILES.update({m: f.relative_to(pkg.parent).as_posix() for m, f in modules.items()})
    out = {}
    for name, f in modules.items():
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        is_package = f.name == "__init__.py"
        found = []

        def visit(node, deferred):
            for child in ast.iter_child_nodes(node):
                inner = deferred or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, ast.Import):
                    for a in child.names:
                        found.append((a.name, child.lineno, deferred, ()))
                elif isinstance(child, ast.ImportFrom):
                    target = _resolve(name, is_package, child.level, child.module)
                    names = tuple(a.name for a in child.names)
                    if target == "__future__":
                        continue
                    # "from pkg import sub" imports the submodule pkg.sub
                    subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
                    for s in subs:
                        found.append((s, child.lineno, deferred, ()))
                    rest = tuple(n for n in names if f"{target}.{n}" not in modules)
                    if rest or not subs:
                        found.append((target, child.lineno, deferred, rest))
                visit(child, inner)

        visit(tree, False)
        out[name] = found
    return out


def edges(imports: dict) -> dict:
    """{module: {module it needs first}} inside the package (deferred imports included)."""
    graph = {m: set() for m in imports}
    for m, found in imports.items():
        for target, _, _, _ in found:
            if target not in graph:
                continue                      # third-party or the standard library
            parts = target.split(".")
            # the target and the packages around it that are not already being imported
            for k in range(2, len(parts) + 1):
                node = ".".join(parts[:k])
                if node == m or m.startswith(node + "."):
                    continue
                graph[m].add(node)
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(max(1000, 10 * len(graph)))

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def problems(imports: dict) -> list:
    """Every rule the graph breaks, as readable lines (empty: the graph is clean)."""
    out = []
    graph = edges(imports)
    for comp in cycles(graph):
        out.append("import cycle: " + " <-> ".join(comp))
    for m, found in imports.items():
        for target, line, deferred, names in found:
            inside = target.split(".")[0] == "minialbert"
            where = f"{FILES.get(m, m)}:{line}"
            if inside and target != m:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    out.append(f"{where}: imports the private name(s) {', '.join(private)} of {target}")
                pkg_of_target = target.rsplit(".", 1)[0]
                if target.rsplit(".", 1)[-1].startswith("_") and not (m + ".").startswith(pkg_of_target + "."):
                    out.append(f"{where}: imports the private module {target} from outside its package")
            if deferred and (inside or target.split(".")[0] not in OPTIONAL):
                out.append(f"{where}: imports {target} inside a function; import it at module level "
                           f"(only {', '.join(sorted(OPTIONAL))} may be imported late)")
    return out


def floors(graph: dict) -> dict:
    """{module: floor}: 0 for a module that needs no other, else 1 + the highest floor it needs."""
    memo = {}

    def floor(m, seen=()):
        if m not in memo:
            if m in seen:                       # a cycle: problems() reports it
                return 0
            memo[m] = 1 + max((floor(d, seen + (m,)) for d in graph[m]), default=-1)
        return memo[m]

    return {m: floor(m) for m in graph}


def render(imports: dict) -> str:
    """The docs page: the modules floor by floor, each with what it imports."""
    graph = edges(imports)
    fl = floors(graph)
    deferred = {m: sorted({t.removeprefix("minialbert.") if t.startswith("minialbert.") else t.split(".")[0]
                           for t, _, d, _ in found if d}) for m, found in imports.items()}
    lines = [
        "# The import graph",
        "",
        "Drawn from the code by `python scripts/import_graph.py --write` (it parses every",
        "module with `ast`; nothing is imported); `tests/test_imports.py` fails when this page",
        "is out of date, when the graph has a cycle, when a module imports another module's",
        "private name, or when a function imports late anything but an optional dependency",
        f"({', '.join(f'`{o}`' for o in sorted(OPTIONAL))}).",
        "",
        "Every arrow points down: a module imports only modules on lower floors. Floor 0 needs",
        "no other module of the package; a module's floor is one above the highest floor it",
        "imports. Importing `minialbert.data.corpus` from outside `minialbert.data` runs",
        "`minialbert/data/__init__.py` first, so the package counts as imported too.",
        "",
        "```text",
    ]
    width = max(len(m) for m in graph)
    for f in sorted(set(fl.values()), reverse=True):
        lines.append(f"floor {f}")
        for m in sorted(x for x in graph if fl[x] == f):
            needs = ", ".join(sorted(d.removeprefix("minialbert.") for d in graph[m])) or "-"
            late = f"   (late: {', '.join(deferred[m])})" if deferred[m] else ""
            lines.append(f"  {m.ljust(width)}  -> {needs}{late}")
    lines += ["```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite {PAGE.relative_to(ROOT)}")
    ap.add_argument("--check", action="store_true", help="exit 1 when the graph breaks a rule")
    args = ap.parse_args(argv)
    imports = read_imports()
    if args.check:
        bad = problems(imports)
        print("\n".join(bad) if bad else "the import graph points down: no cycle, no private or late import")
        return 1 if bad else 0
    page = render(imports)
    if args.write:
        PAGE.write_text(page, encoding="utf-8")
        print(f"wrote {PAGE.relative_to(ROOT)}")
    else:
        print(page, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
