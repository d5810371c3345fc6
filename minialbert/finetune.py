"""Fine-tuning: sequence classification/regression, token classification and extractive QA,
from a minialbert checkpoint or any HuggingFace ALBERT directory.

The loop is the pretraining loop's little sibling: ALBERT's AdamW (no bias correction,
decoupled weight decay, spec §6.4) or LAMB, linear warm-up over ``warmup_ratio`` of the
steps then linear decay to 0, global-norm clipping at 1.0, optional layer-wise LR decay
(``optim.layerwise_lr_multipliers``), evaluation after every epoch with the task's metrics
(GLUE: accuracy, F1, Matthews, Pearson/Spearman; SQuAD: exact match / F1).
"""
from __future__ import annotations

import codecs
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import metrics as M
from . import tasks as T
from .backend import Random, check_device, resolve_dtype, to_numpy

TASKS = ("demo", "classification", "regression", "token", "qa")
TASK_KIND = {"classification": "sequence_classification", "regression": "regression",
             "token": "token_classification", "qa": "question_answering"}
DEMO_PACKAGES = ("asyncio", "email", "logging", "xml")


@dataclass
class FinetuneConfig:
    """Options of ``minialbert finetune`` (same names as the flags)."""
    model: str = "runs/pretrain"         # run dir, checkpoint dir, or HF ALBERT directory
    task: str = "demo"                   # demo | classification | regression | token | qa
    train: Optional[str] = None          # training file (CSV/TSV/JSONL, CoNLL, SQuAD JSON)
    eval: Optional[str] = None           # evaluation file (default: hold out 10% of train)
    tokenizer: Optional[str] = None      # spiece.model (default: the one beside the model)
    text_columns: Optional[str] = None   # "sentence1,sentence2"; default: GLUE names
    label_column: Optional[str] = None   # default: label / labels / gold_label / score
    encoding: str = "utf-8"              # text encoding of --train/--eval (e.g. latin-1, cp1252)
    max_length: int = 128                # T
    doc_stride: int = 64                 # QA: pieces between context windows
    max_query_length: int = 32           # QA: question pieces kept
    epochs: int = 3
    batch_size: int = 16
    lr: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    optimizer: str = "adamw"             # adamw (ALBERT's, as run_glue.sh), adamw-torch or lamb
    layerwise_lr_decay: Optional[float] = None  # e.g. 0.8; None/1.0 = off
    clip_norm: float = 1.0
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    out: str = "runs/finetune"
    overwrite: bool = False
    progress: bool = True
    demo_per_class: int = 400            # demo task: sentences per package

    def validate(self):
        if self.task not in TASKS:
            raise ValueError(f"--task: expected one of {TASKS}, got {self.task!r}")
        if self.task != "demo" and self.train is None:
            raise ValueError(f"--task {self.task} needs --train FILE")
        if self.optimizer not in ("adamw", "adamw-torch", "lamb"):
            raise ValueError(f"--optimizer: expected 'adamw', 'adamw-torch' or 'lamb', got {self.optimizer!r}")
        check_device(self.device)
        resolve_dtype(self.dtype)
        try:
            codecs.lookup(self.encoding)
        except (LookupError, TypeError):
            raise ValueError(f"--encoding: unknown text encoding {self.encoding!r} (e.g. utf-8, latin-1, cp1252)") from None
        for k in ("max_length", "epochs", "batch_size", "doc_stride", "max_query_length"):
            if int(getattr(self, k)) < 1:
                raise ValueError(f"--{k.replace('_', '-')} must be a positive integer, got {getattr(self, k)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"--warmup-ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.layerwise_lr_decay is not None and not 0 < self.layerwise_lr_decay <= 1:
            raise ValueError(f"--layerwise-lr-decay must be in (0, 1], got {self.layerwise_lr_decay}")


# --------------------------------------------------------------------------------------
# the embedded demo task


def demo_task(per_class: int = 400, seed: int = 0, packages=DEMO_PACKAGES) -> T.Task:
    """Which standard-library package does this docstring sentence come from?

    Sentences of the docstrings of ``asyncio``, ``email``, ``logging`` and ``xml`` (the
    embedded corpus's four largest topical packages), ``per_class`` of each, shuffled with
    ``seed``; 20% held out for evaluation. Needs no download: it reads the installed
    Python's own sources (so the exact sentences depend on the Python version)."""
    import sysconfig  # noqa: PLC0415

    from .data.corpus import default_corpus_files, docs_of_source  # noqa: PLC0415

    root = Path(sysconfig.get_paths()["stdlib"])
    by_pkg = {p: [] for p in packages}
    for f in default_corpus_files(include_numpy=False):
        top = f.relative_to(root).parts[0].removesuffix(".py")
        if top in by_pkg:
            for doc in docs_of_source(f.read_text(encoding="utf-8"), str(f)):
                by_pkg[top].extend(s for s in doc if len(s.split()) >= 4)
    rng = np.random.default_rng(seed)
    rows = []
    for label, p in enumerate(packages):
        sents = sorted(set(by_pkg[p]))
        if len(sents) < 10:
            raise ValueError(f"demo task: this Python has too few docstring sentences in {p!r}")
        pick = rng.permutation(len(sents))[:per_class]
        rows += [{"text_a": sents[i], "text_b": None, "label": label} for i in pick]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    n_eval = len(rows) // 5
    return T.Task("sequence_classification", rows[n_eval:], rows[:n_eval], list(packages))


# --------------------------------------------------------------------------------------
# loading


def resolve_model_dir(path, arg: str = "--model") -> Path:
    """A pretraining run directory (uses its checkpoint/), a checkpoint directory, or a HF
    directory: the folder holding config.json + model.safetensors. ``arg`` names the
    command-line argument in the error."""
    p = Path(path)
    if (p / "checkpoint" / "config.json").exists():
        return p / "checkpoint"
    if (p / "config.json").exists():
        return p
    raise FileNotFoundError(f"{arg}: {p} holds no model (no config.json; train one with "
                            "`minialbert pretrain` or pass a HF ALBERT directory)")


def find_tokenizer(model_dir: Path, explicit=None):
    from .tokenizer import Tokenizer  # noqa: PLC0415

    cands = [Path(explicit)] if explicit else [model_dir / "spiece.model", model_dir.parent / "spiece.model"]
    for c in cands:
        if c.is_file():
            return Tokenizer(c)
    raise FileNotFoundError(f"no tokenizer: looked for {', '.join(map(str, cands))} "
                            "(pass --tokenizer PATH/spiece.model)")


def load_task(cfg: FinetuneConfig) -> T.Task:
    if cfg.task == "demo":
        return demo_task(cfg.demo_per_class, cfg.seed)
    cols = cfg.text_columns.split(",") if cfg.text_columns else None
    if cfg.task in ("classification", "regression"):
        return T.load_sequence_task(cfg.train, cfg.eval, cols, cfg.label_column,
                                    regression=(cfg.task == "regression") or None, encoding=cfg.encoding)
    if cfg.task == "token":
        return T.load_token_task(cfg.train, cfg.eval, encoding=cfg.encoding)
    return T.load_qa_task(cfg.train, cfg.eval, encoding=cfg.encoding)


def build_features(task: T.Task, tok, cfg: FinetuneConfig):
    if task.kind in ("sequence_classification", "regression"):
        reg = task.kind == "regression"
        return (T.sequence_features(task.train, tok, cfg.max_length, reg),
                T.sequence_features(task.eval, tok, cfg.max_length, reg))
    if task.kind == "token_classification":
        return (T.token_features(task.train, tok, cfg.max_length),
                T.token_features(task.eval, tok, cfg.max_length))
    kw = dict(max_length=cfg.max_length, doc_stride=cfg.doc_stride, max_query_length=cfg.max_query_length)
    return T.qa_features(task.train, tok, **kw), T.qa_features(task.eval, tok, **kw)


def model_class(kind):
    from . import heads  # noqa: PLC0415

    return {"sequence_classification": heads.AlbertForSequenceClassification,
            "regression": heads.AlbertForSequenceClassification,
            "token_classification": heads.AlbertForTokenClassification,
            "question_answering": heads.AlbertForQuestionAnswering}[kind]


# --------------------------------------------------------------------------------------
# train / evaluate

_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


def _batch(feats, idx, kind):
    b = {k: feats[k][idx] for k in _INPUTS}
    if kind == "question_answering":
        b["start_positions"] = feats["start_positions"][idx]
        b["end_positions"] = feats["end_positions"][idx]
    else:
        b["labels"] = feats["labels"][idx]
    # trim padding columns no row in this batch uses
    n = int(b["attention_mask"].sum(1).max())
    for k in list(b):
        if b[k].ndim == 2:
            b[k] = b[k][:, :n]
    return b


def evaluate(model, task: T.Task, feats, batch_size=64) -> dict:
    """Eval-mode predictions on ``feats`` and the task's metrics."""
    was = model.training
    model.eval()
    N = len(feats["input_ids"])
    outs, losses = [], []
    for s in range(0, N, batch_size):
        idx = np.arange(s, min(N, s + batch_size))
        b = _batch(feats, idx, task.kind)
        out = model.forward(**b)
        losses.append(float(out.loss) * len(idx))
        if task.kind == "question_answering":
            pad = feats["input_ids"].shape[1] - b["input_ids"].shape[1]
            st = np.pad(to_numpy(out.start_logits), ((0, 0), (0, pad)), constant_values=-1e9)
            en = np.pad(to_numpy(out.end_logits), ((0, 0), (0, pad)), constant_values=-1e9)
            outs.append((st, en))
        else:
            lg = to_numpy(out.logits)
            if task.kind == "token_classification":
                pad = feats["input_ids"].shape[1] - lg.shape[1]
                lg = np.pad(lg, ((0, 0), (0, pad), (0, 0)))
            outs.append(lg)
    model._tape = None
    model.train(was)
    res = {"eval_loss": sum(losses) / N}
    if task.kind == "question_answering":
        st = np.concatenate([o[0] for o in outs])
        en = np.concatenate([o[1] for o in outs])
        null = any(not ex["answers"] for ex in task.eval)
        preds = T.qa_predictions(task.eval, feats, st, en, null_answers=null)
        golds = {ex["id"]: [a["text"] for a in ex["answers"]] or [""] for ex in task.eval}
        res.update(M.squad_metrics(preds, golds))
        res["_predictions"] = preds
    elif task.kind == "regression":
        pred = np.concatenate(outs).reshape(-1)
        res.update(M.regression_metrics(pred, feats["labels"]))
    elif task.kind == "token_classification":
        lg = np.concatenate(outs)
        lab = feats["labels"]
        valid = lab != T.IGNORE_INDEX
        res.update(M.classification_metrics(lg.argmax(-1)[valid], lab[valid], task.num_labels))
    else:
        pred = np.concatenate(outs).argmax(-1)
        res.update(M.classification_metrics(pred, feats["labels"], task.num_labels))
    return res


def finetune(cfg: FinetuneConfig, log: Callable = print) -> dict:
    """Fine-tune as configured; writes the model (config.json, model.safetensors,
    spiece.model), metrics.jsonl and eval_results.json into ``cfg.out``.
    Returns the final evaluation metrics."""
    from . import optim  # noqa: PLC0415
    from .hf import from_pretrained, save_tokenizer  # noqa: PLC0415
    from .train import make_optimizer  # noqa: PLC0415

    cfg.validate()
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not cfg.overwrite:
        raise ValueError(f"--out: {out} is not empty; pass --overwrite to replace it or choose another --out")
    model_dir = resolve_model_dir(cfg.model)
    tok = find_tokenizer(model_dir, cfg.tokenizer)
    task = load_task(cfg)
    train_f, eval_f = build_features(task, tok, cfg)
    N = len(train_f["input_ids"])
    if cfg.batch_size > N:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the data: only {N} training "
                         f"{'windows' if task.kind == 'question_answering' else 'examples'}")
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # "newly initialised head": expected here
        try:
            model = from_pretrained(model_dir, dtype=cfg.dtype, model_class=model_class(task.kind),
                                    num_labels=task.num_labels)
        except ValueError as e:
            if "'classifier." not in str(e):
                raise
            # a fine-tuned model whose head was made for another number of labels
            raise ValueError(f"--model: {model_dir} already has a task head of another size than this "
                             f"task's {task.num_labels} label(s) ({e}); fine-tune from the pretraining "
                             "checkpoint instead") from None
    if model.config.vocab_size != tok.vocab_size:
        raise ValueError(f"the tokenizer has {tok.vocab_size} pieces but the model's vocab_size is "
                         f"{model.config.vocab_size}: pass the model's own spiece.model with --tokenizer")
    if cfg.max_length > model.config.max_position_embeddings:
        raise ValueError(f"--max-length {cfg.max_length} exceeds the model's max_position_embeddings "
                         f"{model.config.max_position_embeddings}")
    if cfg.device != "cpu":
        model.to(cfg.device)
    model.train()
    steps_per_epoch = N // cfg.batch_size
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_ratio * total))
    mult = None
    if cfg.layerwise_lr_decay is not None and cfg.layerwise_lr_decay != 1.0:
        mult = optim.layerwise_lr_multipliers(model.params, model.config, cfg.layerwise_lr_decay)
    opt = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay, lr_multipliers=mult)
    if out.is_dir() and cfg.overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"{task.kind}: {len(task.train)} train / {len(task.eval)} eval examples, "
        f"{task.num_labels} label(s) {task.label_names[:8] if task.label_names else ''}; "
        f"{total} steps of B={cfg.batch_size}")
    mlog = M.MetricsLog(out / "metrics.jsonl")
    root = Random(cfg.seed, device=cfg.device).fork(3)   # dropout draws on the model's device
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm  # noqa: PLC0415
        bar = tqdm(total=total, desc=f"finetune {cfg.task}", unit="step", dynamic_ncols=True)
    step, res = 0, {}
    try:
        for epoch in range(cfg.epochs):
            order = np.random.default_rng([cfg.seed, epoch]).permutation(N)
            t0, run_loss = time.perf_counter(), 0.0
            for s in range(steps_per_epoch):
                b = _batch(train_f, order[s * cfg.batch_size:(s + 1) * cfg.batch_size], task.kind)
                lr = optim.lr_at(step, cfg.lr, warmup, total)
                model.zero_grad()
                model.rng = root.fork(step)
                out_ = model.forward(**b)
                loss = float(out_.loss)
                if not math.isfinite(loss):
                    raise RuntimeError(f"the loss became {loss} at step {step + 1}; lower --lr")
                model.backward()
                optim.clip_grad_norm(model.grads, cfg.clip_norm)
                opt.step(model.grads, lr)
                step += 1
                run_loss += loss
                if bar is not None:
                    bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
                    bar.update(1)
            res = evaluate(model, task, eval_f)
            rec = {"step": step, "epoch": epoch + 1, "loss": run_loss / max(steps_per_epoch, 1),
                   "lr": lr, "epoch_time_s": time.perf_counter() - t0,
                   **{k: v for k, v in res.items() if not k.startswith("_")}}
            mlog.write(rec)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in rec.items()
                              if k not in ("step", "epoch", "lr", "epoch_time_s") and isinstance(v, float))
            (bar.write if bar is not None else log)(f"epoch {epoch + 1}: {shown}")
    finally:
        if bar is not None:
            bar.close()
        mlog.close()
    model.to("cpu").save_pretrained(out)
    save_tokenizer(tok, out, model.config.max_position_embeddings)   # spiece.model + HF tokenizer files
    preds = res.pop("_predictions", None)
    if preds is not None:
        (out / "predictions.json").write_text(json.dumps(preds, indent=1))
    final = {"task": cfg.task, "kind": task.kind, "label_names": task.label_names,
             "num_train": len(task.train), "num_eval": len(task.eval), "steps": step, **res}
    (out / "eval_results.json").write_text(json.dumps(final, indent=2))
    (out / "finetune_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return final
