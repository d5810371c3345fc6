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
# # Exercises 1: the backward passes of ALBERT's small layers
#
# Five functions to write, each a backward pass. Fill in the blocks marked
# `YOUR CODE HERE` and delete the `raise NotImplementedError` line. After each function a
# cell grades it on the spot (`check_exercise`); `minialbert grade THIS_FILE` grades the
# whole notebook (a `.py` or a saved `.ipynb`) and prints a score per exercise.
#
# Rules of the game: NumPy only, float64 inputs, no loops over batch elements where an
# array expression will do. Each check compares your gradient with central finite
# differences of the forward, with a **random** upstream gradient (why random: the
# derivation pages and [docs/gradcheck-pitfalls.md](../../docs/gradcheck-pitfalls.md)).

# %%
import numpy as np

from minialbert.grade import check_exercise

rng = np.random.default_rng(0)

# %% [markdown]
# ## 1.1 LayerNorm
#
# Forward, over the last axis of size D (biased variance, $\epsilon$ inside the root):
#
# $$\mu = \tfrac1D\sum_i x_i,\quad \sigma^2 = \tfrac1D\sum_i (x_i-\mu)^2,\quad
# \hat x = \frac{x-\mu}{\sqrt{\sigma^2+\epsilon}},\quad y = \gamma\odot\hat x + \beta.$$
#
# Write `layernorm_backward(dy, x, gamma, eps)` returning `(dx, dgamma, dbeta)`, where
# `dy` has x's shape `(..., D)` and `dgamma`, `dbeta` have shape `(D,)` (summed over every
# leading axis). Do not modify `x`.
#
# *Hints.* Recompute $\hat x$ and $r = 1/\sqrt{\sigma^2+\epsilon}$ from `x`. Both $\mu$ and
# $\sigma^2$ depend on every $x_i$ of the row, so $dx$ has three terms. The derivation:
# [docs/layers/layernorm.md](../../docs/layers/layernorm.md).

# %%
def layernorm_backward(dy, x, gamma, eps=1e-12):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("layernorm_backward")
    # ---- END OF YOUR CODE ----


check_exercise("layernorm_backward", layernorm_backward);

# %% [markdown]
# ## 1.2 Softmax
#
# $y = \mathrm{softmax}(x)$ over the last axis. Write `softmax_backward(dy, y)` returning
# `dx`, from the output `y` alone (the forward's result is all you need).
#
# *Hints.* The Jacobian of one row is $\mathrm{diag}(y) - y y^\top$; never build it. The
# derivation: [docs/layers/softmax.md](../../docs/layers/softmax.md).

# %%
def softmax_backward(dy, y):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("softmax_backward")
    # ---- END OF YOUR CODE ----


check_exercise("softmax_backward", softmax_backward);

# %% [markdown]
# ## 1.3 GELU, tanh form (ALBERT's `gelu_new`)
#
# $$y = \tfrac12 x\,\big(1 + \tanh u\big),\qquad u = c\,(x + 0.044715\,x^3),\quad c=\sqrt{2/\pi}.$$
#
# Write `gelu_backward(dy, x)` returning `dx`.
#
# *Hints.* Product rule, then the chain rule through $\tanh$ ($1-\tanh^2$). Write $x^3$ as
# `x * x * x`. The derivation: [docs/layers/gelu.md](../../docs/layers/gelu.md).

# %%
def gelu_backward(dy, x):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("gelu_backward")
    # ---- END OF YOUR CODE ----


check_exercise("gelu_backward", gelu_backward);

# %% [markdown]
# ## 1.4 Cross-entropy with `ignore_index`
#
# `logits` has shape `(..., C)` and `labels` shape `(...)`; a label equal to
# `ignore_index` (-100, HF's convention for "not a masked position") does not count. The
# loss is the **mean over counted positions** of $-\log \mathrm{softmax}(z)_{y}$.
#
# Write `cross_entropy_backward(logits, labels, ignore_index=-100)` returning
# `dlogits = d loss / d logits` (the upstream gradient of the scalar loss is 1).
#
# *Hints.* On a counted row: $(\mathrm{softmax}(z) - \mathrm{onehot}(y)) / N_\text{counted}$;
# on an ignored row: zero. The derivation: [docs/layers/cross_entropy.md](../../docs/layers/cross_entropy.md).

# %%
def cross_entropy_backward(logits, labels, ignore_index=-100):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("cross_entropy_backward")
    # ---- END OF YOUR CODE ----


check_exercise("cross_entropy_backward", cross_entropy_backward);

# %% [markdown]
# ## 1.5 The embedding's scatter-add
#
# The forward is a lookup, `e = W[ids]`, with `W` of shape `(V, E)` and `ids` of any
# shape. Write `embedding_backward(de, ids, vocab_size)` returning `dW` of shape `(V, E)`.
#
# *Hints.* Every sequence repeats ids ([CLS], "the"): each occurrence must add its row
# of `de` into `dW`. What does a fancy-indexed `+=` do with a repeated index? Try it on a
# three-element array before you trust it. The derivation:
# [docs/layers/embedding.md](../../docs/layers/embedding.md).

# %%
def embedding_backward(de, ids, vocab_size):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("embedding_backward")
    # ---- END OF YOUR CODE ----


check_exercise("embedding_backward", embedding_backward);

# %% [markdown]
# When every cell above says `pass`, run `minialbert grade notebooks/exercises/01_layer_backwards.py`
# (or your saved `.ipynb`) for the full score.
