"""HuggingFace interop: ``from_pretrained`` and the loaders, above the model classes; the
name/layout table, ``to_hf_state_dict`` and ``save_pretrained`` live one floor down in
:mod:`minialbert.hf_format` (the model's own ``save_pretrained`` uses them) and are
importable from here too. No torch here: tensors go through ``safetensors.numpy``.

Layouts need no transform: our weights already use torch's (out, in) layout, and every
HF tensor maps to exactly one of ours. What differs is names: HF nests the shared
layers as ``albert_layer_groups.{g}.albert_layers.{j}``, we number distinct blocks
``k = g * inner_group_num + j`` (so that attention and FFN can be shared separately).
"""
from __future__ import annotations

import json
import os
import re
import warnings

import numpy as np
from safetensors.numpy import load_file

from .backend import to_device
from .checkpoint import FORMAT, MANIFEST, verify_checkpoint
from .config import AlbertConfig, read_json_object
from .heads import MODEL_CLASSES
from .hf_tokenizer import (HF_TOKENIZER_FILES, save_tokenizer, tokenizer_files,  # noqa: F401  (public here too)
                           tokenizer_json)
from .hf_format import (NAME_TABLE, NATIVE_PREFIX, SKIPPED_BUFFERS, TIED,  # noqa: F401  (public here too)
                        hf_prefix, load_hf_state_dict, load_native_state_dict, name_map, normalise_key,
                        save_pretrained, to_hf_state_dict)
from .model import AlbertModel

def _read_safetensors(path):
    """{name: array} of a safetensors file; ValueError naming the file if it cannot be read."""
    try:
        return load_file(path)
    except Exception as e:              # SafetensorError (truncated, random bytes), OSError
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise ValueError(f"{path}: not a readable safetensors file ({size} bytes; "
                         f"{type(e).__name__}: {e}); it is truncated, damaged or another format") from None


def _check_tensors(state, path):
    """Weights must be floating point: an integer or boolean tensor would be cast silently."""
    for k, a in state.items():
        if np.dtype(a.dtype).kind != "f" and normalise_key(k) not in SKIPPED_BUFFERS:
            raise ValueError(f"{path}: tensor {k!r} is stored as {a.dtype}, expected a floating-point "
                             f"dtype (float16/32/64): the file was not written as model weights")


def _known_name_pattern():
    """Every tensor name (without 'albert.') that some ALBERT class has, in either layout."""
    pats = [re.escape(normalise_key(hf.format(A="", g="{g}", j="{j}"))).replace(r"\{g\}", r"\d+")
            .replace(r"\{j\}", r"\d+") for _, hf in NAME_TABLE]
    pats += [re.escape(NATIVE_PREFIX + ours).replace(r"\{k\}", r"\d+") for ours, _ in NAME_TABLE]
    return re.compile("|".join(pats))


def _warn_unknown(keys, path):
    pat = _known_name_pattern()
    unknown = [k for k in keys if not pat.fullmatch(normalise_key(k)) and normalise_key(k) not in TIED
               and normalise_key(k) not in SKIPPED_BUFFERS]
    if unknown:
        warnings.warn(f"{path}: ignoring {len(unknown)} tensor(s) that no ALBERT model has: "
                      f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}", stacklevel=3)


def from_pretrained(path, dtype="float32", model_class=None, **config_overrides):
    """Build a model from a HF ALBERT directory (``config.json`` + ``model.safetensors``).

    Inputs: path, a directory; dtype "float32"/"float64"; model_class: a minialbert class to
    build instead of the one named in ``architectures`` (e.g. AlbertForSequenceClassification
    from a pretraining checkpoint: its new head keeps a fresh init, listed in
    ``model.missing_keys``); config_overrides: AlbertConfig fields (e.g. ``num_labels=3``).
    Returns: the model in eval mode, on the CPU. Checkpoint tensors unused by the class are
    listed in ``model.unexpected_keys`` (HF warns about them too); tensors that no ALBERT class
    has are warned about. A minialbert checkpoint (one with a ``manifest.json``) is verified
    first (sizes and sha256 of every file). Unreadable or damaged files, and weights stored
    with a non-float dtype, are a ValueError naming the file."""
    path = os.fspath(path)
    cfg_file, st_file = os.path.join(path, "config.json"), os.path.join(path, "model.safetensors")
    if not os.path.isfile(cfg_file):
        raise ValueError(f"{path!r} has no config.json")
    if not os.path.isfile(st_file):
        raise ValueError(f"{path!r} has no model.safetensors (pytorch_model.bin needs torch: "
                         "re-save it with transformers' save_pretrained(safe_serialization=True))")
    _verify_if_minialbert_checkpoint(path)
    raw = read_json_object(cfg_file, "config")
    try:
        config = AlbertConfig.from_dict(raw, **config_overrides)
    except ValueError as e:
        raise ValueError(f"{cfg_file}: {e}") from None
    arch = (raw.get("architectures") or ["AlbertModel"])[0]
    cls = model_class or MODEL_CLASSES.get(arch, AlbertModel)
    state = _read_safetensors(st_file)
    _check_tensors(state, st_file)
    _warn_unknown(state, st_file)
    model = cls(config, seed=0, dtype=dtype)
    strict_head = model_class is None and arch in MODEL_CLASSES
    if any(k.startswith(NATIVE_PREFIX) for k in state):
        missing, unexpected = load_native_state_dict(model, state, strict_head)
    else:
        missing, unexpected = load_hf_state_dict(model, state, strict_head=strict_head)
    if missing:
        warnings.warn(f"{cls.__name__}: newly initialised (not in the checkpoint): {missing}", stacklevel=2)
    model.missing_keys, model.unexpected_keys = missing, unexpected
    return model.eval()


def _verify_if_minialbert_checkpoint(path):
    """A directory with a minialbert checkpoint manifest is checked (sizes, sha256) before
    anything in it is read, so a flipped byte is an error naming the file, not a model."""
    mfile = os.path.join(path, MANIFEST)
    if not os.path.isfile(mfile):
        return
    try:
        with open(mfile, encoding="utf-8") as f:
            fmt = json.load(f).get("format")
    except (ValueError, OSError, AttributeError):
        fmt = FORMAT                    # unreadable: verify_checkpoint says what is wrong with it
    if fmt == FORMAT:
        verify_checkpoint(path)
