"""Run directories: what minialbert owns in an ``--out`` folder, and atomic JSON records.

``minialbert pretrain`` and ``minialbert finetune`` write into a run directory, and its
``run.json`` lists, under ``"files"``, every path the run writes there (relative POSIX paths
or ``fnmatch`` patterns; an entry that names a directory owns everything below it). The list
is written *before* the files, so whatever minialbert ever wrote there is on it. From that:

* a new run goes only into a missing or empty directory (``claim``);
* ``--overwrite`` removes only paths on the list: a directory that also holds anything else
  is refused, naming those files, and so is one that holds an input of the run (the
  ``--model`` a fine-tuning reads, ...);
* a temporary left by a killed run (``run.json.tmp<pid>``) is removed on the next start.

``StopSignals`` turns Ctrl-C and SIGTERM (what batch schedulers send) into a request that
the training loop honours between steps: finish the step, write a checkpoint, stop.

A directory written before ownership lists existed has no ``"files"``; it is taken to own
what that kind of run writes (the ``files`` a caller passes).
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .atomic import write_json_atomic  # noqa: F401 - part of this module's interface

RUN_FILE = "run.json"


class RunDirError(ValueError):
    """An output directory that may not be written (nothing was touched)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after a finished step (and its checkpoint)."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopSignals:
    """``with StopSignals() as s:`` SIGINT and SIGTERM set ``s.received`` (the signal number)
    instead of stopping the process; a second one stops at once (KeyboardInterrupt). The
    previous handlers come back on exit. Outside the main thread (where Python cannot
    install handlers) it does nothing and Ctrl-C raises KeyboardInterrupt as usual."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: Optional[int] = None
        self._old = {}

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def interrupted(self) -> Interrupted:
        return Interrupted(self.received)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


# write_json_atomic (imported above from .atomic): a reader, or a kill, sees the old file or
# the new one, never a torn one


def with_temporaries(names: Iterable[str]) -> list[str]:
    """``names`` plus the patterns of their temporaries (``NAME.tmp*``)."""
    out = []
    for n in names:
        out += [n, n + ".tmp*"]
    return out


def _owned(rel: str, patterns: Sequence[str]) -> bool:
    """Is ``rel`` (or a folder above it) matched by one of ``patterns``?"""
    parts = rel.split("/")
    heads = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(h, p) for h in heads for p in patterns)


def _inside(path: Path, folder: Path) -> bool:
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


class RunDir:
    """The output directory of one kind of run. ``files``: what this kind of run writes
    there (with its temporaries), recorded in its ``run.json`` when it starts."""

    def __init__(self, path, files: Sequence[str], arg: str = "--out"):
        self.path = Path(path)
        self.files = [RUN_FILE, *with_temporaries([RUN_FILE]), *files]
        self.arg = arg                  # the flag that named the directory, for errors

    # -- reading --------------------------------------------------------------------
    def record(self) -> Optional[dict]:
        """The directory's run.json, or None when there is none. An unreadable one is an
        error: it may be a run we must not overwrite."""
        f = self.path / RUN_FILE
        if not f.is_file():
            return None
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            rec = None
        if not isinstance(rec, dict):
            raise RunDirError(f"{self.arg}: {f} is unreadable; not touching {self.path}")
        return rec

    def owned_patterns(self, record: Optional[dict]) -> list[str]:
        """What minialbert wrote here: the record's list, else what this kind of run writes."""
        files = record.get("files") if record else None
        return list(files) if isinstance(files, list) else list(self.files)

    def foreign_files(self, record: Optional[dict]) -> list[str]:
        """Files (relative paths, sorted) under the directory that minialbert did not write."""
        pats = self.owned_patterns(record)
        out = []
        for root, dirs, files in os.walk(self.path):
            rel_root = Path(root).relative_to(self.path)
            for f in files:
                rel = (rel_root / f).as_posix()
                if not _owned(rel, pats):
                    out.append(rel)
        return sorted(out)

    # -- claiming ---------------------------------------------------------------------
    def claim_new(self, overwrite: bool, inputs: Sequence = (), not_a_run: str = "holds no minialbert run",
                  busy_hint: str = "") -> Optional[dict]:
        """Check, before anything is written, that a new run may start in the directory.

        A missing or empty directory is fine. A non-empty one needs ``overwrite``, and even
        then it may hold only what minialbert wrote (the foreign files are named) and no
        input of the run (``inputs``: paths the run reads). Returns the old run.json record
        (or None); raises RunDirError, nothing touched."""
        p = self.path
        if p.exists() and not p.is_dir():
            raise RunDirError(f"{self.arg}: {p} exists and is not a directory")
        if not p.is_dir() or not any(p.iterdir()):
            return None
        for src in inputs:
            if src is not None and _inside(src, p):
                raise RunDirError(f"{self.arg}: {p} holds {src}, an input of this run; writing the run "
                                  f"there could replace what it reads: choose another {self.arg}")
        rec = self.record()
        if not overwrite:
            if rec is not None:
                step = f" (step {rec['step']}/{rec.get('config', {}).get('steps', '?')})" if "step" in rec else ""
                raise RunDirError(f"{self.arg}: {p} holds run {rec.get('run_id')}{step}; {busy_hint}"
                                  "pass --overwrite to replace it, or another " + self.arg)
            raise RunDirError(f"{self.arg}: {p} is not empty and {not_a_run}; choose another {self.arg}")
        foreign = self.foreign_files(rec)
        if foreign:
            shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
            raise RunDirError(f"{self.arg}: {p} is not empty and {not_a_run} only: it holds files "
                              f"minialbert did not write ({shown}); --overwrite replaces only what "
                              f"minialbert wrote: move them, or choose another {self.arg}")
        return rec

    def clear(self, record: Optional[dict]) -> None:
        """Remove what minialbert wrote in the directory (after ``claim_new`` allowed it)."""
        pats = self.owned_patterns(record)
        if not self.path.is_dir():
            return
        for root, dirs, files in os.walk(self.path, topdown=True):
            rel_root = Path(root).relative_to(self.path)
            for d in list(dirs):
                if _owned((rel_root / d).as_posix(), pats):
                    shutil.rmtree(Path(root) / d)
                    dirs.remove(d)
            for f in files:
                if _owned((rel_root / f).as_posix(), pats):
                    (Path(root) / f).unlink()

    def remove_stale_temporaries(self) -> None:
        """Temporaries of ours that a killed run left behind (``run.json.tmp<pid>``, ...)."""
        for pat in self.files:
            if ".tmp" not in pat:
                continue
            for f in self.path.glob(pat):
                if f.is_dir():
                    shutil.rmtree(f, ignore_errors=True)
                else:
                    f.unlink(missing_ok=True)

    def start(self, record: dict) -> None:
        """Create the directory and write run.json with the ownership list (before any
        other file), then remove stale temporaries."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.remove_stale_temporaries()
        self.write_record(record)

    def write_record(self, record: dict) -> None:
        record["files"] = list(self.files)
        write_json_atomic(self.path / RUN_FILE, record)
