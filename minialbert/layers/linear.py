"""Linear layer ``y = x @ W.T + b`` with HuggingFace/PyTorch weight layout ``W: (out, in)``.

Derivation: [docs/layers/linear.md](../layers/linear.md)
"""
from __future__ import annotations

import numpy as np

from ..backend import is_low_precision, matmul
from ._check import check_float, check_last_dim, check_shape, check_same_dtype


def linear_forward(x, W, b=None, *, check=True):
    """Derivation: [docs/layers/linear.md](../layers/linear.md).

    Inputs: x (..., in), W (out, in), b (out,) or None; check: validate the arguments
    (False: the caller did, e.g. the model at its boundary).
    Returns: y (..., out), cache = (x, W)."""
    if check:
        _check_args(x, W, b)
    # one 2-d GEMM, not one per leading index: NumPy's stacked matmul calls BLAS once per
    # (T, in) slice, which is up to 30x slower on small shapes and busy machines
    # (backend.matmul is ``@``, with float32 accumulation for float16/bfloat16 on both devices)
    y = matmul(x.reshape(-1, x.shape[-1]), W.T).reshape(*x.shape[:-1], W.shape[0])  # (..., out)
    if b is not None:
        y += b
    return y, (x, W)


def linear_backward(dy, cache, dW=None, db=None):
    """Derivation: [docs/layers/linear.md](../layers/linear.md).

    Inputs: dy (..., out); cache from linear_forward; dW (out, in) and db (out,)
    gradient buffers that are *accumulated into* (pass None to skip).
    Returns: dx (..., in)."""
    x, W = cache                                  # stored: the matmul's inputs
    dy2 = dy.reshape(-1, dy.shape[-1])            # (N, out): all leading dims are "batch"
    x2 = x.reshape(-1, x.shape[-1])               # (N, in)
    # y = x @ W.T + b
    if dW is not None:
        dW += matmul(dy2.T, x2)                   # dW = dy^T x (out, in), summed over N
    if db is not None:
        # db = sum_n dy_n (out,); float16 sums over N = B*T rows in float32 (they would overflow at 65504)
        db += dy2.sum(axis=0, dtype=np.float32) if is_low_precision(dy2.dtype) else dy2.sum(axis=0)
    dx = matmul(dy2, W).reshape(*dy.shape[:-1], W.shape[1])  # dx = dy W (..., in), leading dims restored
    return dx


def _check_args(x, W, b):
    check_float("x", x)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-d (out, in), got shape {tuple(W.shape)}")
    check_last_dim("x", x, W.shape[1], "the linear layer's input size W.shape[1]")
    if b is not None:
        check_shape("b", b, (W.shape[0],))
    check_same_dtype(x=x, W=W, b=b)
