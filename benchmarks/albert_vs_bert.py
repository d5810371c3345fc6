"""ALBERT-base against a BERT-base-shaped model, side by side in one process: parameters,
FLOPs per step and the measured time of one pretraining step (forward + backward + LAMB).

    python benchmarks/albert_vs_bert.py                     # B=4, T=128, 3 timed steps each
    python benchmarks/albert_vs_bert.py --batch 8 --steps 5 --json out.json

The two models differ only in ALBERT's two size choices: "ALBERT-base" is the
albert-base-v2 preset (E = 128 with the E->H projection, one layer shared by all 12
applications); "BERT-base shape" is the same preset with E = H = 768 and nothing shared
(sharing="none", 12 distinct layers). Activation (tanh GELU), dropout (0), vocabulary
(30000), heads and the sentence-order head are the same, so the difference in time is
what sharing and factorisation do to a step: the parameters shrink about 9x, the
arithmetic barely changes, and so the time barely changes either (ALBERT is smaller, not
faster; the paper's Table 2 reports the same for its TPU runs).

Steps of the two models are interleaved (A, B, A, B, ...) after one warm-up step each, so
a machine whose load changes during the run slows both alike; the table reports the
median and the ratio. Timings on a shared machine are only comparable as that ratio.
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


def configs():
    from minialbert import AlbertConfig
    albert = AlbertConfig.from_preset("albert-base-v2")
    bert_shape = AlbertConfig.from_preset("albert-base-v2", embedding_size=768, sharing="none",
                                          num_hidden_groups=12)
    return {"ALBERT-base": albert, "BERT-base shape": bert_shape}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--masked", type=int, default=20, help="masked positions per sequence")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per model (after one warm-up)")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    for name in ("batch", "seq", "masked", "steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.masked > args.seq - 2:
        ap.error(f"--masked must be at most --seq - 2 = {args.seq - 2}, got {args.masked}")

    from minialbert import count_parameters, optim
    from minialbert.heads import AlbertForPreTraining
    from minialbert.metrics import layer_params_per_application, train_flops

    B, T = args.batch, args.seq
    cfgs = configs()
    batch = make_batch(B, T, 30000, args.masked)
    models, opts, rows = {}, {}, {}
    for name, cfg in cfgs.items():
        models[name] = AlbertForPreTraining(cfg, seed=0, dtype="float32")
        opts[name] = optim.make_optimizer("lamb", models[name], lr=1e-4)
        rows[name] = {
            "E": cfg.embedding_size, "H": cfg.hidden_size, "L": cfg.num_hidden_layers,
            "distinct layers": cfg.num_attention_blocks,
            "parameters (pretraining model)": count_parameters(cfg, head="pretraining"),
            "word embeddings V*E": cfg.vocab_size * cfg.embedding_size,
            # HF's layout keeps the E->H projection even at E = H; BERT itself has none
            "E->H projection E*H + H": cfg.embedding_size * cfg.hidden_size + cfg.hidden_size,
            "parameters of one layer": layer_params_per_application(cfg),
            "GFLOPs per step": train_flops(cfg, B, T, n_predictions=B * args.masked) / 1e9,
            "step times s": [], "forward+backward s": [], "optimizer s": [],
        }
        assert rows[name]["parameters (pretraining model)"] == models[name].num_parameters()

    def step(name):
        model, opt = models[name], opts[name]
        t0 = time.perf_counter()
        model.zero_grad()
        model.forward(**batch)
        model.backward()
        t1 = time.perf_counter()
        optim.clip_grad_norm(model.grads, 1.0)
        opt.step(model.grads, 1e-4)
        t2 = time.perf_counter()
        return t2 - t0, t1 - t0, t2 - t1

    for i in range(args.steps + 1):
        for name in cfgs:                       # interleaved: A, B, A, B, ...
            times = step(name)
            if i:                               # step 0 is a warm-up
                for key, dt in zip(("step times s", "forward+backward s", "optimizer s"), times):
                    rows[name][key].append(dt)
    for r in rows.values():
        r["median step s"] = statistics.median(r["step times s"])
        r["median forward+backward s"] = statistics.median(r["forward+backward s"])
        r["median clip + LAMB s"] = statistics.median(r["optimizer s"])
    a, b = rows["ALBERT-base"], rows["BERT-base shape"]
    print(f"B={B}, T={T}, {args.masked} masked per sequence, float32, NumPy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, LAMB; steps interleaved, median of {args.steps}")
    print("| | ALBERT-base | BERT-base shape | BERT / ALBERT |")
    print("|---|---|---|---|")
    for key, fmt in (("E", "{}"), ("word embeddings V*E", "{:,}"), ("E->H projection E*H + H", "{:,}"),
                     ("parameters of one layer", "{:,}"), ("distinct layers", "{}"),
                     ("parameters (pretraining model)", "{:,}"),
                     ("GFLOPs per step", "{:.1f}"), ("median step s", "{:.2f}"),
                     ("median forward+backward s", "{:.2f}"), ("median clip + LAMB s", "{:.2f}")):
        ratio = f"{b[key] / a[key]:.2f}"
        print(f"| {key} | {fmt.format(a[key])} | {fmt.format(b[key])} | {ratio} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"batch": B, "seq": T, "masked": args.masked, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
