"""Training checkpoints: written atomically, verified on load, exact to the bit.

A checkpoint is one directory (``OUT/checkpoint/``)::

    config.json              HF config (``transformers`` and ``from_pretrained`` read the
    model.safetensors        directory as an ordinary HF ALBERT model directory)
    optimizer.safetensors    optimiser moments (tensors) + step and hyper-parameters (metadata)
    trainer_state.json       step, RNG state, data position, metrics, run id: anything JSON-able
    <extra files>            e.g. spiece.model
    manifest.json            sha256 and size of every file above; written last

Atomic: everything is written into a temporary directory beside the target and fsynced;
then the old checkpoint is renamed to ``checkpoint.prev``, the new one renamed into place,
and ``.prev`` removed. Until that swap the old checkpoint is untouched; a crash inside the
swap leaves ``checkpoint.prev``, which :func:`find_checkpoint` / :func:`load_checkpoint`
fall back to. :func:`load_checkpoint` recomputes every hash and raises
:class:`CheckpointError` naming the file that is missing, truncated or corrupt.

Exact: arrays are stored with their dtype and bytes (safetensors; inside JSON as
``{"__ndarray__": [...], "dtype", "shape"}``, exact because Python writes floats with
round-trip precision); NumPy ``bit_generator.state`` dicts are plain JSON.
Design notes: [docs/training/checkpoints.md](../training/checkpoints.md)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from . import hf_format
from .backend import to_device, to_numpy
from .config import AlbertConfig
from .hf_tokenizer import tokenizer_files
from .tokenizer import Tokenizer

FORMAT = "minialbert-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
TRAINER_STATE_FILE = "trainer_state.json"
RESERVED = (MANIFEST, CONFIG_FILE, MODEL_FILE, OPTIMIZER_FILE, TRAINER_STATE_FILE)
PREV_SUFFIX = ".prev"
_TMP_INFIX = ".tmp-"


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, truncated or corrupt (the message names the file)."""


# ----------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------

def save_checkpoint(directory, model, optimizer=None, *, step: Optional[int] = None, rng=None,
                    extra: Optional[Mapping] = None, files: Optional[Mapping[str, bytes]] = None) -> Path:
    """Write a training checkpoint of ``model`` into ``directory`` atomically (see the module
    docstring).

    Inputs:
      directory: the checkpoint directory, e.g. ``OUT/checkpoint`` (its parent is created).
      model: a minialbert model; config.json and model.safetensors are what its
        ``save_pretrained`` writes (HF names, ``architectures`` and ``dtype`` in config.json).
      optimizer: an optimiser (its ``state_dict()`` is saved), or None.
      step, rng, extra: ``trainer_state["step"]``, ``["rng"]`` (a
        :class:`~minialbert.backend.Random`, a NumPy Generator, or a state dict) and
        ``["extra"]`` (JSON values, NumPy scalars and arrays).
      files: {file name: bytes} stored as well (e.g. the tokenizer model).
    Returns: the checkpoint's Path. (:func:`write_checkpoint` writes any state dict.)
    """
    if not (hasattr(model, "params") and hasattr(model, "config")):
        raise ValueError(f"model must be a minialbert model, got {type(model).__name__}")
    if optimizer is not None and not hasattr(optimizer, "state_dict"):
        raise ValueError(f"optimizer must be an optimiser (with state_dict()), got {type(optimizer).__name__}")
    trainer_state = {}
    if step is not None:
        trainer_state["step"] = int(step)
    if rng is not None:
        trainer_state["rng"] = _rng_state(rng)
    if extra is not None:
        trainer_state["extra"] = dict(extra)
    tensors, config = hf_format.pretrained_state(model)
    return write_checkpoint(directory, tensors, config,
                            None if optimizer is None else optimizer.state_dict(), trainer_state, files=files)


def write_checkpoint(directory, model_state: Mapping, config_dict: Mapping, optimizer_state: Optional[Mapping] = None,
                     trainer_state: Optional[Mapping] = None, *, files: Optional[Mapping[str, bytes]] = None) -> Path:
    """Write a checkpoint from plain state (what :func:`save_checkpoint` does with a model's):

    Inputs:
      model_state: {name: array} (NumPy or CuPy; written with dtype and bytes unchanged).
      config_dict: the HF config dict (``config.to_dict(architectures=[...])``).
      optimizer_state: ``optimizer.state_dict()`` or None; any nested dict of arrays and
        JSON values works.
      trainer_state: dict written to trainer_state.json (JSON values, NumPy scalars and
        arrays allowed; tuples come back as lists).
      files: {file name: bytes} stored as well.
    Returns: the checkpoint's Path.
    """
    target = Path(directory)
    if not target.name or target.name in (".", ".."):
        raise ValueError(f"directory must name a checkpoint directory, got {directory!r}")
    files = dict(files or {})
    for name, data in files.items():
        if not isinstance(name, str) or os.path.basename(name) != name or name in RESERVED \
                or name.startswith(".") or not name:
            raise ValueError(f"files: {name!r} must be a plain file name other than {RESERVED}")
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"files[{name!r}] must be bytes, got {type(data).__name__}")
    if not isinstance(model_state, Mapping):
        raise ValueError(f"model_state must be a dict {{name: array}}, got {type(model_state).__name__}")
    if not isinstance(config_dict, Mapping):
        raise ValueError(f"config_dict (the HF config dict) is required, got {type(config_dict).__name__}")
    if "spiece.model" in files and "tokenizer_config.json" not in files:
        # a checkpoint with its tokenizer loads in transformers as any ALBERT directory does
        # (AutoTokenizer, pipeline): add tokenizer_config.json, tokenizer.json, ... (hf_tokenizer.py)
        try:
            tok = Tokenizer(bytes(files["spiece.model"]))
        except (ValueError, TypeError, ImportError):
            tok = None          # stored as given: files= is a generic store of bytes
        if tok is not None:
            max_len = config_dict.get("max_position_embeddings")
            files = {**files, **{k: v for k, v in tokenizer_files(tok, max_len).items() if k not in files}}
    if optimizer_state is not None and not isinstance(optimizer_state, Mapping):
        raise ValueError(f"optimizer_state must be a dict (optimizer.state_dict()), got "
                         f"{type(optimizer_state).__name__}")
    trainer_state = dict(trainer_state or {})
    trainer_json = json.dumps(_to_json(trainer_state, "trainer_state"), indent=1, sort_keys=True) + "\n"
    tensors = {}
    for k, a in model_state.items():
        if not isinstance(k, str):
            raise ValueError(f"model_state keys must be strings, got {k!r}")
        tensors[k] = _c_order(a)
    config_json = json.dumps(_to_json(dict(config_dict), "config_dict"), indent=2) + "\n"

    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} exists and is not a directory: not replacing it")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST).exists():
        raise ValueError(f"{target} exists and is not a minialbert checkpoint (no {MANIFEST}): "
                         "not replacing it; choose another directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_TMP_INFIX}", dir=target.parent))
    try:
        written = {MODEL_FILE: _write(tmp / MODEL_FILE, st_save(tensors, metadata={"format": "pt"})),
                   CONFIG_FILE: _write(tmp / CONFIG_FILE, config_json.encode())}
        if optimizer_state is not None:
            written[OPTIMIZER_FILE] = _write(tmp / OPTIMIZER_FILE, _pack_tree(optimizer_state, "optimizer_state"))
        written[TRAINER_STATE_FILE] = _write(tmp / TRAINER_STATE_FILE, trainer_json.encode())
        for name, data in files.items():
            written[name] = _write(tmp / name, bytes(data))
        manifest = {"format": FORMAT, "version": VERSION, "step": trainer_state.get("step"),
                    "files": {n: {"sha256": h, "bytes": s} for n, (h, s) in sorted(written.items())}}
        _write(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    """rename target -> target.prev, tmp -> target, then drop .prev (fsyncing the parent)."""
    prev = target.with_name(target.name + PREV_SUFFIX)
    if target.exists():
        if prev.exists():                 # a swap that crashed after its second rename: stale
            shutil.rmtree(prev)
        os.rename(target, prev)
    # (if target was missing and prev exists, a swap crashed between its renames: prev is
    # the last good checkpoint, kept until the new one is in place)
    os.rename(tmp, target)
    _fsync_dir(target.parent)
    if prev.exists():
        shutil.rmtree(prev)


def _remove_stale_temporaries(target: Path) -> None:
    """Temporary directories of saves that crashed before their swap."""
    prefix = f".{target.name}{_TMP_INFIX}"
    for p in target.parent.iterdir():
        if p.name.startswith(prefix) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _write(path: Path, data: bytes):
    """Write, flush, fsync; returns (sha256 hex, size)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest(), len(data)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------

def find_checkpoint(directory) -> Optional[Path]:
    """The checkpoint to resume from: ``directory`` if it holds a manifest, else
    ``directory.prev`` left by a swap that crashed half-way, else None."""
    target = Path(directory)
    if (target / MANIFEST).is_file():
        return target
    prev = target.with_name(target.name + PREV_SUFFIX)
    if not target.exists() and (prev / MANIFEST).is_file():
        return prev
    return None


def verify_checkpoint(directory) -> dict:
    """Check every file listed in the manifest (present, size, sha256).
    Returns: {file name: bytes}. Raises: CheckpointError naming the first bad file."""
    path = Path(directory)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path} (not a directory)")
    mfile = path / MANIFEST
    if not mfile.is_file():
        raise CheckpointError(f"{mfile}: missing, so {path} is incomplete or not a minialbert checkpoint")
    try:
        manifest = json.loads(mfile.read_bytes())
        listed = manifest["files"]
        if manifest.get("format") != FORMAT or not isinstance(listed, dict):
            raise ValueError("not a minialbert checkpoint manifest")
    except (ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{mfile}: unreadable or truncated ({e})") from None
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{mfile}: checkpoint format version {manifest.get('version')!r}, "
                              f"this minialbert reads version {VERSION}")
    for required in (CONFIG_FILE, MODEL_FILE, TRAINER_STATE_FILE):
        if required not in listed:
            raise CheckpointError(f"{mfile}: does not list {required}")
    data = {}
    for name, info in listed.items():
        f = path / name
        if os.path.basename(name) != name or name == MANIFEST:
            raise CheckpointError(f"{mfile}: bad file name {name!r}")
        if not f.is_file():
            raise CheckpointError(f"{f}: missing from the checkpoint")
        raw = f.read_bytes()
        if len(raw) != info.get("bytes"):
            raise CheckpointError(f"{f}: truncated or altered ({len(raw)} bytes, the manifest says "
                                  f"{info.get('bytes')})")
        if hashlib.sha256(raw).hexdigest() != info.get("sha256"):
            raise CheckpointError(f"{f}: corrupt (sha256 differs from the manifest)")
        data[name] = raw
    return data


def load_checkpoint(directory, model=None, optimizer=None, rng=None) -> dict:
    """Read and verify a checkpoint; optionally restore it into a model, optimiser, RNG.

    Inputs:
      directory: the checkpoint directory (``directory.prev`` is used, with a warning, when
        a crashed save left only that).
      model: a minialbert model to restore exactly: its config must equal the saved one
        and its dtype the saved arrays' (ValueError otherwise); parameters are replaced.
      optimizer: an optimiser whose ``load_state_dict`` receives the saved state.
      rng: a :class:`~minialbert.backend.Random` or NumPy Generator whose state is set from
        ``trainer_state["rng"]``.
    Returns: dict with "path", "config" (dict), "model_state" ({name: np.ndarray}),
      "optimizer_state" (dict or None), "trainer_state" (dict), its "step", "rng", "extra"
      (None / None / {} when absent) and "files" ({name: bytes} of the extra files).
    Raises: CheckpointError (a ValueError) when a file is missing, truncated or corrupt.
    """
    target = Path(directory)
    found = find_checkpoint(target)
    if found is None:
        if target.is_dir():
            verify_checkpoint(target)           # raises with the precise reason
        raise CheckpointError(f"no checkpoint at {target}")
    if found != target:
        warnings.warn(f"{target} is missing; a save was interrupted mid-swap, loading the previous "
                      f"checkpoint {found}", stacklevel=2)
    data = verify_checkpoint(found)
    try:
        config = json.loads(data[CONFIG_FILE])
    except ValueError as e:
        raise CheckpointError(f"{found / CONFIG_FILE}: not valid JSON ({e})") from None
    try:
        model_state = st_load(data[MODEL_FILE])
    except Exception as e:                   # safetensors raises its own error type
        raise CheckpointError(f"{found / MODEL_FILE}: not a readable safetensors file ({e})") from None
    try:
        trainer_state = _from_json(json.loads(data[TRAINER_STATE_FILE]))
    except ValueError as e:
        raise CheckpointError(f"{found / TRAINER_STATE_FILE}: not valid JSON ({e})") from None
    optimizer_state = None
    if OPTIMIZER_FILE in data:
        optimizer_state = _unpack_tree(data[OPTIMIZER_FILE], found / OPTIMIZER_FILE)
    extra_files = {n: b for n, b in data.items() if n not in RESERVED}
    out = {"path": str(found), "config": config, "model_state": model_state,
           "optimizer_state": optimizer_state, "trainer_state": trainer_state,
           "step": trainer_state.get("step"), "rng": trainer_state.get("rng"),
           "extra": trainer_state.get("extra", {}), "files": extra_files}
    if model is not None:
        restore_model(model, config, model_state, where=found)
    if optimizer is not None:
        if optimizer_state is None:
            raise ValueError(f"checkpoint {found} holds no optimizer state ({OPTIMIZER_FILE})")
        try:
            optimizer.load_state_dict(optimizer_state)
        except ValueError as e:
            raise ValueError(f"checkpoint {found}: {e}") from None
    if rng is not None:
        if out["rng"] is None:
            raise ValueError(f"checkpoint {found} holds no RNG state")
        _set_rng_state(rng, out["rng"])
    return out


def restore_model(model, config: Mapping, model_state: Mapping, where="checkpoint") -> None:
    """Put saved parameters into ``model`` exactly (no dtype cast), after checking that the
    saved config and dtype are the model's. Raises ValueError naming the difference."""
    saved = AlbertConfig.from_dict(config).to_dict()
    mine = model.config.to_dict()
    diff = [k for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k)]
    if diff:
        shown = "; ".join(f"{k}: saved {saved.get(k)!r}, model {mine.get(k)!r}" for k in diff[:5])
        raise ValueError(f"{where} is from another config ({shown})")
    dtypes = {str(a.dtype) for a in model_state.values()}
    if dtypes != {model.dtype.name}:
        raise ValueError(f"{where} holds {sorted(dtypes)} arrays but the model is {model.dtype.name}: "
                         "build the model with the checkpoint's dtype to resume exactly")
    if any(k.startswith(hf_format.NATIVE_PREFIX) for k in model_state):
        # sharing "attention"/"ffn": minialbert's own names (HF has no layout for them)
        n = len(hf_format.NATIVE_PREFIX)
        have = {k[n:]: v for k, v in model_state.items()}
        if set(have) != set(model.params):
            raise ValueError(f"{where}: parameters {sorted(set(have) ^ set(model.params))[:5]} "
                             "differ from the model's")
        for k, v in have.items():
            if tuple(v.shape) != tuple(model.params[k].shape):
                raise ValueError(f"{where}: {k!r} has shape {tuple(v.shape)}, the model "
                                 f"{tuple(model.params[k].shape)}")
        for k, v in have.items():
            model.params[k] = to_device(np.array(v, copy=True), model.device)
        return
    # HF names; same dtype (checked above), so load_hf_state_dict's astype copies exactly
    _, unexpected = hf_format.load_hf_state_dict(model, model_state, strict_head=True)
    if unexpected:
        raise ValueError(f"{where} holds tensors the {type(model).__name__} does not have: {unexpected[:5]}")


# ----------------------------------------------------------------------------------------
# nested dicts of arrays <-> safetensors; JSON with arrays
# ----------------------------------------------------------------------------------------

def _pack_tree(tree: Mapping, what: str) -> bytes:
    """Arrays anywhere in a nested dict become safetensors tensors keyed by their path
    ("m/encoder.ffn.0.ffn.weight"); the rest of the tree is JSON in the metadata."""
    tensors = {}

    def walk(node, path):
        if isinstance(node, Mapping):
            out = {}
            for k, v in node.items():
                if not isinstance(k, str) or "/" in k:
                    raise ValueError(f"{what}: keys must be strings without '/', got {k!r} under {path or 'the top'}")
                out[k] = walk(v, f"{path}/{k}" if path else k)
            return out
        if _is_array(node):
            tensors[path] = _c_order(node)
            return {"__tensor__": path}
        return _to_json(node, f"{what}[{path}]")

    skeleton = walk(tree, "")
    return st_save(tensors, metadata={"format": "np", "minialbert.tree": json.dumps(skeleton)})


def _unpack_tree(raw: bytes, where: Path):
    try:
        tensors = st_load(raw)
        n = int.from_bytes(raw[:8], "little")
        meta = json.loads(raw[8:8 + n]).get("__metadata__") or {}
        skeleton = json.loads(meta["minialbert.tree"])
    except Exception as e:
        raise CheckpointError(f"{where}: not a readable optimizer state ({type(e).__name__}: {e})") from None

    def walk(node):
        if isinstance(node, dict):
            if set(node) == {"__tensor__"}:
                return tensors[node["__tensor__"]]
            return {k: walk(v) for k, v in node.items()}
        return _from_json(node)

    return walk(skeleton)


def _c_order(a) -> np.ndarray:
    """A C-contiguous host array with the same shape (np.ascontiguousarray turns 0-d into 1-d)."""
    a = to_numpy(a)
    return a if a.flags.c_contiguous else np.array(a, order="C")


def _is_array(x) -> bool:
    return hasattr(x, "__array__") and hasattr(x, "shape") and hasattr(x, "dtype") and not np.isscalar(x)


def _to_json(x, what: str):
    """JSON-able copy: NumPy scalars -> Python numbers, arrays -> tagged lists (exact)."""
    if isinstance(x, Mapping):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise ValueError(f"{what}: keys must be strings, got {k!r}")
            out[k] = _to_json(v, what)
        return out
    if isinstance(x, (list, tuple)):
        return [_to_json(v, what) for v in x]
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if _is_array(x):
        a = to_numpy(x)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{what}: arrays of dtype {a.dtype} cannot be stored")
        return {"__ndarray__": a.ravel().tolist(), "dtype": a.dtype.str, "shape": list(a.shape)}
    raise ValueError(f"{what}: {type(x).__name__} values cannot be stored in a checkpoint")


def _from_json(x):
    if isinstance(x, dict):
        if "__ndarray__" in x and set(x) == {"__ndarray__", "dtype", "shape"}:
            return np.array(x["__ndarray__"], dtype=np.dtype(x["dtype"])).reshape(x["shape"])
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    return x


def _rng_state(rng) -> dict:
    if isinstance(rng, Mapping):
        return dict(rng)
    if hasattr(rng, "get_state") and callable(rng.get_state) and not isinstance(rng, np.random.RandomState):
        return rng.get_state()                       # minialbert.backend.Random
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator.state
    raise ValueError(f"rng must be a minialbert Random, a NumPy Generator or a state dict, got {type(rng).__name__}")


def _set_rng_state(rng, state) -> None:
    if hasattr(rng, "set_state") and not isinstance(rng, np.random.RandomState):
        rng.set_state(state)
    elif isinstance(rng, np.random.Generator):
        rng.bit_generator.state = state
    else:
        raise ValueError(f"cannot restore the RNG state into a {type(rng).__name__}")
