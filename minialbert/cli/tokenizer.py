"""``minialbert tokenizer``: train an ALBERT SentencePiece model, or encode text with one."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ..tokenizer import Tokenizer
from .common import HelpFormatter, corpus_args, load_corpus  # noqa: F401  (HelpFormatter, load_corpus: public here too)


def _train(args) -> int:
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
    corpus_args(t)
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
