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
# # Exercises 3: a sentence-order pair, and one LAMB update
#
# Fill in the `YOUR CODE HERE` blocks; `minialbert grade THIS_FILE` grades the notebook.

# %%
import numpy as np

from minialbert.grade import check_exercise

CLS_ID, SEP_ID = 2, 3          # minialbert's (and ALBERT's) ids for [CLS] and [SEP]

# %% [markdown]
# ## 3.1 Building an SOP example
#
# Sentence-order prediction (ALBERT's replacement for NSP) takes two **consecutive**
# segments of one document. Half the time they stay in order (label 0), half the time
# they are swapped (label 1): the model must tell which, and topic cannot help it.
#
# `sentences` is a document as a list of sentences, each a list of token ids. Segment A
# is `sentences[:split]` and segment B the rest, each flattened into one list of ids.
# Write `sop_example(sentences, split, swap)` returning a dict with
#
# - `input_ids`: `[CLS] A [SEP] B [SEP]` (with A and B exchanged when `swap`),
# - `token_type_ids`: 0 for `[CLS]`, the first segment and its `[SEP]`; 1 for the second
#   segment and the final `[SEP]`,
# - `sentence_order_label`: 0 in order, 1 swapped.
#
# *Hints.* The data recipe: [docs/data/pretraining.md](../../docs/data/pretraining.md).
# The library's full version (random split points, truncation, masking) is
# `minialbert.data.pretraining.create_pretraining_examples`.

# %%
def sop_example(sentences, split, swap):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("sop_example")
    # ---- END OF YOUR CODE ----


check_exercise("sop_example", sop_example);

# %% [markdown]
# ## 3.2 One LAMB update
#
# LAMB as in ALBERT's `lamb_optimizer.py`, for one weight tensor `w` with gradient `g`
# and moments `m`, `v` (no bias correction):
#
# $$m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
# u = \frac{m}{\sqrt v + \epsilon} + \lambda w,$$
# $$r = \frac{\lVert w\rVert}{\lVert u\rVert}\ \text{(1 if either norm is 0)},\qquad
# w \leftarrow w - \eta\, r\, u.$$
#
# Write `lamb_update(w, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-6,
# weight_decay=0.01)` returning the new `(w, m, v)`. (`t` is the step number; this LAMB
# does not use it, which is part of the lesson.)
#
# *Hints.* The norms are over the whole tensor (Frobenius). The trust ratio makes the
# step's size proportional to $\lVert w\rVert$, whatever the gradient's scale. The
# derivation and a worked example: [docs/training/optimizers.md](../../docs/training/optimizers.md).

# %%
def lamb_update(w, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("lamb_update")
    # ---- END OF YOUR CODE ----


check_exercise("lamb_update", lamb_update);
