r"""The paper's ablations at small scale: one command per claim (``minialbert experiment``).

=================  ===========================  =============================================
experiment         the paper's                  runs (each pretrained with the same budget)
=================  ===========================  =============================================
``sentence-task``  Table 5 (NSP vs SOP)         ``none``, ``nsp``, ``sop``: every model scored
                                                on held-out MLM, NSP pairs *and* SOP pairs
``sharing``        Table 4 (sharing strategy)   ``all``, ``attention``, ``ffn``, ``none``
``embedding``      Table 3 (embedding size E)   E in a sweep, all-shared and not shared
``smoothness``     Figure 1 (layer transitions) shared vs not shared: L2 distance and
                                                cosine similarity of each layer's input and
                                                output embeddings
=================  ===========================  =============================================

Every experiment (:func:`run_experiment`) does the same four things:

1. **Data.** The embedded corpus is split by *document* into training and held-out parts
   (:func:`minialbert.data.heldout.split_documents`); a tokenizer is trained on the
   training documents; shards are built for each sentence task needed, the held-out
   ones beside them (``OUT/data/<task>/heldout``), the same documents for every task.
2. **Runs.** ``minialbert pretrain`` (:func:`minialbert.train.pretrain`, the default
   recipe) on those shards, once per setting, into ``OUT/runs/<name>/`` (checkpoints kept).
3. **Evaluation.** :mod:`minialbert.evaluation` on the held-out shards, with binomial
   standard errors.
4. **Report.** ``OUT/results.json``, ``OUT/results.md`` (measured beside the paper's
   numbers, from ``albert-spec.md`` §4.3 and §7), PNG plots, ``OUT/experiment.json``
   (settings, times, the command).

A ``none`` model has no sentence head: its pair accuracies are reported as chance (0.5),
as the paper's Table 5 does for its "None" row, and marked ``"pair_head": false``.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .atomic import atomic_write
from .evaluation import evaluate_on, load_model, stderr, write_json_atomic
from .backend import check_device, to_numpy
from .config import AlbertConfig, PRESETS, count_parameters
from .data.corpus import load_default_corpus
from .data.heldout import HELDOUT_DIR, split_documents
from .data.shards import build_shards
from .evaluation import shard_batches
from .metrics import read_metrics
from .tokenizer import Tokenizer
from .train import PretrainConfig, pretrain
from .checkpoint import find_checkpoint

EXPERIMENTS = ("sentence-task", "sharing", "embedding", "smoothness")
FORMAT = "minialbert-experiment"
MARKER = "experiment.json"
# what an experiment writes into --out (and the only names --overwrite removes)
OUR_FILES = (MARKER, "results.json", "results.md", "runs", "data")
CHANCE = 0.5


@dataclass
class Settings:
    """The budget of one experiment: the same for every run in it."""
    experiment: str
    preset: str = "tiny"
    steps: int = 1500                   # optimiser steps per run
    batch_size: int = 32
    seq_len: int = 64
    vocab_size: int = 2000              # issue 10's recipe (docs/training/pretraining.md)
    dupe_factor: int = 5                # training shards: passes over the documents, fresh masks
    heldout_fraction: float = 0.2       # documents held out
    max_docs: Optional[int] = None      # use only the first N documents (--quick)
    eval_examples: Optional[int] = None  # held-out examples evaluated per set (None: all)
    eval_every: int = 0                 # held-out evaluation during training (curves)
    log_every: int = 50
    device: str = "cpu"
    seed: int = 0
    quick: bool = False
    embedding_sizes: tuple = ()         # the embedding experiment's sweep
    plots_per_run: bool = True


# Default budgets: each experiment's runs together take at most ~20 minutes on a quiet
# 2-core CPU with the tiny preset at ~0.28 s a step (docs/reproducing.md has the measured
# wall times).
DEFAULT_STEPS = {"sentence-task": 1000, "sharing": 800, "embedding": 400, "smoothness": 1600}
QUICK = dict(steps=2, batch_size=8, seq_len=32, vocab_size=400, dupe_factor=1, heldout_fraction=0.25,
             max_docs=120, eval_examples=32, log_every=1, plots_per_run=False)


def make_settings(name: str, preset: Optional[str] = None, steps: Optional[int] = None,
                  device: str = "cpu", quick: bool = False, seed: int = 0) -> Settings:
    """Validate the command's options and return the budget (nothing is written)."""
    if name not in EXPERIMENTS:
        raise ValueError(f"NAME: unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"--preset: unknown preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
    if steps is not None and (int(steps) != steps or steps < 1):
        raise ValueError(f"--steps must be a positive integer, got {steps}")
    check_device(device)
    s = Settings(experiment=name, preset=preset or PretrainConfig().preset, device=device, seed=seed,
                 steps=DEFAULT_STEPS[name], quick=quick)
    if quick:
        s = replace(s, **QUICK)
    if steps is not None:
        s = replace(s, steps=int(steps))
    s = replace(s, log_every=min(s.log_every, s.steps), eval_every=max(1, s.steps // 10))
    mc = AlbertConfig.from_preset(s.preset)
    if s.seq_len > mc.max_position_embeddings:
        s = replace(s, seq_len=mc.max_position_embeddings)
    if name == "embedding":
        E = mc.embedding_size
        sweep = [E // 4, E // 2, E, 2 * E] if not quick else [E // 2, E]
        s = replace(s, embedding_sizes=tuple(e for e in sweep if e >= 4))
    return s


# --------------------------------------------------------------------------------------
# the output folder: ours or nobody's


def claim_out(out: Path, overwrite: bool, resume: bool = False) -> None:
    """Refuse a --out that holds anything but an earlier experiment of ours (and that one
    unless --overwrite or --resume); --overwrite removes only what an experiment writes,
    --resume keeps its data and finished runs."""
    if overwrite and resume:
        raise ValueError("--overwrite and --resume are exclusive")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out: {out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    marker = out / MARKER
    ours = False
    if marker.is_file():
        try:
            ours = json.loads(marker.read_text(encoding="utf-8")).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
    if not ours:
        raise ValueError(f"--out: {out} is not empty and holds no minialbert experiment; "
                         "choose a new or empty folder")
    if not (overwrite or resume):
        raise ValueError(f"--out: {out} holds an earlier experiment's results; pass --overwrite to "
                         "replace them, --resume to reuse its finished runs, or choose another --out")
    foreign = sorted(p.name for p in out.iterdir() if not _is_ours(p))
    if foreign:
        raise ValueError(f"--out: {out} also holds files no experiment wrote ({', '.join(foreign[:5])}); "
                         "not touching it: move them away or choose another --out")


def _is_ours(p: Path) -> bool:
    return p.name in OUR_FILES or (p.suffix == ".png" and p.is_file())


def _clear_ours(out: Path) -> None:
    (out / MARKER).unlink(missing_ok=True)             # first: a half-cleared folder is not "results"
    for p in list(out.iterdir()):
        if _is_ours(p):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


# --------------------------------------------------------------------------------------
# data

_CORPUS: dict = {}
# the settings the data depend on (a --resume reuses OUT/data only if they are the same)
DATA_FIELDS = ("seq_len", "vocab_size", "dupe_factor", "heldout_fraction", "max_docs", "seed")


def _corpus():
    if "docs" not in _CORPUS:                            # parsed once per process
        _CORPUS["docs"] = load_default_corpus()
    return _CORPUS["docs"]


def prepare_data(s: Settings, data_dir: Path, tasks, log=print) -> dict:
    """Tokenizer + training shards for each task in ``tasks`` + held-out SOP and NSP shards,
    all from one document split. Returns {"tokenizer": path, task: dir, "heldout-sop": dir,
    "heldout-nsp": dir, "documents": (train, heldout)}."""
    t0 = time.perf_counter()
    want = {k: getattr(s, k) for k in DATA_FIELDS}
    stamp = data_dir / "settings.json"
    if stamp.is_file():                                   # --resume: the same data, already built
        old = json.loads(stamp.read_text(encoding="utf-8"))
        if old.get("settings") == want and all(t in old["paths"] for t in tasks):
            log(f"data: reusing {data_dir}")
            return old["paths"]
    docs = _corpus()
    if s.max_docs:
        docs = docs[:s.max_docs]
    train, held = split_documents(docs, s.heldout_fraction, seed=s.seed)
    data_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer.train(train, vocab_size=s.vocab_size)
    tok_path = data_dir / "spiece.model"
    tok.save(tok_path)
    split = {"fraction": s.heldout_fraction, "seed": s.seed, "dir": HELDOUT_DIR}
    kw = dict(max_seq_length=s.seq_len, seed=s.seed, num_workers=1)
    paths = {"tokenizer": str(tok_path), "documents": [len(train), len(held)]}
    for task in sorted(set(tasks) | {"sop", "nsp"}):
        d = data_dir / task
        if task in tasks:
            build_shards(train, tok, d, sentence_task=task, dupe_factor=s.dupe_factor, overwrite=True,
                         extra_manifest={"split": "train", "heldout": split}, **kw)
            paths[task] = str(d)
        if task in ("sop", "nsp"):
            build_shards(held, tok, d / HELDOUT_DIR, sentence_task=task, dupe_factor=1, overwrite=True,
                         extra_manifest={"split": "heldout", "heldout": split}, **kw)
            paths[f"heldout-{task}"] = str(d / HELDOUT_DIR)
    write_json_atomic(stamp, {"settings": want, "paths": paths})
    log(f"data: {len(train)} training / {len(held)} held-out documents, V={tok.vocab_size}, "
        f"T={s.seq_len}, tasks {', '.join(tasks)} in {time.perf_counter() - t0:.1f}s")
    return paths


# --------------------------------------------------------------------------------------
# runs


@dataclass
class Run:
    """One pretraining run of an experiment and what was measured on it."""
    name: str
    sentence_task: str = "sop"
    sharing: str = "all"
    embedding_size: Optional[int] = None
    out: str = ""
    params: int = 0
    seconds_per_step: float = float("nan")
    wall_s: float = 0.0
    evals: dict = field(default_factory=dict)        # held-out set name -> evaluate_on() dict
    extra: dict = field(default_factory=dict)


def _pretrain_config(s: Settings, run: Run, data: dict, out: Path):
    kw = dict(preset=s.preset, data=data[run.sentence_task], tokenizer=data["tokenizer"],
              seq_len=s.seq_len, batch_size=s.batch_size, steps=s.steps,
              warmup=min(PretrainConfig().warmup, max(0, s.steps // 4)),   # 400 steps: 100, as pretrain
              sentence_task=run.sentence_task, sharing=run.sharing, device=s.device, seed=s.seed,
              out=str(out), checkpoint_every=s.steps, log_every=s.log_every, progress=False,
              plots=s.plots_per_run, peak_tflops=1.0 if s.quick else None)
    fields_ = PretrainConfig.__dataclass_fields__
    if run.embedding_size is not None:
        if "embedding_size" not in fields_:
            raise RuntimeError("this minialbert's pretrain has no embedding_size option")
        kw["embedding_size"] = run.embedding_size
    if "eval_data" in fields_:
        # held-out curves during training, on the held-out pairs of the run's own task
        held = data.get(f"heldout-{run.sentence_task}", data["heldout-sop"])
        kw.update(eval_data=held, eval_every=s.eval_every)
        if "eval_size" in fields_:
            kw["eval_size"] = s.eval_examples or 512
    return PretrainConfig(**kw)


def train_run(s: Settings, run: Run, data: dict, runs_dir: Path, log=print) -> Run:
    out = runs_dir / run.name
    cfg = _pretrain_config(s, run, data, out)
    t0 = time.perf_counter()
    prev = _finished_step(out, cfg)
    if prev == s.steps:
        log(f"run {run.name}: reusing the finished run in {out}")
    else:
        if prev == -1:
            cfg.overwrite = True                       # our own unfinished run: replace its files
        elif prev is not None:
            cfg.resume = True                          # same settings, stopped early: continue it
        log(f"run {run.name}: {s.steps} steps ({run.sentence_task}, sharing {run.sharing}"
            + (f", E={run.embedding_size}" if run.embedding_size else "") + ")"
            + (f", resuming at step {prev}" if prev is not None and prev >= 0 else ""))
        pretrain(cfg, log=lambda m: None)
    run.wall_s = time.perf_counter() - t0
    run.out = str(out)
    recs = [r for r in read_metrics(out / "metrics.jsonl") if "step_time_s" in r]
    if recs:
        # the first logged window pays the warm-up (BLAS threads, first allocations)
        use = recs[1:] if len(recs) > 1 else recs
        run.seconds_per_step = float(np.mean([r["step_time_s"] for r in use]))
    log(f"run {run.name}: {run.wall_s:.0f}s, {run.seconds_per_step:.3f} s/step")
    return run


def _finished_step(out: Path, cfg) -> Optional[int]:
    """The checkpointed step of an earlier run in ``out`` with the same settings (None: no
    such run; -1: one interrupted before its first checkpoint; a run with other settings is an
    error, never overwritten)."""
    f = out / "run.json"
    if not f.is_file():
        if out.exists() and any(out.iterdir()):
            raise ValueError(f"--out: {out} holds files but no run; remove it or use --overwrite")
        return None
    rec = json.loads(f.read_text(encoding="utf-8"))
    if rec.get("fingerprint") != cfg.fingerprint():
        raise ValueError(f"--resume: {out} holds a run with other settings; use --overwrite")
    if find_checkpoint(out / "checkpoint") is None:
        return -1                                      # interrupted before its first checkpoint: start over
    return int(rec.get("step", 0))


def evaluate_run(s: Settings, run: Run, data: dict, sets=("sop", "nsp")) -> Run:
    model, _, tok_hash = load_model(Path(run.out), device=s.device)
    run.params = int(model.num_parameters())
    for task in sets:
        run.evals[task] = evaluate_on(model, data[f"heldout-{task}"], tok_hash,
                                      max_examples=s.eval_examples)
    return run


# --------------------------------------------------------------------------------------
# the four experiments: runs, then a results dict


def _sentence_task(s, data, runs_dir, log):
    runs = []
    for task in ("none", "nsp", "sop"):
        r = evaluate_run(s, train_run(s, Run(name=task, sentence_task=task), data, runs_dir, log), data)
        runs.append(r)
    out = []
    for r in runs:
        sop, nsp = r.evals["sop"], r.evals["nsp"]
        head = r.sentence_task != "none"
        acc = {t: (r.evals[t]["pair_accuracy"] if head else CHANCE) for t in ("nsp", "sop")}
        out.append({
            "name": r.name, "sentence_task": r.sentence_task, "params": r.params,
            "eval": {"mlm_accuracy": sop["mlm_accuracy"], "nsp_accuracy": acc["nsp"],
                     "sop_accuracy": acc["sop"], "nsp_pairs": nsp["pairs"] if head else _pairs(nsp),
                     "sop_pairs": sop["pairs"] if head else _pairs(sop)},
            "stderr": {"mlm_accuracy": sop["mlm_accuracy_stderr"],
                       "nsp_accuracy": nsp["pair_accuracy_stderr"] if head else _chance_se(nsp),
                       "sop_accuracy": sop["pair_accuracy_stderr"] if head else _chance_se(sop)},
            "pair_head": head, "mlm_predictions": sop["mlm_predictions"],
            "mlm_accuracy_on_nsp_pairs": nsp["mlm_accuracy"],
            "seconds_per_step": r.seconds_per_step, "steps": s.steps, "checkpoint": r.out})
    return out


def _pairs(ev):
    """Pairs a model without a head would be scored on: the examples of the held-out set."""
    return int(ev["pairs"] or ev["examples"])


def _chance_se(ev):
    return stderr(CHANCE, _pairs(ev))


def _sharing(s, data, runs_dir, log):
    out = []
    for sharing in ("all", "attention", "ffn", "none"):
        r = evaluate_run(s, train_run(s, Run(name=sharing, sharing=sharing), data, runs_dir, log), data,
                         sets=("sop",))
        e = r.evals["sop"]
        out.append({"name": r.name, "sharing": sharing, "embedding_size": _E(s), "params": r.params,
                    "seconds_per_step": r.seconds_per_step,
                    "eval": {"mlm_accuracy": e["mlm_accuracy"], "mlm_loss": e["mlm_loss"],
                             "sop_accuracy": e["pair_accuracy"], "sop_pairs": e["pairs"]},
                    "stderr": {"mlm_accuracy": e["mlm_accuracy_stderr"],
                               "sop_accuracy": e["pair_accuracy_stderr"]},
                    "steps": s.steps, "checkpoint": r.out})
    return out


def _E(s):
    return AlbertConfig.from_preset(s.preset).embedding_size


def _embedding(s, data, runs_dir, log):
    out = []
    for sharing in ("all", "none"):
        for E in s.embedding_sizes:
            name = f"E{E}-{'shared' if sharing == 'all' else 'not-shared'}"
            r = evaluate_run(s, train_run(s, Run(name=name, sharing=sharing, embedding_size=E), data,
                                          runs_dir, log), data, sets=("sop",))
            e = r.evals["sop"]
            out.append({"name": name, "sharing": sharing, "embedding_size": E, "params": r.params,
                        "seconds_per_step": r.seconds_per_step,
                        "eval": {"mlm_accuracy": e["mlm_accuracy"], "mlm_loss": e["mlm_loss"],
                                 "sop_accuracy": e["pair_accuracy"], "sop_pairs": e["pairs"]},
                        "stderr": {"mlm_accuracy": e["mlm_accuracy_stderr"],
                                   "sop_accuracy": e["pair_accuracy_stderr"]},
                        "steps": s.steps, "checkpoint": r.out})
    return out


def layer_transitions(model, batches) -> dict:
    """The paper's Figure 1 measure: for each layer application l, the mean over real tokens
    of ||h_out - h_in||_2 and of cos(h_in, h_out), h_in = hidden_states[l] (the input of
    layer l; [0] is the projected embedding), h_out = hidden_states[l + 1].
    Returns {"l2_distance": [L floats], "cosine_similarity": [L floats]}."""
    was_training = model.training
    model.eval()
    l2 = cos = None
    n = 0
    try:
        for b in batches:
            with model.no_grad():
                out = model.forward(b["input_ids"], token_type_ids=b["token_type_ids"],
                                    attention_mask=b["attention_mask"], output_hidden_states=True)
            hs = [to_numpy(h).astype(np.float64) for h in out.hidden_states]     # L+1 x (B, T, H)
            real = np.asarray(b["attention_mask"], bool)                          # (B, T)
            a = np.stack([h[real] for h in hs])                                   # (L+1, N, H)
            d = np.linalg.norm(a[1:] - a[:-1], axis=-1)                           # (L, N)
            c = (a[1:] * a[:-1]).sum(-1) / (np.linalg.norm(a[1:], axis=-1) * np.linalg.norm(a[:-1], axis=-1))
            l2 = d.sum(1) if l2 is None else l2 + d.sum(1)
            cos = c.sum(1) if cos is None else cos + c.sum(1)
            n += a.shape[1]
    finally:
        model.train(was_training)
    return {"l2_distance": (l2 / n).tolist(), "cosine_similarity": (cos / n).tolist(), "tokens": n}


def _smoothness(s, data, runs_dir, log):
    out = []
    for name, sharing in (("shared", "all"), ("not-shared", "none")):
        r = evaluate_run(s, train_run(s, Run(name=name, sharing=sharing), data, runs_dir, log), data,
                         sets=("sop",))
        model, _, _ = load_model(Path(r.out), device=s.device)
        tr = layer_transitions(model, shard_batches(data["heldout-sop"], 64, s.eval_examples or 256))
        e = r.evals["sop"]
        out.append({"name": name, "sharing": sharing, "embedding_size": _E(s), "params": r.params,
                    "seconds_per_step": r.seconds_per_step,
                    "eval": {"mlm_accuracy": e["mlm_accuracy"], "sop_accuracy": e["pair_accuracy"],
                             "sop_pairs": e["pairs"]},
                    "l2_distance": tr["l2_distance"], "cosine_similarity": tr["cosine_similarity"],
                    "tokens": tr["tokens"], "steps": s.steps, "checkpoint": r.out})
    return out


_RUNNERS = {"sentence-task": (_sentence_task, ("none", "nsp", "sop")), "sharing": (_sharing, ("sop",)),
            "embedding": (_embedding, ("sop",)), "smoothness": (_smoothness, ("sop",))}


def run_experiment(name: str, out, preset: Optional[str] = None, steps: Optional[int] = None,
                   device: str = "cpu", quick: bool = False, overwrite: bool = False, seed: int = 0,
                   log: Callable = print, command: Optional[str] = None, resume: bool = False) -> dict:
    """Run one experiment into ``out`` (see the module docstring); returns results.json's dict.
    Every option is checked, and ``out`` claimed, before anything is written."""
    s = make_settings(name, preset, steps, device, quick, seed)
    out = Path(out)
    claim_out(out, overwrite, resume)
    if resume and (out / MARKER).is_file():
        prev = json.loads((out / MARKER).read_text(encoding="utf-8"))
        if prev.get("experiment") != name:
            raise ValueError(f"--resume: {out} holds the {prev.get('experiment')!r} experiment, not {name!r}")
    if s.embedding_sizes:
        if "embedding_size" not in PretrainConfig.__dataclass_fields__:
            raise RuntimeError("the embedding experiment needs pretrain's embedding_size option")
    if out.is_dir() and not resume:
        _clear_ours(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    record = {"format": FORMAT, "experiment": name, "settings": _jsonable(asdict(s)),
              "command": command, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
              "finished": None}
    write_json_atomic(out / MARKER, record)
    runner, tasks = _RUNNERS[name]
    data = prepare_data(s, out / "data", tasks, log)
    runs = runner(s, data, out / "runs", log)
    results = {"experiment": name, "runs": runs}
    write_json_atomic(out / "results.json", results)
    plots = PLOTTERS[name](results, out)
    record.update(finished=time.strftime("%Y-%m-%dT%H:%M:%SZ"), wall_s=round(time.time() - t0, 1),
                  documents={"train": data["documents"][0], "heldout": data["documents"][1]},
                  plots=[Path(p).name for p in plots])
    _atomic_text(out / "results.md", REPORTERS[name](results, record))
    write_json_atomic(out / MARKER, record)
    log(f"{name}: {record['wall_s']:.0f}s; wrote {out / 'results.json'}, {out / 'results.md'}, "
        + ", ".join(record["plots"]))
    return results


def _jsonable(d):
    return json.loads(json.dumps(d, default=lambda x: list(x) if isinstance(x, tuple) else str(x)))


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, text)


# --------------------------------------------------------------------------------------
# plots


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def _save(fig, path: Path) -> str:
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        _plt().close(fig)
    return str(path)


def _curves(ax, runs, key, label):
    """Held-out curves from each run's metrics.jsonl (records carrying ``key``)."""
    drawn = False
    for r in runs:
        pts = [(m["step"], m[key]) for m in read_metrics(Path(r["checkpoint"]) / "metrics.jsonl")
               if m.get(key) is not None]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=3, label=r["name"])
            drawn = True
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend()
    return drawn


def _plot_sentence_task(results, out: Path):
    plt = _plt()
    runs = results["runs"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    keys = (("mlm_accuracy", "MLM"), ("nsp_accuracy", "NSP pairs"), ("sop_accuracy", "SOP pairs"))
    x = np.arange(len(runs))
    w = 0.27
    for k, (key, label) in enumerate(keys):
        ys = [r["eval"][key] for r in runs]
        es = [r["stderr"][key] or 0 for r in runs]
        bars = ax.bar(x + (k - 1) * w, ys, w, yerr=es, capsize=3, label=label)
        for b, r in zip(bars, runs):
            if key != "mlm_accuracy" and not r["pair_head"]:
                b.set_hatch("//")
                b.set_alpha(0.4)
    ax.axhline(CHANCE, color="gray", ls=":", lw=1, label="chance (pairs)")
    ax.set_xticks(x, [f"trained: {r['name']}" for r in runs])
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Table 5: each model's sentence head on NSP and SOP pairs (hatched: no head, chance)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [_save(fig, out / "sentence_task.png")]
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100)
    a = _curves(axs[0], runs, "eval_mlm_accuracy", "held-out MLM accuracy")
    b = _curves(axs[1], runs, "eval_sop_accuracy", "held-out pair accuracy (own task)")
    if a or b:
        axs[1].axhline(CHANCE, color="gray", ls=":", lw=1)
        fig.tight_layout()
        paths.append(_save(fig, out / "curves.png"))
    else:
        plt.close(fig)
    return paths


def _plot_sharing(results, out: Path):
    plt = _plt()
    runs = results["runs"]
    fig, axs = plt.subplots(1, 3, figsize=(11, 3.6), dpi=100)
    names = [r["name"] for r in runs]
    axs[0].bar(names, [r["params"] / 1e6 for r in runs])
    axs[0].set_ylabel("parameters (M)")
    axs[1].bar(names, [r["seconds_per_step"] for r in runs])
    axs[1].set_ylabel("seconds per step")
    x = np.arange(len(runs))
    for k, key in enumerate(("mlm_accuracy", "sop_accuracy")):
        axs[2].bar(x + (k - 0.5) * 0.4, [r["eval"][key] or 0 for r in runs], 0.4,
                   yerr=[r["stderr"][key] or 0 for r in runs], capsize=3, label=key.replace("_", " "))
    axs[2].set_xticks(x, names)
    axs[2].axhline(CHANCE, color="gray", ls=":", lw=1)
    axs[2].set_ylabel("held-out accuracy")
    axs[2].legend(fontsize=8)
    for ax in axs:
        ax.set_xlabel("cross-layer sharing")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Table 4: sharing strategies at E={runs[0]['embedding_size']}", fontsize=10)
    fig.tight_layout()
    return [_save(fig, out / "sharing.png")]


def _plot_embedding(results, out: Path):
    plt = _plt()
    runs = results["runs"]
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for sharing, label in (("all", "all-shared"), ("none", "not-shared")):
        rs = sorted((r for r in runs if r["sharing"] == sharing), key=lambda r: r["embedding_size"])
        Es = [r["embedding_size"] for r in rs]
        axs[0].errorbar(Es, [r["eval"]["mlm_accuracy"] for r in rs],
                        yerr=[r["stderr"]["mlm_accuracy"] or 0 for r in rs], marker="o", capsize=3, label=label)
        axs[1].plot(Es, [r["params"] / 1e6 for r in rs], marker="o", label=label)
    for ax, yl in zip(axs, ("held-out MLM accuracy", "parameters (M)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("embedding size E")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Table 3: the embedding size E", fontsize=10)
    fig.tight_layout()
    return [_save(fig, out / "embedding.png")]


def _plot_smoothness(results, out: Path):
    plt = _plt()
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    for r in results["runs"]:
        layers = np.arange(1, len(r["l2_distance"]) + 1)
        axs[0].plot(layers, r["l2_distance"], marker="o", label=r["name"])
        axs[1].plot(layers, r["cosine_similarity"], marker="o", label=r["name"])
    for ax, yl in zip(axs, ("L2 distance (input, output)", "cosine similarity (input, output)")):
        ax.set_xticks(np.arange(1, len(results["runs"][0]["l2_distance"]) + 1))
        ax.set_xlabel("layer")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Figure 1: how much each layer changes its input (held-out tokens)", fontsize=10)
    fig.tight_layout()
    return [_save(fig, out / "smoothness.png")]


PLOTTERS = {"sentence-task": _plot_sentence_task, "sharing": _plot_sharing, "embedding": _plot_embedding,
            "smoothness": _plot_smoothness}


# --------------------------------------------------------------------------------------
# results.md: measured beside the paper

SPEC = "albert-spec.md"     # the project's specification of the paper (Lan et al., 2019, arXiv:1909.11942)
# Table 5, ALBERT-base, intrinsic dev accuracies (%), as recorded in albert-spec.md §7 (marked there as
# recalled from the paper, not re-verified)
PAPER_TABLE5 = {"none": (54.9, 52.4, 53.3), "nsp": (54.5, 90.5, 52.0), "sop": (54.0, 78.9, 86.5)}
# Table 4 parameters (M) at E=128 and Table 3 parameters (M), albert-spec.md §4.3
PAPER_TABLE4_PARAMS = {"all": 12, "attention": 64, "ffn": 38, "none": 89}
PAPER_TABLE3_PARAMS = {"all": {64: 10, 128: 12, 256: 16, 768: 31}, "none": {64: 87, 128: 89, 256: 93, 768: 108}}


def _pct(x, se=None):
    if x is None:
        return "-"
    return f"{100 * x:.1f}" + (f" ± {100 * se:.1f}" if se else "")


def _header(results, record):
    s = record["settings"]
    lines = [f"# {results['experiment']}: measured at small scale\n",
             f"Command: `{record.get('command') or 'minialbert experiment ' + results['experiment']}`  ",
             f"Budget: preset `{s['preset']}`, {s['steps']} steps of B={s['batch_size']}, T={s['seq_len']} "
             f"per run, V={s['vocab_size']}, training shards with dupe factor {s['dupe_factor']}; "
             f"{_docs(record)} on `{s['device']}`; wall time {record.get('wall_s', 0):.0f} s.",
             "Accuracies in %, ± one binomial standard error. Paper values: `albert-spec.md` "
             "(Lan et al., 2019, arXiv:1909.11942).\n"]
    return lines


def _docs(record):
    d = record.get("documents") or {}
    return (f"{d.get('train', '?')} training / {d.get('heldout', '?')} held-out documents of the embedded "
            f"corpus (held-out fraction {record['settings']['heldout_fraction']})")


def _report_sentence_task(results, record):
    lines = _header(results, record)
    lines += ["| trained with | params | MLM acc | NSP acc | SOP acc | paper MLM | paper NSP | paper SOP |",
              "|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        e, se = r["eval"], r["stderr"]
        p = PAPER_TABLE5[r["sentence_task"]]
        star = "" if r["pair_head"] else " (chance)"
        lines.append(f"| {r['name']} | {r['params']:,} | {_pct(e['mlm_accuracy'], se['mlm_accuracy'])} | "
                     f"{_pct(e['nsp_accuracy'], None if not r['pair_head'] else se['nsp_accuracy'])}{star} | "
                     f"{_pct(e['sop_accuracy'], None if not r['pair_head'] else se['sop_accuracy'])}{star} | "
                     f"{p[0]} | {p[1]} | {p[2]} |")
    n = results["runs"][0]["eval"]
    lines += ["", f"Held-out pairs: {n['nsp_pairs']} NSP, {n['sop_pairs']} SOP; MLM accuracy over "
              f"{results['runs'][0]['mlm_predictions']} masked tokens of the SOP held-out set. "
              "A model trained without a sentence task has no head: its pair accuracy is chance, "
              "as in the paper's 'None' row (the paper's 52.4/53.3 are from its own evaluation).",
              "", "The paper's pattern: NSP-trained ≈ chance on SOP; SOP-trained well above chance on both.",
              "", "![Table 5](sentence_task.png)"]
    if "curves.png" in record.get("plots", []):
        lines += ["", "![held-out curves](curves.png)"]
    return "\n".join(lines) + "\n"


def _report_sharing(results, record):
    lines = _header(results, record)
    lines += ["| sharing | params | s/step | MLM acc | SOP acc | paper params (E=128) | ours at ALBERT-base, E=128 |",
              "|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        e, se = r["eval"], r["stderr"]
        base = AlbertConfig.from_preset("albert-base-v2", sharing=r["sharing"], vocab_size=30000)
        lines.append(f"| {r['name']} | {r['params']:,} | {r['seconds_per_step']:.3f} | "
                     f"{_pct(e['mlm_accuracy'], se['mlm_accuracy'])} | {_pct(e['sop_accuracy'], se['sop_accuracy'])} | "
                     f"{PAPER_TABLE4_PARAMS[r['sharing']]}M | {count_parameters(base) / 1e6:.2f}M |")
    lines += ["", "Paper (Table 4, `albert-spec.md` §7): sharing the FFN hurts most, sharing attention "
              "barely hurts; the parameter counts above are the paper's and ours for its ALBERT-base shape "
              "(AlbertModel with pooler).", "", "![Table 4](sharing.png)"]
    return "\n".join(lines) + "\n"


def _report_embedding(results, record):
    lines = _header(results, record)
    lines += ["| E | sharing | params | MLM acc | SOP acc |", "|---|---|---|---|---|"]
    for r in results["runs"]:
        e, se = r["eval"], r["stderr"]
        lines.append(f"| {r['embedding_size']} | {r['sharing']} | {r['params']:,} | "
                     f"{_pct(e['mlm_accuracy'], se['mlm_accuracy'])} | {_pct(e['sop_accuracy'], se['sop_accuracy'])} |")
    t = PAPER_TABLE3_PARAMS
    lines += ["", "Paper (Table 3, ALBERT-base, `albert-spec.md` §4.3): parameters "
              + "; ".join(f"{'all-shared' if k == 'all' else 'not-shared'} "
                          + ", ".join(f"E={E}: {v}M" for E, v in t[k].items()) for k in t)
              + ". Its finding (§7): not-shared models improve with E; all-shared ones are best near E=128.",
              "", "![Table 3](embedding.png)"]
    return "\n".join(lines) + "\n"


def _report_smoothness(results, record):
    lines = _header(results, record)
    runs = results["runs"]
    L = len(runs[0]["l2_distance"])
    lines += ["| layer | " + " | ".join(f"L2 {r['name']} | cos {r['name']}" for r in runs) + " |",
              "|---|" + "---|---|" * len(runs)]
    for l in range(L):
        lines.append(f"| {l + 1} | " + " | ".join(f"{r['l2_distance'][l]:.3f} | {r['cosine_similarity'][l]:.3f}"
                                                 for r in runs) + " |")
    lines += ["", "Held-out accuracy of the two models: " + "; ".join(
        f"{r['name']} ({r['params']:,} parameters) MLM {_pct(r['eval']['mlm_accuracy'])}%, "
        f"SOP {_pct(r['eval']['sop_accuracy'])}%" for r in runs) + "."]
    lines += ["", f"Mean over {runs[0]['tokens']} held-out tokens. Paper (Figure 1, ALBERT-large vs "
              "BERT-large, as the issue and `albert-spec.md` summarise it): ALBERT's layer-to-layer "
              "transitions are smoother than BERT's.", "", "![Figure 1](smoothness.png)"]
    return "\n".join(lines) + "\n"


REPORTERS = {"sentence-task": _report_sentence_task, "sharing": _report_sharing,
             "embedding": _report_embedding, "smoothness": _report_smoothness}


def main_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
