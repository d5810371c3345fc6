"""Softmax over the last axis, stable for any finite logits.

Derivation: [docs/layers/softmax.md](../layers/softmax.md)
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, is_low_precision, upcast
from . import fused
from ._check import check_float


def softmax_forward(x, *, check=True):
    """Derivation: [docs/layers/softmax.md](../layers/softmax.md).

    Inputs: x (..., C); check: validate x (False: the caller did).
    Returns: P (..., C) rows summing to 1, cache = P.
    float16/bfloat16 x: max, exp and the row sums run in float32; P is stored in x's dtype."""
    if check:
        check_float("x", x)
    if is_low_precision(x.dtype):
        P = softmax_forward(x.astype(np.float32), check=False)[0].astype(x.dtype)
        return P, P
    xp = get_array_module(x)
    # subtract the row max so exp never overflows (logits of 1e4, masks of finfo.min)
    P = x - x.max(axis=-1, keepdims=True)
    xp.exp(P, out=P)                         # in place: one (..., C) buffer, not two
    P /= P.sum(axis=-1, keepdims=True)
    return P, P


def softmax_backward(dP, cache):
    """Derivation: [docs/layers/softmax.md](../layers/softmax.md).

    dx_i = P_i (dP_i - sum_j dP_j P_j)."""
    P = cache                                               # stored: the output
    if fused.use("softmax", P):                              # opt-in CUDA kernel
        return fused.softmax_backward(dP, P)
    if is_low_precision(P.dtype):
        return softmax_backward(upcast(dP), upcast(P)).astype(P.dtype)
    # P = softmax(x)  ->  dx_i = P_i (dP_i - sum_j dP_j P_j)
    dx = dP * P
    s = dx.sum(axis=-1, keepdims=True)                      # sum_j dP_j P_j
    xp = get_array_module(P)
    xp.subtract(dP, s, out=dx)                               # one buffer, reused
    dx *= P
    return dx
