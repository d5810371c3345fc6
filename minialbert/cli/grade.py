"""``minialbert grade FILE``: score a student's answers to the course exercises
(``notebooks/exercises/``); ``minialbert grade --reference`` grades the library itself."""
from __future__ import annotations

import argparse
import json
import sys

from .. import grade

HELP = "grade a student's exercise notebook (.py or .ipynb) from notebooks/exercises/"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "grade", help=HELP, description=HELP + ". Prints a score per exercise; exits 0 only "
        "when every exercise the file answers passes.")
    p.add_argument("file", nargs="?", metavar="FILE",
                   help="the student's notebook: jupytext .py or Jupyter .ipynb")
    p.add_argument("--reference", action="store_true",
                   help="grade the library's own functions as if they were a student's answers "
                        "(every exercise; full marks expected)")
    p.add_argument("--verbose", "-v", action="store_true", help="list passing checks too")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.reference == bool(args.file):
        raise ValueError("give exactly one of FILE or --reference "
                         f"(got {'both' if args.file else 'neither'})")
    notes = []
    if args.reference:
        results = grade.grade_namespace(grade.reference_namespace())
    else:
        results, notes = grade.grade_file(args.file)
    if args.json:
        print(json.dumps({"exercises": [
            {"exercise": r.exercise, "title": r.title, "score": r.score, "total": r.total,
             "passed": r.passed,
             "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in r.checks]}
            for r in results], "cell_errors": notes}, indent=2))
    else:
        print(grade.format_results(results, verbose=args.verbose))
        if notes:
            print(f"({len(notes)} cell(s) raised while running the file; first: {notes[0]})", file=sys.stderr)
    return 0 if all(r.passed for r in results) else 1
