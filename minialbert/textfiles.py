"""Reading the user's text: UTF-8 files, and every file under a folder. Shared by the
corpus readers (:mod:`minialbert.data.corpus`) and ``Tokenizer.train``, which sit on
different floors of the import graph, so it sits below both.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator


def iter_text_files(path) -> Iterator[Path]:
    """A file, or every file under a folder (sorted, hidden files skipped)."""
    path = Path(path)
    if path.is_file():
        yield path
    elif path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                if not f.startswith("."):
                    yield Path(dirpath) / f
    else:
        raise FileNotFoundError(f"no such file or folder: {path}")


def read_text_file(path) -> str:
    """Read a UTF-8 text file; undecodable bytes raise ValueError naming file and byte offset."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not valid UTF-8 at byte offset {e.start} "
                         f"(byte 0x{data[e.start]:02x}: {e.reason}); convert the file to UTF-8") from None
