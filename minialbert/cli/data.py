"""``minialbert data``: build pretraining shards, inspect a built directory."""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..data.corpus import load_default_corpus
from ..data.heldout import HELDOUT_DIR, heldout_dir, split_documents
from ..data.pretraining import SENTENCE_TASKS, check_data_args, create_pretraining_examples
from ..data.shards import ShardLoader, build_shards
from ..tokenizer import Tokenizer
from .common import HelpFormatter, corpus_args, load_corpus


def _build(args) -> int:
    out = Path(args.output)
    check_data_args(args.max_seq_length, args.sentence_task, args.masked_lm_prob, args.max_predictions_per_seq,
                    args.max_ngram, args.short_seq_prob, args.dupe_factor, args.max_position_embeddings)
    if (out / "manifest.json").exists() and not args.overwrite:
        raise FileExistsError(f"{out} already holds a complete build; pass --overwrite to replace it")
    frac = args.heldout_fraction
    if frac is not None and not 0.0 < frac < 1.0:
        raise ValueError(f"--heldout-fraction: expected a number strictly between 0 and 1, got {frac}")
    held_out = heldout_dir(out)
    if frac is not None and held_out.exists() and not (held_out / "manifest.json").exists() \
            and any(held_out.iterdir()):
        raise FileExistsError(f"--heldout-fraction: {held_out} exists and is not a shard build; "
                              "move it away or choose another --output")
    docs = load_corpus(args)
    held = []
    if frac is not None:
        docs, held = split_documents(docs, frac, seed=args.seed)
        print(f"held out {len(held)} of {len(docs) + len(held)} documents ({frac:g}) -> {held_out}",
              file=sys.stderr)
    if args.tokenizer:
        tok = Tokenizer(args.tokenizer)
    else:
        # trained on the training documents only: the held-out text stays unseen
        print(f"no --tokenizer: training a {args.vocab_size}-piece one on this corpus", file=sys.stderr)
        tok = Tokenizer.train(docs, args.vocab_size)
    kw = dict(max_seq_length=args.max_seq_length, seed=args.seed, sentence_task=args.sentence_task,
              masked_lm_prob=args.masked_lm_prob, max_predictions_per_seq=args.max_predictions_per_seq,
              max_ngram=args.max_ngram, short_seq_prob=args.short_seq_prob, dupe_factor=args.dupe_factor,
              one_sentence_random_b=args.one_sentence_random_b,
              max_position_embeddings=args.max_position_embeddings, docs_per_shard=args.docs_per_shard,
              num_workers=args.workers, overwrite=args.overwrite)
    split = {"fraction": frac, "seed": args.seed, "dir": HELDOUT_DIR} if frac is not None else None
    manifest = build_shards(docs, tok, out, progress=not args.quiet, save_tokenizer=not args.tokenizer, **kw,
                            extra_manifest={"split": "train", "heldout": split} if split else None)
    print(f"wrote {len(manifest['shards'])} shards to {out}: {manifest['num_examples']} examples, "
          f"{manifest['num_tokens']} tokens, {manifest['num_predictions']} masked predictions "
          f"in {manifest['build_seconds']:.1f} s")
    if split:
        # the held-out examples: dupe factor 1 (one pass, no repeated sentences), same recipe
        hm = build_shards(held, tok, held_out, progress=False, **{**kw, "dupe_factor": 1},
                          extra_manifest={"split": "heldout", "heldout": split})
        print(f"wrote {hm['num_examples']} held-out examples from {len(held)} documents to {held_out}")
    return 0


def _inspect(args) -> int:
    loader = ShardLoader(args.directory, batch_size=max(1, args.examples), shuffle=False, epochs=1)
    m = loader.manifest
    summary = {k: m[k] for k in ("config", "seed", "tokenizer", "corpus", "num_examples", "num_tokens",
                                 "num_predictions")}
    summary["num_shards"] = len(m["shards"])
    print(json.dumps(summary, indent=2))
    if args.examples:
        tok = None
        if args.tokenizer:
            tok = Tokenizer(args.tokenizer)
        b = next(loader)
        for r in range(len(b["input_ids"])):
            n = int(b["attention_mask"][r].sum())
            ids = b["input_ids"][r, :n].tolist()
            text = tok.decode(ids, skip_special_tokens=False) if tok else " ".join(map(str, ids))
            print(f"--- example {r} (sentence_order_label={int(b['sentence_order_label'][r])}) ---\n{text}")
    return 0


def _bench(args) -> int:
    base = load_default_corpus()
    size = sum(len(s) + 1 for d in base for s in d)
    # repeat the embedded corpus, each copy in another document order, up to --megabytes
    docs, k = [], 0
    while sum(len(s) + 1 for d in docs for s in d) < args.megabytes * 1e6:
        docs += [base[i] for i in np.random.default_rng(k).permutation(len(base))]
        k += 1
    mb = sum(len(s) + 1 for d in docs for s in d) / 1e6
    t = time.perf_counter()
    tok = Tokenizer.train(base, args.vocab_size)
    t_train = time.perf_counter() - t
    print(f"corpus: {mb:.1f} MB ({k} copies of the {size / 1e6:.1f} MB embedded corpus), {len(docs)} documents; "
          f"tokenizer V={tok.vocab_size} trained on one copy in {t_train:.1f} s")
    t = time.perf_counter()
    ex = create_pretraining_examples(docs, tok, max_seq_length=args.max_seq_length, seed=0)
    dt = time.perf_counter() - t
    n = sum(len(e["input_ids"]) for e in ex)
    print(f"create_pretraining_examples (1 process, tokenizing included): {len(ex)} examples, {n} tokens "
          f"in {dt:.2f} s = {n / dt:,.0f} tokens/s")
    if args.workers != 1:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            m = build_shards(docs, tok, d, max_seq_length=args.max_seq_length, num_workers=args.workers)
            dt = time.perf_counter() - t
        print(f"build_shards ({args.workers or 'all'} workers, writing included): {m['num_tokens']} tokens "
              f"in {dt:.2f} s = {m['num_tokens'] / dt:,.0f} tokens/s")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="build and inspect pretraining data shards",
                              description="Pretraining data: SOP/NSP sentence pairs with whole-word n-gram "
                                          "masking (google-research/albert's recipe, seeded), written as shards.")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    fmt = HelpFormatter
    b = sub.add_parser("build", help="create examples and write shards + manifest.json", formatter_class=fmt,
                       description="Tokenize a corpus, make masked sentence-pair examples and write them as "
                                   "padded .npz shards. Every file is written atomically and manifest.json "
                                   "last, so an interrupted build never looks complete. The result depends "
                                   "on --seed and --docs-per-shard only, not on --workers.")
    corpus_args(b)
    b.add_argument("--output", "-o", required=True, help="folder for the shards and manifest.json")
    b.add_argument("--tokenizer", "-t", default=None,
                   help="SentencePiece model to use (default: train one with --vocab-size and save it "
                        "as OUTPUT/spiece.model)")
    b.add_argument("--vocab-size", type=int, default=8000, help="vocabulary of the tokenizer trained when "
                                                                "--tokenizer is not given")
    b.add_argument("--max-seq-length", type=int, default=128,
                   help="T: tokens per example including [CLS] and two [SEP] (>= 5)")
    b.add_argument("--max-position-embeddings", type=int, default=None,
                   help="the model's position table size; --max-seq-length may not exceed it "
                        "(default: no check)")
    b.add_argument("--seed", type=int, default=0, help="seed of the one random stream behind every choice")
    b.add_argument("--sentence-task", choices=SENTENCE_TASKS, default="sop",
                   help="sop: consecutive segments swapped half the time (label 1 = swapped); nsp: B from a "
                        "random document half the time (label 1 = random); none: one segment")
    b.add_argument("--masked-lm-prob", type=float, default=0.15, help="share of tokens to predict")
    b.add_argument("--max-predictions-per-seq", type=int, default=20, help="MP: most masked tokens per example")
    b.add_argument("--max-ngram", type=int, default=3, help="longest masked n-gram of whole words; p(n) ∝ 1/n")
    b.add_argument("--short-seq-prob", type=float, default=0.1,
                   help="probability of a shorter random target length")
    b.add_argument("--dupe-factor", type=int, default=1,
                   help="passes over the corpus with fresh random choices (the reference uses 40)")
    b.add_argument("--one-sentence-random-b", action="store_true",
                   help="reproduce the reference quirk: a one-sentence chunk gets B from a random document, "
                        "label 1, even for SOP (default: split the sentence into A and B instead)")
    b.add_argument("--docs-per-shard", type=int, default=500,
                   help="documents per shard (the unit of parallel work and of NSP's random-document pool)")
    b.add_argument("--workers", "-j", type=int, default=None,
                   help="worker processes building shards in parallel; the shards do not depend on it "
                        "(default: all cores)")
    b.add_argument("--heldout-fraction", type=float, default=None, metavar="F",
                   help="hold out this share of the documents (whole documents, drawn with --seed) and "
                        "write their examples to OUTPUT/heldout/, a shard folder for `minialbert eval` and "
                        "`pretrain --eval-data`; the tokenizer is trained on the other documents only "
                        "(default: no held-out split)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing build in --output")
    b.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)
    i = sub.add_parser("inspect", help="print a build's manifest and its first examples", formatter_class=fmt)
    i.add_argument("directory", help="a folder written by `minialbert data build`")
    i.add_argument("--examples", "-n", type=int, default=2, help="examples to print")
    i.add_argument("--tokenizer", "-t", default=None, help="decode examples with this SentencePiece model")
    i.set_defaults(func=_inspect)
    m = sub.add_parser("bench", help="measure example creation speed in tokens/s", formatter_class=fmt,
                       description="Time create_pretraining_examples and build_shards on the embedded corpus "
                                   "repeated (in different document orders) up to --megabytes.")
    m.add_argument("--megabytes", type=float, default=10.0, help="corpus size to build")
    m.add_argument("--max-seq-length", type=int, default=128, help="T")
    m.add_argument("--vocab-size", type=int, default=8000, help="tokenizer vocabulary")
    m.add_argument("--workers", "-j", type=int, default=None, help="processes for build_shards (1: skip it)")
    m.set_defaults(func=_bench)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
