"""Plot and tabulate recipe curves (issue 10): held-out MLM and SOP accuracy per step, from
the JSON lines that benchmarks/recipe_curves.py writes (one file per recipe).

    python benchmarks/plot_recipes.py benchmarks/results/recipes docs/training/recipes.png \\
        A_base B_V2000_E128 E128_V2000_s1 L_base L_V3000 ...

With no names it plots every file in the folder. It also prints a Markdown table of each
recipe's held-out MLM / SOP accuracy at steps 500, 1000 and its last evaluation.
"""
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    head = rows[0]
    evals = [r for r in rows[1:] if "eval_mlm_accuracy" in r and "step" in r]
    return head, evals


def at(evals, step):
    for r in evals:
        if r["step"] == step:
            return f"{r['eval_mlm_accuracy']:.3f} / {r['eval_sop_accuracy']:.2f}"
    return ""


def describe(args):
    keys = ("V", "E", "H", "L", "I", "T", "B", "lr", "warmup", "steps", "sopw", "drop", "ngram", "short",
            "wd", "sched", "seed")
    default = dict(V=3000, E=0, H=0, L=0, I=0, T=64, B=32, warmup=50, sopw=1.0, drop=0.0, ngram=3,
                   short=0.1, wd=0.01, sched="linear", seed=0)
    return " ".join(f"{k}={args[k]}" for k in keys if k in args and (k in ("V", "lr", "steps")
                                                                      or args[k] != default.get(k)))


def main(argv):
    folder, png, names = argv[0], argv[1], argv[2:]
    files = [os.path.join(folder, n + ".jsonl") for n in names] or sorted(glob.glob(os.path.join(folder, "*.jsonl")))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for ax in (ax1, ax2):                 # 20 distinct colours, dashed for the second ten
        ax.set_prop_cycle(color=list(plt.cm.tab10.colors) * 2, linestyle=["-"] * 10 + ["--"] * 10)
    print("| recipe | settings | step 500 | step 1000 | last (step) |")
    print("|---|---|---|---|---|")
    for path in files:
        head, evals = load(path)
        name = os.path.basename(path)[:-6]
        steps = [0] + [r["step"] for r in evals]
        ax1.plot(steps, [0.0] + [r["eval_mlm_accuracy"] for r in evals], label=name)
        ax2.plot(steps, [0.5] + [r["eval_sop_accuracy"] for r in evals], label=name)
        last = evals[-1] if evals else None
        tail = f"{last['eval_mlm_accuracy']:.3f} / {last['eval_sop_accuracy']:.2f} ({last['step']})" if last else ""
        print(f"| {name} | {describe(head['args'])} | {at(evals, 500)} | {at(evals, 1000)} | {tail} |")
    ax1.set(xlabel="optimiser step", ylabel="held-out MLM accuracy", title="masked LM (held-out documents)")
    ax2.set(xlabel="optimiser step", ylabel="held-out SOP accuracy", title="sentence order (held-out documents)")
    ax2.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax2.axhline(0.7, color="red", lw=0.8, ls="--")
    ax1.axhline(0.25, color="red", lw=0.8, ls="--")
    ax1.axvline(1000, color="grey", lw=0.8, ls=":")
    ax2.axvline(1000, color="grey", lw=0.8, ls=":")
    ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1:])
