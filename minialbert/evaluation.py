"""Held-out evaluation of a pretrained model: masked-LM accuracy, and its sentence head
on SOP or NSP pairs alike (``minialbert eval``; ``pretrain --eval-data``).

The paper's Table 5 applies each model's sentence head to both tasks: an NSP-trained head
is asked "is B the continuation of A?" on SOP pairs too, where the answer is read the
same way. Our labels line up for that: 0 = "A then its real continuation B" in both tasks,
1 = "not": B from another document (NSP) or the two segments swapped (SOP). So one
binary head is scored on either kind of pair with the same argmax.

Counts are kept as integers (:class:`EvalCounts`) so accuracies over many batches are
exact ratios, and every accuracy comes with its binomial standard error
``sqrt(p (1 - p) / n)``: the yardstick for "above chance" at n pairs.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from . import atomic
from .backend import get_array_module, to_numpy
from .data.shards import ShardLoader, read_manifest
from .finetune import resolve_model_dir
from .heads import AlbertForMaskedLM, AlbertForPreTraining
from .hf import from_pretrained
from .tokenizer import Tokenizer

EVAL_FORMAT = "minialbert-eval"


@dataclass
class EvalCounts:
    """Running sums over held-out batches (host ints / floats)."""
    mlm_correct: int = 0        # masked positions predicted right (argmax)
    mlm_total: int = 0          # masked positions
    mlm_loss_sum: float = 0.0   # sum over masked positions of -log p(gold)
    pair_correct: int = 0       # sentence-head argmax == pair label
    pair_total: int = 0         # pairs with a label (not -100)
    examples: int = 0

    def add(self, other: "EvalCounts") -> None:
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    @property
    def mlm_accuracy(self) -> float:
        return self.mlm_correct / self.mlm_total if self.mlm_total else float("nan")

    @property
    def mlm_loss(self) -> float:
        return self.mlm_loss_sum / self.mlm_total if self.mlm_total else float("nan")

    @property
    def pair_accuracy(self) -> Optional[float]:
        return self.pair_correct / self.pair_total if self.pair_total else None


def stderr(p: Optional[float], n: int) -> Optional[float]:
    """Binomial standard error of an accuracy p measured on n items."""
    if p is None or not n or not math.isfinite(p):
        return None
    return math.sqrt(p * (1.0 - p) / n)


def has_sentence_head(model) -> bool:
    return "sop_classifier.weight" in model.params


def batch_counts(model, batch: dict) -> EvalCounts:
    """One held-out forward (the model's mode is left as it is): argmax accuracy at the
    masked positions, the summed MLM cross-entropy there, and the sentence head's
    accuracy on the pair labels when the model has one and the batch carries labels."""
    kw = dict(token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"],
              labels=batch["labels"])
    with model.no_grad():                                    # nothing here is backpropagated
        out = model.forward(batch["input_ids"], **kw)
    logits = out.prediction_logits if out.prediction_logits is not None else out.logits   # (N, V)
    xp = get_array_module(logits)
    gold = xp.asarray(batch["labels"]).reshape(-1)[out.masked_positions]                   # (N,)
    c = EvalCounts(examples=int(len(batch["input_ids"])))
    n = int(gold.shape[0])
    if n:
        z = logits.astype(xp.float64)
        z = z - z.max(axis=-1, keepdims=True)
        logp = z[xp.arange(n), gold] - xp.log(xp.exp(z).sum(axis=-1))                   # (N,)
        c.mlm_correct = int((xp.argmax(logits, axis=-1) == gold).sum())
        c.mlm_total = n
        c.mlm_loss_sum = float(-logp.sum())
    labels = batch.get("sentence_order_label")
    if getattr(out, "sop_logits", None) is not None and labels is not None:
        lab = xp.asarray(labels)
        valid = lab != -100
        c.pair_correct = int(((xp.argmax(out.sop_logits, axis=-1) == lab) & valid).sum())
        c.pair_total = int(valid.sum())
    return c


def evaluate_batches(model, batches: Iterable[dict]) -> EvalCounts:
    """Sum :func:`batch_counts` over batches with dropout off; the model's mode is restored."""
    was_training = model.training
    model.eval()
    total = EvalCounts()
    try:
        for b in batches:
            total.add(batch_counts(model, b))
    finally:
        model.train(was_training)
    return total


def shard_batches(data_dir, batch_size: int = 64, max_examples: Optional[int] = None):
    """The examples of a shard folder, in file order, as padded batches (at most max_examples)."""
    loader = ShardLoader(data_dir, batch_size=batch_size, shuffle=False, epochs=1)
    seen = 0
    for b in loader:
        if max_examples is not None:
            if seen >= max_examples:
                return
            if seen + len(b["input_ids"]) > max_examples:
                b = {k: v[:max_examples - seen] for k, v in b.items()}
        seen += len(b["input_ids"])
        yield b


def eval_record(counts: EvalCounts) -> dict:
    """The ``eval_*`` fields of a metrics.jsonl record (pretrain's held-out evaluation)."""
    rec = {"eval_mlm_loss": counts.mlm_loss, "eval_mlm_accuracy": counts.mlm_accuracy}
    if counts.pair_accuracy is not None:
        rec["eval_sop_accuracy"] = counts.pair_accuracy
    return rec


# --------------------------------------------------------------------------------------
# a checkpoint against shard folders


def check_data_dir(path, arg: str = "--data") -> dict:
    """The manifest of a complete shard folder, or a clear error naming ``arg``."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{arg}: no such directory: {p}")
    if not p.is_dir():
        raise ValueError(f"{arg}: {p} is a file, expected a shard folder from `minialbert data build`")
    try:
        return read_manifest(p)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{arg}: {p}: {str(e).removeprefix('data_dir: ')}") from None


def load_model(path, arg: str = "CHECKPOINT", device: str = "cpu"):
    """(model, model_dir, tokenizer hash or None) from a run directory, its checkpoint/,
    or an HF ALBERT directory. The model class is the one the checkpoint was saved as
    (AlbertForPreTraining has a sentence head, AlbertForMaskedLM has none)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{arg}: no such file or directory: {p}")
    model_dir = resolve_model_dir(p, arg=arg)
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch = (cfg.get("architectures") or ["AlbertForPreTraining"])[0]
    cls = AlbertForMaskedLM if arch == "AlbertForMaskedLM" else AlbertForPreTraining
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = from_pretrained(model_dir, model_class=cls)
        except ValueError as e:
            raise ValueError(f"{arg}: {model_dir}: {e}") from None
    missing = [k for k in getattr(model, "missing_keys", []) if k.startswith("predictions.")]
    if missing:
        raise ValueError(f"{arg}: {model_dir} has no masked-LM head (missing {missing[:3]}): "
                         "eval needs a pretraining checkpoint")
    if any(k.startswith("sop_classifier.") for k in getattr(model, "missing_keys", [])):
        # an MLM-only checkpoint read as AlbertForPreTraining: no trained sentence head
        model = from_pretrained(model_dir, model_class=AlbertForMaskedLM)
    tok_hash = None
    for cand in (model_dir / "spiece.model", model_dir.parent / "spiece.model"):
        if cand.is_file():
            tok_hash = Tokenizer(cand).content_hash
            break
    if device != "cpu":
        model.to(device)
    return model.eval(), model_dir, tok_hash


def evaluate_on(model, data_dir, tokenizer_hash: Optional[str] = None, batch_size: int = 64,
                max_examples: Optional[int] = None, arg: str = "--data") -> dict:
    """Evaluate ``model`` on one shard folder. Returns a JSON-ready dict: data, task (the
    folder's sentence task), examples, mlm_accuracy (+ _stderr), mlm_loss, mlm_predictions,
    pair_accuracy (+ _stderr; None for a model without a sentence head or task "none"), pairs."""
    manifest = check_data_dir(data_dir, arg)
    want = manifest["tokenizer"]["hash"]
    if tokenizer_hash is not None and tokenizer_hash != want:
        raise ValueError(f"{arg}: {data_dir} was built with another tokenizer (hash {want[:12]}) than "
                         f"the model's spiece.model ({tokenizer_hash[:12]}): rebuild the shards with "
                         "`minialbert data build --tokenizer MODEL/spiece.model`")
    V, T = model.config.vocab_size, manifest["config"]["max_seq_length"]
    if manifest["tokenizer"]["vocab_size"] > V:
        raise ValueError(f"{arg}: {data_dir} uses {manifest['tokenizer']['vocab_size']} token ids, the "
                         f"model only {V}: they do not belong together")
    if T > model.config.max_position_embeddings:
        raise ValueError(f"{arg}: {data_dir} has sequences of {T} tokens, more than the model's "
                         f"max_position_embeddings {model.config.max_position_embeddings}")
    c = evaluate_batches(model, shard_batches(data_dir, batch_size, max_examples))
    pa = c.pair_accuracy
    return {"data": str(data_dir), "task": manifest["config"]["sentence_task"], "examples": c.examples,
            "mlm_accuracy": c.mlm_accuracy, "mlm_accuracy_stderr": stderr(c.mlm_accuracy, c.mlm_total),
            "mlm_loss": c.mlm_loss, "mlm_predictions": c.mlm_total,
            "pair_accuracy": pa, "pair_accuracy_stderr": stderr(pa, c.pair_total), "pairs": c.pair_total}


def evaluate_checkpoint(checkpoint, data_dirs: Sequence, batch_size: int = 64,
                        max_examples: Optional[int] = None, device: str = "cpu") -> dict:
    """``minialbert eval``: every folder of ``data_dirs`` checked first, then evaluated.
    Returns {"format", "checkpoint", "model": {class, sentence_head, params}, "results": [...]}."""
    if not data_dirs:
        raise ValueError("--data: give at least one shard folder to evaluate on")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size}")
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"--max-examples must be a positive integer, got {max_examples}")
    for d in data_dirs:                                  # every path checked before any work
        check_data_dir(d)
    model, model_dir, tok_hash = load_model(checkpoint, device=device)
    results = [evaluate_on(model, d, tok_hash, batch_size, max_examples) for d in data_dirs]
    return {"format": EVAL_FORMAT, "checkpoint": str(model_dir),
            "model": {"class": type(model).__name__, "sentence_head": has_sentence_head(model),
                      "params": model.num_parameters()},
            "results": results}


def format_table(report: dict) -> str:
    """The table ``minialbert eval`` prints."""
    rows = [("data", "task", "examples", "MLM acc", "± se", "MLM loss", "pair acc", "± se", "pairs")]
    for r in report["results"]:
        pa = r["pair_accuracy"]
        rows.append((r["data"], r["task"], str(r["examples"]), f"{r['mlm_accuracy']:.4f}",
                     f"{r['mlm_accuracy_stderr'] or 0:.4f}", f"{r['mlm_loss']:.4f}",
                     "-" if pa is None else f"{pa:.4f}",
                     "-" if pa is None else f"{r['pair_accuracy_stderr']:.4f}", str(r["pairs"])))
    w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) if i < 2 else c.rjust(w[i]) for i, c in enumerate(row)) for row in rows]
    m = report["model"]
    head = (f"{report['checkpoint']}: {m['class']}, {m['params']:,} parameters"
            + ("" if m["sentence_head"] else "; no sentence head (pair accuracy not measured)"))
    return "\n".join([head, *lines])


def check_json_out(path, arg: str = "--json") -> Path:
    """A --json destination we may write: its folder exists, and it is new or an earlier
    result of ours (a file the user saved is never replaced)."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{arg}: {p} is a directory, expected a file name")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"{arg}: the folder {p.parent} does not exist")
    if p.exists():
        try:
            ours = json.loads(p.read_text(encoding="utf-8")).get("format") == EVAL_FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise FileExistsError(f"{arg}: {p} exists and is not a `minialbert eval` result; "
                                  "not replacing it (choose another file)")
    return p


def write_json_atomic(path, obj) -> None:
    """``obj`` as JSON (NumPy scalars and arrays as numbers and lists), written atomically."""
    atomic.write_json_atomic(path, obj, default=_json_default)


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if hasattr(x, "shape"):
        return to_numpy(x).tolist()
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")
