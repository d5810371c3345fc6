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
# # 2. Tokenization: SentencePiece unigram with ALBERT's ids, and Viterbi by hand
#
# ALBERT reads text as pieces from a SentencePiece **unigram** model: a vocabulary of V
# pieces, each with a log-probability. A text is cut into the sequence of pieces with the
# highest total log-probability, found by dynamic programming (Viterbi). We train a small
# model with ALBERT's special ids on the embedded corpus, write the segmentation by hand,
# and check that it reproduces SentencePiece's on held-out text.
#
# (No gradient in this notebook: tokenization is not learned by backpropagation.)

# %%
# Scale: the vocabulary size V of the tokenizer we train (ALBERT uses 30000).
VOCAB_SIZE = 2000
N_CHECK = 1000          # held-out sentences on which our segmentation must match

import collections
import re
import time

import matplotlib.pyplot as plt
import numpy as np

from minialbert import Tokenizer
from minialbert.data import load_default_corpus
from minialbert.tokenizer import ALBERT_USER_SYMBOLS

docs = load_default_corpus(include_numpy=False)      # stdlib docstrings: on every machine
sentences = [s for d in docs for s in d]
train_text, heldout = sentences[::2], sentences[1::2]
print(f"{len(docs)} documents, {len(sentences)} sentences; e.g. {sentences[7]!r}")

# %% [markdown]
# ## Training, with ALBERT's special ids
#
# ALBERT's ids are fixed by how the model is trained: `<pad>`=0, `<unk>`=1, `[CLS]`=2,
# `[SEP]`=3, `[MASK]`=4 (control symbols: never produced from raw text, inserted by
# code), lower-cased text, and a few *user-defined* symbols that are always whole pieces.

# %%
t0 = time.perf_counter()
tok = Tokenizer.train(train_text, vocab_size=VOCAB_SIZE)
print(f"trained {tok} in {time.perf_counter() - t0:.2f} s")
print({name: getattr(tok, f"{name}_id") for name in ("pad", "unk", "cls", "sep", "mask")})
print("first pieces:", tok.pieces[:16])

text = "Return the number of items in a sequence, or raise an error."
print(tok.tokenize(text))
print(tok.encode(text))

# %% [markdown]
# `▁` (U+2581) marks a piece that starts a word: SentencePiece replaces spaces by it
# and puts one at the start, so the text can be recovered exactly from the pieces.
#
# ## The unigram model
#
# Each piece $w$ has a score $s(w) = \log p(w)$. A segmentation $x = (w_1, \dots, w_n)$
# of the normalised text has log-probability $\sum_k s(w_k)$, and the tokenizer picks the
# best one. Over all segmentations that is a shortest-path problem on the positions
# $0..N$ of the string: `best[j] = max over pieces w = text[i:j] of best[i] + s(w)`.
# Two details from SentencePiece's source: a user-defined symbol gets the score
# `len(w) * max_score - 0.1` (so it always wins), and a character no piece covers
# becomes `<unk>` with score `min_score - 10`.

# %%
sp = tok.sp                                            # the SentencePiece processor
piece_score = {}                                       # piece -> (id, score)
for i in range(tok.vocab_size):
    if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i)):
        piece_score[sp.id_to_piece(i)] = (i, sp.get_score(i))
normal = [s for p, (_, s) in piece_score.items() if p not in ALBERT_USER_SYMBOLS]
MAX_SCORE, MIN_SCORE = max(normal), min(normal)
MAX_LEN = max(map(len, piece_score))


def viterbi(s):
    """Best segmentation of the normalised string s into piece ids."""
    N = len(s)
    best = np.full(N + 1, -np.inf); best[0] = 0.0
    back = [None] * (N + 1)                            # back[j] = (i, id) of the last piece
    for i in range(N):
        covered = False
        for j in range(i + 1, min(N, i + MAX_LEN) + 1):
            if s[i:j] in piece_score:
                pid, score = piece_score[s[i:j]]
                if s[i:j] in ALBERT_USER_SYMBOLS:
                    score = (j - i) * MAX_SCORE - 0.1
                covered |= j == i + 1
                if best[i] + score > best[j]:
                    best[j], back[j] = best[i] + score, (i, pid)
        if not covered and best[i] + MIN_SCORE - 10 > best[i + 1]:
            best[i + 1], back[i + 1] = best[i] + MIN_SCORE - 10, (i, tok.unk_id)
    ids, j = [], N
    while j > 0:
        j, pid = back[j]
        ids.append(pid)
    return ids[::-1]


norm = sp.normalize(tok.preprocess(text))              # lower-case, NFKC, spaces -> "▁"
print(repr(norm))
print("ours:         ", tok.id_to_piece(viterbi(norm)))
print("SentencePiece:", tok.tokenize(text))

# %% [markdown]
# ## The lattice, drawn
#
# Every piece that matches somewhere in a short word is an edge of the lattice; the
# Viterbi path is the chain of edges with the highest total score.

# %%
word = sp.normalize(tok.preprocess("tokenization"))
path = viterbi(word)
edges = [(i, j, word[i:j], piece_score[word[i:j]][1]) for i in range(len(word))
         for j in range(i + 1, len(word) + 1) if word[i:j] in piece_score]
on_path, pos = set(), 0
for pid in path:
    p = tok.id_to_piece(pid); on_path.add((pos, pos + len(p))); pos += len(p)
# pack edges into rows (the Viterbi path first, on the bottom row), one free unit between labels
rows_end = [len(word) + 1]                             # row 0: the path only
placed = [(0, i, j, p, s) for i, j, p, s in edges if (i, j) in on_path]
for i, j, p, s in sorted(e for e in edges if (e[0], e[1]) not in on_path):
    row = next((r for r, end in enumerate(rows_end) if end + 1 <= i), len(rows_end))
    rows_end[row:row + 1] = [j]
    placed.append((row, i, j, p, s))
fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows_end) + 1.2))
for row, i, j, p, s in placed:
    chosen = (i, j) in on_path
    ax.plot([i, j], [row, row], "-|", lw=4 if chosen else 1.5, ms=10 if chosen else 4,
            color="C3" if chosen else "C0")
    ax.text((i + j) / 2, row + 0.15, f"{p} {s:.1f}", ha="center", fontsize=7)
ax.set_xticks(range(len(word) + 1)); ax.set_yticks([]); ax.set_ylim(-0.5, len(rows_end))
ax.set_xlabel("position in the normalised string " + repr(word))
ax.set_title("Unigram lattice: candidate pieces with their scores, the Viterbi path in red")
plt.show()

# %% [markdown]
# ## Agreement on held-out text
#
# `Tokenizer.encode` = SentencePiece's Viterbi, plus one post-processing rule from ALBERT's
# reference code: a piece ending in `<digit>,` is re-split so the comma is its own piece.
# We compare our Viterbi with SentencePiece's raw output everywhere, and with
# `Tokenizer.encode` where that rule does not apply.

# %%
def agree(a, b):
    """Same segmentation, or the same pieces in another order: an exact tie in log-probability
    that float rounding of the running sums breaks differently (e.g. '=' and '=====...')."""
    return a == b or sorted(a) == sorted(b)


t0 = time.perf_counter()
mismatch, digit_comma = [], 0
for s in heldout[:N_CHECK]:
    pre = tok.preprocess(s)
    mine = viterbi(sp.normalize(pre))
    if not agree(mine, sp.encode(pre)):
        mismatch.append(s)
    if not agree(mine, tok.encode(s)):
        assert re.search(r"\d,", pre), s                # only the digit-comma rule differs
        digit_comma += 1
print(f"{N_CHECK} held-out sentences: {len(mismatch)} differ from SentencePiece; "
      f"{digit_comma} changed by the digit-comma rule ({time.perf_counter() - t0:.2f} s)")
assert not mismatch, mismatch[:3]

# %% [markdown]
# ## Vocabulary size against sequence length
#
# A larger vocabulary means longer pieces and fewer tokens per word, but a larger V×E
# embedding matrix (notebook 3 is about keeping that matrix small).

# %%
words = sum(len(s.split()) for s in heldout[:N_CHECK])
sizes, per_word = [500, 1000, VOCAB_SIZE, 2 * VOCAB_SIZE], []
for V in sizes:
    t = tok if V == VOCAB_SIZE else Tokenizer.train(train_text, vocab_size=V)
    per_word.append(sum(len(ids) for ids in t.encode_batch(heldout[:N_CHECK])) / words)
plt.figure(figsize=(4.5, 3))
plt.plot(sizes, per_word, "o-"); plt.xscale("log")
plt.xlabel("vocabulary size V"); plt.ylabel("pieces per word")
plt.title("Held-out text"); plt.grid(alpha=0.3); plt.show()
print({V: round(n, 3) for V, n in zip(sizes, per_word)})

lengths = collections.Counter(len(p.lstrip("▁")) for p in tok.pieces)
print("piece lengths (characters, without ▁):", sorted(lengths.items())[:12])

# %% [markdown]
# ## Model inputs: the pair template
#
# ALBERT's inputs are `[CLS] A [SEP] B [SEP]` with token types 0 for A and 1 for B, and
# an attention mask of 1 for real tokens and 0 for padding. Over-long pairs are cut
# longest-first.

# %%
batch = tok(["The first segment.", "A much longer first segment of this pair."],
            ["And the second.", "Its second one."], max_length=16, padding="max_length",
            return_tensors="np")
for k, v in batch.items():
    print(f"{k:15s}", v[1])
print(tok.decode(batch["input_ids"][1], skip_special_tokens=False))

# %% [markdown]
# ## Check: our segmentation is the library's

# %%
for s in [text, "Tokenization of ALBERT's inputs (with a \"quote\") - done."] + heldout[:200]:
    pre = tok.preprocess(s)
    assert viterbi(sp.normalize(pre)) == sp.encode(pre), s
assert viterbi(sp.normalize(tok.preprocess(text))) == tok.encode(text)
print("hand-written Viterbi segmentation == minialbert.Tokenizer (SentencePiece)")
