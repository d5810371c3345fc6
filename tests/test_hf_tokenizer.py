"""A minialbert checkpoint works in transformers as any ALBERT directory does.

* Checkpoints carry ``tokenizer_config.json``, ``special_tokens_map.json`` and
  ``tokenizer.json`` beside ``spiece.model`` (``hf.save_tokenizer``; ``save_checkpoint``
  adds them whenever it stores a ``spiece.model``, as the pretraining loop does). Writing
  them needs neither transformers nor protobuf.
* ``transformers.AutoTokenizer.from_pretrained(ckpt)`` gives minialbert's ids, on ordinary
  text and around ALBERT's user-defined symbols (``(``, ``-``, ``.``, ...), where
  transformers' own conversion of a bare ``spiece.model`` differs from SentencePiece.
* ``transformers.pipeline("fill-mask", model=ckpt)`` gives minialbert's ``fill_mask``
  predictions: same pieces, same ids, same probabilities.
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import minialbert
from minialbert import AlbertConfig, Tokenizer
from minialbert.checkpoint import save_checkpoint
from minialbert.hf import HF_TOKENIZER_FILES, save_tokenizer, tokenizer_json

TEXT = [
    "Return the sum of the values in the list.",
    "Raise a ValueError (or a TypeError) if the path is not a file-like object.",
    "Héllo ``quoted'' text -- with “curly” quotes, 3,4 and €5 – £2.",
    "  many   spaces\there,  and UPPER case ",
    "os.path.join(a, b) returns a-b; x-y (z).",
]


@pytest.fixture(scope="module")
def tok():
    import os
    lines = [line.strip() for line in (os.__doc__ or "").splitlines() + (json.__doc__ or "").splitlines()
             + [t for t in TEXT for _ in range(3)] if line.strip()]
    import inspect
    lines += [ln.strip() for ln in inspect.getsource(json).splitlines() if ln.strip()]
    return Tokenizer.train(lines, vocab_size=400)


@pytest.fixture(scope="module")
def ckpt(tok, tmp_path_factory):
    """A tiny AlbertForMaskedLM saved as a checkpoint with its tokenizer (save_checkpoint)."""
    cfg = AlbertConfig(vocab_size=tok.vocab_size, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.5)
    model = minialbert.AlbertForMaskedLM(cfg, seed=0)
    return save_checkpoint(tmp_path_factory.mktemp("run") / "checkpoint", model, step=0,
                           files={"spiece.model": tok.model_proto})


def test_checkpoint_ships_hf_tokenizer_files(ckpt, tok):
    for name in ("spiece.model", *HF_TOKENIZER_FILES):
        assert (ckpt / name).is_file(), f"the checkpoint has no {name}"
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "AlbertTokenizer" and config["do_lower_case"] is True
    assert config["model_max_length"] == 64
    manifest = json.loads((ckpt / "manifest.json").read_text())
    assert set(HF_TOKENIZER_FILES) <= set(manifest["files"]), "the tokenizer files are not in the manifest"
    # plain JSON, one unigram piece per id, the specials as added tokens
    spec = tokenizer_json(tok)
    assert [p for p, _ in spec["model"]["vocab"]] == [tok.id_to_piece(i) for i in range(tok.vocab_size)]
    assert [a["id"] for a in spec["added_tokens"]] == [0, 1, 2, 3, 4]


def test_save_tokenizer_from_a_path(tok, tmp_path):
    src = tok.save(tmp_path / "src" / "spiece.model")
    out = save_tokenizer(src, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(("spiece.model", *HF_TOKENIZER_FILES))
    assert (tmp_path / "out" / "spiece.model").read_bytes() == src.read_bytes()
    assert out == str(tmp_path / "out")


def _auto_tokenizer(path):
    transformers = pytest.importorskip("transformers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoTokenizer.from_pretrained(str(path))


def test_autotokenizer_gives_minialbert_ids(ckpt, tok):
    hf = _auto_tokenizer(ckpt)
    assert type(hf).__name__ == "AlbertTokenizer" and len(hf) == tok.vocab_size
    import argparse
    import collections
    import textwrap
    # prose (docstrings); an exact tie between two segmentations of equal score (e.g. a run
    # of three backslashes) may break differently in the two libraries
    docs = "\n".join((m.__doc__ or "") for m in (argparse, collections, textwrap, json, warnings))
    lines = TEXT + [ln.strip() for ln in docs.splitlines() if ln.strip()]
    assert len(lines) > 100
    resplit = 0
    for line in lines:
        ids = tok.encode(line)
        if any(i in tok._digit_comma for i in tok.sp.encode(tok.preprocess(line))):
            # ALBERT splits a chosen "<digit>," piece again after SentencePiece's search; a
            # unigram model cannot, and the best path without such pieces may differ
            # elsewhere in the line (documented in docs/data/tokenizer.md)
            resplit += 1
            continue
        assert hf(line, add_special_tokens=False)["input_ids"] == ids, \
            f"{line!r}: HF {hf.convert_ids_to_tokens(hf(line, add_special_tokens=False)['input_ids'])} " \
            f"vs minialbert {tok.id_to_piece(ids)}"
    assert resplit < len(lines) // 10
    # a pair: [CLS] A [SEP] B [SEP], segment ids 0 then 1, as minialbert builds it
    a, b = tok.encode(TEXT[0]), tok.encode(TEXT[1])
    enc = hf(TEXT[0], TEXT[1])
    assert enc["input_ids"] == [2] + a + [3] + b + [3]
    assert enc["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert hf.decode(enc["input_ids"], skip_special_tokens=True) == tok.decode([2] + a + [3] + b + [3])


def test_fill_mask_pipeline_matches_minialbert(ckpt):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from minialbert.cli.fill_mask import fill_mask
    text = "return the [MASK] of the list (a-b)."
    ours = fill_mask(ckpt, text, top_k=5)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = transformers.pipeline("fill-mask", model=str(ckpt), top_k=5)
    theirs = pipe(text)
    assert [p["token"] for p in theirs] == [p["token_id"] for p in ours], (theirs, ours)
    np.testing.assert_allclose([p["score"] for p in theirs], [p["score"] for p in ours], rtol=1e-4, atol=1e-6)
