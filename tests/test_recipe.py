"""The default pretraining recipe's data: the embedded corpus with the dependencies'
docstrings, the document-level held-out split, and examples made on the fly (fresh pairs
and masks every epoch, exactly resumable)."""
import importlib

import numpy as np
import pytest

from minialbert.data import corpus as corpus_mod
from minialbert.data.pretraining import PretrainingStream

from test_data import FakeTokenizer, numbered_documents, original_ids  # noqa: F401


@pytest.fixture(scope="module")
def numbered():
    return numbered_documents(300, np.random.default_rng(7))


def _key(batch):
    return {k: v.tolist() for k, v in batch.items()}


# -- the embedded corpus --------------------------------------------------------------
def test_default_corpus_reads_every_runtime_dependency():
    # the packages minialbert installs with are read after the standard library, in order
    files = corpus_mod.default_corpus_files()
    tops = []
    for name in corpus_mod.DEFAULT_PACKAGES:
        root = corpus_mod._package_root(name)
        assert root is not None, f"{name} is a runtime dependency and must be importable"
        own = [f for f in files if root in f.parents]
        assert own, f"no {name} file in the default corpus"
        assert not any(p in {"tests", "test"} for f in own for p in f.relative_to(root).parts[:-1])
        tops.append(files.index(own[0]))
    assert tops == sorted(tops)
    stdlib_only = corpus_mod.default_corpus_files(include_numpy=False)
    assert files[:len(stdlib_only)] == stdlib_only
    assert corpus_mod.default_corpus_files(packages=("numpy",)) == stdlib_only + corpus_mod._package_files("numpy")


def test_default_corpus_with_packages_is_cached_and_deterministic(tmp_path, monkeypatch):
    # a small installed package stands in for SciPy (parsing SciPy takes seconds)
    pkg = tmp_path / "site" / "docpkg"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Interpolate the values of a table. It works on lists."""\n')
    (pkg / "core.py").write_text('class Spline:\n    """A smooth curve through points."""\n\n'
                                 '    def evaluate(self):\n        """Return the curve at x. Values outside raise."""\n')
    (pkg / "tests" / "test_core.py").write_text('"""Tests are left out of the corpus."""\n')
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path / "cache"))
    stdlib_files = corpus_mod._stdlib_files()[:3]                     # the order is tested above
    monkeypatch.setattr(corpus_mod, "_stdlib_files", lambda: stdlib_files)
    a = corpus_mod.load_default_corpus(packages=("docpkg",))
    assert len(list((tmp_path / "cache").glob("default-corpus-*.json"))) == 1
    b = corpus_mod.load_default_corpus(packages=("docpkg",))            # from the cache
    c = corpus_mod.load_default_corpus(packages=("docpkg",), cache=False)
    assert a == b == c
    stdlib = corpus_mod.load_default_corpus(include_numpy=False)
    assert a[:len(stdlib)] == stdlib
    assert a[len(stdlib):] == [["Interpolate the values of a table.", "It works on lists."],
                               ["A smooth curve through points.", "Return the curve at x.", "Values outside raise."]]
    # a package that is not installed is skipped
    assert corpus_mod.load_default_corpus(packages=("no_such_package_xyz",), cache=False) == stdlib


# -- examples made on the fly ---------------------------------------------------------
def test_stream_is_deterministic_and_resumes_on_exactly_the_next_batch(numbered):
    fake = FakeTokenizer()
    a = PretrainingStream(numbered, fake, 16, 64, seed=1)
    first = [_key(next(a)) for _ in range(5)]
    state = a.state_dict()
    rest = [_key(next(a)) for _ in range(3)]
    b = PretrainingStream(numbered, fake, 16, 64, seed=1)
    assert [_key(next(b)) for _ in range(5)] == first
    c = PretrainingStream(numbered, fake, 16, 64, seed=1)
    c.load_state_dict(state)
    assert [_key(next(c)) for _ in range(3)] == rest
    d = PretrainingStream(numbered, fake, 16, 64, seed=2)
    assert _key(next(d)) != first[0]
    with pytest.raises(ValueError, match="seed"):
        d.load_state_dict(state)


def test_stream_draws_fresh_pairs_and_masks_every_epoch(numbered):
    fake = FakeTokenizer()
    s = PretrainingStream(numbered, fake, 32, 64, seed=0, epochs=2)
    n0 = len(s.pairs(0))
    seen = {0: [], 1: []}
    for batch in s:
        pass
    # walk the two epochs example by example: every token of the corpus is served each
    # epoch (as create_pretraining_examples with dupe_factor=1), with other cuts and masks
    for e in (0, 1):
        for i in range(len(s.pairs(e))):
            ex = s.example(e, i)
            seen[e].append((tuple(original_ids(ex).tolist()), tuple(ex["masked_lm_positions"].tolist())))
    assert s.epoch == 2 and s.batches_yielded == -(-n0 // 32) + -(-len(s.pairs(1)) // 32)
    assert len(set(seen[0]) & set(seen[1])) < 0.05 * len(seen[0])   # fresh per epoch
    tokens = lambda exs: sorted(t for ids, _ in exs for t in ids if t >= 5)
    corpus_tokens = sorted(t for d in numbered for s_ in d for t in s_)
    assert set(tokens(seen[0])) <= set(corpus_tokens)
    assert len(tokens(seen[0])) > 0.9 * len(corpus_tokens)          # (truncation drops a few)


def test_stream_batches_have_the_fixed_shape_and_budget(numbered):
    fake = FakeTokenizer()
    s = PretrainingStream(numbered, fake, 8, 64, seed=0, max_predictions_per_seq=10)
    batch = next(s)
    assert batch["input_ids"].shape == (8, 64) and batch["masked_lm_positions"].shape == (8, 10)
    assert set(np.unique(batch["sentence_order_label"])) <= {0, 1}
    n_masked = (batch["labels"] != -100).sum(axis=1)
    assert (n_masked == batch["masked_lm_weights"].sum(axis=1)).all() and (n_masked <= 10).all()
    with pytest.raises(ValueError, match="batch_size"):
        PretrainingStream(numbered, fake, 0, 64)
    with pytest.raises(ValueError, match="empty"):
        PretrainingStream([[]], fake, 8, 64)


def test_stream_dupe_factor_makes_that_many_passes_per_epoch(numbered):
    fake = FakeTokenizer()
    one = PretrainingStream(numbered, fake, 8, 64, seed=0)
    three = PretrainingStream(numbered, fake, 8, 64, seed=0, dupe_factor=3)
    assert 2.5 * len(one.pairs(0)) < len(three.pairs(0)) < 3.5 * len(one.pairs(0))
    with pytest.raises(ValueError, match="dupe_factor"):
        three.load_state_dict(one.state_dict())


# -- what pretrain uses ---------------------------------------------------------------
def test_prepare_text_pretraining_holds_out_whole_documents(numbered):
    from minialbert.data.pretraining import prepare_text_pretraining

    fake = FakeTokenizer()
    tok, stream, held, info = prepare_text_pretraining(numbered, fake, max_seq_length=64, batch_size=8,
                                                       eval_size=64, seed=0)
    assert info["heldout_documents"] == 10 and info["train_documents"] == 290      # 10 / 300 > 3%
    assert 0 < len(held) <= 64 and info["examples_per_epoch"] == len(stream.pairs(0))
    # an id tells its document: no held-out example holds a token of a training document
    doc_of = lambda ids: {int(t) // 10_000 for t in ids if t >= 5}
    train_docs = {d[0][0] // 10_000 for d in stream.docs}
    held_docs = {d[0][0] // 10_000 for d in info["heldout"]}
    assert len(train_docs) == 290 and not train_docs & held_docs
    for e in held:
        assert doc_of(original_ids(e)) <= held_docs
    # too few documents to spare: held-out examples come from the training ones, with a note
    notes = []
    _, _, held2, info2 = prepare_text_pretraining(numbered[:5], fake, max_seq_length=64, batch_size=4,
                                                  eval_size=16, log=notes.append)
    assert info2["heldout_documents"] == 0 and len(held2) > 0 and "optimistic" in notes[0]
    with pytest.raises(ValueError, match="tokenizer"):
        prepare_text_pretraining(numbered, None)


def test_time_to_quality_quick_runs(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_quality.py"
    r = subprocess.run([sys.executable, str(script), "--quick", "--threads", "1", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "| minialbert |" in r.stdout and "| PyTorch + HF |" in r.stdout and "ratio" in r.stdout
    assert (tmp_path / "time_to_quality.png").stat().st_size > 0
    import json
    curves = json.loads((tmp_path / "curves.json").read_text())["curves"]
    # the same initial weights and batches: both start from the same held-out scores
    a, b = curves["minialbert"], curves["PyTorch + HF"]
    assert a[0]["eval_mlm_accuracy"] == b[0]["eval_mlm_accuracy"] and len(a) == len(b) >= 3


def test_tokenizer_cache_returns_the_same_tokenizer(tmp_path):
    from minialbert.data import load_default_corpus
    from minialbert.data.pretraining import _train_tokenizer

    docs = load_default_corpus(include_numpy=False)[:100]
    a = _train_tokenizer(docs, 300, tmp_path)
    assert len(list(tmp_path.glob("tokenizer-*.model"))) == 1
    b = _train_tokenizer(docs, 300, tmp_path)                          # read back
    assert a.content_hash == b.content_hash == _train_tokenizer(docs, 300).content_hash
    _train_tokenizer(docs, 301, tmp_path)                              # another size: another entry
    assert len(list(tmp_path.glob("tokenizer-*.model"))) == 2


def test_probe_blanks_one_single_piece_word_per_held_out_sentence():
    from minialbert.config import AlbertConfig
    from minialbert.data import load_default_corpus
    from minialbert.heads import AlbertForPreTraining
    from minialbert.probe import format_probe, probe, probe_sentences
    from minialbert.tokenizer import Tokenizer

    docs = load_default_corpus(include_numpy=False)[:200]
    tok = Tokenizer.train(docs, 400)
    items = probe_sentences(docs, tok, n=4, seed=1)
    assert len(items) == 4 and items == probe_sentences(docs, tok, n=4, seed=1)
    for text, answer in items:
        assert text.count("[MASK]") == 1 and answer.startswith("\u2581") and tok.piece_to_id(answer) > 4
    model = AlbertForPreTraining(AlbertConfig.from_preset("tiny", vocab_size=tok.vocab_size), seed=0)
    preds = probe(model, tok, [t for t, _ in items], top_k=5)
    assert [len(p) for p in preds] == [5] * 4
    assert all(abs(sum(q for q, _ in p)) <= 1.0 for p in preds) and model.training
    table = format_probe(items, preds, preds)
    assert table.count("before:") == 4 and table.count("after:") == 4 and "right word in the top 5" in table


def test_pretrain_on_the_embedded_corpus_ends_with_the_fill_mask_table(tmp_path, monkeypatch):
    import minialbert.data as data_mod
    from minialbert.train import PretrainConfig, pretrain

    small = data_mod.load_default_corpus(include_numpy=False)[:120]    # stands in for the 6 MB corpus
    import minialbert.train as train_mod

    monkeypatch.setattr(data_mod, "load_default_corpus", lambda **kw: small)
    monkeypatch.setattr(train_mod, "load_default_corpus", lambda **kw: small)
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path / "cache"))
    cfg = PretrainConfig(vocab_size=300, seq_len=32, batch_size=8, steps=3, warmup=1, out=str(tmp_path / "r"),
                         progress=False, plots=False, eval_size=16, peak_tflops=0.1, log_every=1)
    s = pretrain(cfg, log=lambda m: None)
    assert "before:" in s["fill_mask"] and "after:" in s["fill_mask"]
    assert s["last"]["eval_mlm_accuracy"] >= 0 and "eval_sop_accuracy" in s["last"]
    assert len(list((tmp_path / "cache").glob("tokenizer-*.model"))) == 1
