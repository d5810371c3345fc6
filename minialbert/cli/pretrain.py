"""``minialbert pretrain``: train ALBERT with MLM + SOP (defaults: a tiny model on the
embedded corpus, on the CPU, in about 5 minutes)."""
from __future__ import annotations

import argparse
import sys

from ..options import add_options, config_from_args
from ..train import Interrupted, PretrainConfig, TrainingDiverged, pretrain

HELP = "pretrain ALBERT (MLM + sentence-order prediction); no arguments: a tiny CPU demo run"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain", help=HELP, description=HELP + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Writes OUT/metrics.jsonl (one record per logged step), OUT/plots/*.png, "
               "OUT/checkpoint/ (HF-compatible config.json + model.safetensors, optimiser, data "
               "position; written atomically) and OUT/run.json. Stop any time (Ctrl-C or SIGTERM "
               "finish the step and save a checkpoint) and continue with --resume: the result is "
               "bit-identical to an uninterrupted run on the CPU.")
    # every flag is a PretrainConfig field (help text and default written there once)
    add_options(p, PretrainConfig, groups=("model and data", "optimisation", "run"))
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = config_from_args(PretrainConfig, args)
    try:
        s = pretrain(cfg, log=lambda m: print(m, file=sys.stderr))
    except TrainingDiverged as e:
        print(f"minialbert pretrain: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        return 128 + e.signum                       # 130 for Ctrl-C, 143 for SIGTERM
    except KeyboardInterrupt:
        return 130
    if s.get("rank", 0):                            # data parallel: rank 0 reports
        return 0
    first, last = s.get("first", {}), s.get("last", {})
    msg = [f"done: step {s['step']}; checkpoint {s['checkpoint']}"]
    if first and last:
        msg.append(f"loss {first['loss']:.3f} -> {last['loss']:.3f}, MLM accuracy "
                   f"{first['mlm_accuracy']:.3f} -> {last['mlm_accuracy']:.3f}")
        task = cfg.sentence_task
        if task != "none":
            msg.append(f"{task.upper()} accuracy {first[task + '_accuracy']:.3f} -> {last[task + '_accuracy']:.3f}")
        if "eval_mlm_accuracy" in last:
            ev = f"held-out: MLM accuracy {last['eval_mlm_accuracy']:.3f}"
            if f"eval_{task}_accuracy" in last:
                ev += f", {task.upper()} accuracy {last[f'eval_{task}_accuracy']:.3f}"
            msg.append(ev)
        msg.append(f"{last['tokens_per_s']:.0f} tokens/s, MFU {100 * last['mfu']:.1f}%")
    if s.get("plots"):
        msg.append("plots: " + ", ".join(s["plots"]))
    if s.get("fill_mask"):
        msg.append("fill-mask on held-out sentences (top 5, before -> after training; * = the blanked word):\n"
                   + s["fill_mask"])
    print("\n".join(msg))
    return 0
