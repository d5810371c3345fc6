"""Softmax over the last axis, stable for any finite logits.

Derivation: [docs/layers/softmax.md](../layers/softmax.md)
"""
from __future__ import annotations

from ..backend import get_array_module
from ._check import check_float


def softmax_forward(x):
    """Inputs: x (..., C). Returns: P (..., C) rows summing to 1, cache = P."""
    check_float("x", x)
    xp = get_array_module(x)
    # subtract the row max so exp never overflows (logits of 1e4, masks of finfo.min)
    z = x - x.max(axis=-1, keepdims=True)
    P = xp.exp(z)
    P /= P.sum(axis=-1, keepdims=True)
    return P, P


def softmax_backward(dP, cache):
    """dx_i = P_i (dP_i - sum_j dP_j P_j)."""
    P = cache
    return P * (dP - (dP * P).sum(axis=-1, keepdims=True))
