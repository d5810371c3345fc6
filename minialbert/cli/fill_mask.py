"""``minialbert fill-mask CHECKPOINT "text with [MASK]"``: top-k predictions with probabilities."""
from __future__ import annotations

import argparse
import json
import warnings

import numpy as np

from ..finetune import find_tokenizer, resolve_model_dir
from ..heads import AlbertForMaskedLM
from ..hf import from_pretrained
from ..probe import encode_masked  # noqa: F401  (public here too)

HELP = "predict the [MASK] tokens of a text with a trained model"


def register(subparsers) -> None:
    p = subparsers.add_parser("fill-mask", help=HELP, description=HELP + ".",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("checkpoint", help="a pretraining run directory, its checkpoint/, or a HF ALBERT "
                                      "directory (with spiece.model)")
    p.add_argument("text", help='text with one or more literal "[MASK]"')
    p.add_argument("--top-k", type=int, default=5, help="predictions per [MASK]")
    p.add_argument("--tokenizer", default=None, help="spiece.model (default: the one beside the model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def fill_mask(model_path, text: str, top_k: int = 5, tokenizer=None) -> list:
    """Top-k predictions for every [MASK] of ``text``.

    Returns: one list per mask (in order) of dicts {"token": piece, "token_id", "score":
    probability, "sequence": the text with this mask filled in}."""
    if top_k < 1:
        raise ValueError(f"--top-k must be a positive integer, got {top_k}")
    model_dir = resolve_model_dir(model_path, arg="CHECKPOINT")
    tok = find_tokenizer(model_dir, tokenizer)
    ids, pos = encode_masked(tok, text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = from_pretrained(model_dir, model_class=AlbertForMaskedLM)
    if getattr(model, "missing_keys", None):
        raise ValueError(f"{model_dir} has no masked-LM head (missing {model.missing_keys[:3]}): "
                         "fill-mask needs a pretraining or masked-LM checkpoint")
    if model.config.vocab_size != tok.vocab_size:
        raise ValueError(f"the tokenizer has {tok.vocab_size} pieces but the model's vocab_size is "
                         f"{model.config.vocab_size}: they do not belong together (pass --tokenizer)")
    if len(ids) > model.config.max_position_embeddings:
        raise ValueError(f"text: {len(ids)} tokens exceed the model's max_position_embeddings "
                         f"{model.config.max_position_embeddings}")
    out = model.forward(np.asarray([ids], dtype=np.int64), full_logits=True)
    logits = np.asarray(out.logits[0], dtype=np.float64)                 # (T, V)
    k = min(top_k, tok.vocab_size)
    results = []
    for p in pos:
        z = logits[p] - logits[p].max()
        prob = np.exp(z) / np.exp(z).sum()                               # (V,)
        best = np.argsort(-prob, kind="stable")[:k]
        preds = []
        for b in best:
            filled = list(ids)
            filled[p] = int(b)
            preds.append({"token": tok.id_to_piece(int(b)), "token_id": int(b),
                          "score": float(prob[b]), "sequence": tok.decode(filled[1:-1])})
        results.append(preds)
    return results


def run(args) -> int:
    res = fill_mask(args.checkpoint, args.text, args.top_k, args.tokenizer)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    for i, preds in enumerate(res):
        print(f"[MASK] {i + 1}:" if len(res) > 1 else "[MASK]:")
        for r in preds:
            print(f"  {r['score']:.4f}  {r['token']:<15}  {r['sequence']}")
    return 0
