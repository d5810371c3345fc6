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
# # Exercises 2: attention, and the gradient of a shared layer
#
# Fill in the `YOUR CODE HERE` blocks; each function is graded by the cell after it, and
# `minialbert grade THIS_FILE` grades the notebook.

# %%
import numpy as np

from minialbert.grade import check_exercise

# %% [markdown]
# ## 2.1 Scaled dot-product attention, one head
#
# With `q`, `k`, `v` of shape `(B, T, d)` and an additive mask `mask_add` of shape
# `(B, 1, T)` (0 for a real key, a huge negative number for padding):
#
# $$S = \frac{q k^\top}{\sqrt d} + m,\qquad P = \mathrm{softmax}(S)\ \text{(over keys)},\qquad
# \mathrm{out} = P v.$$
#
# Write `attention_backward(dout, q, k, v, mask_add)` returning `(dq, dk, dv)`. Recompute
# what you need from the forward.
#
# *Hints.* Go backwards one line at a time: `out = P @ v` gives `dP` and `dv`; softmax's
# backward gives `dS` (your exercise 1.2); `S = q k^T / sqrt(d)` gives `dq` and `dk`. The
# mask is a constant. Keep the scale once: it multiplies `dS`, not both `dq` and `dk`
# again. The derivation: [docs/layers/attention.md](../../docs/layers/attention.md).

# %%
def attention_backward(dout, q, k, v, mask_add):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("attention_backward")
    # ---- END OF YOUR CODE ----


check_exercise("attention_backward", attention_backward);

# %% [markdown]
# ## 2.2 One layer, L depths: the shared gradient is a sum
#
# ALBERT applies the **same** layer at every depth. Here the layer is a toy one,
# $h_{l+1} = \tanh(h_l W)$ for $l = 0 \ldots L-1$, with one matrix $W$ for all depths.
#
# Write `shared_layer_backward(dh_L, h0, W, L)` returning `(dh0, dW)`: the gradients of
# $\sum (h_L \odot dh_L)$ with respect to the input $h_0$ and the shared $W$.
#
# *Hints.* Run the forward and keep every $h_l$. Then walk the depths backwards: at each
# depth the local gradient of $W$ is added to the same `dW`. Which depth's $h$ goes into
# that depth's term? The derivation:
# [docs/model/shared-layer-gradient.md](../../docs/model/shared-layer-gradient.md).

# %%
def shared_layer_backward(dh_L, h0, W, L):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("shared_layer_backward")
    # ---- END OF YOUR CODE ----


check_exercise("shared_layer_backward", shared_layer_backward);
