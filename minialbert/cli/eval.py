"""``minialbert eval CHECKPOINT --data DIR [--data DIR2 ...]``: held-out masked-LM accuracy
and the sentence head's accuracy on every shard folder given (SOP or NSP pairs alike)."""
from __future__ import annotations

import argparse
from ..backend import check_device
from ..evaluation import check_json_out, evaluate_checkpoint, format_table, write_json_atomic

HELP = "evaluate a pretrained model on held-out shards: MLM accuracy and SOP/NSP pair accuracy"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help=HELP, description=HELP + ". The model's sentence head is applied to every folder's "
        "pairs, whatever task it was trained on (the paper's Table 5 cross-evaluation); label 0 means "
        "'B continues A' for both SOP and NSP.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Shard folders come from `minialbert data build` (with --heldout-fraction F, the held-out "
               "split is OUTPUT/heldout). Accuracies are printed with their binomial standard errors.")
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a pretraining run directory, its checkpoint/, or a HF ALBERT directory")
    p.add_argument("--data", action="append", required=True, metavar="DIR",
                   help="a shard folder to evaluate on (repeat for several)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON here")
    p.add_argument("--batch-size", type=int, default=64, help="examples per forward")
    p.add_argument("--max-examples", type=int, default=None, metavar="N",
                   help="evaluate on the first N examples of each folder (default: all)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.set_defaults(func=run)


def run(args) -> int:
    check_device(args.device)
    out = check_json_out(args.json) if args.json else None       # before any work
    report = evaluate_checkpoint(args.checkpoint, args.data, batch_size=args.batch_size,
                                 max_examples=args.max_examples, device=args.device)
    print(format_table(report))
    if out is not None:
        write_json_atomic(out, report)
        print(f"wrote {out}")
    return 0
