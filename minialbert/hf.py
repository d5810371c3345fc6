"""HuggingFace interop: the name/layout table, ``from_pretrained``, ``save_pretrained``,
``to_hf_state_dict``. No torch here: tensors go through ``safetensors.numpy``.

Layouts need no transform: our weights already use torch's (out, in) layout, and every
HF tensor maps to exactly one of ours. What differs is names: HF nests the shared
layers as ``albert_layer_groups.{g}.albert_layers.{j}``, we number distinct blocks
``k = g * inner_group_num + j`` (so that attention and FFN can be shared separately).
"""
from __future__ import annotations

import json
import os
import tempfile
import warnings

import numpy as np

from .backend import to_device, to_numpy
from .config import AlbertConfig, read_json_object
from .heads import MODEL_CLASSES
from .model import AlbertModel

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
    ("embeddings.position_embeddings.weight",            "{A}embeddings.position_embeddings.weight"),     # (P, E)
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


def _hf_prefix(model_or_cls) -> str:
    cls = model_or_cls if isinstance(model_or_cls, type) else type(model_or_cls)
    return "" if issubclass(cls, AlbertModel) else "albert."


def name_map(model) -> dict:
    """{our key: HF key} for every parameter of ``model`` (sharing "all" or "none")."""
    c = model.config
    if c.sharing in ("attention", "ffn"):
        raise ValueError(f"sharing={c.sharing!r} has no HuggingFace layout (HF shares whole layers "
                         "only); save_pretrained writes minialbert's own names for it")
    A, inner = _hf_prefix(model), c.inner_group_num
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


def _normalise(key: str) -> str:
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
        n = _normalise(key)
        if n in SKIPPED_BUFFERS or n in TIED:
            continue                               # buffers; tied copies of other tensors
        have[n] = arr
    used, missing_head = set(), []
    for ours, hf in name_map(model).items():
        n = _normalise(hf)
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


def _read_safetensors(path):
    """{name: array} of a safetensors file; ValueError naming the file if it cannot be read."""
    from safetensors.numpy import load_file  # noqa: PLC0415  (only needed for files)
    try:
        return load_file(path)
    except Exception as e:              # SafetensorError (truncated, random bytes), OSError
        size = os.path.getsize(path) if os.path.exists(path) else 0
        raise ValueError(f"{path}: not a readable safetensors file ({size} bytes; "
                         f"{type(e).__name__}: {e}); it is truncated, damaged or another format") from None


def _check_tensors(state, path):
    """Weights must be floating point: an integer or boolean tensor would be cast silently."""
    for k, a in state.items():
        if np.dtype(a.dtype).kind != "f" and _normalise(k) not in SKIPPED_BUFFERS:
            raise ValueError(f"{path}: tensor {k!r} is stored as {a.dtype}, expected a floating-point "
                             f"dtype (float16/32/64): the file was not written as model weights")


def _known_name_pattern():
    """Every tensor name (without 'albert.') that some ALBERT class has, in either layout."""
    import re  # noqa: PLC0415
    pats = [re.escape(_normalise(hf.format(A="", g="{g}", j="{j}"))).replace(r"\{g\}", r"\d+")
            .replace(r"\{j\}", r"\d+") for _, hf in NAME_TABLE]
    pats += [re.escape(NATIVE_PREFIX + ours).replace(r"\{k\}", r"\d+") for ours, _ in NAME_TABLE]
    return re.compile("|".join(pats))


def _warn_unknown(keys, path):
    pat = _known_name_pattern()
    unknown = [k for k in keys if not pat.fullmatch(_normalise(k)) and _normalise(k) not in TIED
               and _normalise(k) not in SKIPPED_BUFFERS]
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
    listed in ``model.unexpected_keys`` (HF warns about them too)."""
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
        missing, unexpected = _load_native(model, state, strict_head)
    else:
        missing, unexpected = load_hf_state_dict(model, state, strict_head=strict_head)
    if missing:
        warnings.warn(f"{cls.__name__}: newly initialised (not in the checkpoint): {missing}", stacklevel=2)
    model.missing_keys, model.unexpected_keys = missing, unexpected
    return model.eval()


def _verify_if_minialbert_checkpoint(path):
    """A directory with a minialbert checkpoint manifest is checked (sizes, sha256) before
    anything in it is read, so a flipped byte is an error naming the file, not a model."""
    from .checkpoint import FORMAT, MANIFEST, verify_checkpoint  # noqa: PLC0415
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


def _load_native(model, state, strict_head=True):
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


def save_pretrained(model, path) -> str:
    """Write ``config.json`` (with ``architectures``) and ``model.safetensors`` into the
    directory ``path``; ``transformers.AlbertFor*.from_pretrained(path)`` loads it. Each file
    is written to a temporary name in the same directory, then renamed (os.replace), so a
    crash never leaves a half-written file under the real name. sharing "attention"/"ffn"
    (not expressible in HF) are written with minialbert's own names, readable by
    :func:`from_pretrained` only. Returns path."""
    from safetensors.numpy import save_file  # noqa: PLC0415
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    if model.config.sharing in ("attention", "ffn"):
        tensors = {NATIVE_PREFIX + k: np.ascontiguousarray(to_numpy(v)) for k, v in model.params.items()}
    else:
        tensors = {k: np.ascontiguousarray(v) for k, v in to_hf_state_dict(model, tied=False).items()}
    cfg = model.config.to_dict(architectures=[type(model).__name__])
    cfg["dtype"] = model.dtype.name
    for name, write in (("model.safetensors", lambda f: save_file(tensors, f, metadata={"format": "pt"})),
                        ("config.json", lambda f: _write_text(f, json.dumps(cfg, indent=2) + "\n"))):
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=path)
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)                   # mkstemp makes it private
            os.replace(tmp, os.path.join(path, name))
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return path


def _write_text(file, text):
    with open(file, "w", encoding="utf-8") as f:
        f.write(text)


# ----------------------------------------------------------------------------------------
# the tokenizer, for transformers: tokenizer_config.json, special_tokens_map.json and
# tokenizer.json written beside spiece.model. Plain JSON, built from the SentencePiece
# model's bytes: no transformers, tokenizers or protobuf needed to write them.
# ----------------------------------------------------------------------------------------
HF_TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json", "tokenizer.json")
_SPECIALS = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "[CLS]", "sep_token": "[SEP]",
             "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}
_USER_DEFINED = 4          # SentencePiece ModelProto.SentencePiece.Type


def _proto_fields(buf: bytes):
    """(field number, wire type, value) of one protobuf message: just enough of the wire
    format to read a SentencePiece model (varints, 32-bit floats, length-delimited)."""
    i, n = 0, len(buf)

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            if i >= n:
                raise ValueError("truncated varint")
            b = buf[i]
            i += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    while i < n:
        key = varint()
        field, wire = key >> 3, key & 7
        if wire == 0:
            yield field, wire, varint()
        elif wire == 1:
            yield field, wire, buf[i:i + 8]
            i += 8
        elif wire == 2:
            size = varint()
            yield field, wire, buf[i:i + size]
            i += size
        elif wire == 5:
            yield field, wire, buf[i:i + 4]
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


def _sentencepiece_spec(model_proto: bytes):
    """[(piece, score, type)] and the normaliser's precompiled charsmap of a spiece.model."""
    import struct  # noqa: PLC0415
    pieces, charsmap = [], b""
    for field, wire, value in _proto_fields(model_proto):
        if field == 1 and wire == 2:                       # repeated SentencePiece pieces
            piece, score, kind = "", 0.0, 1
            for f, w, v in _proto_fields(value):
                if f == 1 and w == 2:
                    piece = v.decode("utf-8")
                elif f == 2 and w == 5:
                    score = struct.unpack("<f", v)[0]
                elif f == 3 and w == 0:
                    kind = v
            pieces.append((piece, score, kind))
        elif field == 3 and wire == 2:                     # NormalizerSpec
            for f, w, v in _proto_fields(value):
                if f == 2 and w == 2:
                    charsmap = bytes(v)
    return pieces, charsmap


def tokenizer_json(tokenizer) -> dict:
    """The ``tokenizers`` library's description of a minialbert :class:`~minialbert.Tokenizer`
    (what ``transformers.AutoTokenizer`` loads from ``tokenizer.json``), giving the same ids.

    Normalisation as ALBERT's ``preprocess_text`` (quotes, NFKD without accents, lower case
    for an uncased model) then SentencePiece's own rule (its precompiled charsmap);
    whitespace split and "▁" word starts; the unigram pieces and scores of the model. The
    five specials are added tokens; ALBERT's user-defined symbols (``(``, ``-``, ...) stay
    ordinary pieces, scored as SentencePiece scores them in its lattice (length × the
    highest piece score − 0.1), so they segment as in SentencePiece. Pieces ending in
    "<digit>," get a score that is never chosen: ALBERT splits them again (see
    :meth:`~minialbert.Tokenizer.encode`).
    """
    import base64  # noqa: PLC0415
    pieces, charsmap = _sentencepiece_spec(tokenizer.model_proto)
    if len(pieces) != tokenizer.vocab_size:
        raise ValueError(f"tokenizer: read {len(pieces)} pieces from the model, expected {tokenizer.vocab_size}")
    normal = [s for _, s, k in pieces if k == 1]
    top = max(normal) if normal else 0.0
    low = min(normal) - 100.0 if normal else -100.0
    vocab = [[p, (len(p) * top - 0.1) if k == _USER_DEFINED
              # ALBERT re-splits a piece ending in "<digit>," (tokenization.py; so does
              # Tokenizer.encode); a unigram model cannot, so such pieces are never chosen
              else low if i in tokenizer._digit_comma else float(s)]
             for i, (p, s, k) in enumerate(pieces)]
    normalizers = [{"type": "Replace", "pattern": {"String": "``"}, "content": '"'},
                   {"type": "Replace", "pattern": {"String": "''"}, "content": '"'},
                   {"type": "NFKD"}, {"type": "StripAccents"}]
    if tokenizer.lowercase:
        normalizers.append({"type": "Lowercase"})
    if charsmap:
        normalizers.append({"type": "Precompiled",
                            "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")})
    ids = {name: tokenizer.sp.piece_to_id(name) for name in ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")}
    cls_, sep = ids["[CLS]"], ids["[SEP]"]
    meta = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [{"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for name, i in sorted(ids.items(), key=lambda x: x[1])],
        "normalizer": {"type": "Sequence", "normalizers": normalizers},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, meta]},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                       {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                     {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls_], "tokens": ["[CLS]"]},
                               "[SEP]": {"id": "[SEP]", "ids": [sep], "tokens": ["[SEP]"]}},
        },
        "decoder": dict(meta),
        "model": {"type": "Unigram", "unk_id": ids["<unk>"], "vocab": vocab, "byte_fallback": False},
    }


def tokenizer_files(tokenizer, model_max_length: int | None = None) -> dict:
    """{file name: bytes} of the HF tokenizer files for a minialbert tokenizer (see
    :func:`save_tokenizer`); ``spiece.model`` itself is not included."""
    config = {"tokenizer_class": "AlbertTokenizer", "do_lower_case": bool(tokenizer.lowercase),
              "keep_accents": False, "remove_space": True, "add_prefix_space": True,
              # ALBERT's pairs use segment ids (transformers 5's AlbertTokenizer omits them by default)
              "model_input_names": ["input_ids", "token_type_ids", "attention_mask"], **_SPECIALS}
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    as_bytes = lambda obj: (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")  # noqa: E731
    return {"tokenizer_config.json": as_bytes(config),
            "special_tokens_map.json": as_bytes(dict(_SPECIALS)),
            "tokenizer.json": as_bytes(tokenizer_json(tokenizer))}


def save_tokenizer(tokenizer, path, model_max_length: int | None = None) -> str:
    """Write ``spiece.model`` and the HF tokenizer files into the directory ``path``, so
    that ``transformers.AutoTokenizer.from_pretrained(path)`` (and ``pipeline(...,
    model=path)``) loads a tokenizer giving minialbert's ids. ``tokenizer``: a
    :class:`~minialbert.Tokenizer` or a path to a ``spiece.model``. Atomic per file.
    Returns path."""
    from .tokenizer import Tokenizer  # noqa: PLC0415
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer(tokenizer)
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    files = {"spiece.model": tokenizer.model_proto, **tokenizer_files(tokenizer, model_max_length)}
    for name, data in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=path)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, os.path.join(path, name))
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
    return path
