"""Training metrics: a ``metrics.jsonl`` log, PNG curves, and FLOP/MFU accounting.

FLOPs are counted per *application* of a layer, not per distinct parameter: ALBERT's
shared layer holds one set of weights but is applied L times, and each application
costs the same arithmetic as an unshared BERT layer. So for training (forward +
backward = 3 x forward, 2 FLOPs per multiply-add)::

    FLOPs = 6 * (params touched per token, each layer counted once per application) * tokens
          + 12 * L * T * H * tokens                        # attention scores and probs @ v
          + 6 * (MLM head params) * predicted positions     # the decoder runs where logits are computed
          + 6 * (pooler + sentence head params) * sequences

Embedding lookups are gathers, not matmuls, and are not counted (the PaLM/Chinchilla
convention). MFU = counted FLOPs per second / peak FLOP/s of the device, where the peak
is measured with a short matmul benchmark (:func:`measure_peak_flops`) or stated.
"""
from __future__ import annotations

import json
import math
import re
import string
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np

from .atomic import atomic_write
from .backend import bfloat16_dtype, matmul, synchronize, xp_for

# --------------------------------------------------------------------------------------
# FLOP counting


def layer_params_per_application(config) -> int:
    """Parameters of ONE AlbertLayer (attention + FFN + two LayerNorms), i.e. the weights
    a token meets each time the layer is applied. Independent of the sharing mode."""
    H, I = config.hidden_size, config.intermediate_size
    attn = 4 * (H * H + H)           # query, key, value, dense
    ffn = H * I + I + I * H + H      # ffn (H->I), ffn_output (I->H)
    ln = 2 * 2 * H                   # attention.LayerNorm, full_layer_layer_norm
    return attn + ffn + ln


def layer_applications(config) -> int:
    """How many times a layer is applied in one forward: L outer steps x inner_group_num."""
    return int(config.num_hidden_layers) * int(getattr(config, "inner_group_num", 1) or 1)


def train_flops(config, batch_size: int, seq_len: int, n_predictions=None,
                sentence_head: bool = True, training: bool = True) -> float:
    """FLOPs of one optimiser step's forward(+backward) on B sequences of length T.

    Inputs: config (AlbertConfig), batch_size B, seq_len T, n_predictions = number of
    positions where MLM logits are computed (default B*T: full logits; pass the number of
    masked positions when the model gathers them first), sentence_head: count pooler + SOP.
    Returns: FLOPs (float). ``training=False`` counts a forward only (2 instead of 6)."""
    B, T = int(batch_size), int(seq_len)
    E, H, V = config.embedding_size, config.hidden_size, config.vocab_size
    tokens = B * T
    n_pred = tokens if n_predictions is None else int(n_predictions)
    k = 6.0 if training else 2.0
    per_token = (E * H + H) + layer_applications(config) * layer_params_per_application(config)
    # QK^T and probs @ v: 2 matmuls of T*H multiply-adds per token, i.e. 2*T*H "params"; x k below
    attention = 2.0 * layer_applications(config) * T * H
    mlm = H * E + E + 2 * E + E * V + V                   # dense, LayerNorm, tied decoder + bias
    seq = (H * H + H + 2 * H + 2) if sentence_head else 0
    return k * (per_token * tokens + attention * tokens + mlm * n_pred + seq * B)


def measure_peak_flops(device: str = "cpu", dtype="float32", n: Optional[int] = None,
                       repeats: int = 5, seconds: float = 0.5) -> float:
    """Peak matmul throughput in FLOP/s: the best of ``repeats`` timings of an (n,n)@(n,n)
    product (2 n^3 FLOPs), after a warm-up. Takes well under a second on a CPU.
    n defaults to 1024 on the CPU and 4096 on a GPU (a 1024 product is too small to keep a
    data-centre GPU busy: the "peak" would come out low and the MFU high)."""
    if n is None:
        n = 1024 if device == "cpu" else 4096
    xp = xp_for(device)
    if str(dtype) == "bfloat16":
        dtype = bfloat16_dtype()
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    b = xp.asarray(rng.standard_normal((n, n)).astype(dtype))
    # backend.matmul: the product the model's layers use (float16/bfloat16: float32 accumulation)
    c = matmul(a, b)  # warm-up (thread pool start, GPU kernel selection)
    synchronize(device)
    best = math.inf
    t_end = time.perf_counter() + seconds
    for i in range(max(1, repeats)):
        t0 = time.perf_counter()
        c = matmul(a, b)
        synchronize(device)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > t_end and i >= 1:
            break
    del c
    return 2.0 * n ** 3 / best


# --------------------------------------------------------------------------------------
# metrics.jsonl


class MetricsLog:
    """Append-only JSON-lines log, one object per logged step.

    On resume, records of steps after the resumed step (written by the interrupted run
    after its last checkpoint) are dropped first, so the file reads like one run."""

    def __init__(self, path, resume_step=None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            # a new file renamed over the old one: a kill during the rewrite keeps the old records
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(json.dumps({k: _jsonable(v) for k, v in record.items()}) + "\n")
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


def read_metrics(path) -> list[dict]:
    """The records of a metrics.jsonl file ([] if it does not exist); a truncated last
    line (a run killed mid-write) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


# --------------------------------------------------------------------------------------
# plots

PLOTS = (
    # held-out curves (eval_*: every --eval-every steps and at the end) beside the training ones
    ("loss", ("loss", "mlm_loss", "sop_loss", "nsp_loss", "eval_mlm_loss"), "loss"),
    ("accuracy", ("mlm_accuracy", "sop_accuracy", "nsp_accuracy", "eval_mlm_accuracy", "eval_sop_accuracy",
                  "eval_nsp_accuracy"), "accuracy"),
    ("lr", ("lr",), "learning rate"),
    ("throughput", ("tokens_per_s",), "tokens / s"),
)


def plot_metrics(records, out_dir, prefix: str = "") -> list[str]:
    """Write one PNG per group of curves (loss, accuracy, lr, throughput) into ``out_dir``.
    Returns the paths written. Uses matplotlib's Agg backend (no display needed)."""
    import matplotlib  # noqa: PLC0415  (slow to import; only the plots need it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, keys, ylabel in PLOTS:
        series = {k: [(r["step"], r[k]) for r in records if r.get(k) is not None and "step" in r]
                  for k in keys}
        series = {k: v for k, v in series.items() if v}
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for k, pts in series.items():
            xs, ys = zip(*pts)
            held = k.startswith("eval_")          # sparse points: markers, dashed
            ax.plot(xs, ys, label=k.replace("eval_", "held-out ") if held else k, lw=1.5,
                    ls="--" if held else "-", marker="o" if held else None, ms=4)
        for task in ("sop", "nsp"):
            if name == "accuracy" and ({f"{task}_accuracy", f"eval_{task}_accuracy"} & set(series)):
                ax.axhline(0.5, color="gray", ls=":", lw=1, label=f"chance ({task.upper()})")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"{prefix}{name}.png"
        try:
            atomic_write(path, lambda f, fig=fig: fig.savefig(f, format="png"))
        finally:
            plt.close(fig)
        written.append(str(path))
    return written


def format_rate(x: float) -> str:
    """1234567 -> '1.23M' (for progress bars)."""
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


# --------------------------------------------------------------------------------------
# evaluation metrics: GLUE (accuracy, F1, Matthews, Pearson/Spearman) and SQuAD (EM/F1)


def accuracy(preds, labels) -> float:
    """Fraction of equal entries. Inputs: preds (N,), labels (N,)."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    return float((preds == labels).mean()) if len(labels) else float("nan")


def f1_binary(preds, labels, positive=1) -> float:
    """F1 of the positive class (GLUE MRPC/QQP): 2 precision recall / (precision + recall); 0 when nothing is
    predicted or present positive."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    tp = float(((preds == positive) & (labels == positive)).sum())
    fp = float(((preds == positive) & (labels != positive)).sum())
    fn = float(((preds != positive) & (labels == positive)).sum())
    return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def f1_macro(preds, labels) -> float:
    """Unweighted mean of the per-class F1 over the classes present in preds or labels."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    classes = np.union1d(preds, labels)
    return float(np.mean([f1_binary(preds, labels, c) for c in classes])) if len(classes) else 0.0


def matthews_corrcoef(preds, labels) -> float:
    """Matthews correlation (GLUE CoLA), multiclass form (Gorodkin's R_K); 0 when undefined."""
    preds, labels = np.asarray(preds), np.asarray(labels)
    classes = np.union1d(preds, labels)
    idx = {c: i for i, c in enumerate(classes)}
    K = len(classes)
    C = np.zeros((K, K), dtype=np.float64)                     # C[true, pred]
    for p, t in zip(preds, labels):
        C[idx[t], idx[p]] += 1
    t_sum, p_sum = C.sum(1), C.sum(0)
    n, correct = C.sum(), np.trace(C)
    cov_ytyp = correct * n - t_sum @ p_sum
    cov_ypyp = n * n - p_sum @ p_sum
    cov_ytyt = n * n - t_sum @ t_sum
    denom = math.sqrt(cov_ytyt * cov_ypyp)
    return 0.0 if denom == 0 else float(cov_ytyp / denom)


def pearsonr(x, y) -> float:
    """Pearson correlation (GLUE STS-B); NaN when either input is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float("nan") if denom == 0 else float((x * y).sum() / denom)


def _rank(a):
    """Average ranks (ties share the mean of their positions), 1-based."""
    a = np.asarray(a, np.float64)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), np.float64)
    sa = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sa[j + 1] == sa[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def spearmanr(x, y) -> float:
    """Spearman rank correlation = Pearson of the average ranks."""
    return pearsonr(_rank(x), _rank(y))


def classification_metrics(preds, labels, num_labels: int) -> dict:
    """accuracy, F1 (binary: of class 1; else macro) and Matthews correlation."""
    out = {"accuracy": accuracy(preds, labels), "mcc": matthews_corrcoef(preds, labels)}
    out["f1"] = f1_binary(preds, labels) if num_labels == 2 else f1_macro(preds, labels)
    return out


def regression_metrics(preds, labels) -> dict:
    """Pearson, Spearman and their mean (GLUE STS-B), plus MSE."""
    p, s = pearsonr(preds, labels), spearmanr(preds, labels)
    d = np.asarray(preds, np.float64) - np.asarray(labels, np.float64)
    return {"pearson": p, "spearman": s, "corr": (p + s) / 2, "mse": float((d * d).mean())}


def normalize_answer(s: str) -> str:
    """SQuAD v1.1 evaluation normalisation: lower case, drop punctuation and the articles
    a/an/the, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_exact(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_f1(prediction: str, truth: str) -> float:
    """Token-overlap F1 after normalisation (the official SQuAD script)."""
    p, t = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not p or not t:  # SQuAD 2.0: both empty (no answer) counts as a match
        return float(p == t)
    common = Counter(p) & Counter(t)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(t)
    return 2 * precision * recall / (precision + recall)


def squad_metrics(predictions: dict, answers: dict) -> dict:
    """Inputs: predictions {qid: text}, answers {qid: [gold texts]} ([""] = unanswerable).
    Returns: {"exact_match", "f1"} in percent, max over gold answers, mean over questions."""
    if not answers:
        raise ValueError("squad_metrics: no questions to evaluate")
    em = f1 = 0.0
    for qid, golds in answers.items():
        pred = predictions.get(qid, "")
        golds = golds or [""]
        em += max(squad_exact(pred, g) for g in golds)
        f1 += max(squad_f1(pred, g) for g in golds)
    n = len(answers)
    return {"exact_match": 100.0 * em / n, "f1": 100.0 * f1 / n}
