"""``minialbert finetune``: classification, regression, token classification and QA."""
from __future__ import annotations

import argparse
import sys

from ..finetune import FinetuneConfig, finetune
from ..options import add_options, config_from_args

HELP = ("fine-tune a pretrained ALBERT (minialbert checkpoint or HF directory); "
        "no arguments: the embedded demo task on runs/pretrain")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune", help=HELP, description=HELP + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Tasks: demo (which stdlib package a docstring sentence comes from; no download), "
               "classification / regression (CSV, TSV or JSONL; one text or a pair, GLUE column "
               "names), token (CoNLL or JSONL tokens+tags), qa (SQuAD JSON). Writes OUT/config.json, "
               "model.safetensors, spiece.model, metrics.jsonl and eval_results.json.")
    # every flag is a FinetuneConfig field (help text and default written there once)
    add_options(p, FinetuneConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = config_from_args(FinetuneConfig, args)
    res = finetune(cfg, log=lambda m: print(m, file=sys.stderr))
    if res.get("rank", 0):                          # data parallel: rank 0 reports
        return 0
    shown = {k: v for k, v in res.items() if isinstance(v, float)}
    print(f"{res['task']} ({res['kind']}): " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    print(f"model and eval_results.json in {cfg.out}")
    return 0
