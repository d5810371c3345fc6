"""``minialbert experiment NAME --out DIR``: one of the paper's ablations at small scale."""
from __future__ import annotations

from .tokenizer import HelpFormatter
import shlex
import sys
from ..experiments import DEFAULT_STEPS, EXPERIMENTS, main_log, run_experiment

HELP = "reproduce one of the paper's ablations at small scale (Table 5, 4, 3 or Figure 1)"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "experiment", help=HELP, description=HELP + ": " + "; ".join(
            f"{n} ({s} steps per run by default)" for n, s in DEFAULT_STEPS.items()) + ".",
        formatter_class=HelpFormatter,
        epilog="Writes OUT/results.json, OUT/results.md (measured beside the paper's numbers), PNG plots, "
               "OUT/experiment.json (settings, times, this command), each run under OUT/runs/NAME/ "
               "(checkpoint, metrics) and the shards under OUT/data/. The defaults take at most ~20 "
               "minutes each on a quiet 2-core CPU.")
    p.add_argument("name", metavar="NAME", choices=EXPERIMENTS, help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--out", required=True, metavar="DIR",
                   help="a new or empty folder (or an earlier experiment's, with --overwrite)")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--preset", default=None, help="model shape of every run (default: pretrain's default)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default: per experiment)")
    p.add_argument("--seed", type=int, default=0, help="data split, shards, initialisation")
    p.add_argument("--quick", action="store_true",
                   help="a few steps on a slice of the corpus (under a minute): checks the pipeline, "
                        "measures nothing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier experiment in --out (only the files an experiment writes)")
    p.add_argument("--resume", action="store_true",
                   help="continue an earlier, interrupted experiment in --out with the same options: "
                        "its data and finished runs are reused, an unfinished run is resumed")
    p.set_defaults(func=run)


def run(args) -> int:
    cmd = "minialbert " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["experiment"] \
        else None
    run_experiment(args.name, args.out, preset=args.preset, steps=args.steps, device=args.device,
                   quick=args.quick, overwrite=args.overwrite, seed=args.seed, log=main_log, command=cmd,
                   resume=args.resume)
    return 0
