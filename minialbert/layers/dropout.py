"""Inverted dropout: zero with probability p, scale survivors by 1/(1-p).

Derivation: [docs/layers/dropout.md](../layers/dropout.md)
"""
from __future__ import annotations

import numpy as np

from . import fused


def dropout_forward(x, p, rng=None, training=True):
    """Derivation: [docs/layers/dropout.md](../layers/dropout.md).

    Inputs: x, p in [0, 1), rng a :class:`minialbert.backend.Random` (seeded).
    Returns: y, cache = mask (already scaled), or None when dropout is the identity
    (eval mode or p == 0), in which case y is x itself."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x, None
    if rng is None:
        raise ValueError("dropout in training mode needs a seeded rng (minialbert.backend.Random)")
    if fused.use("dropout", x):                                     # opt-in CUDA kernel, same masks
        return fused.dropout_forward(x, p, rng)
    # uniforms in float32 for float16/bfloat16 x (NumPy draws only float32/float64)
    draw = x.dtype if x.dtype in (np.float32, np.float64) else np.float32
    keep = rng.random(x.shape, dtype=draw) >= p                     # True with prob 1-p
    mask = keep.astype(x.dtype)                                     # same mask re-used in backward
    mask *= x.dtype.type(1.0 / (1.0 - p))                           # in place: one buffer, not two
    return x * mask, mask


def dropout_backward(dy, cache):
    """Derivation: [docs/layers/dropout.md](../layers/dropout.md).

    Inputs: dy shaped like x; cache, the mask from dropout_forward (None: identity).
    Returns: dx = dy * mask (dy itself when dropout was the identity)."""
    mask = cache                        # stored: the scaled mask m; None for the identity
    # y = x * m  ->  dx = dy * m
    return dy if mask is None else dy * mask
