"""Element-wise activations: GELU (ALBERT's tanh form and the exact erf form) and tanh.

Derivations: [docs/layers/gelu.md](../layers/gelu.md), [docs/layers/tanh.md](../layers/tanh.md)
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import erf, get_array_module, is_low_precision, upcast
from . import fused
from ._check import check_float

_C = math.sqrt(2.0 / math.pi)   # sqrt(2/pi)
_A = 0.044715
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu_new_forward(x, *, check=True):
    """Derivation: [docs/layers/gelu.md](../layers/gelu.md).

    ALBERT/TF GELU (HF ``gelu_new``): 0.5 x (1 + tanh(c (x + 0.044715 x^3))).
    Returns: y (same shape), cache = (x, t) with t = tanh(u). check: as every layer."""
    if check:
        check_float("x", x)
    if fused.use("gelu", x):                 # opt-in CUDA kernel (layers/fused.py)
        return fused.gelu_new_forward(x)
    if is_low_precision(x.dtype):            # float16/bfloat16: compute in float32, store low
        y, (_, t) = gelu_new_forward(x.astype(np.float32), check=False)
        return y.astype(x.dtype), (x, t.astype(x.dtype))
    xp = get_array_module(x)
    # u = c * (x + a * x * x * x), in place: two (..., I) buffers instead of nine, the largest
    # activation of the layer (each fresh buffer costs page faults as well as a pass).
    # x * x * x, not x ** 3: NumPy's float32 power is ~160x slower than two multiplies.
    u = x * x
    u *= x
    u *= _A
    u += x
    u *= _C
    t = xp.tanh(u, out=u)                    # t takes over u's buffer
    # y = 0.5 * x * (1 + t)
    y = t + 1.0
    y *= x
    y *= 0.5
    return y, (x, t)


def gelu_new_backward(dy, cache):
    """Derivation: [docs/layers/gelu.md](../layers/gelu.md).

    dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)."""
    x, t = cache
    if t is None:                            # the fused forward's cache: t is recomputed
        return fused.gelu_new_backward(dy, cache)
    if is_low_precision(x.dtype):
        return gelu_new_backward(upcast(dy), (upcast(x), upcast(t))).astype(x.dtype)
    xp = get_array_module(x)
    # y = 0.5 * x * (1 + t),  t = tanh(u),  u = c * (x + a x^3); two buffers, updated in place
    s = t * t
    xp.subtract(1.0, s, out=s)               # 1 - t^2
    s *= x                                   # x (1 - t^2)
    g = x * x
    g *= 3.0 * _A
    g += 1.0
    g *= _C                                  # du/dx = c (1 + 3 a x^2)
    s *= g                                   # x (1 - t^2) du/dx
    xp.add(t, 1.0, out=g)                    # 1 + t
    g += s
    g *= 0.5
    g *= dy                                  # dx
    return g


def gelu_forward(x, *, check=True):
    """Derivation: [docs/layers/gelu.md](../layers/gelu.md).

    Exact GELU (HF ``gelu``, the v1 configs): 0.5 x (1 + erf(x / sqrt 2)).
    Returns: y, cache = (x, Phi) with Phi the standard normal CDF at x."""
    if check:
        check_float("x", x)
    if is_low_precision(x.dtype):
        y, (_, phi_cdf) = gelu_forward(x.astype(np.float32), check=False)
        return y.astype(x.dtype), (x, phi_cdf.astype(x.dtype))
    phi_cdf = erf(x * _INV_SQRT2)
    phi_cdf += 1.0
    phi_cdf *= 0.5                           # Phi(x) = 0.5 (1 + erf(x / sqrt 2))
    return x * phi_cdf, (x, phi_cdf)


def gelu_backward(dy, cache):
    """Derivation: [docs/layers/gelu.md](../layers/gelu.md).

    dy/dx = Phi(x) + x phi(x), phi the standard normal density."""
    x, phi_cdf = cache                       # stored: x and Phi(x)
    if is_low_precision(x.dtype):
        return gelu_backward(upcast(dy), (upcast(x), upcast(phi_cdf))).astype(x.dtype)
    xp = get_array_module(x)
    # y = x Phi(x)  ->  dy/dx = Phi(x) + x phi(x)
    g = x * x
    g *= -0.5
    xp.exp(g, out=g)
    g *= _INV_SQRT_2PI                       # phi(x), the density
    g *= x
    g += phi_cdf                             # Phi(x) + x phi(x)
    g *= dy
    return g


def tanh_forward(x, *, check=True):
    """Derivation: [docs/layers/tanh.md](../layers/tanh.md).

    Returns y = tanh(x), cache = y (the pooler's activation)."""
    if check:
        check_float("x", x)
    xp = get_array_module(x)
    y = xp.tanh(upcast(x)).astype(x.dtype, copy=False)   # float32 inside for float16/bfloat16
    return y, y


def tanh_backward(dy, cache):
    """Derivation: [docs/layers/tanh.md](../layers/tanh.md).

    Inputs: dy; cache = y = tanh(x). Returns: dx = dy (1 - y^2), shaped like dy."""
    y = cache
    if is_low_precision(y.dtype):
        return tanh_backward(upcast(dy), upcast(y)).astype(y.dtype)
    # y = tanh(x)  ->  dy/dx = 1 - y^2
    return dy * (1.0 - y * y)


ACTIVATIONS = {
    "gelu_new": (gelu_new_forward, gelu_new_backward),
    "gelu_pytorch_tanh": (gelu_new_forward, gelu_new_backward),  # same function in HF
    "gelu": (gelu_forward, gelu_backward),
    "tanh": (tanh_forward, tanh_backward),
}


def get_activation(name: str):
    """(forward, backward) for an HF ``hidden_act`` name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}: expected one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]
