"""The tokenizer for HuggingFace ``transformers``: ``tokenizer_config.json``,
``special_tokens_map.json`` and ``tokenizer.json`` written beside ``spiece.model``, so that
``AutoTokenizer`` (and ``pipeline("fill-mask")``) load a minialbert checkpoint's tokenizer
with minialbert's ids. Plain JSON, built from the SentencePiece model's bytes: no
transformers, tokenizers or protobuf needed. Below :mod:`minialbert.checkpoint` (which
stores these files with a tokenizer) and :mod:`minialbert.hf` (which re-exports them).
"""
from __future__ import annotations

import base64
import json
import os
import struct

from .atomic import atomic_write
from .tokenizer import Tokenizer


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
    if not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer(tokenizer)
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    files = {"spiece.model": tokenizer.model_proto, **tokenizer_files(tokenizer, model_max_length)}
    for name, data in files.items():
        atomic_write(os.path.join(path, name), data)
    return path
