"""Pretraining loop: micro-batch gradient accumulation, clipping, the LR schedule,
metrics, atomic checkpoints and bit-exact resume.

One optimiser step (``step`` counts finished optimiser steps, 0-based while running)::

    model.zero_grad()
    for micro in range(grad_accum):                 # B = batch_size sequences each
        model.rng = dropout_root.fork(step, micro)  # dropout masks depend only on (seed, step, micro)
        out = model.forward(**next batch)           # loss = MLM CE (+ SOP/NSP CE)
        model.backward()                            # grads += d loss / d params
    grads /= grad_accum                             # mean over micro-batches of each one's own mean loss
    clip_grad_norm(grads, 1.0)                      # global L2 norm
    optimizer.step(lr_at(step))                     # LAMB or AdamW, linear warm-up + linear decay

Exact resume: a checkpoint holds the parameters, the optimiser moments, the step, and the
data loader's position; dropout is re-seeded per step from the run seed and the LR is a
function of the step, so a run stopped at step N and resumed to N+M computes the same
floating-point operations in the same order as an uninterrupted N+M-step run (bit for bit
on the CPU). A loss or gradient norm that is NaN/inf stops the run *before* the update,
with a message; the last checkpoint on disk is left as it was.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .backend import Random, check_device, get_array_module, resolve_dtype, synchronize
from . import metrics as M

SENTENCE_TASKS = ("sop", "nsp", "none")
# "adamw" is ALBERT's AdamWeightDecayOptimizer (no bias correction); "adamw-torch" is
# torch.optim.AdamW (bias-corrected), the demo default: see docs/training/pretraining.md
OPTIMIZERS = ("lamb", "adamw", "adamw-torch")
SHARING = ("all", "attention", "ffn", "none")
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
TOKENIZER_FILE = "spiece.model"

# Everything that changes the trajectory of a run. A directory's run.json stores a hash of
# these; --resume must match it (steps may grow, logging and checkpoint cadence may change).
FINGERPRINT_FIELDS = ("preset", "corpus", "data", "vocab_size", "seq_len", "batch_size",
                      "grad_accum", "optimizer", "lr", "warmup", "weight_decay", "clip_norm",
                      "sentence_task", "sharing", "dtype", "seed", "dupe_factor",
                      "max_predictions", "include_numpy")


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; training stopped."""


@dataclass
class PretrainConfig:
    """Options of ``minialbert pretrain`` (the CLI flags have the same names).

    The defaults train the ``tiny`` preset on the embedded corpus on 2 CPU cores in a few
    minutes, with the MLM loss falling and SOP accuracy rising well above chance
    ([docs/training/pretraining.md](../training/pretraining.md) has the measured curves)."""
    preset: str = "tiny"                 # AlbertConfig.from_preset name
    corpus: Optional[str] = None         # text file/folder; None = embedded stdlib docstrings
    data: Optional[str] = None           # prebuilt shard directory (minialbert data build)
    vocab_size: int = 3000               # tokenizer trained on the fly (ignored with --data)
    seq_len: int = 64                    # T
    batch_size: int = 32                 # B per micro-batch
    grad_accum: int = 1                  # micro-batches per optimiser step
    steps: int = 600                     # total optimiser steps
    optimizer: str = "adamw-torch"       # "lamb" (ALBERT's), "adamw" (ALBERT's) or "adamw-torch"
    lr: float = 1e-3                     # peak learning rate
    warmup: int = 50                     # linear warm-up steps
    weight_decay: float = 0.01           # decoupled, not on LayerNorm/bias (spec §6.3)
    clip_norm: float = 1.0               # global gradient-norm clip
    sentence_task: str = "sop"           # "sop", "nsp" or "none" (MLM only)
    sharing: str = "all"                 # cross-layer sharing: all/attention/ffn/none
    device: str = "cpu"                  # "cpu" or "gpu"
    dtype: str = "float32"               # "float32" or "float64"
    seed: int = 0                        # model init, data, dropout
    dupe_factor: int = 1                 # passes over the corpus with fresh masks
    max_predictions: int = 20            # masked positions per sequence (at most)
    include_numpy: bool = False          # embedded corpus: also NumPy's docstrings
    tokenizer: Optional[str] = None      # with --data: the spiece.model the shards were built with
    out: str = "runs/pretrain"           # output directory
    resume: bool = False                 # continue the run in `out` up to `steps`
    overwrite: bool = False              # replace a run in `out`
    stop_at: Optional[int] = None        # stop after this step as if interrupted (resume later)
    checkpoint_every: int = 200          # steps between checkpoints (and one at the end)
    log_every: int = 10                  # steps between metrics.jsonl records
    eval_every: int = 0                  # steps between held-out evaluations (0: only at the end)
    eval_size: int = 256                 # held-out examples
    peak_tflops: Optional[float] = None  # device peak for MFU; None = measure a matmul
    progress: bool = True                # tqdm progress bar
    plots: bool = True                   # PNG curves at the end

    def validate(self) -> None:
        from .config import PRESETS  # noqa: PLC0415

        if self.preset not in PRESETS:
            raise ValueError(f"--preset: unknown preset {self.preset!r}; choose from {', '.join(sorted(PRESETS))}")
        for name, choices in (("optimizer", OPTIMIZERS), ("sentence_task", SENTENCE_TASKS),
                              ("sharing", SHARING)):
            if getattr(self, name) not in choices:
                raise ValueError(f"--{name.replace('_', '-')}: expected one of {choices}, got {getattr(self, name)!r}")
        check_device(self.device)
        resolve_dtype(self.dtype)
        for name in ("seq_len", "batch_size", "grad_accum", "steps", "checkpoint_every",
                     "log_every", "dupe_factor", "max_predictions", "vocab_size", "eval_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.seq_len < 8:
            raise ValueError(f"--seq-len must be at least 8, got {self.seq_len}")
        if self.warmup < 0 or self.eval_every < 0:
            raise ValueError("--warmup and --eval-every must be >= 0")
        if self.warmup > self.steps:
            raise ValueError(f"--warmup {self.warmup} exceeds --steps {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if self.stop_at is not None and not 0 < self.stop_at <= self.steps:
            raise ValueError(f"--stop-at must be in [1, --steps={self.steps}], got {self.stop_at}")
        if self.corpus is not None and self.data is not None:
            raise ValueError("--corpus and --data are exclusive: text to tokenize, or prebuilt shards")
        for name in ("corpus", "data"):
            p = getattr(self, name)
            if p is not None and not Path(p).exists():
                raise FileNotFoundError(f"--{name}: no such file or directory: {p}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite are exclusive")

    def fingerprint(self) -> str:
        d = {k: getattr(self, k) for k in FINGERPRINT_FIELDS}
        for k in ("corpus", "data"):
            if d[k] is not None:
                d[k] = str(Path(d[k]).resolve())
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# output directory: who owns it


def _read_run(out: Path) -> Optional[dict]:
    f = out / RUN_FILE
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        raise ValueError(f"--out: {f} is unreadable; not overwriting it (pass --overwrite to replace the run)") from None


OUR_FILES = (RUN_FILE, METRICS_FILE, CHECKPOINT_DIR, TOKENIZER_FILE, "plots")


def claim_out_dir(cfg: PretrainConfig) -> Optional[dict]:
    """Check that ``cfg.out`` may be written, before anything is written.

    Returns the existing run.json record when resuming, else None. Raises ValueError
    (nothing touched) when the directory holds another run, files that are not a
    minialbert run, or nothing to resume."""
    out = Path(cfg.out)
    run = _read_run(out) if out.is_dir() else None
    if cfg.resume:
        from .checkpoint import find_checkpoint  # noqa: PLC0415

        if run is None or find_checkpoint(out / CHECKPOINT_DIR) is None:
            raise ValueError(f"--resume: no checkpoint to resume in {out}/{CHECKPOINT_DIR} "
                             "(start the run without --resume)")
        if run.get("fingerprint") != cfg.fingerprint():
            saved = run.get("config", {})
            diff = [f"--{k.replace('_', '-')} {saved.get(k)!r} -> {getattr(cfg, k)!r}"
                    for k in FINGERPRINT_FIELDS if saved.get(k) != getattr(cfg, k)]
            raise ValueError(f"--resume: {out} holds run {run.get('run_id')} with different settings "
                             f"({'; '.join(diff) or 'fingerprint differs'}); resume with the same options")
        return run
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not cfg.overwrite:
            if run is not None:
                raise ValueError(f"--out: {out} holds run {run.get('run_id')} (step {run.get('step', '?')}/"
                                 f"{run.get('config', {}).get('steps', '?')}); pass --resume to continue it, "
                                 "--overwrite to replace it, or another --out")
            raise ValueError(f"--out: {out} is not empty and holds no minialbert run; "
                             "choose another --out (or --overwrite to write into it anyway)")
    return None


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------
# data


def load_documents(cfg: PretrainConfig):
    """The corpus as documents (lists of sentences): the embedded one or ``cfg.corpus``."""
    from .data import load_default_corpus, load_text_corpus  # noqa: PLC0415

    if cfg.corpus is None:
        return load_default_corpus(include_numpy=cfg.include_numpy)
    return load_text_corpus(cfg.corpus)


def _examples_hash(examples) -> str:
    h = hashlib.sha256()
    for e in examples[:2000]:
        h.update(np.asarray(e["input_ids"], np.int32).tobytes())
        h.update(np.asarray(e["masked_lm_positions"], np.int32).tobytes())
    h.update(str(len(examples)).encode())
    return h.hexdigest()[:16]


def prepare_data(cfg: PretrainConfig, tokenizer_path: Optional[Path] = None, log=print):
    """Tokenizer, training-batch loader and held-out examples for a run.

    Text corpora: the tokenizer is read from ``tokenizer_path`` when given (resume), else
    trained on the corpus (deterministic); examples are made in memory with ``cfg.seed``,
    the first ``eval_size`` (at most 10%) held out. Shards (``--data``): the tokenizer is
    ``--tokenizer`` or a ``*.model`` file in the shard folder whose hash matches the
    manifest; no held-out set. Returns (tokenizer, loader, eval_examples, data_hash);
    the loader yields fixed-shape (B, T) batches forever and has state_dict()."""
    from .data import ExampleLoader, create_pretraining_examples  # noqa: PLC0415
    from .tokenizer import Tokenizer  # noqa: PLC0415

    if cfg.data is not None:
        return _prepare_shards(cfg, tokenizer_path, log)
    t0 = time.perf_counter()
    docs = load_documents(cfg)
    if tokenizer_path is not None and Path(tokenizer_path).exists():
        tok = Tokenizer(tokenizer_path)
    else:
        tok = Tokenizer.train(docs, vocab_size=cfg.vocab_size)
    examples = create_pretraining_examples(
        docs, tok, max_seq_length=cfg.seq_len, seed=cfg.seed, sentence_task=cfg.sentence_task,
        max_predictions_per_seq=cfg.max_predictions, dupe_factor=cfg.dupe_factor)
    n_eval = min(cfg.eval_size, len(examples) // 10)
    train, held = examples[n_eval:], examples[:n_eval]
    if cfg.batch_size > len(train):
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the data: only {len(train)} "
                         "training examples (lower --batch-size or use a larger --corpus)")
    loader = ExampleLoader(train, cfg.batch_size, seed=cfg.seed, epochs=None,
                           max_seq_length=cfg.seq_len, max_predictions_per_seq=cfg.max_predictions,
                           pad_id=tok.pad_id)
    log(f"data: {len(docs)} documents -> {len(train)} training + {len(held)} held-out examples "
        f"(T={cfg.seq_len}, V={tok.vocab_size}) in {time.perf_counter() - t0:.1f}s")
    return tok, loader, held, _examples_hash(train) + tok.content_hash[:8]


def _prepare_shards(cfg: PretrainConfig, tokenizer_path, log):
    from .data import ShardLoader, read_manifest  # noqa: PLC0415
    from .tokenizer import Tokenizer  # noqa: PLC0415

    d = Path(cfg.data)
    manifest = read_manifest(d)
    want = manifest["tokenizer"]["hash"]
    cands = ([Path(tokenizer_path)] if tokenizer_path is not None and Path(tokenizer_path).exists() else []) + \
        ([Path(cfg.tokenizer)] if cfg.tokenizer else sorted(d.glob("*.model")))
    tok = None
    for c in cands:
        t = Tokenizer(c)
        if t.content_hash == want:
            tok = t
            break
    if tok is None:
        raise ValueError(f"--data: no tokenizer matching the shards (hash {want[:12]}): pass --tokenizer "
                         f"PATH/spiece.model (the one the shards were built with)")
    T = manifest["config"]["max_seq_length"]
    if T != cfg.seq_len:
        raise ValueError(f"--seq-len {cfg.seq_len} differs from the shards' max_seq_length {T}: "
                         f"pass --seq-len {T}")
    if cfg.batch_size > manifest["num_examples"]:
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the data: the shards hold only "
                         f"{manifest['num_examples']} examples")
    loader = ShardLoader(d, cfg.batch_size, seed=cfg.seed, epochs=None, tokenizer=tok)
    log(f"data: {manifest['num_examples']} examples in {len(manifest['shards'])} shards from {d} "
        f"(T={T}, V={tok.vocab_size})")
    h = hashlib.sha256(json.dumps(manifest["shards"], sort_keys=True).encode()).hexdigest()[:16]
    return tok, loader, [], h


# --------------------------------------------------------------------------------------
# model and optimiser


def make_optimizer(name: str, model, lr: float, weight_decay: float, lr_multipliers=None):
    """"lamb" / "adamw" (ALBERT's, no bias correction) / "adamw-torch" (bias-corrected)."""
    from . import optim  # noqa: PLC0415

    kw = {"lr": lr, "weight_decay": weight_decay, "lr_multipliers": lr_multipliers}
    if name == "adamw-torch":
        return optim.make_optimizer("adamw", model, bias_correction=True, **kw)
    return optim.make_optimizer(name, model, **kw)


def build_model(cfg: PretrainConfig, vocab_size: int):
    from .config import AlbertConfig  # noqa: PLC0415
    from .heads import AlbertForMaskedLM, AlbertForPreTraining  # noqa: PLC0415

    mc = AlbertConfig.from_preset(cfg.preset)
    overrides = {"vocab_size": int(vocab_size), "sharing": cfg.sharing}
    if mc.max_position_embeddings < cfg.seq_len:
        overrides["max_position_embeddings"] = cfg.seq_len
    mc = AlbertConfig.from_preset(cfg.preset, **overrides)
    cls = AlbertForMaskedLM if cfg.sentence_task == "none" else AlbertForPreTraining
    model = cls(mc, seed=cfg.seed, dtype=cfg.dtype)
    if cfg.device != "cpu":
        model.to(cfg.device)
    return model


def _mlm_sop_stats(out, batch):
    """(mlm_correct, mlm_count, sop_correct, sop_count) of one forward, as host ints."""
    labels = batch["labels"]
    logits = out.prediction_logits if out.prediction_logits is not None else out.logits
    xp = get_array_module(logits)
    pred = xp.argmax(logits, axis=-1)
    if out.masked_positions is not None:
        gold = xp.asarray(labels).reshape(-1)[out.masked_positions]     # (N,)
        mlm_correct, mlm_n = int((pred == gold).sum()), int(gold.shape[0])
    else:
        gold = xp.asarray(labels)
        valid = gold != -100
        mlm_correct, mlm_n = int(((pred == gold) & valid).sum()), int(valid.sum())
    sop_correct = sop_n = 0
    if getattr(out, "sop_logits", None) is not None and batch.get("sentence_order_label") is not None:
        sol = xp.asarray(batch["sentence_order_label"])
        valid = sol != -100
        sop_correct = int(((xp.argmax(out.sop_logits, axis=-1) == sol) & valid).sum())
        sop_n = int(valid.sum())
    return mlm_correct, mlm_n, sop_correct, sop_n


def _forward(model, batch, sentence_task):
    kw = dict(token_type_ids=batch["token_type_ids"], attention_mask=batch["attention_mask"],
              labels=batch["labels"])
    if sentence_task != "none":
        kw["sentence_order_label"] = batch["sentence_order_label"]
    return model.forward(batch["input_ids"], **kw)


def evaluate_pretraining(model, examples, cfg: PretrainConfig, batch_size: int = 64) -> dict:
    """MLM loss/accuracy and SOP accuracy on held-out examples, dropout off."""
    from .data.pretraining import collate  # noqa: PLC0415

    if not examples:
        return {}
    was_training = model.training
    model.eval()
    tot = {"mlm_loss": 0.0, "n": 0, "mc": 0, "mn": 0, "sc": 0, "sn": 0}
    for s in range(0, len(examples), batch_size):
        batch = collate(examples[s:s + batch_size], cfg.seq_len, None)
        out = _forward(model, batch, cfg.sentence_task)
        mc, mn, sc, sn = _mlm_sop_stats(out, batch)
        mlm_loss = out.mlm_loss if getattr(out, "mlm_loss", None) is not None else out.loss
        tot["mlm_loss"] += float(mlm_loss) * mn
        tot["mc"] += mc
        tot["mn"] += mn
        tot["sc"] += sc
        tot["sn"] += sn
    model._tape = None  # eval forwards are not backpropagated
    model.train(was_training)
    res = {"eval_mlm_loss": tot["mlm_loss"] / max(tot["mn"], 1),
           "eval_mlm_accuracy": tot["mc"] / max(tot["mn"], 1)}
    if tot["sn"]:
        res["eval_sop_accuracy"] = tot["sc"] / tot["sn"]
    return res


# --------------------------------------------------------------------------------------
# the loop


def _check_finite(value: float, what: str, step: int, out: Path, last_ckpt: Optional[int]):
    if not math.isfinite(value):
        where = (f"the last good checkpoint (step {last_ckpt}) in {out / CHECKPOINT_DIR} is intact"
                 if last_ckpt is not None else "no checkpoint had been written yet")
        raise TrainingDiverged(f"{what} became {value} at step {step + 1}; training stopped before the "
                               f"update and {where}. Lower --lr, raise --warmup, or use --dtype float64.")


def pretrain(cfg: PretrainConfig, log: Callable = print,
             hooks: Optional[dict] = None) -> dict:
    """Run (or resume) pretraining as configured; returns a summary dict.

    Writes ``cfg.out``/run.json, metrics.jsonl, checkpoint/ (every ``checkpoint_every``
    steps and at the end), spiece.model and plots/*.png. ``hooks`` (for tests):
    ``{"before_step": f(step, model)}`` is called before each optimiser step and
    ``{"before_update": f(step, model)}`` after the micro-batch gradients are averaged,
    before clipping and the update.
    Raises ValueError for bad options (nothing written), TrainingDiverged on NaN/inf."""
    from . import checkpoint as ckpt  # noqa: PLC0415
    from . import optim  # noqa: PLC0415

    hooks = hooks or {}
    cfg.validate()
    out = Path(cfg.out)
    run = claim_out_dir(cfg)                          # raises before anything is written
    ck_dir = out / CHECKPOINT_DIR
    tok, stream, eval_ex, data_hash = prepare_data(
        cfg, tokenizer_path=(ck_dir / TOKENIZER_FILE) if run else None, log=log)
    B, A, T = cfg.batch_size, cfg.grad_accum, cfg.seq_len
    model = build_model(cfg, tok.vocab_size)
    opt = make_optimizer(cfg.optimizer, model, cfg.lr, cfg.weight_decay)

    start = 0
    if run is not None:                               # --resume
        state = ckpt.load_checkpoint(ck_dir, model, opt)
        extra = state.get("extra", {})
        if extra.get("fingerprint", cfg.fingerprint()) != cfg.fingerprint():
            raise ValueError(f"--resume: {ck_dir} was written by another run ({extra.get('run_id')}, "
                             f"other settings) than the one in {out / RUN_FILE}; not resuming from it")
        if extra.get("data_hash") != data_hash:
            raise ValueError(f"--resume: the data differ from the checkpoint's (hash {extra.get('data_hash')} "
                             f"vs {data_hash}); was the corpus changed?")
        stream.load_state_dict(extra["data_state"])
        start = int(state["step"])
        if start >= cfg.steps:
            raise ValueError(f"--resume: the checkpoint is at step {start}, already >= --steps {cfg.steps}; "
                             "pass a larger --steps to train further")
        if cfg.stop_at is not None and cfg.stop_at <= start:
            raise ValueError(f"--stop-at {cfg.stop_at}: the checkpoint is already at step {start}; "
                             f"pass a later --stop-at (up to --steps {cfg.steps}) or none")
        if run.get("config", {}).get("steps") != cfg.steps:
            log(f"note: --steps changed from {run['config'].get('steps')} to {cfg.steps}: "
                "the LR decay now ends at the new total")
        log(f"resuming run {run['run_id']} at step {start} of {cfg.steps}")
        run_id = run["run_id"]
    else:
        if cfg.overwrite and out.is_dir():
            for name in OUR_FILES:
                p = out / name
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        out.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:12]
    tok.save(out / TOKENIZER_FILE)
    run_record = {"run_id": run_id, "fingerprint": cfg.fingerprint(), "config": asdict(cfg),
                  "model_config": model.config.to_dict(), "step": start,
                  "num_parameters": model.num_parameters()}
    _write_json_atomic(out / RUN_FILE, run_record)

    # MFU: FLOPs per step counted per layer application, against the device's matmul peak
    peak = (cfg.peak_tflops * 1e12 if cfg.peak_tflops else
            M.measure_peak_flops(cfg.device, cfg.dtype))
    dropout_root = Random(cfg.seed, device=cfg.device).fork(2)
    mlog = M.MetricsLog(out / METRICS_FILE, resume_step=start if run is not None else None)
    last_ckpt = start if run is not None else None
    stop = min(cfg.stop_at, cfg.steps) if cfg.stop_at else cfg.steps
    log(f"model: {model!r}; {cfg.optimizer} lr {cfg.lr:g} warmup {cfg.warmup}; "
        f"B={B}x{A} T={T}; steps {start}->{stop}; peak {peak / 1e9:.0f} GFLOP/s ({cfg.device})")

    def save(step, data_state):
        nonlocal last_ckpt
        ckpt.save_checkpoint(ck_dir, model, opt, step=step, rng=dropout_root,
                             extra={"data_state": data_state, "data_hash": data_hash,
                                    "run_id": run_id, "fingerprint": cfg.fingerprint()},
                             files={TOKENIZER_FILE: tok.model_proto})
        last_ckpt = step
        run_record["step"] = step
        _write_json_atomic(out / RUN_FILE, run_record)

    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm  # noqa: PLC0415
        bar = tqdm(total=stop, initial=start, desc="pretrain", unit="step", dynamic_ncols=True)
    acc = {"loss": 0.0, "mlm_loss": 0.0, "sop_loss": 0.0, "mc": 0, "mn": 0, "sc": 0, "sn": 0,
           "tokens": 0, "flops": 0.0, "time": 0.0, "steps": 0, "gnorm": 0.0}
    summary = {"run_id": run_id, "out": str(out), "start_step": start}
    model.train()
    step = start
    try:
        data_state, in_update = stream.state_dict(), False     # where step `step` starts reading
        while step < stop:
            t0 = time.perf_counter()
            if "before_step" in hooks:
                hooks["before_step"](step, model)
            lr = optim.lr_at(step, cfg.lr, cfg.warmup, cfg.steps)
            model.zero_grad()
            loss_sum = mlm_sum = sop_sum = 0.0
            n_pred = 0
            for micro in range(A):
                batch = next(stream)
                model.rng = dropout_root.fork(step, micro)        # same masks on resume
                out_ = _forward(model, batch, cfg.sentence_task)
                loss = float(out_.loss)
                _check_finite(loss, "the loss", step, out, last_ckpt)
                model.backward()
                mc, mn, sc, sn = _mlm_sop_stats(out_, batch)
                loss_sum += loss
                mlm_sum += float(out_.mlm_loss) if getattr(out_, "mlm_loss", None) is not None else loss
                sop_sum += float(out_.sop_loss) if getattr(out_, "sop_loss", None) is not None else 0.0
                n_pred += mn
                acc["mc"] += mc
                acc["mn"] += mn
                acc["sc"] += sc
                acc["sn"] += sn
            if A > 1:                                             # mean over micro-batches
                for g in model.grads.values():
                    g *= g.dtype.type(1.0 / A)
            if "before_update" in hooks:
                hooks["before_update"](step, model)
            gnorm = float(optim.clip_grad_norm(model.grads, cfg.clip_norm))
            _check_finite(gnorm, "the gradient norm", step, out, last_ckpt)
            in_update = True                      # parameters are being changed in place
            opt.step(model.grads, lr)
            step += 1
            data_state, in_update = stream.state_dict(), False
            synchronize(cfg.device)
            dt = time.perf_counter() - t0
            acc["loss"] += loss_sum / A
            acc["mlm_loss"] += mlm_sum / A
            acc["sop_loss"] += sop_sum / A
            acc["gnorm"] += gnorm
            acc["tokens"] += A * B * T
            acc["flops"] += M.train_flops(model.config, A * B, T, n_predictions=n_pred,
                                          sentence_head=cfg.sentence_task != "none")
            acc["time"] += dt
            acc["steps"] += 1
            if step % cfg.log_every == 0 or step == stop:
                k = acc["steps"]
                rec = {"step": step, "loss": acc["loss"] / k, "mlm_loss": acc["mlm_loss"] / k,
                       "mlm_accuracy": acc["mc"] / max(acc["mn"], 1), "lr": lr,
                       "tokens_per_s": acc["tokens"] / acc["time"],
                       "mfu": acc["flops"] / acc["time"] / peak, "grad_norm": acc["gnorm"] / k,
                       "step_time_s": acc["time"] / k, "tokens": step * A * B * T}
                if cfg.sentence_task != "none":
                    rec["sop_loss"] = acc["sop_loss"] / k
                    rec["sop_accuracy"] = acc["sc"] / max(acc["sn"], 1)
                else:
                    rec["sop_accuracy"] = None
                if cfg.eval_every and step % cfg.eval_every == 0 and step != stop:
                    rec.update(evaluate_pretraining(model, eval_ex, cfg))
                if step == stop:
                    rec.update(evaluate_pretraining(model, eval_ex, cfg))
                mlog.write(rec)
                summary.setdefault("first", rec)
                summary["last"] = rec
                if bar is not None:
                    post = {"loss": f"{rec['loss']:.3f}", "mlm_acc": f"{rec['mlm_accuracy']:.3f}"}
                    if rec.get("sop_accuracy") is not None:
                        post["sop_acc"] = f"{rec['sop_accuracy']:.3f}"
                    post["tok/s"] = M.format_rate(rec["tokens_per_s"])
                    post["mfu"] = f"{100 * rec['mfu']:.1f}%"
                    bar.set_postfix(post, refresh=False)
                acc = {k: (0.0 if isinstance(v, float) else 0) for k, v in acc.items()}
            if bar is not None:
                bar.update(1)
            if step % cfg.checkpoint_every == 0 or step == stop:
                save(step, data_state)
    except KeyboardInterrupt:
        # Save the last *finished* step with the data position where the next step starts
        # (the batches of an unfinished step are read again on resume). An interrupt inside
        # the in-place update leaves torn parameters: then only the last checkpoint counts.
        if in_update:
            log(f"\ninterrupted during an update: resume from the last checkpoint (step {last_ckpt})")
        else:
            if step != last_ckpt:
                save(step, data_state)
            log(f"\ninterrupted: checkpoint at step {step} in {ck_dir}; continue with --resume")
        raise
    finally:
        if bar is not None:
            bar.close()
        mlog.close()
    summary["step"] = step
    summary["checkpoint"] = str(ck_dir)
    if cfg.plots:
        summary["plots"] = M.plot_metrics(M.read_metrics(out / METRICS_FILE), out / "plots")
    return summary
