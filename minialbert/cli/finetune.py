"""``minialbert finetune``: classification, regression, token classification and QA."""
from __future__ import annotations

import argparse

HELP = ("fine-tune a pretrained ALBERT (minialbert checkpoint or HF directory); "
        "no arguments: the embedded demo task on runs/pretrain")


def register(subparsers) -> None:
    from ..finetune import TASKS, FinetuneConfig  # noqa: PLC0415

    d = FinetuneConfig()
    p = subparsers.add_parser(
        "finetune", help=HELP, description=HELP + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Tasks: demo (which stdlib package a docstring sentence comes from; no download), "
               "classification / regression (CSV, TSV or JSONL; one text or a pair, GLUE column "
               "names), token (CoNLL or JSONL tokens+tags), qa (SQuAD JSON). Writes OUT/config.json, "
               "model.safetensors, spiece.model, metrics.jsonl and eval_results.json.")
    p.add_argument("--model", default=d.model, help="pretraining run dir, checkpoint dir, or HF ALBERT dir")
    p.add_argument("--task", choices=TASKS, default=d.task)
    p.add_argument("--train", default=None, metavar="FILE", help="training data")
    p.add_argument("--eval", default=None, metavar="FILE", help="evaluation data (default: 10%% of --train)")
    p.add_argument("--tokenizer", default=None, metavar="PATH", help="spiece.model (default: beside the model)")
    p.add_argument("--text-columns", default=None, help='e.g. "sentence1,sentence2" (default: GLUE names)')
    p.add_argument("--label-column", default=None, help="default: label, labels, gold_label or score")
    p.add_argument("--encoding", default=d.encoding, help="text encoding of --train/--eval (e.g. latin-1, cp1252)")
    p.add_argument("--max-length", type=int, default=d.max_length, metavar="T")
    p.add_argument("--doc-stride", type=int, default=d.doc_stride, help="QA: pieces between windows")
    p.add_argument("--max-query-length", type=int, default=d.max_query_length, help="QA: question pieces kept")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--warmup-ratio", type=float, default=d.warmup_ratio)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--optimizer", choices=("adamw", "adamw-torch", "lamb"), default=d.optimizer)
    p.add_argument("--layerwise-lr-decay", type=float, default=None, metavar="X",
                   help="LR x X**depth from the top (heads 0, shared layer 1, embeddings 2 with sharing=all)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", choices=("cpu", "gpu"), default=d.device)
    p.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype)
    p.add_argument("--out", default=d.out, metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace the contents of --out")
    p.add_argument("--demo-per-class", type=int, default=d.demo_per_class,
                   help="demo task: sentences per package (20%% held out)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys  # noqa: PLC0415

    from ..finetune import FinetuneConfig, finetune  # noqa: PLC0415

    kw = {k: v for k, v in vars(args).items() if k in FinetuneConfig.__dataclass_fields__}
    cfg = FinetuneConfig(**kw, progress=not args.no_progress)
    res = finetune(cfg, log=lambda m: print(m, file=sys.stderr))
    shown = {k: v for k, v in res.items() if isinstance(v, float)}
    print(f"{res['task']} ({res['kind']}): " + ", ".join(f"{k} {v:.4f}" for k, v in shown.items()))
    print(f"model and eval_results.json in {cfg.out}")
    return 0
