"""LayerNorm over the last axis: biased variance, eps inside the square root.

Derivation: [docs/layers/layernorm.md](../layers/layernorm.md)
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, is_low_precision, upcast
from . import fused
from ._check import check_float, check_same_dtype, check_shape


def layernorm_forward(x, gamma, beta, eps=1e-12, *, check=True):
    """Derivation: [docs/layers/layernorm.md](../layers/layernorm.md).

    Inputs: x (..., D), gamma (D,), beta (D,); check: validate the arguments (False: the
    caller did). Returns: y (..., D), cache = (xhat, rstd, gamma)."""
    if check:
        _check_args(x, gamma, beta)
    if fused.use("layernorm", x):                            # opt-in CUDA kernel, same cache
        return fused.layernorm_forward(x, gamma, beta, eps)
    if is_low_precision(x.dtype):
        # float16/bfloat16: mean, variance and rstd in float32; y and xhat stored in x's dtype
        y, (xhat, rstd, _) = layernorm_forward(upcast(x), upcast(gamma), upcast(beta), eps, check=False)
        return y.astype(x.dtype), (xhat.astype(x.dtype), rstd, gamma)
    xp = get_array_module(x)
    mean = x.mean(axis=-1, keepdims=True)                   # (..., 1)
    xhat = x - mean                                         # (..., D) centred, normalised below
    var = (xhat * xhat).mean(axis=-1, keepdims=True)        # (..., 1) biased: divide by D
    # eps as x's dtype: a float64 NumPy eps would make rstd, xhat and y float64
    rstd = 1.0 / xp.sqrt(var + x.dtype.type(eps))           # (..., 1)
    xhat *= rstd                                            # (..., D) mean 0, variance 1
    y = xhat * gamma
    y += beta
    return y, (xhat, rstd, gamma)


def layernorm_backward(dy, cache, dgamma=None, dbeta=None):
    r"""Derivation: [docs/layers/layernorm.md](../layers/layernorm.md), which arrives at,
    with $d\hat x = dy \odot \gamma$ and $r$ = rstd, per row of D:

    $$dx = r\Big(d\hat x - \tfrac{1}{D}\textstyle\sum_j d\hat x_j
    - \hat x\, \tfrac{1}{D}\sum_j d\hat x_j \hat x_j\Big).$$

    Inputs: dy (..., D); dgamma, dbeta (D,) accumulated into.
    Returns: dx (..., D). Stored: xhat and rstd; nothing is recomputed."""
    xhat, rstd, gamma = cache                               # stored: xhat and rstd; nothing recomputed
    if fused.use("layernorm", xhat):
        return fused.layernorm_backward(dy, cache, dgamma, dbeta)
    if is_low_precision(xhat.dtype):
        # float32 throughout; dgamma/dbeta (float32 master gradients) get float32 sums
        dx = layernorm_backward(upcast(dy), (upcast(xhat), rstd, upcast(gamma)), dgamma, dbeta)
        return dx.astype(xhat.dtype)
    D = xhat.shape[-1]
    lead = tuple(range(xhat.ndim - 1))                      # every axis but the last: the rows
    # y = xhat * gamma + beta
    if dgamma is not None:
        dgamma += (dy * xhat).sum(axis=lead)                # dgamma = sum_rows dy * xhat
    if dbeta is not None:
        dbeta += dy.sum(axis=lead)                          # dbeta = sum_rows dy
    dxhat = dy * gamma                                      # (..., D)
    # xhat = (x - mean) * rstd: the two means below are the gradient through mean and var
    mean_dxhat = dxhat.sum(axis=-1, keepdims=True) / D
    mean_dxhat_xhat = (dxhat * xhat).sum(axis=-1, keepdims=True) / D
    # dx = (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) * rstd, in dxhat's buffer
    dxhat -= mean_dxhat
    dxhat -= xhat * mean_dxhat_xhat
    dxhat *= rstd
    return dxhat


def _check_args(x, gamma, beta):
    check_float("x", x)
    D = x.shape[-1] if x.ndim else 0
    # exact shape (D,), not just the last dimension: a (T, D) gamma would broadcast silently
    check_shape("gamma", gamma, (D,))
    check_shape("beta", beta, (D,))
    check_same_dtype(x=x, gamma=gamma, beta=beta)
