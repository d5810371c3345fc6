"""The ``minialbert`` command: one subcommand per module of this package.

Each module in ``COMMAND_MODULES`` defines ``register(subparsers)``, which adds its
subcommand and sets ``func`` (called with the parsed arguments; returns an exit code).
"""
from __future__ import annotations

import argparse
import errno
import sys
import warnings

from .. import distributed
from . import data, experiment, fill_mask, finetune, grade, pretrain, tokenizer
from . import eval as eval_command      # (a plain "eval" would shadow the builtin here)

# the module (inside minialbert.cli) of each subcommand group, in help order
COMMAND_MODULES = {"tokenizer": tokenizer, "data": data, "pretrain": pretrain, "finetune": finetune,
                   "fill_mask": fill_mask, "grade": grade, "eval": eval_command, "experiment": experiment}
COMMANDS = list(COMMAND_MODULES)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minialbert",
        description="ALBERT from scratch in NumPy/CuPy: tokenizers, pretraining data, "
                    "pretraining, fine-tuning, fill-mask, held-out evaluation and the paper's experiments.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES.values():
        module.register(sub)
    return parser


# errors that only a write can cause; others (permission denied ...) may come from a read too
_WRITE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def describe_os_error(e: OSError, args=None) -> str:
    """``cannot write PATH: reason`` for an OSError, naming the output folder of ``args``
    (``--out``/``--output``) when the error itself carries no file name (a full disk seen
    by ``write()``)."""
    reason = e.strerror or str(e)
    path = e.filename
    if path is None:
        out = next((getattr(args, a) for a in ("out", "output") if getattr(args, a, None)), None)
        return f"cannot write {'under ' + str(out) if out else 'a file'}: {reason}"
    out = [str(getattr(args, a)) for a in ("out", "output") if getattr(args, a, None)]
    writing = e.errno in _WRITE_ERRNOS or any(str(path).startswith(o) for o in out)
    return f"cannot {'write' if writing else 'access'} {path}: {reason}"


def _warning_line(message, category, filename, lineno, line=None):
    return f"minialbert: warning: {message}\n"


def main(argv=None) -> int:
    before, warnings.formatwarning = warnings.formatwarning, _warning_line   # one line, no source
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = before


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = f"minialbert {args.command}"
    # under mpiexec, a rank that fails aborts every rank (the others would wait for it forever)
    with distributed.abort_on_failure(command):
        try:
            rc = int(args.func(args) or 0)
        except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
            # user errors: one clear line, no traceback
            print(f"{command}{distributed.rank_label()}: error: {e}", file=sys.stderr)
            rc = 1
        except OSError as e:
            # a read-only folder, a full disk ...: one line naming the path; the commands write
            # atomically, so what was there before is still there
            print(f"{command}{distributed.rank_label()}: error: {describe_os_error(e, args)}", file=sys.stderr)
            rc = 1
        return distributed.exit_code(rc, command)


if __name__ == "__main__":
    sys.exit(main())
