"""Time to quality: the default pretraining recipe trained two ways -- minialbert (NumPy) and
PyTorch (HF ``transformers.AlbertForPreTraining`` + ``torch.optim.AdamW``) -- on the same
batches, from the same initial weights, interleaved step by step in one process, so that
machine noise hits both alike. Plots held-out MLM accuracy against training wall-clock for
both and prints the ratio of the wall-clock times each needs to reach a target accuracy.

    python benchmarks/time_to_quality.py                  # the default recipe, ~2x its CPU time
    python benchmarks/time_to_quality.py --quick          # a 12-step smoke run (seconds on a quiet machine)
    python benchmarks/time_to_quality.py --steps 600 --target 0.15 --out bench-ttq

What is the same: data (each step's batch is made once and given to both), the model
shape and initial weights (minialbert's init copied into HF), the optimiser
(``adamw-torch`` == ``torch.optim.AdamW``), the LR schedule (linear warm-up, linear decay),
gradient clipping at the same global norm, and the held-out examples. What differs: each
library's own arithmetic (HF computes the MLM logits at every position, minialbert at the
masked ones, as ALBERT's reference does) and dropout masks (when the preset has dropout).
Only the training steps are timed (forward, backward, clip, update); held-out evaluations
run between them, untimed. Torch gets as many threads as BLAS (``--threads``, default 2).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _threads(argv) -> int:
    """BLAS threads, set before NumPy is first imported (it reads them once)."""
    n = 2
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif a.startswith("--threads="):
            n = int(a.split("=", 1)[1])
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(n)
    return n


if __name__ == "__main__":
    _threads(sys.argv[1:])

import numpy as np  # noqa: E402


def make_data(cfg, quick: bool, log):
    """Tokenizer, batch stream and held-out examples of the recipe (the default pretrain's)."""
    from minialbert.data import load_default_corpus
    from minialbert.data.corpus import cache_dir
    from minialbert.data.pretraining import prepare_text_pretraining

    t0 = time.perf_counter()
    docs = load_default_corpus(include_numpy=not quick)
    if quick:
        docs = docs[:150]
    tok, stream, held, info = prepare_text_pretraining(
        docs, vocab_size=500 if quick else cfg.vocab_size, max_seq_length=cfg.seq_len,
        batch_size=cfg.batch_size, seed=cfg.seed, sentence_task="sop",
        max_predictions_per_seq=cfg.max_predictions, eval_size=cfg.eval_size, log=log,
        tokenizer_cache=None if quick else cache_dir())
    log(f"data: {info['train_documents']} training documents, {len(held)} held-out examples from "
        f"{info['heldout_documents']} other documents, V={tok.vocab_size}, in {time.perf_counter() - t0:.1f}s")
    return tok, stream, held


class Ours:
    name = "minialbert"

    def __init__(self, mc, cfg):
        from minialbert import optim
        from minialbert.heads import AlbertForPreTraining

        self.optim, self.cfg = optim, cfg
        self.model = AlbertForPreTraining(mc, seed=cfg.seed)
        self.opt = optim.make_optimizer("adamw-torch", self.model, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def step(self, batch, lr):
        m = self.model
        m.zero_grad()
        out = m.forward(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                        attention_mask=batch["attention_mask"], labels=batch["labels"],
                        sentence_order_label=batch["sentence_order_label"])
        m.backward()
        self.optim.clip_grad_norm(m.grads, self.cfg.clip_norm)
        self.opt.step(m.grads, lr)
        return float(out.loss)

    def evaluate(self, held):
        from minialbert.train import evaluate_pretraining

        return evaluate_pretraining(self.model, held, self.cfg)


class Torch:
    name = "PyTorch + HF"

    def __init__(self, mc, cfg, ours_model):
        import torch
        import transformers

        from minialbert.hf import to_hf_state_dict

        self.torch, self.cfg = torch, cfg
        d = mc.to_dict()
        d.pop("sharing", None)
        hf_cfg = transformers.AlbertConfig(**d, attn_implementation="sdpa")
        self.model = transformers.AlbertForPreTraining(hf_cfg)
        sd = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_hf_state_dict(ours_model).items()}
        missing, unexpected = self.model.load_state_dict(sd, strict=False)
        assert not unexpected and all("position_ids" in k or "token_type_ids" in k for k in missing), \
            (missing, unexpected)
        self.model.train()
        # the same parameter groups as minialbert's AdamW: no decay on LayerNorm and biases
        decay, no_decay = [], []
        for n, p in self.model.named_parameters():
            (no_decay if ("LayerNorm" in n or "layer_norm" in n or n.endswith("bias")) else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    def _inputs(self, batch):
        t = self.torch
        return {k: t.from_numpy(np.ascontiguousarray(batch[k], dtype=np.int64))
                for k in ("input_ids", "token_type_ids", "attention_mask", "labels", "sentence_order_label")}

    def step(self, batch, lr):
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=False)
        out = self.model(**self._inputs(batch))
        out.loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.opt.step()
        return float(out.loss.detach())

    def evaluate(self, held):
        from minialbert.data.pretraining import collate

        torch = self.torch
        self.model.eval()
        mc = mn = sc = sn = 0
        with torch.no_grad():
            for s in range(0, len(held), 64):
                b = collate(held[s:s + 64], self.cfg.seq_len, None)
                x = self._inputs(b)
                out = self.model(**{k: v for k, v in x.items() if k not in ("labels", "sentence_order_label")})
                lab = x["labels"]
                keep = lab != -100
                mc += int((out.prediction_logits.argmax(-1)[keep] == lab[keep]).sum())
                mn += int(keep.sum())
                sc += int((out.sop_logits.argmax(-1) == x["sentence_order_label"]).sum())
                sn += len(b["input_ids"])
        self.model.train()
        return {"eval_mlm_accuracy": mc / max(mn, 1), "eval_sop_accuracy": sc / max(sn, 1)}


def time_to(curve, target):
    """First (wall-clock s, step) at which eval_mlm_accuracy >= target, or None."""
    for r in curve:
        if r["eval_mlm_accuracy"] >= target:
            return r["wall_s"], r["step"]
    return None


def plot(curves, target, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, c in curves.items():
        ax[0].plot([r["wall_s"] for r in c], [r["eval_mlm_accuracy"] for r in c], marker=".", label=name)
        ax[1].plot([r["step"] for r in c], [r["eval_mlm_accuracy"] for r in c], marker=".", label=name)
    for a, xl in zip(ax, ("training wall-clock (s)", "optimiser step")):
        a.axhline(target, color="grey", lw=0.8, ls="--")
        a.set_xlabel(xl)
        a.set_ylabel("held-out MLM accuracy")
        a.grid(alpha=0.3)
        a.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 150 stdlib documents, V=500, B=8, T=32, 12 steps")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the recipe's)")
    ap.add_argument("--eval-every", type=int, default=None, help="steps between held-out evaluations")
    ap.add_argument("--target", type=float, default=None,
                    help="held-out MLM accuracy to time (default: 0.9 x the lower of the two final accuracies)")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads")
    ap.add_argument("--out", default="bench-time-to-quality", help="folder for curves.json and the PNG")
    args = ap.parse_args(argv)

    import torch

    from minialbert import optim
    from minialbert.config import AlbertConfig
    from minialbert.train import PretrainConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = PretrainConfig()
    if args.quick:
        cfg.steps, cfg.warmup, cfg.eval_size, cfg.batch_size, cfg.seq_len = 12, 2, 32, 8, 32
    if args.steps:
        cfg.warmup = min(cfg.warmup, args.steps)
        cfg.steps = args.steps
    eval_every = args.eval_every or max(1, cfg.steps // (4 if args.quick else 20))
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    tok, stream, held = make_data(cfg, args.quick, log)
    mc = AlbertConfig.from_preset(cfg.preset, vocab_size=tok.vocab_size,
                                  max_position_embeddings=max(cfg.seq_len, AlbertConfig.from_preset(cfg.preset).max_position_embeddings))
    ours = Ours(mc, cfg)
    theirs = Torch(mc, cfg, ours.model)
    impls = (ours, theirs)
    curves = {i.name: [] for i in impls}
    wall = {i.name: 0.0 for i in impls}
    for i in impls:
        curves[i.name].append({"step": 0, "wall_s": 0.0, **i.evaluate(held)})
    for step in range(cfg.steps):
        batch = next(stream)
        lr = optim.lr_at(step, cfg.lr, cfg.warmup, cfg.steps)
        order = impls if step % 2 == 0 else impls[::-1]           # alternate who goes first
        for i in order:
            t0 = time.perf_counter()
            i.step(batch, lr)
            wall[i.name] += time.perf_counter() - t0
        if (step + 1) % eval_every == 0 or step + 1 == cfg.steps:
            for i in impls:
                curves[i.name].append({"step": step + 1, "wall_s": wall[i.name], **i.evaluate(held)})
            log(f"step {step + 1}: " + "; ".join(
                f"{n} {c[-1]['wall_s']:.1f}s MLM {c[-1]['eval_mlm_accuracy']:.3f} SOP {c[-1]['eval_sop_accuracy']:.3f}"
                for n, c in curves.items()))
    target = args.target if args.target is not None else \
        0.9 * min(c[-1]["eval_mlm_accuracy"] for c in curves.values())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    reached = {n: time_to(c, target) for n, c in curves.items()}
    title = (f"{cfg.preset} V={tok.vocab_size} T={cfg.seq_len} B={cfg.batch_size}, adamw-torch lr {cfg.lr:g}, "
             f"{cfg.steps} steps, {args.threads} threads, load {os.getloadavg()[0]:.1f}")
    plot(curves, target, out / "time_to_quality.png", title)
    (out / "curves.json").write_text(json.dumps({"config": {k: getattr(cfg, k) for k in (
        "preset", "vocab_size", "seq_len", "batch_size", "steps", "lr", "warmup", "weight_decay", "clip_norm")},
        "target": target, "threads": args.threads, "curves": curves}, indent=1))
    print(f"# {title}")
    print("| implementation | training wall-clock (s) | s/step | final held-out MLM | final SOP | "
          f"time to MLM {target:.3f} (s, step) |")
    print("|---|---|---|---|---|---|")
    for n, c in curves.items():
        r = reached[n]
        print(f"| {n} | {wall[n]:.1f} | {wall[n] / cfg.steps:.3f} | {c[-1]['eval_mlm_accuracy']:.3f} | "
              f"{c[-1]['eval_sop_accuracy']:.3f} | {f'{r[0]:.1f} s, step {r[1]}' if r else 'not reached'} |")
    a, b = reached[ours.name], reached[theirs.name]
    if a and b:
        print(f"ratio minialbert / PyTorch time to MLM accuracy {target:.3f}: {a[0] / b[0]:.2f}")
    else:
        print(f"ratio: target {target:.3f} not reached by both")
    print(f"wrote {out / 'time_to_quality.png'} and {out / 'curves.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
