"""What the subcommands share: the help formatter, and the options that choose a corpus
(``minialbert tokenizer train`` and ``minialbert data build`` read text the same way)."""
from __future__ import annotations

import argparse
import sys

from ..data.corpus import load_default_corpus, load_text_corpus


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append "(default: X)" to an option's help unless the help already says its default;
    on/off flags read "(default: off)" and required options "(required)" rather than
    argparse's "(default: False)" / "(default: None)"."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if action.required:
            return text + " (required)"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text + f" (default: {'off' if action.default is False else 'on'})"
        return text + " (default: %(default)s)"


def corpus_args(p: argparse.ArgumentParser) -> None:
    """Options that choose the text (shared with ``minialbert data build``)."""
    p.add_argument("--input", "-i", nargs="+", metavar="PATH", default=None,
                   help="text files or folders (UTF-8) (default: the embedded corpus, the "
                        "docstrings of the Python standard library and NumPy; no download)")
    p.add_argument("--doc-mode", choices=("blank_lines", "file"), default="blank_lines",
                   help="how --input is cut into documents: 'blank_lines' = documents separated by "
                        "blank lines (the reference format), 'file' = one document per file "
                        "(default: %(default)s)")
    p.add_argument("--split", choices=("lines", "sentences"), default="lines",
                   help="how a document is cut into sentences: 'lines' = one sentence per line, "
                        "'sentences' = split at sentence ends by the embedded corpus' rule "
                        "(default: %(default)s)")
    p.add_argument("--no-numpy", action="store_true",
                   help="embedded corpus only: the standard library's docstrings alone, without NumPy's, SciPy's and matplotlib's (default: include them)")


def load_corpus(args) -> list[list[str]]:
    """The documents chosen by :func:`corpus_args`' options."""
    if args.input:
        docs = load_text_corpus(args.input, mode=args.doc_mode, split=args.split)
        where = ", ".join(args.input)
    else:
        docs = load_default_corpus(include_numpy=not args.no_numpy)
        where = "the embedded docstring corpus"
    if not docs:
        raise ValueError(f"the corpus from {where} is empty")
    n_sent = sum(len(d) for d in docs)
    print(f"corpus: {len(docs)} documents, {n_sent} sentences from {where}", file=sys.stderr)
    return docs
