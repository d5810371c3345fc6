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
import sysconfig
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from . import distributed
from .backend import Random, check_device, resolve_dtype, to_numpy
from .config import AlbertConfig
from .data.corpus import default_corpus_files, docs_of_source
from .heads import (AlbertForQuestionAnswering, AlbertForSequenceClassification,
                    AlbertForTokenClassification)
from .hf import from_pretrained
from .hf_tokenizer import HF_TOKENIZER_FILES, save_tokenizer
from .layers import IGNORE_INDEX
from .metrics import MetricsLog, classification_metrics, regression_metrics, squad_metrics
from .optim import OPTIMIZER_NAMES, layerwise_lr_multipliers, lr_at, make_optimizer
from .options import option
from .precision import PRECISIONS, check_precision, make_scaler
from .rundir import RunDir, write_json_atomic
from .step import RunningMetrics, TrainingDiverged, train_step
from .tasks import (Task, load_qa_task, load_sequence_task, load_token_task, qa_features,
                    qa_predictions, sequence_features, token_features)
from .tokenizer import Tokenizer

TASKS = ("demo", "classification", "regression", "token", "qa")
TASK_KIND = {"classification": "sequence_classification", "regression": "regression",
             "token": "token_classification", "qa": "question_answering"}
DEMO_PACKAGES = ("asyncio", "email", "logging", "xml")
# what a fine-tuning run writes in --out (run.json records it; --overwrite removes only these)
RUN_FILES = (*(f"{tmp}{n}{suffix}" for n in ("config.json", "model.safetensors", "spiece.model", *HF_TOKENIZER_FILES)
               for tmp, suffix in (("", ""), (".", ".*"))),                # save_pretrained's temporaries
             *(f"{n}{tmp}" for n in ("metrics.jsonl", "eval_results.json", "finetune_config.json",
                                     "predictions.json") for tmp in ("", ".tmp*")))


@dataclass
class FinetuneConfig:
    """Options of ``minialbert finetune``: each field is the flag of the same name
    (``max_length`` -> ``--max-length``), with the help text below."""
    model: str = option("runs/pretrain", "pretraining run dir, checkpoint dir, or HF ALBERT dir")
    task: str = option("demo", "demo | classification | regression | token | qa", choices=TASKS)
    train: Optional[str] = option(None, "training data (CSV/TSV/JSONL, CoNLL, SQuAD JSON)", metavar="FILE")
    eval: Optional[str] = option(None, "evaluation data (none: 10%% of --train held out)", metavar="FILE")
    tokenizer: Optional[str] = option(None, "spiece.model (none: the one beside the model)", metavar="PATH")
    text_columns: Optional[str] = option(None, 'e.g. "sentence1,sentence2" (none: GLUE names)')
    label_column: Optional[str] = option(None, "none: label, labels, gold_label or score")
    encoding: str = option("utf-8", "text encoding of --train/--eval (e.g. latin-1, cp1252)")
    max_length: int = option(128, "tokens per example", metavar="T")
    doc_stride: int = option(64, "QA: pieces between windows")
    max_query_length: int = option(32, "QA: question pieces kept")
    epochs: int = option(3, "passes over the training data")
    batch_size: int = option(16, "examples per step")
    lr: float = option(1e-4, "peak learning rate")
    warmup_ratio: float = option(0.1, "linear warm-up over this fraction of the steps, then linear decay")
    weight_decay: float = option(0.01, "decoupled, not on LayerNorm/bias")
    optimizer: str = option("adamw", "adamw (ALBERT's, as run_glue.sh), adamw-torch or lamb",
                            choices=OPTIMIZER_NAMES)
    layerwise_lr_decay: Optional[float] = option(
        None, "LR x X**depth from the top (heads 0, shared layer 1, embeddings 2 with sharing=all); "
        "none or 1.0: off", metavar="X")
    clip_norm: float = option(1.0, "global gradient-norm clip")
    seed: int = option(0, "head init, data order, dropout")
    device: str = option("cpu", "cpu or gpu (CuPy)", choices=("cpu", "gpu"))
    dtype: str = option("float32", "parameter and activation dtype", choices=("float32", "float64"))
    precision: str = option("fp32", "arithmetic: fp32; fp16 or bf16 (float32 master weights, float16/bfloat16 "
                            "matmuls and activations; fp16 with a dynamic loss scale); tf32 (GPU only)",
                            choices=PRECISIONS)
    out: str = option("runs/finetune", "output directory", metavar="DIR")
    overwrite: bool = option(False, "replace a fine-tuning run in --out (only what minialbert wrote there)")
    progress: bool = option(True, "no progress bar", flag="--no-progress")
    demo_per_class: int = option(400, "demo task: sentences per package (20%% held out)")

    def validate(self):
        if self.task not in TASKS:
            raise ValueError(f"--task: expected one of {TASKS}, got {self.task!r}")
        if self.task != "demo" and self.train is None:
            raise ValueError(f"--task {self.task} needs --train FILE")
        if self.optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"--optimizer: expected one of {OPTIMIZER_NAMES}, got {self.optimizer!r}")
        check_device(self.device)
        resolve_dtype(self.dtype)
        check_precision(self.precision, self.device, self.dtype)
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
        if not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise ValueError(f"--clip-norm must be a positive number, got {self.clip_norm}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"--weight-decay must be a number >= 0, got {self.weight_decay}")
        for name in ("train", "eval", "tokenizer"):
            p = getattr(self, name)
            if p is not None and not Path(p).exists():
                raise FileNotFoundError(f"--{name}: no such file or directory: {p}")


# --------------------------------------------------------------------------------------
# the embedded demo task


def demo_task(per_class: int = 400, seed: int = 0, packages=DEMO_PACKAGES) -> Task:
    """Which standard-library package does this docstring sentence come from?

    Sentences of the docstrings of ``asyncio``, ``email``, ``logging`` and ``xml`` (the
    embedded corpus's four largest topical packages), ``per_class`` of each, shuffled with
    ``seed``; 20% held out for evaluation. Needs no download: it reads the installed
    Python's own sources (so the exact sentences depend on the Python version)."""
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
    return Task("sequence_classification", rows[n_eval:], rows[:n_eval], list(packages))


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
    cands = [Path(explicit)] if explicit else [model_dir / "spiece.model", model_dir.parent / "spiece.model"]
    for c in cands:
        if c.is_file():
            return Tokenizer(c)
    raise FileNotFoundError(f"no tokenizer: looked for {', '.join(map(str, cands))} "
                            "(pass --tokenizer PATH/spiece.model)")


def load_task(cfg: FinetuneConfig) -> Task:
    if cfg.task == "demo":
        return demo_task(cfg.demo_per_class, cfg.seed)
    cols = cfg.text_columns.split(",") if cfg.text_columns else None
    if cfg.task in ("classification", "regression"):
        return load_sequence_task(cfg.train, cfg.eval, cols, cfg.label_column,
                                  regression=(cfg.task == "regression") or None, encoding=cfg.encoding)
    if cfg.task == "token":
        return load_token_task(cfg.train, cfg.eval, encoding=cfg.encoding)
    return load_qa_task(cfg.train, cfg.eval, encoding=cfg.encoding)


def build_features(task: Task, tok, cfg: FinetuneConfig):
    if task.kind in ("sequence_classification", "regression"):
        reg = task.kind == "regression"
        return (sequence_features(task.train, tok, cfg.max_length, reg),
                sequence_features(task.eval, tok, cfg.max_length, reg))
    if task.kind == "token_classification":
        return (token_features(task.train, tok, cfg.max_length),
                token_features(task.eval, tok, cfg.max_length))
    kw = dict(max_length=cfg.max_length, doc_stride=cfg.doc_stride, max_query_length=cfg.max_query_length)
    return qa_features(task.train, tok, **kw), qa_features(task.eval, tok, **kw)


MODEL_CLASS = {"sequence_classification": AlbertForSequenceClassification,
               "regression": AlbertForSequenceClassification,
               "token_classification": AlbertForTokenClassification,
               "question_answering": AlbertForQuestionAnswering}
# heads whose size is the number of labels: a model fine-tuned for another count cannot load
CLASSIFIER_ARCHITECTURES = ("AlbertForSequenceClassification", "AlbertForTokenClassification")


def model_class(kind):
    return MODEL_CLASS[kind]


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


def evaluate(model, task: Task, feats, batch_size=64) -> dict:
    """Eval-mode predictions on ``feats`` and the task's metrics."""
    was = model.training
    model.eval()
    N = len(feats["input_ids"])
    outs, losses = [], []
    with model.no_grad():
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
    model.train(was)
    res = {"eval_loss": sum(losses) / N}
    if task.kind == "question_answering":
        st = np.concatenate([o[0] for o in outs])
        en = np.concatenate([o[1] for o in outs])
        null = any(not ex["answers"] for ex in task.eval)
        preds = qa_predictions(task.eval, feats, st, en, null_answers=null)
        golds = {ex["id"]: [a["text"] for a in ex["answers"]] or [""] for ex in task.eval}
        res.update(squad_metrics(preds, golds))
        res["_predictions"] = preds
    elif task.kind == "regression":
        pred = np.concatenate(outs).reshape(-1)
        res.update(regression_metrics(pred, feats["labels"]))
    elif task.kind == "token_classification":
        lg = np.concatenate(outs)
        lab = feats["labels"]
        valid = lab != IGNORE_INDEX
        res.update(classification_metrics(lg.argmax(-1)[valid], lab[valid], task.num_labels))
    else:
        pred = np.concatenate(outs).argmax(-1)
        res.update(classification_metrics(pred, feats["labels"], task.num_labels))
    return res


def _load_model(model_dir: Path, task: Task, cfg: FinetuneConfig, tok):
    """The pretrained model with this task's head (new, or the model's own when it fits)."""
    saved = AlbertConfig.from_json_file(model_dir)
    arch = (json.loads((model_dir / "config.json").read_text()).get("architectures") or [""])[0]
    if (arch in CLASSIFIER_ARCHITECTURES and task.kind != "question_answering"
            and saved.num_labels != task.num_labels):
        raise ValueError(f"--model: {model_dir} already has a task head of another size than this "
                         f"task's {task.num_labels} label(s) ({arch} with {saved.num_labels}); "
                         "fine-tune from the pretraining checkpoint instead")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # "newly initialised head": expected here
        model = from_pretrained(model_dir, dtype=cfg.dtype, model_class=model_class(task.kind),
                                num_labels=task.num_labels)
    if model.config.vocab_size != tok.vocab_size:
        raise ValueError(f"the tokenizer has {tok.vocab_size} pieces but the model's vocab_size is "
                         f"{model.config.vocab_size}: pass the model's own spiece.model with --tokenizer")
    if cfg.max_length > model.config.max_position_embeddings:
        raise ValueError(f"--max-length {cfg.max_length} exceeds the model's max_position_embeddings "
                         f"{model.config.max_position_embeddings}")
    return model


def _silent(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def finetune(cfg: FinetuneConfig, log: Callable = print, comm=None) -> dict:
    """Fine-tune as configured; writes the model (config.json, model.safetensors,
    spiece.model and the HF tokenizer files), metrics.jsonl, eval_results.json and run.json
    into ``cfg.out``. Returns the final evaluation metrics. Raises ValueError /
    FileNotFoundError for bad options and inputs (nothing written), TrainingDiverged on a
    NaN/inf loss.
    ``comm`` (default ``distributed.get_world(cfg.device)``): under ``mpiexec -n N`` each
    step's global batch is N x ``batch_size``, each rank takes its rows of it, and rank 0
    alone evaluates and writes (the other ranks return ``{"rank": r}``)."""
    cfg.validate()
    comm = comm or distributed.get_world(cfg.device)
    is_root = comm.rank == 0
    if not is_root:
        log = _silent
    comm.check_same(asdict(cfg), "command-line settings")
    model_dir = resolve_model_dir(cfg.model)
    out = RunDir(cfg.out, RUN_FILES)
    old_run = out.claim_new(cfg.overwrite, inputs=[model_dir, cfg.tokenizer, cfg.train, cfg.eval],
                            not_a_run="holds no minialbert fine-tuning")   # raises, nothing written
    # data and model
    tok = find_tokenizer(model_dir, cfg.tokenizer)
    task = load_task(cfg)
    train_f, eval_f = build_features(task, tok, cfg)
    N = len(train_f["input_ids"])
    G = comm.size * cfg.batch_size                           # the global batch of one step
    if G > N:
        ranks = f" x {comm.size} ranks" if comm.size > 1 else ""
        raise ValueError(f"--batch-size {cfg.batch_size}{ranks} is larger than the data: only {N} training "
                         f"{'windows' if task.kind == 'question_answering' else 'examples'}")
    model = _load_model(model_dir, task, cfg, tok)
    model.set_precision(cfg.precision)
    scaler = make_scaler(cfg.precision)                 # fp16: the dynamic loss scale; else None
    if cfg.device != "cpu":
        model.to(cfg.device)
    steps_per_epoch = N // G
    total = steps_per_epoch * cfg.epochs
    warmup = int(round(cfg.warmup_ratio * total))
    mult = None
    if cfg.layerwise_lr_decay is not None and cfg.layerwise_lr_decay != 1.0:
        mult = layerwise_lr_multipliers(model.params, model.config, cfg.layerwise_lr_decay)
    opt = make_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay, lr_multipliers=mult)
    if comm.size > 1:      # also the barrier before rank 0 writes: every rank has read --out
        comm.check_same({"examples": N, "weights": distributed.params_fingerprint(model.params)},
                        "data or starting weights")
    # the run directory: only now is anything written
    if is_root:
        out.clear(old_run)
        out.start({"run_id": uuid.uuid4().hex[:12], "kind": "finetune", "config": asdict(cfg),
                   **({"world_size": comm.size} if comm.size > 1 else {})})
    log(f"{task.kind}: {len(task.train)} train / {len(task.eval)} eval examples, "
        f"{task.num_labels} label(s) {task.label_names[:8] if task.label_names else ''}; "
        f"{total} steps of B={cfg.batch_size}")
    mlog = MetricsLog(out.path / "metrics.jsonl") if is_root else None
    root = Random(cfg.seed, device=cfg.device).fork(3)   # dropout draws on the model's device
    bar = (tqdm(total=total, desc=f"finetune {cfg.task}", unit="step", dynamic_ncols=True)
           if cfg.progress and is_root else None)
    model.train()
    step, res = 0, {}
    try:
        for epoch in range(cfg.epochs):
            order = np.random.default_rng([cfg.seed, epoch]).permutation(N)
            acc, t0 = RunningMetrics(), time.perf_counter()
            for s in range(steps_per_epoch):
                # this rank's rows of the step's global batch of G = ranks x batch_size
                lo = s * G + comm.rank * cfg.batch_size
                batch = _batch(train_f, order[lo:lo + cfg.batch_size], task.kind)
                lr = lr_at(step, cfg.lr, warmup, total)
                stats = train_step(model, opt, [batch], lr, comm=comm, clip_norm=cfg.clip_norm,
                                   rngs=[distributed.dropout_stream(root, comm, step)], scaler=scaler)
                # fp16: an overflow skips the step (scale halved) and training goes on
                if not stats.updated and (scaler is None or scaler.at_minimum):
                    raise TrainingDiverged(f"the loss became {stats.loss} (gradient norm {stats.grad_norm}) "
                                           f"at step {step + 1}; training stopped before the update: lower --lr")
                step += 1
                if stats.updated:
                    acc.add(stats)
                if bar is not None:
                    bar.set_postfix(loss=f"{stats.loss:.3f}", refresh=False)
                    bar.update(1)
            if not is_root:                  # rank 0 alone evaluates and writes
                continue
            res = evaluate(model, task, eval_f)
            rec = {"step": step, "epoch": epoch + 1, "loss": acc.loss / max(acc.steps, 1),
                   "lr": lr, "epoch_time_s": time.perf_counter() - t0,
                   **{k: v for k, v in res.items() if not k.startswith("_")}}
            if scaler is not None:
                rec.update(loss_scale=scaler.scale, skipped_steps=scaler.skipped_steps)
            mlog.write(rec)
            shown = ", ".join(f"{k} {v:.4f}" for k, v in rec.items()
                              if k not in ("step", "epoch", "lr", "epoch_time_s") and isinstance(v, float))
            (bar.write if bar is not None else log)(f"epoch {epoch + 1}: {shown}")
    finally:
        if bar is not None:
            bar.close()
        if mlog is not None:
            mlog.close()
    if not is_root:
        return {"rank": comm.rank, "task": cfg.task, "kind": task.kind, "steps": step}
    model.to("cpu").save_pretrained(out.path)
    save_tokenizer(tok, out.path, model.config.max_position_embeddings)   # spiece.model + HF tokenizer files
    preds = res.pop("_predictions", None)
    if preds is not None:
        write_json_atomic(out.path / "predictions.json", preds)
    final = {"task": cfg.task, "kind": task.kind, "label_names": task.label_names,
             "num_train": len(task.train), "num_eval": len(task.eval), "steps": step, **res}
    write_json_atomic(out.path / "eval_results.json", final)
    write_json_atomic(out.path / "finetune_config.json", asdict(cfg))
    return final
