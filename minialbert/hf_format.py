"""The HuggingFace ALBERT checkpoint format: the name table, ``to_hf_state_dict`` and the
files ``save_pretrained`` writes (``config.json`` + ``model.safetensors``).

It knows parameter names, not model classes: the model's ``save_pretrained`` calls down
into it, and :mod:`minialbert.hf` (``from_pretrained``, which picks a model class) sits
above both. No torch here: tensors go through ``safetensors.numpy``.
"""
from __future__ import annotations

import json
import os

import numpy as np
from safetensors.numpy import save_file

from .atomic import atomic_write
from .backend import to_device, to_numpy

# ----------------------------------------------------------------------------------------
# THE TABLE. ours (key of model.params)  <->  HF (key of AlbertFor*.state_dict()).
# {A} = "albert." inside every HF class except AlbertModel (whose keys have no prefix).
# {k} = our block index = g * inner_group_num + j; {g}, {j} = HF group, layer in group.
# Layout: identical for every row (torch (out, in) for weights).
# ----------------------------------------------------------------------------------------
_LAYER = "{A}encoder.albert_layer_groups.{g}.albert_layers.{j}."
NAME_TABLE = (
    # ours                                               HF
    ("embeddings.word_embeddings.weight",                "{A}embeddings.word_embeddings.weight"),         # (V, E)
    ("embeddings.position_embeddings.weight",            "{A}embeddings.position_embeddings.weight"),     # (Tmax, E)
    ("embeddings.token_type_embeddings.weight",          "{A}embeddings.token_type_embeddings.weight"),   # (TT, E)
    ("embeddings.LayerNorm.weight",                      "{A}embeddings.LayerNorm.weight"),               # (E,)
    ("embeddings.LayerNorm.bias",                        "{A}embeddings.LayerNorm.bias"),                 # (E,)
    ("encoder.embedding_hidden_mapping_in.weight",       "{A}encoder.embedding_hidden_mapping_in.weight"),  # (H, E)
    ("encoder.embedding_hidden_mapping_in.bias",         "{A}encoder.embedding_hidden_mapping_in.bias"),    # (H,)
    ("encoder.attention.{k}.query.weight",               _LAYER + "attention.query.weight"),              # (H, H)
    ("encoder.attention.{k}.query.bias",                 _LAYER + "attention.query.bias"),                # (H,)
    ("encoder.attention.{k}.key.weight",                 _LAYER + "attention.key.weight"),
    ("encoder.attention.{k}.key.bias",                   _LAYER + "attention.key.bias"),
    ("encoder.attention.{k}.value.weight",               _LAYER + "attention.value.weight"),
    ("encoder.attention.{k}.value.bias",                 _LAYER + "attention.value.bias"),
    ("encoder.attention.{k}.dense.weight",               _LAYER + "attention.dense.weight"),
    ("encoder.attention.{k}.dense.bias",                 _LAYER + "attention.dense.bias"),
    ("encoder.attention.{k}.LayerNorm.weight",           _LAYER + "attention.LayerNorm.weight"),          # (H,)
    ("encoder.attention.{k}.LayerNorm.bias",             _LAYER + "attention.LayerNorm.bias"),
    ("encoder.ffn.{k}.ffn.weight",                       _LAYER + "ffn.weight"),                          # (I, H)
    ("encoder.ffn.{k}.ffn.bias",                         _LAYER + "ffn.bias"),                            # (I,)
    ("encoder.ffn.{k}.ffn_output.weight",                _LAYER + "ffn_output.weight"),                   # (H, I)
    ("encoder.ffn.{k}.ffn_output.bias",                  _LAYER + "ffn_output.bias"),                     # (H,)
    ("encoder.ffn.{k}.full_layer_layer_norm.weight",     _LAYER + "full_layer_layer_norm.weight"),        # (H,)
    ("encoder.ffn.{k}.full_layer_layer_norm.bias",       _LAYER + "full_layer_layer_norm.bias"),
    ("pooler.weight",                                    "{A}pooler.weight"),                             # (H, H)
    ("pooler.bias",                                      "{A}pooler.bias"),
    ("predictions.dense.weight",                         "predictions.dense.weight"),                     # (E, H)
    ("predictions.dense.bias",                           "predictions.dense.bias"),
    ("predictions.LayerNorm.weight",                     "predictions.LayerNorm.weight"),                 # (E,)
    ("predictions.LayerNorm.bias",                       "predictions.LayerNorm.bias"),
    ("predictions.bias",                                 "predictions.bias"),                             # (V,)
    ("sop_classifier.weight",                            "sop_classifier.classifier.weight"),             # (C, H)
    ("sop_classifier.bias",                              "sop_classifier.classifier.bias"),
    ("classifier.weight",                                "classifier.weight"),                            # (C, H) / (1, H)
    ("classifier.bias",                                  "classifier.bias"),
    ("qa_outputs.weight",                                "qa_outputs.weight"),                            # (2, H)
    ("qa_outputs.bias",                                  "qa_outputs.bias"),
)
# HF state_dict entries that are the same tensor as another one (written by state_dict(),
# dropped by save_pretrained): the tied decoder.
TIED = {"predictions.decoder.weight": "embeddings.word_embeddings.weight",
        "predictions.decoder.bias": "predictions.bias"}
# Buffers that old checkpoints (transformers 4.30 era) saved: not parameters, skipped.
SKIPPED_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")
NATIVE_PREFIX = "minialbert."   # file keys for sharing modes HF cannot express


def hf_prefix(model) -> str:
    """The prefix of every base-model key: "albert.", except in the bare AlbertModel (HF's
    rule: the base model's own keys have none). ``head == "model"`` is the bare encoder."""
    return "" if model.head == "model" else "albert."


def name_map(model) -> dict:
    """{our key: HF key} for every parameter of ``model`` (sharing "all" or "none")."""
    c = model.config
    if c.sharing in ("attention", "ffn"):
        raise ValueError(f"sharing={c.sharing!r} has no HuggingFace layout (HF shares whole layers "
                         "only); save_pretrained writes minialbert's own names for it")
    A, inner = hf_prefix(model), c.inner_group_num
    out = {}
    for ours, hf in NAME_TABLE:
        if "{k}" in ours:
            n_blocks = c.num_attention_blocks if ours.startswith("encoder.attention") else c.num_ffn_blocks
            for k in range(n_blocks):
                g, j = divmod(k, inner)
                out[ours.format(k=k)] = hf.format(A=A, g=g, j=j)
        else:
            out[ours] = hf.format(A=A)
    return {k: out[k] for k in model.params}


def to_hf_state_dict(model, grads: bool = False, tied: bool = True) -> dict:
    """HF names -> NumPy arrays (host copies) in HF layout, like ``hf_model.state_dict()``
    (``grads=True``: the gradients, mapped the same way, like ``p.grad``). ``tied`` adds
    ``predictions.decoder.{weight,bias}``, which in HF are the same tensors as the word
    embedding and ``predictions.bias``."""
    src = model.grads if grads else model.params
    out = {hf: np.array(to_numpy(src[ours])) for ours, hf in name_map(model).items()}
    if tied and "predictions.bias" in model.params:
        for hf_tied, ours in TIED.items():
            out[hf_tied] = np.array(to_numpy(src[ours]))
    return out


def normalise_key(key: str) -> str:
    """HF key -> key without the class-dependent 'albert.' prefix."""
    return key[len("albert."):] if key.startswith("albert.") else key


def load_hf_state_dict(model, state: dict, strict_head: bool = True):
    """Copy HF-named arrays into ``model.params`` (cast to the model's dtype, on its device).
    Accepts keys with or without the 'albert.' prefix. Missing encoder tensors and shape
    mismatches are a ValueError; missing head tensors too when ``strict_head``, otherwise they
    keep their fresh init (fine-tuning from a pretraining checkpoint). Returns
    (missing head keys, unexpected keys)."""
    have = {}
    for key, arr in state.items():
        n = normalise_key(key)
        if n in SKIPPED_BUFFERS or n in TIED:
            continue                               # buffers; tied copies of other tensors
        have[n] = arr
    used, missing_head = set(), []
    for ours, hf in name_map(model).items():
        n = normalise_key(hf)
        want = tuple(model.params[ours].shape)
        if n not in have:
            # the pooler may be missing (a HF AlbertForMaskedLM checkpoint has none): as in HF,
            # a class that needs one starts it fresh when strict_head is off
            is_base = ours.startswith(("embeddings.", "encoder."))
            if is_base or strict_head:
                raise ValueError(f"checkpoint lacks {hf!r} (shape {want}) needed by {type(model).__name__}")
            missing_head.append(hf)
            continue
        arr = np.asarray(have[n])
        if tuple(arr.shape) != want:
            raise ValueError(f"checkpoint tensor {hf!r} has shape {tuple(arr.shape)}, but the config "
                             f"implies {want}: config.json and model.safetensors do not match")
        model.params[ours] = to_device(arr.astype(model.dtype), model.device)
        used.add(n)
    unexpected = sorted(set(have) - used)
    return missing_head, unexpected


def load_native_state_dict(model, state, strict_head=True):
    """Load minialbert-named tensors (sharing modes HF cannot express); same rules as
    :func:`load_hf_state_dict`."""
    n = len(NATIVE_PREFIX)
    have = {k[n:]: v for k, v in state.items() if k.startswith(NATIVE_PREFIX)}
    missing = []
    for k, v in model.params.items():
        if k not in have:
            if strict_head or k.startswith(("embeddings.", "encoder.", "pooler.")):
                raise ValueError(f"checkpoint lacks {NATIVE_PREFIX + k!r} (shape {tuple(v.shape)}) "
                                 f"needed by {type(model).__name__}")
            missing.append(k)
            continue
        if tuple(have[k].shape) != tuple(v.shape):
            raise ValueError(f"checkpoint tensor {NATIVE_PREFIX + k!r} has shape {tuple(have[k].shape)}, "
                             f"but the config implies {tuple(v.shape)}")
        model.params[k] = to_device(np.asarray(have[k]).astype(model.dtype), model.device)
    return missing, sorted(set(have) - set(model.params))


def pretrained_state(model):
    """What :func:`save_pretrained` writes, in memory: (tensors {file key: C-ordered host
    array}, config dict with ``architectures`` and ``dtype``). HF names for sharing
    "all"/"none"; minialbert's own names (prefix ``minialbert.``) for "attention"/"ffn",
    which HF cannot express."""
    if model.config.sharing in ("attention", "ffn"):
        tensors = {NATIVE_PREFIX + k: np.ascontiguousarray(to_numpy(v)) for k, v in model.params.items()}
    else:
        tensors = {k: np.ascontiguousarray(v) for k, v in to_hf_state_dict(model, tied=False).items()}
    cfg = model.config.to_dict(architectures=[type(model).__name__])
    cfg["dtype"] = model.dtype.name
    return tensors, cfg


def save_pretrained(model, path) -> str:
    """Write ``config.json`` (with ``architectures``) and ``model.safetensors`` into the
    directory ``path``; ``transformers.AlbertFor*.from_pretrained(path)`` loads it. Each file
    is written to a temporary name in the same directory, then renamed (os.replace), so a
    crash never leaves a half-written file under the real name. sharing "attention"/"ffn"
    (not expressible in HF) are written with minialbert's own names, readable by
    :func:`from_pretrained` only. Returns path."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    tensors, cfg = pretrained_state(model)
    for name, write in (("model.safetensors", lambda f: save_file(tensors, f, metadata={"format": "pt"})),
                        ("config.json", lambda f: _write_text(f, json.dumps(cfg, indent=2) + "\n"))):
        atomic_write(os.path.join(path, name), write)
    return path


def _write_text(file, text):
    with open(file, "w", encoding="utf-8") as f:
        f.write(text)
