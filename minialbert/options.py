"""Command-line options written once: a config dataclass field carries its flag's help.

``PretrainConfig`` and ``FinetuneConfig`` declare each option as ``option(default, help)``;
``add_options(parser, Config)`` turns the fields into argparse flags (``seq_len`` ->
``--seq-len``) with the field's default, type and help, and ``config_from_args`` builds
the config back from the parsed arguments. So a flag is written in one place only.

Metadata a field may carry: ``help``; ``group`` (the ``--help`` section); ``metavar``;
``choices``; ``flag`` (another spelling, e.g. ``"--no-progress"`` for ``progress=True``);
``cli=False`` (API only, no flag). Booleans are switches: ``False`` by default ->
``--name`` sets it; ``True`` by default -> its ``flag`` (``--no-...``) clears it.
"""
from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, field, fields


def option(default, help: str, **meta):
    """A config field that is also a command-line flag (see the module docstring)."""
    return field(default=default, metadata={"help": help, **meta})


def _base_type(tp):
    """int for int / Optional[int], ..."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def flag_name(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def cli_fields(cls):
    """The fields of ``cls`` that are command-line flags."""
    return [f for f in fields(cls) if f.metadata.get("cli", True) and "help" in f.metadata]


def add_options(parser: argparse.ArgumentParser, cls, groups=()) -> None:
    """Add one flag per field of the dataclass ``cls``; ``groups``: section titles in order
    (fields name theirs with ``group``; the others go straight on ``parser``)."""
    hints = typing.get_type_hints(cls)
    sections = {g: parser.add_argument_group(g) for g in groups}
    for f in cli_fields(cls):
        m = f.metadata
        target = sections.get(m.get("group"), parser)
        default = f.default if f.default is not MISSING else f.default_factory()
        tp = _base_type(hints[f.name])
        kw = {"dest": f.name, "help": m["help"]}
        if tp is bool and default:           # --no-X clears it ("(default: True)" would mislead)
            kw.update(action="store_false", default=argparse.SUPPRESS)
        elif tp is bool:
            kw["action"] = "store_true"
        else:
            kw.update(type=tp, default=default)
            for k in ("metavar", "choices"):
                if k in m:
                    kw[k] = m[k]
        target.add_argument(flag_name(f), **kw)


def config_from_args(cls, args: argparse.Namespace):
    """The ``cls`` instance of the parsed arguments (fields without a flag keep their default)."""
    return cls(**{f.name: getattr(args, f.name, f.default) for f in cli_fields(cls)})
