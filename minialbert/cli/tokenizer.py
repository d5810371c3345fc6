"""``minialbert tokenizer``: train an ALBERT SentencePiece model, or encode text with one."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


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


def _corpus_args(p: argparse.ArgumentParser) -> None:
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
    """The documents chosen by :func:`_corpus_args`' options."""
    from ..data.corpus import load_default_corpus, load_text_corpus

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


def _train(args) -> int:
    from tqdm.auto import tqdm

    from ..tokenizer import Tokenizer

    docs = load_corpus(args)
    lines = [s for d in tqdm(docs, desc="reading", unit="doc", disable=args.quiet) for s in d]
    if not args.quiet:
        print(f"training a {args.vocab_size}-piece unigram model on {len(lines)} sentences ...", file=sys.stderr)
    tok = Tokenizer.train(lines, args.vocab_size, output=None, lowercase=not args.cased)
    path = tok.save(args.output)
    print(f"wrote {path} (vocab_size={tok.vocab_size}, {'cased' if args.cased else 'uncased'}, "
          f"sha256 {tok.content_hash[:16]})")
    return 0


def _encode(args) -> int:
    from ..tokenizer import Tokenizer

    tok = Tokenizer(args.model)
    texts = args.text or [line.rstrip("\n") for line in sys.stdin]
    for t in texts:
        ids = tok.encode(t)
        print(" ".join(tok.id_to_piece(ids)) if args.pieces else " ".join(map(str, ids)))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("tokenizer", help="train or use an ALBERT SentencePiece tokenizer",
                              description="Train or use a SentencePiece unigram tokenizer with ALBERT's special "
                                          "ids (<pad>=0 <unk>=1 [CLS]=2 [SEP]=3 [MASK]=4) and normalisation.")
    sub = p.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    t = sub.add_parser("train", help="train a tokenizer", formatter_class=HelpFormatter,
                       description="Train a SentencePiece unigram model with the official ALBERT flags "
                                   "(control symbols [CLS] [SEP] [MASK], user symbols ( ) \" - . – £ €, "
                                   "character_coverage 0.99995). Training is deterministic.")
    _corpus_args(t)
    t.add_argument("--vocab-size", "-V", type=int, default=8000,
                   help="number of pieces including the 5 special and 8 user symbols (ALBERT: 30000; "
                        "the embedded corpus supports up to about 8800)")
    t.add_argument("--output", "-o", default="spiece.model", help="where to write the model ('.model' is added "
                                                                  "if missing)")
    t.add_argument("--cased", action="store_true", help="keep case (default: lower-case, like albert-*-v2)")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    t.set_defaults(func=_train)
    e = sub.add_parser("encode", help="print the ids (or pieces) of text", formatter_class=HelpFormatter,
                       description="Encode each TEXT (or each line of standard input) and print ids.")
    e.add_argument("--model", "-m", required=True, help="a SentencePiece model (spiece.model)")
    e.add_argument("--pieces", action="store_true", help="print pieces instead of ids")
    e.add_argument("text", nargs="*", help="texts to encode (default: read lines from standard input)")
    e.set_defaults(func=_encode)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
