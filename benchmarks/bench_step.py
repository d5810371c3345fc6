"""One pretraining step (forward + backward + optimiser) of an ALBERT-shaped model:
minialbert (NumPy) vs PyTorch/HF transformers, tokens/s and MFU.

    python benchmarks/bench_step.py                       # albert-base-v2 shape, B=8, T=128, float32
    python benchmarks/bench_step.py --impl minialbert --preset tiny --batch 32 --seq 64

FLOPs are counted per layer application (minialbert.metrics.train_flops) with the MLM decoder
on the masked positions only (20 per sequence, as the reference recipe) -- the useful work.
HF computes decoder logits at all B*T positions, so it does more arithmetic than is counted;
its MFU here is "useful FLOPs / time", comparable with minialbert's. The peak is the best
(n x n) @ (n x n) matmul rate of the same library in the same process.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np


def make_batch(B, T, V, n_mask, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, V, size=(B, T))
    labels = np.full((B, T), -100, dtype=np.int64)
    for b in range(B):
        pos = rng.choice(np.arange(1, T - 1), size=n_mask, replace=False)
        labels[b, pos] = ids[b, pos]
        ids[b, pos] = 4                                     # [MASK]
    types = np.zeros((B, T), dtype=np.int64)
    types[:, T // 2:] = 1
    return {"input_ids": ids.astype(np.int64), "token_type_ids": types,
            "attention_mask": np.ones((B, T), dtype=np.int64), "labels": labels,
            "sentence_order_label": rng.integers(0, 2, size=B).astype(np.int64)}


def bench_minialbert(cfg, batch, steps, dtype):
    from minialbert import optim
    from minialbert.heads import AlbertForPreTraining

    model = AlbertForPreTraining(cfg, seed=0, dtype=dtype)
    opt = optim.make_optimizer("lamb", model, lr=1e-4)
    times = {"forward": [], "backward": [], "optimizer": [], "step": []}
    for i in range(steps + 1):
        t0 = time.perf_counter()
        model.zero_grad()
        model.forward(**batch)
        t1 = time.perf_counter()
        model.backward()
        t2 = time.perf_counter()
        optim.clip_grad_norm(model.grads, 1.0)
        opt.step(model.grads, 1e-4)
        t3 = time.perf_counter()
        if i:  # the first step is a warm-up
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                times[k].append(v)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_torch(cfg, batch, steps, attn):
    import torch
    from transformers import AlbertConfig, AlbertForPreTraining

    d = cfg.to_dict()
    d.pop("architectures", None)
    d.pop("sharing", None)
    m = AlbertForPreTraining(AlbertConfig(**d, attn_implementation=attn))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    tb = {k: torch.from_numpy(v) for k, v in batch.items()}
    times = {"forward": [], "backward": [], "optimizer": [], "step": []}
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        out = m(**tb)
        t1 = time.perf_counter()
        out.loss.backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        t3 = time.perf_counter()
        if i:
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                times[k].append(v)
    return {k: statistics.median(v) for k, v in times.items()}


def torch_peak(n=1024, repeats=10):
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", choices=("minialbert", "torch", "both"), default="both")
    ap.add_argument("--preset", default="albert-base-v2")
    ap.add_argument("--vocab-size", type=int, default=30000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--masked", type=int, default=20, help="masked positions per sequence")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--attn", default="sdpa", help="HF attention implementation (sdpa or eager)")
    args = ap.parse_args(argv)

    from minialbert import metrics as M
    from minialbert.config import AlbertConfig

    cfg = AlbertConfig.from_preset(args.preset, vocab_size=args.vocab_size)
    B, T = args.batch, args.seq
    batch = make_batch(B, T, cfg.vocab_size, args.masked)
    flops = M.train_flops(cfg, B, T, n_predictions=B * args.masked)
    rows = []
    if args.impl in ("minialbert", "both"):
        peak = M.measure_peak_flops("cpu", args.dtype, repeats=10, seconds=2.0)
        t = bench_minialbert(cfg, batch, args.steps, args.dtype)
        rows.append(("minialbert (NumPy)", t, peak))
    if args.impl in ("torch", "both"):
        import torch

        peak = torch_peak()
        t = bench_torch(cfg, batch, args.steps, args.attn)
        rows.append((f"PyTorch {torch.__version__} + HF ({args.attn})", t, peak))
    print(f"# {args.preset}: L={cfg.num_hidden_layers} H={cfg.hidden_size} E={cfg.embedding_size} "
          f"V={cfg.vocab_size}, B={B} T={T}, {args.dtype}, {platform.processor() or platform.machine()}; "
          f"counted FLOPs/step {flops / 1e9:.1f} G")
    print("| implementation | forward s | backward s | optimiser s | step s | tokens/s | MFU | peak GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t, peak in rows:
        print(f"| {name} | {t['forward']:.3f} | {t['backward']:.3f} | {t['optimizer']:.3f} | {t['step']:.3f} | "
              f"{B * T / t['step']:.0f} | {100 * flops / t['step'] / peak:.1f}% | {peak / 1e9:.0f} |")
    print(json.dumps({name: {**t, "tokens_per_s": B * T / t["step"], "mfu": flops / t["step"] / peak,
                             "peak_flops": peak, "flops_per_step": flops} for name, t, peak in rows}))


if __name__ == "__main__":
    main()
