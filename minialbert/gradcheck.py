"""Numerical gradient checking: central differences in float64 against a random
upstream gradient.

Why a *random* upstream gradient ``dout``: the check compares the analytic
``d/dx sum(f(x) * dout)`` with finite differences of that same scalar. With
``dout = ones`` the scalar is ``sum(f(x))``, whose gradient through softmax or
LayerNorm is identically zero, so any backward that returns zeros would pass.
See [docs/gradcheck-pitfalls.md](../gradcheck-pitfalls.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import get_array_module, to_numpy


# central-difference stencils: grad = sum over (k, w) of w * (f(x + k h) - f(x - k h)) / h.
# Differences are taken first, so a function that does not depend on x gives exactly 0.
_STENCILS = {
    2: ((1, 1 / 2),),                    # error O(h^2)
    4: ((2, -1 / 12), (1, 8 / 12)),      # error O(h^4)
}


def numerical_gradient(f, x, dout, h=1e-6, order=2):
    """d/dx of sum(f() * dout) by central differences, perturbing ``x`` in place and
    restoring it. ``f`` takes no arguments and reads ``x`` (so ``x`` can be a parameter
    buffer deep inside a model); it returns an array shaped like ``dout``, or a scalar.
    ``x`` must be float64: in float32 the rounding error of f(x±h) swamps the difference.
    ``order=4`` uses the five-point stencil (twice the forwards): with h = 1e-3 its
    rounding error eps*|f|/h is ~1000x below the 2-point rule's at h = 1e-6, which
    matters for gradients that are small next to the function value."""
    if x.dtype != np.float64:
        raise ValueError(f"numerical gradients need float64 inputs, got {x.dtype}")
    if order not in _STENCILS:
        raise ValueError(f"order must be one of {tuple(_STENCILS)}, got {order}")
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)   # views: writes reach x
    for i in range(flat.size):
        old = float(flat[i])
        acc = 0.0
        for k, w in _STENCILS[order]:
            flat[i] = old + k * h
            fp = float((f() * dout).sum())
            flat[i] = old - k * h
            fm = float((f() * dout).sum())
            acc += w * (fp - fm)
        flat[i] = old
        gflat[i] = acc / h
    return grad


@dataclass
class GradCheckResult:
    """Outcome of comparing an analytic gradient with a numerical one."""
    name: str
    rel_error: float     # ||a - n|| / max(||a||, ||n||)
    max_abs_error: float
    worst_index: tuple   # where |a - n| is largest
    analytic_at_worst: float
    numeric_at_worst: float
    scale: float         # max(||a||, ||n||)

    def ok(self, rtol=1e-6, atol=1e-9) -> bool:
        """Relative error within rtol, or an absolute one within atol for gradients
        that are zero analytically (attention.key.bias) and pure rounding noise numerically."""
        return self.rel_error <= rtol or self.max_abs_error <= atol

    def __str__(self):
        return (f"{self.name}: rel error {self.rel_error:.2e}, max abs error {self.max_abs_error:.2e} "
                f"at {self.worst_index} (analytic {self.analytic_at_worst:.6e}, "
                f"numeric {self.numeric_at_worst:.6e})")


def compare(name, analytic, numeric) -> GradCheckResult:
    a, n = to_numpy(analytic).astype(np.float64), to_numpy(numeric).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"{name}: analytic gradient shape {a.shape} != numerical {n.shape}")
    diff = np.abs(a - n)
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(n)))
    rel = float(np.linalg.norm(a - n)) / scale if scale > 0 else 0.0
    if diff.size:
        worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
        wa, wn, mx = float(a[worst]), float(n[worst]), float(diff[worst])
    else:
        worst, wa, wn, mx = (), 0.0, 0.0, 0.0
    return GradCheckResult(name, rel, mx, tuple(int(i) for i in worst), wa, wn, scale)


def check_gradients(f, inputs: dict, analytic: dict, dout, h=1e-6, order=2) -> dict:
    """Check every named input. ``f()`` recomputes the forward from the arrays in
    ``inputs`` (mutated in place during the check); ``analytic[name]`` is the
    gradient the backward produced for ``inputs[name]`` with upstream ``dout``.
    Returns {name: GradCheckResult}."""
    return {name: compare(name, analytic[name], numerical_gradient(f, x, dout, h, order))
            for name, x in inputs.items()}
