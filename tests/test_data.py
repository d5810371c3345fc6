"""Pretraining data: masking statistics, SOP/NSP pairs, token types, shards, loaders, corpora, CLI.

Statistical checks use a tolerance of 4 standard errors of the measured proportion,
sqrt(p (1 - p) / N) with the N of that test: a correct implementation fails such a
check with probability < 1e-4 per proportion (and the seeds are fixed, so a pass is
reproducible), while the bugs they guard against (a uniform n, 90/5/5 replacements,
an unswapped SOP) move the proportions by 10+ standard errors.
"""
import json
import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minialbert import Tokenizer
from minialbert.cli import main as cli_main
from minialbert.data import (ExampleLoader, ShardLoader, build_shards, collate, create_pretraining_examples,
                             iterate_batches, load_default_corpus, load_text_corpus, mask_tokens,
                             read_manifest, split_sentences)
from minialbert.data import shards as shards_mod
from minialbert.data.pretraining import is_start_piece, ngram_probs

CLS, SEP, MASK = 2, 3, 4


class FakeTokenizer:
    """Ids only: every id >= 5 starts its own word unless listed in ``continuation``.
    Lets the tests build documents whose ids say where each token came from."""

    pad_id, unk_id, cls_id, sep_id, mask_id = 0, 1, 2, 3, 4

    def __init__(self, vocab_size=5_000_000, continuation=()):
        self.vocab_size = vocab_size
        tab = np.ones(vocab_size, dtype=bool)
        tab[list(continuation)] = False
        self._word_start_table = tab


def se(p, n):
    """Standard error of a proportion p measured on n samples."""
    return np.sqrt(p * (1 - p) / n)


def numbered_documents(n_docs, rng, min_sent=1, max_sent=12, max_len=30, stride=10_000):
    """Pre-tokenized documents: document d holds ids d*stride + 5 + k, increasing through
    the document, so an id tells its document and its position."""
    docs = []
    for d in range(n_docs):
        k = d * stride + 5
        doc = []
        for _ in range(int(rng.integers(min_sent, max_sent + 1))):
            n = int(rng.integers(1, max_len + 1))
            doc.append(list(range(k, k + n)))
            k += n
        docs.append(doc)
    return docs


def original_ids(e):
    ids = e["input_ids"].astype(np.int64).copy()
    ids[e["masked_lm_positions"]] = e["masked_lm_labels"]
    return ids


@pytest.fixture(scope="module")
def corpus():
    return load_default_corpus(include_numpy=False)


@pytest.fixture(scope="module")
def tok(corpus):
    return Tokenizer.train(corpus[:600], 800)


# -- masking --------------------------------------------------------------------------
def test_ngram_probs():
    np.testing.assert_allclose(ngram_probs(3), [6 / 11, 3 / 11, 2 / 11])


def test_start_piece_rule():
    assert is_start_piece("\u2581the") and is_start_piece("<unk>") and is_start_piece(",")
    assert is_start_piece("9") and is_start_piece("é") and is_start_piece("Ab")
    assert not is_start_piece("ing") and not is_start_piece("s")


@given(T=st.integers(5, 512), seed=st.integers(0, 2**32 - 1), prob=st.sampled_from([0.15, 0.3, 0.05]))
def test_single_piece_words_fill_the_budget_exactly(T, seed, prob):
    ids = np.arange(100, 100 + T, dtype=np.int32)
    ids[0], ids[T // 2], ids[-1] = CLS, SEP, SEP
    fake = FakeTokenizer()
    out, pos, labels = mask_tokens(ids, np.random.default_rng(seed), fake._word_start_table, fake.vocab_size,
                                   MASK, (CLS, SEP), prob, 20, 3)
    budget = min(20, max(1, int(round(T * prob))))
    assert len(pos) == budget == len(set(pos.tolist()))        # n falls back to 1 when a span overshoots
    assert (np.diff(pos) > 0).all()
    assert not np.isin(pos, [0, T // 2, T - 1]).any()            # [CLS]/[SEP] never masked
    np.testing.assert_array_equal(labels, ids[pos])
    keep = np.ones(T, dtype=bool)
    keep[pos] = False
    np.testing.assert_array_equal(out[keep], ids[keep])         # nothing else changes


@pytest.mark.parametrize("T", [128, 13])
def test_ngram_lengths_follow_one_over_n(T):
    # The first span of a sequence is accepted whatever n is drawn (no overlap yet; at T=128
    # the budget of 19 fits a 3-gram, at T=13 the budget of 2 does not, so a drawn 3 must
    # fall back to a 2-gram as in the reference), so its drawn n is one fresh sample of
    # p(n) and its used length is min(n, words left from its start, budget) for a start
    # uniform over the W words.
    fake = FakeTokenizer()
    rng = np.random.default_rng(0)
    ids = np.arange(100, 100 + T, dtype=np.int32)
    ids[0], ids[T // 2], ids[-1] = CLS, SEP, SEP
    W, budget = T - 3, min(20, max(1, round(0.15 * T)))
    N = 12_000 if T == 128 else 6_000
    first = [mask_tokens(ids, rng, fake._word_start_table, fake.vocab_size, MASK, (CLS, SEP),
                         return_ngrams=True)[3][0] for _ in range(N)]
    drawn = np.bincount([f[0] for f in first], minlength=4)[1:] / N
    used = np.bincount([f[1] for f in first], minlength=4)[1:] / N
    p = ngram_probs(3)
    q = np.zeros(3)
    for idx in range(W):
        for n in (1, 2, 3):
            q[min(n, W - idx, budget) - 1] += p[n - 1] / W
    for want, got in ((p, drawn), (q, used)):
        for a, f in zip(want, got):
            assert abs(f - a) < 4 * se(a, N) + 1e-12, (got, want)


def test_whole_words_are_masked_together():
    # words of 1-3 pieces: a word's pieces are all masked or none
    rng = np.random.default_rng(1)
    cont = set(range(50_000, 100_000))                          # ids >= 50000 continue a word
    fake = FakeTokenizer(continuation=cont)
    for _ in range(300):
        pieces = [CLS]
        while len(pieces) < 120:
            pieces += [int(rng.integers(5, 50_000))] + [int(rng.integers(50_000, 100_000))
                                                        for _ in range(int(rng.integers(0, 3)))]
        ids = np.array(pieces[:120] + [SEP], dtype=np.int32)
        _, pos, _ = mask_tokens(ids, rng, fake._word_start_table, fake.vocab_size, MASK, (CLS, SEP))
        masked = np.zeros(len(ids), dtype=bool)
        masked[pos] = True
        word = np.cumsum(~np.isin(ids, list(cont)) | np.isin(ids, [CLS, SEP]))
        for w in np.unique(word[masked]):
            assert masked[word == w].all() or ids[word == w][0] in (CLS, SEP)
        assert len(pos) <= 18                                   # budget round(0.15 * 121) = 18


def test_a_word_never_continues_across_sep():
    # [CLS] w c [SEP] c w [SEP]: the "c" after [SEP] starts its own word (the reference would
    # glue it to "w c" before [SEP]). Budget round(0.15 * 7) = 1 fits only one-piece words.
    fake = FakeTokenizer(continuation=[600])
    ids = np.array([CLS, 500, 600, SEP, 600, 501, SEP], dtype=np.int32)
    seen = set()
    for seed in range(200):
        _, pos, _ = mask_tokens(ids, np.random.default_rng(seed), fake._word_start_table, fake.vocab_size,
                                MASK, (CLS, SEP))
        seen.update(pos.tolist())
    assert seen == {4, 5}


def test_replacements_80_10_10():
    fake = FakeTokenizer(vocab_size=1000)
    rng = np.random.default_rng(2)
    n_mask = n_keep = n_rand = 0
    rand_ids = []
    for _ in range(4000):
        ids = rng.integers(5, 1000, 128).astype(np.int32)
        ids[0], ids[60], ids[-1] = CLS, SEP, SEP
        out, pos, labels = mask_tokens(ids, rng, fake._word_start_table, 1000, MASK, (CLS, SEP))
        got = out[pos]
        n_mask += int((got == MASK).sum())
        n_keep += int((got == labels).sum())
        n_rand += int(((got != MASK) & (got != labels)).sum())
        rand_ids.append(got[(got != MASK) & (got != labels)])
    N = n_mask + n_keep + n_rand                                # 4000 * 19 = 76000 predictions
    # a random id equals [MASK] or the label with probability 1/V each: shift the targets
    p_mask, p_keep = 0.8 + 0.1 / 1000, 0.1 + 0.1 / 1000
    assert abs(n_mask / N - p_mask) < 4 * se(p_mask, N)
    assert abs(n_keep / N - p_keep) < 4 * se(p_keep, N)
    assert abs(n_rand / N - (1 - p_mask - p_keep)) < 4 * se(0.1, N)
    # the random id is uniform over the WHOLE vocabulary, specials included (as the reference):
    # ids 0-3 ([MASK]=4 is counted as masked) are 4 of the 998-999 possible values
    rand_ids = np.concatenate(rand_ids)
    n_r, p_low = len(rand_ids), 4 / 999
    assert abs((rand_ids < 4).mean() - p_low) < 4 * se(p_low, n_r), ((rand_ids < 4).sum(), n_r)
    assert abs((rand_ids >= 500).mean() - 0.5) < 4 * se(0.5, n_r)


# -- sentence pairs -------------------------------------------------------------------
@pytest.fixture(scope="module")
def numbered():
    return numbered_documents(400, np.random.default_rng(3))


def _segments(e):
    ids = original_ids(e)
    seps = np.flatnonzero(ids == SEP)
    return ids, seps


@pytest.mark.parametrize("task", ["sop", "nsp", "none"])
def test_structure_token_types_and_budget(numbered, task):
    fake = FakeTokenizer()
    ex = create_pretraining_examples(numbered, fake, max_seq_length=64, seed=0, sentence_task=task)
    assert len(ex) > 500
    for e in ex:
        ids, seps = _segments(e)
        T = len(ids)
        assert T <= 64 and ids[0] == CLS and ids[-1] == SEP
        assert len(seps) == (1 if task == "none" else 2)
        types = e["token_type_ids"]
        assert (types[:seps[0] + 1] == 0).all() and (types[seps[0] + 1:] == 1).all()
        assert seps[0] >= 2 and (task == "none" or seps[1] - seps[0] >= 2)   # A and B non-empty
        assert 1 <= len(e["masked_lm_positions"]) <= min(20, max(1, round(0.15 * T)))
        assert not np.isin(e["masked_lm_positions"], [0, *seps]).any()
        if task == "none":
            assert e["sentence_order_label"] == -100


def test_sop_labels_mean_swapped_and_are_balanced(numbered):
    fake = FakeTokenizer()
    # dupe_factor=10: N ≈ 8-11k labels, so 4 SE ≈ 0.02 (p = 0.45 would be 5+ SE off)
    ex = create_pretraining_examples(numbered, fake, max_seq_length=64, seed=1, sentence_task="sop",
                                     dupe_factor=10)
    labels = np.array([e["sentence_order_label"] for e in ex])
    for e in ex:
        ids, seps = _segments(e)
        a, b = ids[1:seps[0]], ids[seps[0] + 1:seps[1]]
        assert (a // 10_000 == b[0] // 10_000).all() and (b // 10_000 == a[0] // 10_000).all()  # one document
        if e["sentence_order_label"] == 0:
            assert a.max() < b.min()                            # A came first
        else:
            assert b.max() < a.min()                            # swapped
    N = len(labels)
    assert abs(labels.mean() - 0.5) < 4 * se(0.5, N), (labels.mean(), N)


def test_nsp_labels_mean_random_document_and_are_balanced(numbered):
    fake = FakeTokenizer()
    # dupe_factor=10: N ≈ 8-11k labels, so 4 SE ≈ 0.02 (p = 0.45 would be 5+ SE off)
    ex = create_pretraining_examples(numbered, fake, max_seq_length=64, seed=2, sentence_task="nsp",
                                     dupe_factor=10)
    labels = np.array([e["sentence_order_label"] for e in ex])
    for e in ex:
        ids, seps = _segments(e)
        a, b = ids[1:seps[0]], ids[seps[0] + 1:seps[1]]
        same_doc = a[0] // 10_000 == b[0] // 10_000
        assert same_doc == (e["sentence_order_label"] == 0)
        if same_doc:
            assert a.max() < b.min()                            # NSP never swaps
    N = len(labels)
    assert abs(labels.mean() - 0.5) < 4 * se(0.5, N), (labels.mean(), N)


def test_masked_fraction_matches_budget_on_real_text(tok, corpus):
    ex = create_pretraining_examples(corpus[:600], tok, 128, seed=0)
    budget = np.array([min(20, max(1, round(0.15 * len(e["input_ids"])))) for e in ex])
    got = np.array([len(e["masked_lm_positions"]) for e in ex])
    assert (got <= budget).all()
    # short of the budget only when every remaining word is longer than what is left
    assert (got == budget).mean() > 0.99 and got.sum() / budget.sum() > 0.99


def _docs_of_lengths(lengths, stride=10_000):
    """Pre-tokenized documents from sentence lengths (one list per document), numbered as
    numbered_documents; returns (docs, where) with where[id] = (doc, sentence, position)."""
    docs, where = [], {}
    for d, lens in enumerate(lengths):
        k, doc = d * stride + 5, []
        for j, n in enumerate(lens):
            doc.append(list(range(k, k + n)))
            where.update({k + i: (d, j, i) for i in range(n)})
            k += n
        docs.append(doc)
    return docs, where


def _in_order(e):
    """(first, second) segment in document order (undo an SOP swap)."""
    ids, seps = _segments(e)
    a, b = ids[1:seps[0]], ids[seps[0] + 1:seps[1]]
    return (b, a) if e["sentence_order_label"] == 1 else (a, b)


def test_truncation_cuts_the_longer_segment_front_or_back_half_the_time():
    # two sentences of 40-60 tokens: the chunk is both (a_end = 1), 80-120 tokens cut to 61,
    # so the cut at each end of A = sentence 0 and B = sentence 1 is known exactly
    rng = np.random.default_rng(5)
    lens = [[int(rng.integers(40, 61)), int(rng.integers(40, 61))] for _ in range(300)]
    docs, where = _docs_of_lengths(lens)
    ex = create_pretraining_examples(docs, FakeTokenizer(), 64, seed=3, short_seq_prob=0, dupe_factor=2)
    front = removed = 0
    for e in ex:
        a, b = _in_order(e)
        d = where[int(a[0])][0]
        assert len(a) + len(b) == 61 and abs(len(a) - len(b)) <= 1   # longer one cut first
        for seg, j in ((a, 0), (b, 1)):
            assert where[int(seg[0])][:2] == (d, j) == where[int(seg[-1])][:2]
            f, back = where[int(seg[0])][2], lens[d][j] - 1 - where[int(seg[-1])][2]
            front, removed = front + f, removed + f + back
    assert removed > 20_000
    assert abs(front / removed - 0.5) < 4 * se(0.5, removed), (front, removed)


def test_a_end_is_uniform_over_the_chunk():
    # five short sentences (<= 40 tokens in all < the target 61): the chunk is the whole
    # document and A is its first a_end sentences, a_end uniform on 1..4
    rng = np.random.default_rng(6)
    docs, where = _docs_of_lengths([[int(rng.integers(2, 9)) for _ in range(5)] for _ in range(1000)], 1000)
    ex = create_pretraining_examples(docs, FakeTokenizer(), 64, seed=4, short_seq_prob=0, dupe_factor=3)
    a_end = np.array([where[int(_in_order(e)[0][-1])][1] + 1 for e in ex])
    assert len(ex) == 3000 and set(a_end.tolist()) == {1, 2, 3, 4}
    for k in (1, 2, 3, 4):
        assert abs((a_end == k).mean() - 0.25) < 4 * se(0.25, len(ex))


def test_short_seq_prob_draws_a_uniform_shorter_target():
    # As the reference, the target length is drawn once per document (per pass): 61 with
    # p 0.9, else randint(2, 61). With one-token sentences a chunk stops exactly at the
    # target, so a document's first example (never its last: 70 tokens > 61) is the target.
    docs, where = _docs_of_lengths([[1] * 70] * 600, stride=1000)
    ex = create_pretraining_examples(docs, FakeTokenizer(), 64, seed=5, dupe_factor=4, shuffle=False)
    targets, prev = [], None
    for e in ex:
        a, b = _in_order(e)
        assert b[0] == a[-1] + 1                                # consecutive, never truncated
        if where[int(a[0])][0] != prev:                         # first example of a (pass, document)
            targets.append(len(a) + len(b))
        prev = where[int(a[0])][0]
    targets = np.array(targets)
    N, p_short = len(targets), 0.1 * 59 / 60                    # randint(2, 61) < 61
    assert N == 2400 and targets.max() == 61 and targets.min() >= 2
    assert abs((targets < 61).mean() - p_short) < 4 * se(p_short, N), ((targets < 61).mean(), N)
    short = targets[targets < 61]
    assert abs(short.mean() - 31) < 4 * np.sqrt((59 ** 2 - 1) / 12 / len(short))   # uniform on 2..60


def test_nsp_random_b_starts_at_a_uniform_sentence():
    # NSP negatives: B is read from a random other document from a uniformly drawn sentence
    rng = np.random.default_rng(7)
    docs, where = _docs_of_lengths([[int(rng.integers(2, 6)) for _ in range(10)] for _ in range(300)])
    ex = create_pretraining_examples(docs, FakeTokenizer(), 256, seed=6, sentence_task="nsp", dupe_factor=6)
    starts = []
    for e in ex:
        ids, seps = _segments(e)
        a, b = ids[1:seps[0]], ids[seps[0] + 1:seps[1]]
        if e["sentence_order_label"] == 1:
            d, j, i = where[int(b[0])]
            assert i == 0 and where[int(a[0])][0] != d          # whole sentences of another document
            starts.append(j)
    starts = np.array(starts)
    N = len(starts)
    assert N > 1000
    for j in (0, 9):
        assert abs((starts == j).mean() - 0.1) < 4 * se(0.1, N), (np.bincount(starts), N)
    assert abs(starts.mean() - 4.5) < 4 * np.sqrt(99 / 12 / N)   # uniform on 0..9: variance 99/12


def test_one_sentence_quirk_flag():
    fake = FakeTokenizer()
    docs = numbered_documents(300, np.random.default_rng(4), min_sent=1, max_sent=1)
    faithful = create_pretraining_examples(docs, fake, 64, seed=0, one_sentence_random_b=True)
    ours = create_pretraining_examples(docs, fake, 64, seed=0)
    # reference: every one-sentence chunk is paired with another document, label 1
    for e in faithful:
        ids, seps = _segments(e)
        assert e["sentence_order_label"] == 1 and ids[1] // 10_000 != ids[seps[0] + 1] // 10_000
    # default: the sentence is split into A and B, kept SOP (both labels, one document)
    labels = [e["sentence_order_label"] for e in ours]
    assert 0 < np.mean(labels) < 1
    for e in ours:
        ids, seps = _segments(e)
        assert ids[1] // 10_000 == ids[seps[0] + 1] // 10_000


def test_same_seed_same_examples_different_seed_different(numbered, tok, corpus):
    fake = FakeTokenizer()
    a = create_pretraining_examples(numbered, fake, 64, seed=5)
    b = create_pretraining_examples(numbered, fake, 64, seed=5)
    c = create_pretraining_examples(numbered, fake, 64, seed=6)
    key = lambda ex: [(e["input_ids"].tolist(), e["masked_lm_positions"].tolist(), e["sentence_order_label"])
                      for e in ex]
    assert key(a) == key(b) and key(a) != key(c)
    t1 = create_pretraining_examples(corpus[:50], tok, 128, seed=0)
    t2 = create_pretraining_examples(corpus[:50], tok, 128, seed=0)
    assert key(t1) == key(t2)


def test_dupe_factor_passes_make_fresh_choices(numbered):
    # each pass over the corpus draws new targets, splits, swaps and masks (the reference's
    # dupe_factor), so repeated passes do not repeat examples
    fake = FakeTokenizer()
    one = create_pretraining_examples(numbered, fake, 64, seed=0)
    three = create_pretraining_examples(numbered, fake, 64, seed=0, dupe_factor=3)
    keys = [(tuple(e["input_ids"].tolist()), tuple(e["masked_lm_positions"].tolist())) for e in three]
    assert 2.5 * len(one) < len(three) < 3.5 * len(one)
    assert len(set(keys)) > 0.99 * len(keys)


def test_messy_documents(tok):
    docs = [[], ["", "   "], ["Une phrase très accentuée — 日本語のテキスト."], ["one"],
            ["First sentence here.", "", "Second sentence, after an empty line.", "Third one!"],
            ["x" * 5000]]
    for task in ("sop", "nsp", "none"):
        for quirk in (False, True):
            ex = create_pretraining_examples(docs, tok, 32, seed=0, sentence_task=task,
                                             one_sentence_random_b=quirk, dupe_factor=3)
            assert ex and all(len(e["input_ids"]) <= 32 for e in ex)
            assert all((e["input_ids"] < tok.vocab_size).all() for e in ex)


def test_bad_arguments(tok):
    docs = [["a b c.", "d e f."]]
    with pytest.raises(ValueError, match="empty"):
        create_pretraining_examples([], tok)
    with pytest.raises(ValueError, match="empty"):
        create_pretraining_examples([[], ["", " "]], tok)
    with pytest.raises(ValueError, match="max_seq_length"):
        create_pretraining_examples(docs, tok, max_seq_length=4)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        create_pretraining_examples(docs, tok, max_seq_length=1024, max_position_embeddings=512)
    with pytest.raises(ValueError, match="sentence_task"):
        create_pretraining_examples(docs, tok, sentence_task="mlm")
    with pytest.raises(ValueError, match="documents"):
        create_pretraining_examples(["a plain string"], tok)


# -- batches --------------------------------------------------------------------------
def test_collate_and_iterate_batches(tok, corpus):
    ex = create_pretraining_examples(corpus[:80], tok, 64, seed=0)
    batches = list(iterate_batches(ex, 16, seed=0, max_seq_length=64, max_predictions_per_seq=20))
    assert sum(len(b["input_ids"]) for b in batches) == len(ex)
    b = batches[0]
    assert b["input_ids"].shape == b["labels"].shape == b["attention_mask"].shape == (16, 64)
    assert b["masked_lm_positions"].shape == (16, 20)
    for r in range(16):
        n = int(b["attention_mask"][r].sum())
        k = int(b["masked_lm_weights"][r].sum())
        lab = b["labels"][r]
        np.testing.assert_array_equal(np.flatnonzero(lab != -100), b["masked_lm_positions"][r, :k])
        np.testing.assert_array_equal(lab[lab != -100], b["masked_lm_ids"][r, :k])
        assert (b["input_ids"][r, n:] == tok.pad_id).all() and b["input_ids"][r, n - 1] == tok.sep_id
    again = list(iterate_batches(ex, 16, seed=0, max_seq_length=64, max_predictions_per_seq=20))
    assert all((x["input_ids"] == y["input_ids"]).all() for x, y in zip(batches, again))
    other = next(iterate_batches(ex, 16, seed=1, max_seq_length=64))
    assert not (other["input_ids"] == b["input_ids"]).all()
    np.testing.assert_array_equal(collate(ex[:3])["input_ids"].shape, (3, max(len(e["input_ids"]) for e in ex[:3])))


# -- shards ---------------------------------------------------------------------------
def _shard_arrays(d):
    return [dict(np.load(os.path.join(d, s["file"]))) for s in read_manifest(d)["shards"]]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tok, corpus):
    d = tmp_path_factory.mktemp("shards") / "a"
    build_shards(corpus[:300], tok, d, max_seq_length=64, seed=0, docs_per_shard=70, num_workers=1)
    return d


def test_shards_same_seed_identical_any_workers_different_seed_differs(built, tok, corpus, tmp_path):
    build_shards(corpus[:300], tok, tmp_path / "b", max_seq_length=64, seed=0, docs_per_shard=70, num_workers=2)
    build_shards(corpus[:300], tok, tmp_path / "c", max_seq_length=64, seed=1, docs_per_shard=70, num_workers=1)
    a, b, c = _shard_arrays(built), _shard_arrays(tmp_path / "b"), _shard_arrays(tmp_path / "c")
    assert len(a) == len(b) == 5
    # byte-identical files, whatever the number of workers; the manifests differ only in the timing
    files = sorted(f.name for f in built.glob("shard-*.npz"))
    assert len(files) == 5 and all((built / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)
    assert not any((built / f).read_bytes() == (tmp_path / "c" / f).read_bytes() for f in files)
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (built, tmp_path / "b"))
    ma.pop("build_seconds"), mb.pop("build_seconds")
    assert ma == mb
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x)
    assert any(x["input_ids"].shape != z["input_ids"].shape or (x["input_ids"] != z["input_ids"]).any()
               for x, z in zip(a, c))
    m = read_manifest(built)
    assert m["seed"] == 0 and m["tokenizer"]["hash"] == tok.content_hash
    assert m["config"]["max_seq_length"] == 64 and m["num_examples"] == sum(len(x["lengths"]) for x in a)
    assert not [f for f in os.listdir(built) if ".tmp" in f]


def test_loader_streams_every_example_once_per_epoch(built):
    m = read_manifest(built)
    L = ShardLoader(built, batch_size=32, seed=3, epochs=2)
    assert len(L) == -(-m["num_examples"] // 32)
    rows = [r.tobytes() for b in L for r in np.concatenate([b["input_ids"], b["labels"]], 1)]
    assert len(rows) == 2 * m["num_examples"]
    first, second = rows[:m["num_examples"]], rows[m["num_examples"]:]
    assert sorted(first) == sorted(second) and first != second   # same examples, new order
    assert len(set(first)) > 0.99 * len(first)
    # rows are shuffled within a shard too (not only the shard order); shuffle=False reads in order
    arrays = _shard_arrays(built)
    s0 = int(L._shard_order(0)[0])
    b = next(iter(ShardLoader(built, batch_size=32, seed=3, epochs=1)))
    assert not (b["input_ids"] == arrays[s0]["input_ids"][:32]).all()
    np.testing.assert_array_equal(sorted(map(bytes, b["input_ids"].astype(np.int32))),
                                  sorted(map(bytes, arrays[s0]["input_ids"][L._row_order(0, s0)[:32]])))
    b = next(iter(ShardLoader(built, batch_size=32, shuffle=False, epochs=1)))
    np.testing.assert_array_equal(b["input_ids"], arrays[0]["input_ids"][:32])


def test_loader_holds_one_shard_at_a_time(built, monkeypatch):
    # streaming: each shard is read once per epoch, in the epoch's shard order, and the
    # previous one is dropped before the next is read (a corpus larger than memory works)
    L = ShardLoader(built, batch_size=16, seed=3, epochs=2)
    loads, real = [], L._load

    def load(s):
        assert L._cache is None                                 # nothing else held
        loads.append(s)
        return real(s)

    monkeypatch.setattr(L, "_load", load)
    n = sum(len(b["input_ids"]) for b in L)
    assert n == 2 * L.num_examples
    assert loads == L._shard_order(0).tolist() + L._shard_order(1).tolist()
    assert loads[:5] != list(range(5)) or loads[5:] != list(range(5))   # shard order is shuffled


def test_loader_resumes_on_exactly_the_next_batch(built):
    L = ShardLoader(built, batch_size=24, seed=7)                   # epochs=None: forever
    for _ in range(37):                                             # crosses shard boundaries
        next(L)
    state = json.loads(json.dumps(L.state_dict()))                  # checkpoints store it as JSON
    want = [next(L) for _ in range(5)]
    R = ShardLoader(built, batch_size=24, seed=7)
    R.load_state_dict(state)
    got = [next(R) for _ in range(5)]
    for w, g in zip(want, got):
        assert w.keys() == g.keys() and all((w[k] == g[k]).all() for k in w)
    with pytest.raises(ValueError, match="seed"):
        ShardLoader(built, batch_size=24, seed=8).load_state_dict(state)


def test_example_loader_matches_collate(tok, corpus):
    ex = create_pretraining_examples(corpus[:60], tok, 64, seed=0)
    L = ExampleLoader(ex, 8, shuffle=False, epochs=1, max_seq_length=64, max_predictions_per_seq=20)
    want = collate(ex[:8], 64, 20)
    got = next(L)
    assert want.keys() == got.keys() and all((want[k] == got[k]).all() for k in want)


def test_interrupted_build_never_looks_complete(tok, corpus, tmp_path, monkeypatch):
    d = tmp_path / "x"
    calls = {"n": 0}
    real = shards_mod._build_one

    def dying(task):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(shards_mod, "_build_one", dying)
    with pytest.raises(KeyboardInterrupt):
        build_shards(corpus[:300], tok, d, max_seq_length=64, docs_per_shard=70, num_workers=1)
    assert (d / "shard-00000.npz").exists() and not (d / "manifest.json").exists()
    with pytest.raises(ValueError, match="incomplete"):
        ShardLoader(d, batch_size=4)
    monkeypatch.setattr(shards_mod, "_build_one", real)
    build_shards(corpus[:300], tok, d, max_seq_length=64, docs_per_shard=70, num_workers=1)
    assert ShardLoader(d, batch_size=4).num_examples > 0
    with pytest.raises(FileExistsError, match="overwrite"):
        build_shards(corpus[:300], tok, d, max_seq_length=64, docs_per_shard=70, num_workers=1)
    with pytest.raises(ValueError, match="hash"):
        ShardLoader(d, batch_size=4, tokenizer=Tokenizer.train(corpus[:50], 300))


_KILLED_BUILD = """
import sys, time
import numpy as np
from minialbert import Tokenizer
from minialbert.data import build_shards, load_default_corpus
real = np.savez
def savez(f, **arrays):                      # shard 2 hangs half-written, as if killed mid-write
    if "shard-00002" in f.name:
        f.write(b"PK\\x03\\x04 half a zip")
        f.flush()
        time.sleep(120)
    return real(f, **arrays)
np.savez = savez
tok = Tokenizer(sys.argv[2])
build_shards(load_default_corpus(include_numpy=False)[:300], tok, sys.argv[1], max_seq_length=64,
             docs_per_shard=70, num_workers=2)
"""


def test_killed_build_never_looks_complete_and_reruns(tok, corpus, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    d = tmp_path / "killed"
    tok.save(tmp_path / "sp.model")
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(d), str(tmp_path / "sp.model")],
                            start_new_session=True, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while not list(d.glob("*shard-00002*")) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert list(d.glob(".shard-00002.npz.tmp*")), proc.stderr.read() if proc.poll() is not None else "timeout"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)                     # the build and its worker processes
        proc.wait()
    names = sorted(os.listdir(d))
    assert "manifest.json" not in names and "shard-00002.npz" not in names
    for f in names:                                             # whatever has a shard's name is whole
        if f.startswith("shard-"):
            with np.load(d / f) as z:
                assert set(z.files) == set(shards_mod.ARRAY_KEYS)
    with pytest.raises(ValueError, match="incomplete"):
        ShardLoader(d, batch_size=4)
    m = build_shards(corpus[:300], tok, d, max_seq_length=64, docs_per_shard=70, num_workers=1)
    assert sorted(os.listdir(d)) == ["manifest.json"] + [f"shard-{k:05d}.npz" for k in range(5)]
    assert ShardLoader(d, batch_size=4).num_examples == m["num_examples"] > 0


def test_damaged_shard_is_refused_by_name(tok, corpus, tmp_path):
    d = tmp_path / "dmg"
    build_shards(corpus[:150], tok, d, max_seq_length=64, docs_per_shard=70, num_workers=1)
    f = d / "shard-00001.npz"
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2])                        # cut short after the build
    with pytest.raises(ValueError, match=r"shard-00001\.npz is \d+ bytes, the manifest says"):
        ShardLoader(d, batch_size=4)
    f.write_bytes(data[:-64] + bytes(64))                       # same size, garbage at the end
    L = ShardLoader(d, batch_size=4, shuffle=False, epochs=1)
    with pytest.raises(ValueError, match=r"shard-00001\.npz cannot be read"):
        list(L)


_DYING_WORKER = """
import os, sys
from minialbert import Tokenizer
from minialbert.data import build_shards, load_default_corpus
from minialbert.data import shards
def die(task):                               # a worker killed mid-build (e.g. out of memory)
    if task[0] == 2:
        os._exit(9)
    return real(task)
real, shards._build_one = shards._build_one, die
try:
    build_shards(load_default_corpus(include_numpy=False)[:300], Tokenizer(sys.argv[2]), sys.argv[1],
                 max_seq_length=64, docs_per_shard=70, num_workers=2)
except Exception as e:
    print("raised", type(e).__name__)
"""


def test_dying_worker_raises_instead_of_hanging(tok, tmp_path):
    import subprocess
    import sys
    tok.save(tmp_path / "sp.model")
    d = tmp_path / "died"
    r = subprocess.run([sys.executable, "-c", _DYING_WORKER, str(d), str(tmp_path / "sp.model")],
                       capture_output=True, text=True, timeout=120)
    assert "raised BrokenProcessPool" in r.stdout, (r.stdout, r.stderr[-2000:])
    assert not (d / "manifest.json").exists()


def test_worker_error_leaves_no_manifest(tok, corpus, tmp_path):
    docs = corpus[:200] + [["fine text", "broken \udcff text"]]  # undecodable: fails in a worker process
    with pytest.raises(ValueError, match="surrogate"):
        build_shards(docs, tok, tmp_path / "w", max_seq_length=64, docs_per_shard=40, num_workers=2)
    assert not (tmp_path / "w" / "manifest.json").exists()
    with pytest.raises(ValueError, match="empty"):
        build_shards([[], ["", "  "]], tok, tmp_path / "e", num_workers=1)
    with pytest.raises(ValueError, match="max_seq_length"):
        build_shards(corpus[:10], tok, tmp_path / "e", max_seq_length=600, max_position_embeddings=512)


# -- corpora --------------------------------------------------------------------------
def test_default_corpus_is_deterministic_and_clean(corpus):
    again = load_default_corpus(include_numpy=False, cache=False)
    assert again == corpus
    assert len(corpus) > 500 and sum(len(s) for d in corpus for s in d) > 500_000
    assert all(d and all(isinstance(s, str) and s.strip() for s in d) for d in corpus)
    assert not any(s.lstrip().startswith(">>>") for d in corpus for s in d)


def test_split_sentences_rule():
    text = """First sentence, e.g. with an abbreviation. Second one? Third 3.14 stays!
    Still the third paragraph line.

    >>> code()
    output

    Section
    -------
    Last paragraph"""
    assert split_sentences(text) == [
        "First sentence, e.g. with an abbreviation.", "Second one?",
        "Third 3.14 stays!", "Still the third paragraph line.", "Last paragraph"]


def test_text_corpus_modes_and_bad_utf8(tmp_path):
    (tmp_path / "a.txt").write_text("s1\ns2\n\n\ns3\n  \ns4 with   spaces\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("One. Two here.\nThree", encoding="utf-8")
    assert load_text_corpus(tmp_path / "a.txt") == [["s1", "s2"], ["s3"], ["s4 with spaces"]]
    assert load_text_corpus(tmp_path, mode="file") == [["s1", "s2", "s3", "s4 with spaces"],
                                                       ["One. Two here.", "Three"]]
    assert load_text_corpus(tmp_path / "b.txt", split="sentences") == [["One.", "Two here.", "Three"]]
    (tmp_path / "c.txt").write_bytes("héllo\n".encode() + b"\xc3\x28 bad")
    with pytest.raises(ValueError, match=r"c\.txt: not valid UTF-8 at byte offset 7"):
        load_text_corpus(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_text_corpus(tmp_path / "nope")


# -- CLI ------------------------------------------------------------------------------
def test_cli_train_build_inspect(tmp_path, capsys):
    src = tmp_path / "text"
    src.mkdir()
    lines = [f"Sentence number {i} talks about topic {i % 7} and more words." for i in range(400)]
    (src / "t.txt").write_text("\n\n".join("\n".join(lines[i:i + 5]) for i in range(0, 400, 5)), encoding="utf-8")
    assert cli_main(["tokenizer", "train", "-i", str(src), "-V", "80", "-o", str(tmp_path / "sp")]) == 0
    assert "reading" in capsys.readouterr().err                     # progress bar
    out = tmp_path / "data"
    args = ["data", "build", "-i", str(src), "-t", str(tmp_path / "sp.model"), "-o", str(out),
            "--max-seq-length", "32", "--docs-per-shard", "30", "-j", "1"]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert "building shards" in err and "3/3" in err                # progress bar over the shards
    args += ["-q"]
    assert len(read_manifest(out)["shards"]) == 3
    assert cli_main(args) == 1                                      # exists: needs --overwrite
    assert "overwrite" in capsys.readouterr().err
    assert cli_main(["data", "inspect", str(out), "-t", str(tmp_path / "sp.model"), "-n", "1"]) == 0
    assert "[CLS]" in capsys.readouterr().out
    assert cli_main(args[:-1] + ["--max-seq-length", "4", "--overwrite"]) == 1
    assert "max_seq_length" in capsys.readouterr().err


def test_cli_build_on_embedded_corpus_feeds_the_model(tmp_path, capsys):
    # issue 4's "done when": `minialbert data build` on the embedded corpus, the loader streams
    # its shards, and a batch's model keys go straight into AlbertForPreTraining
    from minialbert import AlbertConfig, AlbertForPreTraining
    out = tmp_path / "embedded"
    assert cli_main(["data", "build", "--no-numpy", "--vocab-size", "1000", "-o", str(out), "-q", "-j", "2"]) == 0
    tok = Tokenizer(out / "spiece.model")
    m = read_manifest(out)
    assert tok.vocab_size == 1000 and len(m["shards"]) >= 2 and m["num_examples"] > 3000
    L = ShardLoader(out, batch_size=4, seed=0, tokenizer=tok)
    b = next(L)
    keys = ("input_ids", "token_type_ids", "attention_mask", "labels", "sentence_order_label")
    assert b["input_ids"].shape == (4, 128) and (b["input_ids"] < tok.vocab_size).all()
    model = AlbertForPreTraining(AlbertConfig.from_preset("tiny", vocab_size=tok.vocab_size))
    res = model.forward(**{k: b[k] for k in keys})
    # an untrained model: MLM loss near log V, SOP loss near log 2
    assert abs(float(res.mlm_loss) - np.log(1000)) < 1.0 and abs(float(res.sop_loss) - np.log(2)) < 0.5


def test_cli_bad_input_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.txt").write_bytes(b"ok line\n\xff\xfe bad\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "e.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "s.txt").write_text("just a few words here.\nand more.\n", encoding="utf-8")
    cases = [(["tokenizer", "train", "-i", str(tmp_path / "bad")], r"x\.txt: not valid UTF-8 at byte offset 8"),
             (["data", "build", "-i", str(tmp_path / "bad")], r"x\.txt: not valid UTF-8 at byte offset 8"),
             (["tokenizer", "train", "-i", str(tmp_path / "empty")], "empty"),
             (["data", "build", "-i", str(tmp_path / "empty")], "empty"),
             (["tokenizer", "train", "-i", str(tmp_path / "small")], r"too large for this corpus.*vocab_size <= \d+"),
             (["data", "build", "-i", str(tmp_path / "small"), "--max-seq-length", "600",
               "--max-position-embeddings", "512"], "max_position_embeddings=512")]
    for argv, msg in cases:
        out = ["-o", str(tmp_path / "out")] if argv[0] == "data" else ["-o", str(tmp_path / "sp")]
        assert cli_main(argv + out + ["-q"]) == 1, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("minialbert ") and "error:" in err and "Traceback" not in err
        assert re.search(msg, err), (argv, err)
    assert not (tmp_path / "out" / "manifest.json").exists()


def _subparser(*names):
    import argparse
    from minialbert.cli import build_parser
    p = build_parser()
    for name in names:
        p = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return p


@pytest.mark.parametrize("command", [("data", "build"), ("tokenizer", "train")])
def test_cli_help_explains_every_option_and_its_default(command, capsys):
    parser = _subparser(*command)
    with pytest.raises(SystemExit):
        cli_main([*command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert len(options) >= (20 if command[0] == "data" else 7)
    for a in options:
        item = parser._get_formatter()._expand_help(a)       # this option's help as --help prints it
        assert " ".join(item.split()) in text
        assert len(item.split()) >= 5, (a.option_strings, item)  # an explanation, not just the flag
        assert "default" in item.lower() or "(required)" in item, item
        assert "(default: None)" not in item and "(default: False)" not in item, item
    if command[0] == "data":
        assert "(default: 128)" in text and "(default: sop)" in text and "(default: 20)" in text
    else:
        assert "(default: 8000)" in text and "(default: spiece.model)" in text
