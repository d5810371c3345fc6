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
# # Exercises 4: a bug hunt — write the gradient check that catches them
#
# Three bugs that pass a careless test:
#
# 1. an embedding backward that adds with a fancy-indexed `+=` (it keeps one write per
#    repeated id);
# 2. a LayerNorm whose forward divides the variance by $D-1$ while its backward was
#    derived for $D$;
# 3. a softmax backward that returns zeros: an upstream gradient of all ones cannot see
#    it, because $\sum_i y_i = 1$ makes the true gradient zero too.
#
# Write `check_backward(forward, backward, inputs)` returning `True` when the backward
# is right and `False` when it is not:
#
# - `inputs` is a dict of float64 arrays, `forward(inputs)` returns the output array,
#   `backward(dout, inputs)` returns a dict of gradients, one per key of `inputs`;
# - compare each analytic gradient with central finite differences of
#   $\sum(\mathrm{forward}(\text{inputs}) \odot \mathrm{dout})$, perturbing one entry at a time;
# - use a relative error $\lVert a-n\rVert / \max(\lVert a\rVert, \lVert n\rVert)$ and a
#   tolerance you can defend in float64.
#
# The grader runs your check on three correct layers (it must say `True`) and on the
# three planted bugs (it must say `False`).
#
# *Hints.* What upstream gradient should you draw? Which step size $h$ keeps both the
# truncation error and the rounding error small in float64? Read
# [docs/gradcheck-pitfalls.md](../../docs/gradcheck-pitfalls.md) and `minialbert/gradcheck.py`.

# %%
import numpy as np

from minialbert.grade import check_exercise


# %%
def check_backward(forward, backward, inputs):
    # ---- YOUR CODE HERE ----
    raise NotImplementedError("check_backward")
    # ---- END OF YOUR CODE ----


check_exercise("check_backward", check_backward);
