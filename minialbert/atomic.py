"""Atomic file writes: every file minialbert writes for a user goes through here (the
checkpoint directory, written and renamed as a whole, is checkpoint.py's).

A file is written under a unique temporary name in its own folder (``NAME.tmp<random>``),
then renamed over the
target (``os.replace``, atomic on POSIX and Windows): a reader, or a kill at any moment,
sees the old file or the new one, never a torn one, and a failed write leaves no
temporary file behind.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Union

Data = Union[bytes, str, Callable[[str], None]]


def atomic_write(path, data: Data, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path.

    data: bytes; a str (written as UTF-8); or a callable ``write(tmp_path)`` that writes the
    file itself (``fig.savefig``, ``safetensors.numpy.save_file``). mode: the new file's
    permissions (``mkstemp`` alone would make it private to its owner)."""
    path = Path(path)
    # NAME.tmp<random>: the pattern run directories know as their own (rundir: stale ones are
    # removed on the next start, and --overwrite may replace them)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.tmp", dir=path.parent)
    try:
        if callable(data):
            os.close(fd)
            data(tmp)
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json_atomic(path, obj, default=None) -> Path:
    """``obj`` as indented JSON (``default``: as in ``json.dumps``), written atomically."""
    return atomic_write(path, json.dumps(obj, indent=2, default=default) + "\n")
