"""The default pretraining recipe's data: the embedded corpus with the dependencies'
docstrings, the document-level held-out split, and examples made on the fly (fresh pairs
and masks every epoch, exactly resumable)."""
import numpy as np
import pytest

from minialbert.data import corpus as corpus_mod
from minialbert.data.pretraining import PretrainingStream, split_documents

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
    monkeypatch.setenv("MINIALBERT_CACHE", str(tmp_path))
    a = corpus_mod.load_default_corpus(packages=("scipy",))
    assert len(list(tmp_path.glob("default-corpus-*.json"))) == 1
    b = corpus_mod.load_default_corpus(packages=("scipy",))            # from the cache
    c = corpus_mod.load_default_corpus(packages=("scipy",), cache=False)
    assert a == b == c
    stdlib = corpus_mod.load_default_corpus(include_numpy=False, cache=False)
    assert a[:len(stdlib)] == stdlib and len(a) > len(stdlib) + 300
    assert any("interpolat" in s for d in a[len(stdlib):] for s in d)  # SciPy's docstrings are in


# -- the held-out split ---------------------------------------------------------------
def test_split_documents_is_document_level_and_deterministic(numbered):
    train, held = split_documents(numbered, 0.1, seed=3)
    assert len(held) == 30 and len(train) == 270
    assert split_documents(numbered, 0.1, seed=3) == (train, held)
    assert split_documents(numbered, 0.1, seed=4)[1] != held
    # every document whole on one side, none on both, order kept
    ids = lambda docs: [d[0][0] for d in docs]
    assert sorted(ids(train) + ids(held)) == ids(numbered)
    assert ids(train) == sorted(ids(train)) and ids(held) == sorted(ids(held))
    assert not set(ids(train)) & set(ids(held))
    assert len(split_documents(numbered[:3], 0.0, min_heldout=1)[1]) == 1
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_documents(numbered, 1.0)


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
