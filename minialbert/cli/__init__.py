"""The ``minialbert`` command: one subcommand per module of this package.

Each module listed in ``COMMANDS`` defines ``register(subparsers)``, which adds its
subcommand and sets ``func`` (called with the parsed arguments; returns an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# module name (inside minialbert.cli) for each subcommand group, in help order
COMMANDS = [
    "tokenizer",
    "data",
    "pretrain",
    "finetune",
    "fill_mask",
    "grade",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minialbert",
        description="ALBERT from scratch in NumPy/CuPy: tokenizers, pretraining data, "
                    "pretraining, fine-tuning and fill-mask.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"minialbert.cli.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .. import distributed  # noqa: PLC0415  (mpi4py only under an MPI launcher)

    command = f"minialbert {args.command}"
    # under mpiexec, a rank that fails aborts every rank (the others would wait for it forever)
    with distributed.abort_on_failure(command):
        try:
            rc = int(args.func(args) or 0)
        except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
            # user errors: one clear line, no traceback
            print(f"{command}{distributed.rank_label()}: error: {e}", file=sys.stderr)
            rc = 1
        return distributed.exit_code(rc, command)


if __name__ == "__main__":
    sys.exit(main())
