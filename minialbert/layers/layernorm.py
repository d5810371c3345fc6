"""LayerNorm over the last axis: biased variance, eps inside the square root.

Derivation: [docs/layers/layernorm.md](../layers/layernorm.md)
"""
from __future__ import annotations

from ._check import check_float, check_same_dtype, check_shape


def layernorm_forward(x, gamma, beta, eps=1e-12):
    """Inputs: x (..., D), gamma (D,), beta (D,).
    Returns: y (..., D), cache = (xhat, rstd, gamma)."""
    check_float("x", x)
    D = x.shape[-1] if x.ndim else 0
    # exact shape (D,), not just the last dimension: a (T, D) gamma would broadcast silently
    check_shape("gamma", gamma, (D,))
    check_shape("beta", beta, (D,))
    check_same_dtype(x=x, gamma=gamma, beta=beta)
    xp_mean = x.mean(axis=-1, keepdims=True)               # (..., 1)
    xc = x - xp_mean                                        # (..., D)
    var = (xc * xc).mean(axis=-1, keepdims=True)            # (..., 1) biased: divide by D
    rstd = 1.0 / (var + eps) ** 0.5                         # (..., 1)
    xhat = xc * rstd                                        # (..., D) mean 0, variance 1
    y = xhat * gamma + beta
    return y, (xhat, rstd, gamma)


def layernorm_backward(dy, cache, dgamma=None, dbeta=None):
    """Inputs: dy (..., D); dgamma, dbeta (D,) accumulated into.
    Returns: dx (..., D). Stored: xhat and rstd; nothing is recomputed."""
    xhat, rstd, gamma = cache
    D = xhat.shape[-1]
    lead = tuple(range(xhat.ndim - 1))
    # y = xhat * gamma + beta
    if dgamma is not None:
        dgamma += (dy * xhat).sum(axis=lead)
    if dbeta is not None:
        dbeta += dy.sum(axis=lead)
    dxhat = dy * gamma                                      # (..., D)
    # xhat = (x - mean) * rstd: the two means below are the gradient through mean and var
    mean_dxhat = dxhat.sum(axis=-1, keepdims=True) / D
    mean_dxhat_xhat = (dxhat * xhat).sum(axis=-1, keepdims=True) / D
    dx = (dxhat - mean_dxhat - xhat * mean_dxhat_xhat) * rstd
    return dx
