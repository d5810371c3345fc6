# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 7. Pretraining data: SOP and NSP pairs, whole-word n-gram masking
#
# ALBERT learns from two tasks on unlabelled text. **Masked language modelling**: hide
# about 15% of the tokens, in spans of whole words up to 3 words long, and predict them.
# **Sentence-order prediction (SOP)**: given two consecutive segments A and B of one
# document, say whether they are in order or swapped. SOP replaces BERT's *next-sentence
# prediction* (NSP: is B the continuation of A, or from a random document?), which the
# paper found too easy: a random document usually differs in topic, so NSP can be solved
# without learning coherence.
#
# We make examples from the embedded corpus with the library, look at SOP and NSP pairs,
# write the masking by hand, check its statistics, and end by checking that it produces
# exactly the library's masks.

# %%
# Scale: sequence length and how many documents to use (None = the whole embedded corpus).
MAX_SEQ_LENGTH = 64
N_DOCS = None
VOCAB_SIZE = 2000

import collections

import matplotlib.pyplot as plt
import numpy as np

from minialbert import Tokenizer
from minialbert.data import (collate, create_pretraining_examples, load_default_corpus,
                             mask_tokens, word_start_table)

docs = load_default_corpus(include_numpy=False)[:N_DOCS]
tok = Tokenizer.train([s for d in docs for s in d], vocab_size=VOCAB_SIZE)
print(f"{len(docs)} documents, {tok}")


def show(ex, width=110):
    """Decode an example: A | B, with the label."""
    ids, types = ex["input_ids"], ex["token_type_ids"]
    a = tok.decode(ids[(types == 0)], skip_special_tokens=False)
    b = tok.decode(ids[(types == 1)], skip_special_tokens=False)
    print(f"label {ex['sentence_order_label']}\n  A: {a[:width]}\n  B: {b[:width]}")


# %% [markdown]
# ## SOP and NSP pairs on real text
#
# An example is `[CLS] A [SEP] B [SEP]`, where A and B are runs of whole sentences filling
# up to `MAX_SEQ_LENGTH` tokens. SOP: B follows A in the document; with probability 1/2
# they are swapped (label 1). NSP: with probability 1/2, B comes from another document
# (label 1).

# %%
sop = create_pretraining_examples(docs, tok, max_seq_length=MAX_SEQ_LENGTH, seed=0,
                                  sentence_task="sop", masked_lm_prob=0.0)
nsp = create_pretraining_examples(docs, tok, max_seq_length=MAX_SEQ_LENGTH, seed=0,
                                  sentence_task="nsp", masked_lm_prob=0.0)
print(f"SOP: {len(sop)} examples, {np.mean([e['sentence_order_label'] for e in sop]):.3f} swapped")
print(f"NSP: {len(nsp)} examples, {np.mean([e['sentence_order_label'] for e in nsp]):.3f} random B")
print("\n-- SOP, in order --"); show(next(e for e in sop if e["sentence_order_label"] == 0))
print("-- SOP, swapped --"); show(next(e for e in sop if e["sentence_order_label"] == 1))
print("-- NSP, random document --"); show(next(e for e in nsp if e["sentence_order_label"] == 1))

# %% [markdown]
# ## Whole-word n-gram masking, by hand
#
# The recipe of ALBERT's `create_pretraining_data.py`, with every random draw from one
# seeded generator:
#
# 1. Words: a piece starts a word if it begins with `▁` (or is punctuation, or follows
#    `[CLS]`/`[SEP]`); `[CLS]` and `[SEP]` are never masked.
# 2. Budget: `min(max_predictions, max(1, round(0.15 T)))` tokens.
# 3. Visit the words in random order; at each, draw a span length n ∈ {1, 2, 3} with
#    $p(n) \propto 1/n$ (6/11, 3/11, 2/11); shorten it while it would overshoot the
#    budget; skip it if it overlaps a span already chosen.
# 4. Each chosen token becomes `[MASK]` with probability 0.8, stays itself with 0.1,
#    becomes a random token with 0.1. The labels are the original ids.

# %%
START = word_start_table(tok)                          # (V,) bool: piece starts a word
P_N = np.array([1, 1 / 2, 1 / 3]) / sum([1, 1 / 2, 1 / 3])


def my_mask(ids, rng, prob=0.15, max_pred=20):
    special = np.isin(ids, (tok.cls_id, tok.sep_id))
    starts = START[ids].copy()
    starts[1:] |= special[:-1]                         # a word never continues past [SEP]
    cand = np.flatnonzero(~special)                    # maskable positions
    ws = np.flatnonzero(starts[cand])                  # word w = cand[ws[w]:we[w]]
    we = np.append(ws[1:], len(cand))
    budget = min(max_pred, max(1, round(prob * len(ids))))
    order = rng.permutation(len(ws))
    n_drawn = np.minimum(np.searchsorted(np.cumsum(P_N), rng.random(len(ws)), side="right"), 2) + 1
    covered, spans, count = np.zeros(len(ids), bool), [], 0
    for w, n in zip(order, n_drawn):
        if count >= budget:
            break
        while True:                                    # shorten while over budget
            last = min(w + n, len(ws)) - 1
            k = we[last] - ws[w]
            if count + k <= budget or n == 1:
                break
            n -= 1
        pos = cand[ws[w]:we[last]]
        if count + k > budget or covered[pos].any():
            continue
        covered[pos] = True
        spans.append((pos, int(last - w + 1)))
        count += k
    positions = np.sort(np.concatenate([p for p, _ in spans])) if spans else np.zeros(0, int)
    labels = ids[positions]
    u_mask, u_keep = rng.random(len(positions)), rng.random(len(positions))
    rand = rng.integers(0, tok.vocab_size, len(positions))
    out = ids.copy()
    out[positions] = np.where(u_mask < 0.8, tok.mask_id, np.where(u_keep < 0.5, labels, rand))
    return out, positions, labels, [n for _, n in spans]


ex = sop[3]
masked, pos, labels, ngrams = my_mask(ex["input_ids"], np.random.default_rng(1))
pieces = tok.id_to_piece(ex["input_ids"])
print(" ".join(f"[{p}]" if i in set(pos.tolist()) else p for i, p in enumerate(pieces)))
print("n-grams:", ngrams, "| masked tokens:", len(pos), "of", len(pieces))
print("model input:", tok.decode(masked, skip_special_tokens=False))

# %% [markdown]
# ## Its statistics
#
# Over every example: the masked fraction against the budget, the span lengths against
# 6/11, 3/11, 2/11, and the 80/10/10 split. With tens of thousands of draws, the standard
# error of a proportion near 0.5 is about 0.003: the tolerances below are a few of those.

# %%
rng = np.random.default_rng(0)
frac, n_count, kinds = [], collections.Counter(), collections.Counter()
for e in sop:
    ids = e["input_ids"]
    out, pos, lab, ng = my_mask(ids, rng)
    frac.append(len(pos) / len(ids))
    n_count.update(ng)
    kinds.update(np.where(out[pos] == tok.mask_id, "[MASK]",
                          np.where(out[pos] == lab, "kept", "random")).tolist())

fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(12, 3.2))
a1.hist(frac, bins=30); a1.axvline(0.15, color="C3", ls="--", label="0.15")
a1.set_title("masked fraction per example"); a1.legend()
ns = np.array([1, 2, 3]); seen = np.array([n_count[n] for n in ns]) / sum(n_count.values())
a2.bar(ns - 0.2, seen, 0.4, label="spans used here"); a2.bar(ns + 0.2, P_N, 0.4, label="1/n law")
a2.set_xticks(ns); a2.set_title("span length n (words)"); a2.legend()
tot = sum(kinds.values())
a3.bar(["[MASK]", "kept", "random"], [kinds[k] / tot for k in ("[MASK]", "kept", "random")])
a3.set_title("what a chosen token becomes")
plt.tight_layout(); plt.show()
print({n: round(float(s), 4) for n, s in zip(ns.tolist(), seen)}, {k: round(v / tot, 4) for k, v in kinds.items()})

# %% [markdown]
# Used spans are a little shorter than drawn ones (a span is shortened near the budget and
# at the end of the sequence), so the used lengths lean towards 1 compared with 6/11, 3/11,
# 2/11. The replacement split follows the 80/10/10 law (within the sampling error).

# %%
assert abs(kinds["[MASK]"] / tot - 0.8) < 0.02 and abs(kinds["kept"] / tot - 0.1) < 0.015
assert seen[0] > P_N[0] - 0.02 and seen[2] < P_N[2] + 0.02

# %% [markdown]
# ## Batches
#
# `collate` pads examples into arrays: `labels` holds the original id at masked positions
# and -100 elsewhere (what the model's loss ignores).

# %%
examples = create_pretraining_examples(docs, tok, max_seq_length=MAX_SEQ_LENGTH, seed=0)
batch = collate(examples[:4], max_seq_length=MAX_SEQ_LENGTH)
for k, v in batch.items():
    print(f"{k:22s} {v.dtype} {v.shape}")
lengths = [len(e["input_ids"]) for e in examples]
print(f"{len(examples)} examples; lengths: mean {np.mean(lengths):.1f}, "
      f"{np.mean(np.array(lengths) < MAX_SEQ_LENGTH - 8):.2f} shorter than T - 8")

# %% [markdown]
# ## Check: our masking is the library's
#
# Same seed, same draws in the same order: the hand-written masking must give exactly the
# library's `mask_tokens` output, positions, labels and n-gram lengths.

# %%
for i, e in enumerate(sop[:300]):
    ids = e["input_ids"]
    mine = my_mask(ids, np.random.default_rng(i))
    lib = mask_tokens(ids, np.random.default_rng(i), START, tok.vocab_size, tok.mask_id,
                      (tok.cls_id, tok.sep_id), 0.15, 20, 3, return_ngrams=True)
    for a, b in zip(mine[:3], lib[:3]):
        np.testing.assert_array_equal(a, b)
    assert mine[3] == [used for _, used in lib[3]]
print("hand-written n-gram masking == minialbert.data.mask_tokens on 300 examples")
