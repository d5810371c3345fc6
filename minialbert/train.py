"""Pretraining: the loop around ``train_step`` (``minialbert/step.py``), as the CLI's
``minialbert pretrain`` runs it. It reads top to bottom::

    claim the output directory        (nothing written before every option is checked)
    data, model, optimiser, resume
    for step in range(start, stop):
        batches = [next(loader) for k in range(K)]                    # data
        stats = train_step(model, optimizer, batches, lr_at(step))    # step
        log metrics.jsonl, evaluate on held-out examples              # log, evaluate
        checkpoint                                                    # checkpoint

Exact resume: a checkpoint holds the parameters, the optimiser moments, the step, and the
data loader's position; dropout is re-seeded per step from the run seed and the LR is a
function of the step, so a run stopped at step N and resumed to N+M computes the same
floating-point operations in the same order as an uninterrupted N+M-step run (bit for bit
on the CPU). A loss or gradient norm that is NaN/inf stops the run *before* the update,
with a message; the last checkpoint on disk is left as it was. Ctrl-C and SIGTERM finish the
step, write a checkpoint and stop.
"""
from __future__ import annotations

import hashlib
import json
import math
import signal
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import distributed, metrics
from .backend import Random, check_device, resolve_dtype, synchronize
from .config import PRESETS, SHARING_MODES, AlbertConfig
from .data import (ShardLoader, load_default_corpus,
                   load_text_corpus, read_manifest)
from .data.pretraining import SENTENCE_TASKS, collate
from .data.heldout import heldout_dir
from .evaluation import check_data_dir, evaluate_batches, shard_batches
from .heads import AlbertForMaskedLM, AlbertForPreTraining
from .layers import IGNORE_INDEX
from .optim import OPTIMIZER_NAMES, lr_at, make_optimizer
from .options import option
from .precision import PRECISIONS, check_precision, make_scaler
from .rundir import Interrupted, RunDir, RunDirError, StopSignals, write_json_atomic
from .step import RunningMetrics, SingleProcess, StepStats, TrainingDiverged, pretraining_stats, train_step
from .tokenizer import Tokenizer
from .data.corpus import cache_dir
from .data.pretraining import prepare_text_pretraining
from .probe import format_probe, probe, probe_sentences

# "adamw" is ALBERT's AdamWeightDecayOptimizer (no bias correction); "adamw-torch" is
# torch.optim.AdamW (bias-corrected), the demo default: see docs/training/pretraining.md
OPTIMIZERS = OPTIMIZER_NAMES
SHARING = SHARING_MODES
RUN_FILE = "run.json"
CHECKPOINT_DIR = "checkpoint"
METRICS_FILE = "metrics.jsonl"
TOKENIZER_FILE = "spiece.model"
# what a pretraining run writes in --out (run.json records it; --overwrite removes only these)
RUN_FILES = (METRICS_FILE, "metrics.jsonl.tmp*", TOKENIZER_FILE, "spiece.model.tmp*",
             CHECKPOINT_DIR, CHECKPOINT_DIR + ckpt.PREV_SUFFIX, f".{CHECKPOINT_DIR}.tmp-*",  # checkpoint.py's
             *(f"plots/{name}.png{tmp}" for name, _, _ in metrics.PLOTS for tmp in ("", ".tmp")))
# the longest --seq-len: BERT's and ALBERT's 512, or the preset's own max_position_embeddings
MAX_SEQ_LEN = 512
DEFAULT_EVAL_EVERY = 200      # held-out evaluations of a run with held-out data, unless --eval-every says
# pretrain's callbacks, f(step, model): before each step; with the step's gradients before the update
HOOKS = ("before_step", "before_update")

# Everything that changes the trajectory of a run. A directory's run.json stores a hash of
# these; --resume must match it (steps may grow, logging and checkpoint cadence may change).
FINGERPRINT_FIELDS = ("preset", "corpus", "data", "vocab_size", "seq_len", "batch_size",
                      "grad_accum", "optimizer", "lr", "warmup", "weight_decay", "clip_norm",
                      "sentence_task", "sharing", "dtype", "seed", "dupe_factor",
                      "max_predictions", "include_numpy")


_DATA, _OPT, _RUN = "model and data", "optimisation", "run"


@dataclass
class PretrainConfig:
    """Options of ``minialbert pretrain``: each field is the flag of the same name
    (``seq_len`` -> ``--seq-len``), with the help text below.

    The defaults train the ``tiny`` preset on the embedded corpus (6.3 MB of docstrings,
    whole documents held out) with a 1000-piece tokenizer, 1200 steps of B=32, T=64 at
    lr 2e-3, meant to fit in 5 minutes on 2 quiet CPU cores
    ([docs/training/pretraining.md](../training/pretraining.md) has the recipes tried and
    their measured curves)."""
    preset: str = option("tiny", "model shape (AlbertConfig.from_preset): tiny, mini, small, "
                         "albert-base-v2, ...; vocab_size comes from the tokenizer", group=_DATA)
    corpus: Optional[str] = option(None, "text file or folder (documents separated by blank lines); "
                                   "none: the embedded standard-library docstrings",
                                   group=_DATA, metavar="PATH")
    data: Optional[str] = option(None, "prebuilt shards from `minialbert data build`", group=_DATA, metavar="DIR")
    tokenizer: Optional[str] = option(None, "with --data: the spiece.model the shards were built with "
                                      "(none: a *.model in DIR)", group=_DATA, metavar="PATH")
    eval_data: Optional[str] = option(None, "with --data: held-out shards to evaluate on (none: DIR/heldout "
                                      "when `data build --heldout-fraction` wrote it)", group=_DATA,
                                      metavar="DIR")
    vocab_size: int = option(2000, "size of the tokenizer trained on the fly on --corpus", group=_DATA)
    seq_len: int = option(64, f"tokens per example (at most {MAX_SEQ_LEN}, or the preset's "
                          "max_position_embeddings if larger)", group=_DATA, metavar="T")
    sentence_task: str = option("sop", "second objective: sentence order (ALBERT), next sentence (BERT) "
                                "or none; with --data, the one the shards were built for",
                                group=_DATA, choices=SENTENCE_TASKS)
    sharing: str = option("all", "cross-layer parameter sharing (the paper's Table 4)",
                          group=_DATA, choices=SHARING)
    embedding_size: Optional[int] = option(None, "E, the factorised embedding width (none: the preset's; "
                                           "the paper's Table 3)", group=_DATA, metavar="E")
    dupe_factor: int = option(1, "passes over the corpus when making examples, each with fresh masks", group=_DATA)
    max_predictions: int = option(20, "masked positions per sequence, at most", group=_DATA)
    include_numpy: bool = option(False, "kept for old command lines: the embedded corpus always holds the "
                                 "docstrings of NumPy, SciPy and matplotlib beside the standard library's",
                                 group=_DATA)
    batch_size: int = option(32, "sequences per micro-batch", group=_OPT, metavar="B")
    grad_accum: int = option(1, "micro-batches per optimiser step (effective batch B*K; the loss is "
                             "normalised over the whole step, so K micro-batches equal one batch of "
                             "K*B exactly)", group=_OPT, metavar="K")
    steps: int = option(800, "total optimiser steps", group=_OPT)
    optimizer: str = option("adamw-torch", "lamb and adamw: ALBERT's (no bias correction); adamw-torch: "
                            "torch.optim.AdamW (bias-corrected; the only one that leaves the unigram "
                            "plateau within the default 600 steps, see docs/training/pretraining.md)",
                            group=_OPT, choices=OPTIMIZERS)
    lr: float = option(2e-3, "peak learning rate", group=_OPT)
    warmup: int = option(100, "linear warm-up steps (then linear decay to 0)", group=_OPT)
    weight_decay: float = option(0.01, "decoupled, not on LayerNorm/bias (spec §6.3)", group=_OPT)
    clip_norm: float = option(1.0, "global gradient-norm clip", group=_OPT)
    seed: int = option(0, "model init, data order, masks, dropout", group=_OPT)
    device: str = option("cpu", "cpu or gpu (CuPy)", group=_RUN, choices=("cpu", "gpu"))
    dtype: str = option("float32", "parameter and activation dtype", group=_RUN, choices=("float32", "float64"))
    precision: str = option("fp32", "arithmetic: fp32; fp16 or bf16 (float32 master weights, float16/bfloat16 "
                            "matmuls and activations; fp16 with a dynamic loss scale); tf32 (GPU only). "
                            "See docs/training/mixed-precision.md", group=_RUN, choices=PRECISIONS)
    out: str = option("runs/pretrain", "output directory", group=_RUN, metavar="DIR")
    resume: bool = option(False, "continue the run in --out up to --steps", group=_RUN)
    overwrite: bool = option(False, "replace a run already in --out (only what minialbert wrote there)", group=_RUN)
    stop_at: Optional[int] = option(None, "stop after step N as if interrupted (the LR schedule still "
                                    "spans --steps)", group=_RUN, metavar="N")
    checkpoint_every: int = option(200, "steps between checkpoints (and one at the end)", group=_RUN, metavar="N")
    log_every: int = option(10, "steps between metrics.jsonl records", group=_RUN, metavar="N")
    eval_every: Optional[int] = option(None, "steps between held-out evaluations (0: only at the end; none: "
                                       f"every {DEFAULT_EVAL_EVERY} where there is held-out data)",
                                       group=_RUN, metavar="N")
    eval_size: int = option(512, "held-out examples (made from held-out documents)", group=_RUN)
    peak_tflops: Optional[float] = option(None, "device peak for MFU (none: measured with a short "
                                          "matmul)", group=_RUN)
    progress: bool = option(True, "no progress bar", group=_RUN, flag="--no-progress")
    plots: bool = option(True, "no PNG plots at the end", group=_RUN, flag="--no-plots")

    def validate(self) -> None:
        """Every option checked before anything is read or written (ValueError naming the flag)."""
        if self.preset not in PRESETS:
            raise ValueError(f"--preset: unknown preset {self.preset!r}; choose from {', '.join(sorted(PRESETS))}")
        for name, choices in (("optimizer", OPTIMIZERS), ("sentence_task", SENTENCE_TASKS),
                              ("sharing", SHARING)):
            if getattr(self, name) not in choices:
                raise ValueError(f"--{name.replace('_', '-')}: expected one of {choices}, got {getattr(self, name)!r}")
        check_device(self.device)
        resolve_dtype(self.dtype)
        check_precision(self.precision, self.device, self.dtype)
        for name in ("seq_len", "batch_size", "grad_accum", "steps", "checkpoint_every",
                     "log_every", "dupe_factor", "max_predictions", "vocab_size", "eval_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        if self.seq_len < 8:
            raise ValueError(f"--seq-len must be at least 8, got {self.seq_len}")
        longest = max(MAX_SEQ_LEN, PRESETS[self.preset].get("max_position_embeddings", 0))
        if self.seq_len > longest:
            raise ValueError(f"--seq-len {self.seq_len}: at most {longest} tokens per example "
                             f"(the longest position table a {self.preset} model gets here)")
        if self.warmup < 0 or (self.eval_every or 0) < 0:
            raise ValueError("--warmup and --eval-every must be >= 0")
        if self.warmup > self.steps:
            raise ValueError(f"--warmup {self.warmup} exceeds --steps {self.steps}")
        for name in ("lr", "clip_norm"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {v}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ValueError(f"--weight-decay must be a number >= 0, got {self.weight_decay}")
        if self.peak_tflops is not None and not (self.peak_tflops > 0 and math.isfinite(self.peak_tflops)):
            raise ValueError(f"--peak-tflops must be a positive number, got {self.peak_tflops}")
        if self.stop_at is not None and not 0 < self.stop_at <= self.steps:
            raise ValueError(f"--stop-at must be in [1, --steps={self.steps}], got {self.stop_at}")
        if self.corpus is not None and self.data is not None:
            raise ValueError("--corpus and --data are exclusive: text to tokenize, or prebuilt shards")
        for name in ("corpus", "data", "tokenizer"):
            p = getattr(self, name)
            if p is not None and not Path(p).exists():
                raise FileNotFoundError(f"--{name}: no such file or directory: {p}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite are exclusive")
        if self.embedding_size is not None and int(self.embedding_size) < 1:
            raise ValueError(f"--embedding-size must be a positive integer, got {self.embedding_size}")
        if self.eval_data is not None:
            if self.data is None:
                raise ValueError("--eval-data needs --data (held-out shards are scored against shards "
                                 "made with the same tokenizer; with --corpus a held-out set is made "
                                 "from the corpus)")
            if not Path(self.eval_data).exists():
                raise FileNotFoundError(f"--eval-data: no such directory: {self.eval_data}")

    def fingerprint(self) -> str:
        d = {k: getattr(self, k) for k in FINGERPRINT_FIELDS}
        if self.precision != "fp32":        # changes the trajectory; fp32 runs keep their old hash
            d["precision"] = self.precision
        if self.embedding_size is not None:  # likewise: runs made before --embedding-size keep theirs
            d["embedding_size"] = self.embedding_size
        for k in ("corpus", "data"):
            if d[k] is not None:
                d[k] = str(Path(d[k]).resolve())
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------
# data


@dataclass
class HeldoutShards:
    """The held-out set of a --data run: a shard folder, evaluated on its first examples."""
    path: str
    max_examples: int


def load_documents(cfg: PretrainConfig):
    """The corpus as documents (lists of sentences): the embedded one or ``cfg.corpus``."""
    if cfg.corpus is None:
        return load_default_corpus()          # stdlib + NumPy + SciPy + matplotlib docstrings
    return load_text_corpus(cfg.corpus)


def _documents_hash(docs) -> str:
    """Hash of tokenized documents (what a resumed run must train on again)."""
    h = hashlib.sha256()
    for d in docs:
        for sent in d:
            h.update(np.asarray(sent, np.int32).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def prepare_data(cfg: PretrainConfig, tokenizer_path: Optional[Path] = None, log=print, ranks: int = 1):
    """Tokenizer, training-batch loader and held-out examples for a run.

    Text corpora (:func:`minialbert.data.pretraining.prepare_text_pretraining`): whole
    documents are held out (``eval_size`` examples made from them); the tokenizer is read
    from ``tokenizer_path`` when given (resume), else trained on the training documents
    (deterministic); training examples are made on the fly, with fresh pairs and masks
    every epoch, from ``cfg.seed``. Shards (``--data``): the tokenizer is
    ``--tokenizer`` or a ``*.model`` file in the shard folder whose hash matches the
    manifest; no held-out set. Returns (tokenizer, loader, eval_examples, data_hash);
    the loader yields fixed-shape (B, T) batches forever and has state_dict(). With
    ``ranks`` N > 1 (data parallelism) it yields the global micro-batches of N*B rows, of
    which each rank keeps its own B (``distributed.RankSlicedLoader``)."""
    if cfg.data is not None:
        return _prepare_shards(cfg, tokenizer_path, log, ranks)
    t0 = time.perf_counter()
    docs = load_documents(cfg)
    tok = Tokenizer(tokenizer_path) if tokenizer_path is not None and Path(tokenizer_path).exists() else None
    # whole documents held out; examples made on the fly, fresh pairs and masks every epoch
    tok, loader, held, info = prepare_text_pretraining(
        docs, tok, vocab_size=cfg.vocab_size, max_seq_length=cfg.seq_len, batch_size=ranks * cfg.batch_size,
        seed=cfg.seed, sentence_task=cfg.sentence_task, max_predictions_per_seq=cfg.max_predictions,
        dupe_factor=cfg.dupe_factor, eval_size=cfg.eval_size, log=log,
        tokenizer_cache=cache_dir() if cfg.corpus is None else None)
    n_train = info["examples_per_epoch"]
    if ranks * cfg.batch_size > n_train:
        raise ValueError(f"--batch-size {cfg.batch_size}{_times_ranks(ranks)} is larger than the data: only "
                         f"{n_train} training examples (lower --batch-size or use a larger --corpus)")
    loader.heldout_documents = info["heldout"]           # for the fill-mask probe at the end
    log(f"data: {len(docs)} documents -> {info['train_documents']} training ({n_train} examples per "
        f"epoch, fresh masks each epoch) + {info['heldout_documents']} held-out documents "
        f"({len(held)} examples) (T={cfg.seq_len}, V={tok.vocab_size}) in {time.perf_counter() - t0:.1f}s")
    return tok, loader, held, _documents_hash(loader.docs) + tok.content_hash[:8]


def _silent(*args, **kwargs) -> None:
    """The log of ranks other than 0."""


def _times_ranks(ranks: int) -> str:
    return f" x {ranks} ranks" if ranks > 1 else ""


def _prepare_shards(cfg: PretrainConfig, tokenizer_path, log, ranks: int = 1):
    d = Path(cfg.data)
    manifest = read_manifest(d)
    task = manifest["config"].get("sentence_task", "sop")
    if task != cfg.sentence_task:
        raise ValueError(f"--sentence-task {cfg.sentence_task}: the shards in {d} were built for "
                         f"{task!r} (their labels are {task.upper()} labels): pass --sentence-task {task}")
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
    if ranks * cfg.batch_size > manifest["num_examples"]:
        raise ValueError(f"--batch-size {cfg.batch_size}{_times_ranks(ranks)} is larger than the data: the "
                         f"shards hold only {manifest['num_examples']} examples")
    loader = ShardLoader(d, ranks * cfg.batch_size, seed=cfg.seed, epochs=None, tokenizer=tok)
    log(f"data: {manifest['num_examples']} examples in {len(manifest['shards'])} shards from {d} "
        f"(T={T}, V={tok.vocab_size})")
    h = hashlib.sha256(json.dumps(manifest["shards"], sort_keys=True).encode()).hexdigest()[:16]
    return tok, loader, _heldout_shards(cfg, manifest, tok, log), h


def _heldout_shards(cfg: PretrainConfig, manifest: dict, tok, log) -> Optional[HeldoutShards]:
    """The held-out shards of a --data run: --eval-data, else DIR/heldout when the build made
    one (``data build --heldout-fraction``); checked against the run's tokenizer and T."""
    held = cfg.eval_data
    if held is None and manifest.get("heldout") and (heldout_dir(cfg.data) / "manifest.json").is_file():
        held = str(heldout_dir(cfg.data))
    if held is None:
        if cfg.eval_every:
            raise ValueError(f"--eval-every {cfg.eval_every}: {cfg.data} has no held-out split; pass "
                             "--eval-data DIR (`minialbert data build --heldout-fraction F` writes "
                             "OUTPUT/heldout)")
        return None
    m = check_data_dir(held, "--eval-data")
    if m["tokenizer"]["hash"] != tok.content_hash:
        raise ValueError(f"--eval-data: {held} was built with another tokenizer than the training shards "
                         f"({m['tokenizer']['hash'][:12]} vs {tok.content_hash[:12]})")
    if m["config"]["max_seq_length"] != cfg.seq_len:
        raise ValueError(f"--eval-data: {held} has max_seq_length {m['config']['max_seq_length']}, the run "
                         f"--seq-len {cfg.seq_len}")
    log(f"held-out: {min(cfg.eval_size, m['num_examples'])} of the {m['num_examples']} examples in {held}")
    return HeldoutShards(held, cfg.eval_size)


def model_inputs(batch: dict, sentence_task: str) -> dict:
    """The forward's keyword arguments from a loader batch (labels included)."""
    keys = ("input_ids", "token_type_ids", "attention_mask", "labels")
    if sentence_task != "none":
        keys += ("sentence_order_label",)
    return {k: batch[k] for k in keys}


# --------------------------------------------------------------------------------------
# model, evaluation


def build_model(cfg: PretrainConfig, vocab_size: int):
    mc = AlbertConfig.from_preset(cfg.preset)
    overrides = {"vocab_size": int(vocab_size), "sharing": cfg.sharing}
    if cfg.embedding_size is not None:
        overrides["embedding_size"] = int(cfg.embedding_size)
    if mc.max_position_embeddings < cfg.seq_len:
        overrides["max_position_embeddings"] = cfg.seq_len
    mc = AlbertConfig.from_preset(cfg.preset, **overrides)
    cls = AlbertForMaskedLM if cfg.sentence_task == "none" else AlbertForPreTraining
    model = cls(mc, seed=cfg.seed, dtype=cfg.dtype, precision=cfg.precision)
    if cfg.device != "cpu":
        model.to(cfg.device)
    return model


def evaluate_pretraining(model, examples, cfg: PretrainConfig, batch_size: int = 64) -> dict:
    """MLM loss/accuracy and sentence-task accuracy on held-out examples (or the held-out
    shards of a --data run), dropout off."""
    if isinstance(examples, HeldoutShards):
        c = evaluate_batches(model, shard_batches(examples.path, batch_size, examples.max_examples))
        res = {"eval_mlm_loss": c.mlm_loss, "eval_mlm_accuracy": c.mlm_accuracy}
        if c.pair_accuracy is not None:
            res[f"eval_{cfg.sentence_task}_accuracy"] = c.pair_accuracy
        return res
    if not examples:
        return {}
    was_training = model.training
    model.eval()
    acc = RunningMetrics()
    with model.no_grad():
        for s in range(0, len(examples), batch_size):
            batch = model_inputs(collate(examples[s:s + batch_size], cfg.seq_len, None), cfg.sentence_task)
            out = model.forward(**batch)
            mlm_loss, _, mlm_correct, sentence_correct = pretraining_stats(out, batch)
            n = int((batch["labels"] != IGNORE_INDEX).sum())
            n_pairs = int((batch["sentence_order_label"] != IGNORE_INDEX).sum()) if out.sop_logits is not None else 0
            acc.add(StepStats(mlm_loss=mlm_loss * n, mlm_correct=mlm_correct, mlm_count=n,
                              sentence_correct=sentence_correct, sentence_count=n_pairs))
    model.train(was_training)
    res = {"eval_mlm_loss": acc.mlm_loss / max(acc.mlm_count, 1),
           "eval_mlm_accuracy": acc.mlm_correct / max(acc.mlm_count, 1)}
    if acc.sentence_count:
        res[f"eval_{cfg.sentence_task}_accuracy"] = acc.sentence_correct / acc.sentence_count
    return res


# --------------------------------------------------------------------------------------
# the run directory: claim, resume, checkpoint


def claim_out_dir(cfg: PretrainConfig) -> Optional[dict]:
    """Check that ``cfg.out`` may be written, before anything is written.

    Returns the existing run.json record when resuming, else None. Raises ValueError
    (nothing touched) when the directory holds another run, files minialbert did not
    write, an input of the run, or nothing to resume."""
    rd = RunDir(cfg.out, RUN_FILES)
    out = rd.path
    if not cfg.resume:
        rd.claim_new(cfg.overwrite, inputs=[cfg.corpus, cfg.data, cfg.tokenizer],
                     busy_hint="pass --resume to continue it, ")
        return None
    run = rd.record() if out.is_dir() else None
    if run is None or ckpt.find_checkpoint(out / CHECKPOINT_DIR) is None:
        raise RunDirError(f"--resume: no checkpoint to resume in {out}/{CHECKPOINT_DIR} "
                          "(start the run without --resume)")
    if run.get("fingerprint") != cfg.fingerprint():
        saved = run.get("config", {})
        diff = [f"--{k.replace('_', '-')} {saved.get(k)!r} -> {getattr(cfg, k)!r}"
                for k in FINGERPRINT_FIELDS if saved.get(k) != getattr(cfg, k)]
        raise RunDirError(f"--resume: {out} holds run {run.get('run_id')} with different settings "
                          f"({'; '.join(diff) or 'fingerprint differs'}); resume with the same options")
    if run.get("step", 0) >= cfg.steps:
        raise RunDirError(f"--resume: the checkpoint is at step {run['step']}, already >= --steps {cfg.steps}; "
                          "pass a larger --steps to train further")
    return run


def _resume(cfg: PretrainConfig, run: dict, model, optimizer, stream, data_hash, log, scaler=None) -> int:
    """Restore the checkpoint of ``run`` into model, optimiser, data stream (and the fp16 loss
    scaler); its step."""
    ck_dir = Path(cfg.out) / CHECKPOINT_DIR
    state = ckpt.load_checkpoint(ck_dir, model, optimizer)
    extra = state.get("extra", {})
    if extra.get("fingerprint", cfg.fingerprint()) != cfg.fingerprint():
        raise ValueError(f"--resume: {ck_dir} was written by another run ({extra.get('run_id')}, "
                         f"other settings) than the one in {Path(cfg.out) / RUN_FILE}; not resuming from it")
    if extra.get("data_hash") != data_hash:
        raise ValueError(f"--resume: the data differ from the checkpoint's (hash {extra.get('data_hash')} "
                         f"vs {data_hash}); was the corpus changed?")
    start = int(state["step"])
    if start >= cfg.steps:
        raise ValueError(f"--resume: the checkpoint is at step {start}, already >= --steps {cfg.steps}; "
                         "pass a larger --steps to train further")
    if cfg.stop_at is not None and cfg.stop_at <= start:
        raise ValueError(f"--stop-at {cfg.stop_at}: the checkpoint is already at step {start}; "
                         f"pass a later --stop-at (up to --steps {cfg.steps}) or none")
    stream.load_state_dict(extra["data_state"])
    if scaler is not None:
        if "loss_scaler" not in extra:
            raise ValueError(f"--resume: {ck_dir} holds no loss-scaler state, which an fp16 run writes; "
                             "was it written by another version of minialbert?")
        scaler.load_state_dict(extra["loss_scaler"])
    if run.get("config", {}).get("steps") != cfg.steps:
        log(f"note: --steps changed from {run['config'].get('steps')} to {cfg.steps}: "
            "the LR decay now ends at the new total")
    log(f"resuming run {run['run_id']} at step {start} of {cfg.steps}")
    return start


def _bind(hook, step):
    """A ``hooks`` callback f(step, model) as train_step's f(model); None stays None."""
    return None if hook is None else (lambda model: hook(step, model))


def _postfix(rec: dict, sentence_task: str) -> dict:
    """The progress bar's fields of a metrics record."""
    post = {"loss": f"{rec['loss']:.3f}", "mlm_acc": f"{rec['mlm_accuracy']:.3f}"}
    if sentence_task != "none":
        post[f"{sentence_task}_acc"] = f"{rec[sentence_task + '_accuracy']:.3f}"
    post["tok/s"] = metrics.format_rate(rec["tokens_per_s"])
    post["mfu"] = f"{100 * rec['mfu']:.1f}%"
    return post


def _diverged(stats: StepStats, step: int, out: Path, last_ckpt: Optional[int],
              fp16: bool = False) -> TrainingDiverged:
    what, value = ("the loss", stats.loss) if not math.isfinite(stats.loss) else ("the gradient norm",
                                                                                   stats.grad_norm)
    where = (f"the last good checkpoint (step {last_ckpt}) in {out / CHECKPOINT_DIR} is intact"
             if last_ckpt is not None else "no checkpoint had been written yet")
    hint = ("The fp16 loss scale is at its minimum, so the forward itself overflows: lower --lr, or "
            "train in --precision bf16 or fp32" if fp16 else "Lower --lr, raise --warmup, or use --dtype float64")
    return TrainingDiverged(f"{what} became {value} at step {step + 1}; training stopped before the "
                            f"update and {where}. {hint}.")


# --------------------------------------------------------------------------------------
# the loop


def pretrain(cfg: PretrainConfig, log: Callable = print, hooks: Optional[dict] = None, comm=None) -> dict:
    """Run (or resume) pretraining as configured; returns a summary dict.

    Writes ``cfg.out``/run.json, metrics.jsonl, checkpoint/ (every ``checkpoint_every``
    steps and at the end), spiece.model and plots/*.png. ``hooks``: callbacks
    ``{"before_step": f(step, model)}``, called before each optimiser step (to inspect or
    change the model, or to stop the run by raising), and ``{"before_update": f(step, model)}``,
    called with the step's summed gradients before clipping and the update (e.g. to watch
    LAMB's trust ratios, notebook 08). ``comm``: see ``train_step``; default
    ``distributed.get_world(cfg.device)``: one process, or the MPI world under ``mpiexec``
    (data parallelism: each rank reads its B rows of every global micro-batch of N*B, and
    rank 0 alone writes anything; docs/training/data-parallel.md).
    Raises ValueError for bad options (nothing written), TrainingDiverged on NaN/inf,
    Interrupted (a KeyboardInterrupt) after Ctrl-C or SIGTERM and a checkpoint."""
    hooks = dict(hooks or {})
    if set(hooks) - set(HOOKS):
        raise ValueError(f"hooks: unknown {sorted(set(hooks) - set(HOOKS))}; known: {list(HOOKS)}")
    cfg.validate()
    comm = comm or distributed.get_world(cfg.device)
    root = comm.rank == 0                                       # rank 0 alone writes and logs
    if not root:
        log = _silent
    comm.check_same(asdict(cfg), "command-line settings")     # every rank: the same command
    out, ck_dir = Path(cfg.out), Path(cfg.out) / CHECKPOINT_DIR
    run = claim_out_dir(cfg)                                    # raises before anything is written
    if run is not None:
        distributed.check_resume_world(run.get("world_size", 1), comm, out)
    tok, stream, eval_examples, data_hash = prepare_data(
        cfg, tokenizer_path=(ck_dir / TOKENIZER_FILE) if run else None, log=log, ranks=comm.size)
    if comm.size > 1:
        stream = distributed.RankSlicedLoader(stream, comm)
    model = build_model(cfg, tok.vocab_size)
    optimizer = make_optimizer(cfg.optimizer, model, lr=cfg.lr, weight_decay=cfg.weight_decay)
    dropout_root = Random(cfg.seed, device=cfg.device).fork(2)
    scaler = make_scaler(cfg.precision)                         # fp16: the dynamic loss scale; else None
    start = _resume(cfg, run, model, optimizer, stream, data_hash, log, scaler) if run else 0
    if comm.size > 1:      # also the barrier before rank 0 writes: every rank has read --out
        comm.check_same({"data": data_hash, "step": start, "weights": distributed.params_fingerprint(model.params)},
                        "data or starting weights (is --out on a filesystem every rank sees?)")
    rd = RunDir(out, RUN_FILES)
    run_id = run["run_id"] if run else uuid.uuid4().hex[:12]
    run_record = {"run_id": run_id, "fingerprint": cfg.fingerprint(), "config": asdict(cfg),
                  "model_config": model.config.to_dict(), "step": start,
                  "num_parameters": model.num_parameters()}
    if comm.size > 1:
        run_record["world_size"] = comm.size
    if root:
        if run is None:
            rd.clear(rd.record() if out.is_dir() else None)   # --overwrite: what minialbert wrote
        rd.start(run_record)                                    # run.json first: it lists what we write
        tok.save(out / TOKENIZER_FILE)
    mlog = metrics.MetricsLog(out / METRICS_FILE, resume_step=start if run else None) if root else None

    K, B, T = cfg.grad_accum, cfg.batch_size, cfg.seq_len
    peak = (cfg.peak_tflops * 1e12 if cfg.peak_tflops else
            metrics.measure_peak_flops(cfg.device, model.compute_dtype.name))  # fp16: the fp16 matmul peak
    stop = min(cfg.stop_at, cfg.steps) if cfg.stop_at else cfg.steps
    log(f"model: {model!r}; {cfg.optimizer} lr {cfg.lr:g} warmup {cfg.warmup}; "
        f"B={B}x{K} T={T}; steps {start}->{stop}; peak {peak / 1e9:.0f} GFLOP/s ({cfg.device})")
    last_ckpt = start if run else None

    def save(step, data_state):
        nonlocal last_ckpt
        last_ckpt = step
        if not root:
            return
        extra = {"data_state": data_state, "data_hash": data_hash,
                 "run_id": run_id, "fingerprint": cfg.fingerprint(), "world_size": comm.size}
        if scaler is not None:
            extra["loss_scaler"] = scaler.state_dict()
        ckpt.save_checkpoint(ck_dir, model, optimizer, step=step, rng=dropout_root, extra=extra,
                             files={TOKENIZER_FILE: tok.model_proto})
        run_record["step"] = step
        write_json_atomic(out / RUN_FILE, run_record)

    bar = (tqdm(total=stop, initial=start, desc="pretrain", unit="step", dynamic_ncols=True)
           if cfg.progress and root else None)
    acc, summary = RunningMetrics(), {"run_id": run_id, "out": str(out), "start_step": start}
    # the embedded corpus: top-5 fill-mask guesses on blanked held-out sentences, before/after
    probe_items = None
    if root and cfg.corpus is None and cfg.data is None and start == 0 and getattr(stream, "heldout_documents", None):
        probe_items = probe_sentences(stream.heldout_documents, tok, seed=cfg.seed)
        probe_before = probe(model, tok, [t for t, _ in probe_items]) if probe_items else None
    model.train()
    step, data_state, in_step = start, stream.state_dict(), False  # data_state: where step `step` reads
    try:
        with StopSignals() as signals:
            while step < stop:
                t0 = time.perf_counter()
                if "before_step" in hooks:
                    hooks["before_step"](step, model)
                # data
                batches = [model_inputs(next(stream), cfg.sentence_task) for _ in range(K)]
                # step
                lr = lr_at(step, cfg.lr, cfg.warmup, cfg.steps)
                in_step = True
                stats = train_step(model, optimizer, batches, lr, comm=comm, clip_norm=cfg.clip_norm,
                                   rngs=[distributed.dropout_stream(dropout_root, comm, step, k)
                                         for k in range(K)], scaler=scaler,
                                   before_update=_bind(hooks.get("before_update"), step))
                in_step = False
                # fp16: an overflow skips the step (no update; the scaler halved its scale) and the
                # run goes on, unless the scale is already at its floor (then the forward overflows)
                if not stats.updated and (scaler is None or scaler.at_minimum):
                    raise _diverged(stats, step, out, last_ckpt, fp16=scaler is not None)
                step, data_state = step + 1, stream.state_dict()
                synchronize(cfg.device)
                if stats.updated:               # a skipped step's loss (inf/NaN) stays out of the means
                    acc.add(stats, tokens=comm.size * K * B * T, seconds=time.perf_counter() - t0,
                            flops=metrics.train_flops(model.config, K * B, T,
                                                      n_predictions=stats.mlm_count // comm.size,
                                                      sentence_head=cfg.sentence_task != "none"))
                # log and evaluate
                if root and (step % cfg.log_every == 0 or step == stop):
                    if acc.steps:
                        rec = acc.record(step, lr, peak, cfg.sentence_task, tokens=step * comm.size * K * B * T)
                    else:                       # every step since the last record was skipped
                        rec = {"step": step, "lr": lr, "tokens": step * comm.size * K * B * T}
                    if scaler is not None:      # fp16: the scale now in force, skipped steps so far
                        rec.update(loss_scale=scaler.scale, skipped_steps=scaler.skipped_steps)
                    every = DEFAULT_EVAL_EVERY if cfg.eval_every is None else cfg.eval_every
                    if step == stop or (every and step % every == 0):
                        rec.update(evaluate_pretraining(model, eval_examples, cfg))
                    mlog.write(rec)
                    summary.setdefault("first", rec)
                    summary["last"], acc = rec, RunningMetrics()
                    if bar is not None:
                        bar.set_postfix(_postfix(rec, cfg.sentence_task), refresh=False)
                if bar is not None:
                    bar.update(1)
                # checkpoint
                if step % cfg.checkpoint_every == 0 or step == stop:
                    save(step, data_state)
                if comm.any(signals.received is not None):   # every rank stops after the same step
                    raise signals.interrupted() if signals.received else Interrupted(signal.SIGTERM)
    except KeyboardInterrupt as e:
        # Save the last *finished* step with the data position where the next step starts
        # (the batches of an unfinished step are read again on resume). An interrupt inside
        # a step (no signal handler: not the main thread) may have torn the update.
        if in_step:
            log(f"\ninterrupted during a step: resume from the last checkpoint (step {last_ckpt})")
            raise
        if step != last_ckpt:
            save(step, data_state)
        if comm.size > 1:
            comm.barrier("the checkpoint at the interrupt")    # rank 0 has saved before anyone exits
        msg = f"interrupted: checkpoint at step {step} in {ck_dir}; continue with --resume"
        log("\n" + msg)
        if isinstance(e, Interrupted):
            raise Interrupted(e.signum, msg) from None
        raise
    finally:
        if bar is not None:
            bar.close()
        if mlog is not None:
            mlog.close()
    summary.update(step=step, checkpoint=str(ck_dir), rank=comm.rank, world_size=comm.size)
    if cfg.plots and root:
        summary["plots"] = metrics.plot_metrics(metrics.read_metrics(out / METRICS_FILE), out / "plots")
    if probe_items and step == cfg.steps:
        summary["fill_mask"] = format_probe(probe_items, probe_before, probe(model, tok, [t for t, _ in probe_items]))
    return summary
