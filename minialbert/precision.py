r"""Mixed precision: which dtype the arithmetic runs in, and dynamic loss scaling.

A *precision* names how a model computes; the parameters it owns do not change:

| name | master weights, optimiser state | matmul inputs, activations | loss scaling |
|---|---|---|---|
| `fp32` | float32 | float32 (the default; bit-identical to minialbert without this module) | no |
| `fp16` | float32 | float16, float32 accumulation | dynamic |
| `bf16` | float32 | bfloat16 (`ml_dtypes`), float32 accumulation | no |
| `tf32` | float32 | float32 storage, TF32 tensor-core matmuls (GPU only) | no |

In fp16/bf16 the forward reads a float16 (bfloat16) copy of every parameter (made on
first use in each forward, :func:`cast_params`); matmuls take those and sum in float32
(:func:`minialbert.backend.matmul`); LayerNorm statistics, softmax, GELU, tanh and the
losses compute in float32 on the way through and store their outputs in the low
precision; the backward adds every parameter gradient into the float32 ``model.grads``,
so the L applications of ALBERT's shared layer are summed in float32. The optimiser
updates the float32 master weights.

**Dynamic loss scaling** (fp16 only: float16's smallest normal number is
$2^{-14} \approx 6\cdot10^{-5}$, and small gradients would flush to zero). The backward
starts from ``scale`` instead of 1; the gradients come out ``scale`` times too large and
are multiplied by ``1/scale`` before clipping and the update. When any gradient is inf
or NaN, the step is skipped (no update, the optimiser's step count unchanged) and the
scale halves; after ``growth_interval`` clean steps in a row it doubles. PyTorch's
``GradScaler`` follows the same rule with the same defaults (initial scale $2^{16}$,
factors 2 and 1/2, interval 2000).

Guide, what was checked and what awaits a GPU: [Mixed precision and the GPU](../training/mixed-precision.md).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .backend import bfloat16_dtype, enable_tf32, get_array_module

PRECISIONS = ("fp32", "fp16", "bf16", "tf32")


@dataclass(frozen=True)
class Precision:
    """A resolved precision: ``compute_dtype`` is what activations and matmul inputs are."""
    name: str
    compute_dtype: np.dtype
    loss_scaling: bool

    @property
    def mixed(self) -> bool:
        """True when the forward runs in another dtype than the float32 master weights."""
        return self.name in ("fp16", "bf16")


def resolve_precision(precision="fp32", device: str = "cpu", arg: str = "--precision") -> Precision:
    """'fp32' / 'fp16' / 'bf16' / 'tf32' (or a :class:`Precision`) -> Precision, checked.

    tf32 exists only on GPU tensor cores: on the CPU it is a clear error instead of a
    silent fp32. bf16 needs ``ml_dtypes``. ``arg`` names the option in error messages."""
    if isinstance(precision, Precision):
        name = precision.name
    else:
        name = precision
    if name not in PRECISIONS:
        raise ValueError(f"{arg}: expected one of {PRECISIONS}, got {precision!r}")
    if name == "tf32" and device != "gpu":
        raise ValueError(f"{arg} tf32 needs a GPU: TF32 is a tensor-core mode of float32 matmuls "
                         f"and the CPU has none (device is {device!r}); use {arg} fp32 on the CPU")
    if name == "fp16":
        return Precision("fp16", np.dtype(np.float16), True)
    if name == "bf16":
        try:
            dt = bfloat16_dtype()
        except RuntimeError as e:
            raise ValueError(f"{arg} bf16: {e}") from None
        return Precision("bf16", dt, False)
    return Precision(name, np.dtype(np.float32), False)


def check_precision(precision: str, device: str, dtype: str = "float32") -> Precision:
    """The ``--precision`` flag checked against ``--device`` and ``--dtype`` (ValueError naming
    the flags): tf32 needs a GPU; fp16/bf16 keep float32 master weights."""
    p = resolve_precision(precision, device)
    if p.mixed and str(dtype) != "float32":
        raise ValueError(f"--precision {p.name} keeps float32 master weights: --dtype must be float32, "
                         f"got {dtype}")
    return p


def activate(precision: Precision, device: str) -> None:
    """Process-wide switches a precision needs before the first matmul (tf32: CuPy's TF32
    mode for float32 GEMMs). A no-op for the others."""
    if precision.name == "tf32" and device == "gpu":
        enable_tf32()


class CastParams(Mapping):
    """A read-only view of ``params`` in ``dtype``: each array is cast on first access and
    kept for the life of this view (one forward), so a weight the shared layer reads L
    times is cast once. The float32 masters are never modified."""

    def __init__(self, params: Mapping, dtype):
        self._params = params
        self._dtype = np.dtype(dtype)
        self._cast = {}

    def __getitem__(self, name):
        v = self._cast.get(name)
        if v is None:
            v = self._cast[name] = self._params[name].astype(self._dtype)
        return v

    def __iter__(self):
        return iter(self._params)

    def __len__(self):
        return len(self._params)


def cast_params(params: Mapping, dtype):
    """``params`` itself when it already has ``dtype`` (fp32: no copy, no change), else a
    :class:`CastParams` view."""
    dtype = np.dtype(dtype)
    first = next(iter(params.values()), None)
    if first is None or first.dtype == dtype:
        return params
    return CastParams(params, dtype)


# ----------------------------------------------------------------------------------------
# dynamic loss scaling
# ----------------------------------------------------------------------------------------

class DynamicLossScaler:
    """Dynamic loss scaling for fp16 training (see the module docstring).

    Use, once per optimiser step::

        model.backward({"loss": scaler.scale})       # every micro-batch
        ok = scaler.unscale_(model.grads)            # grads /= scale; False if any is inf/NaN
        if ok:
            clip, opt.step(...)
        scaler.update(ok)                            # halve on overflow, double after a clean run

    State for checkpoints: :meth:`state_dict` / :meth:`load_state_dict` (plain JSON-able
    numbers, so a resumed run continues with the same scale and counters)."""

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000,
                 min_scale: float = 2.0 ** -24):
        for name, v in (("init_scale", init_scale), ("min_scale", min_scale)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        if not (isinstance(growth_factor, (int, float)) and growth_factor > 1):
            raise ValueError(f"growth_factor must be > 1, got {growth_factor!r}")
        if not (isinstance(backoff_factor, (int, float)) and 0 < backoff_factor < 1):
            raise ValueError(f"backoff_factor must be in (0, 1), got {backoff_factor!r}")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive integer, got {growth_interval!r}")
        self.scale = float(init_scale)
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.min_scale = float(min_scale)
        self.clean_steps = 0        # clean steps since the last change of scale
        self.skipped_steps = 0      # steps skipped in the whole run
        self.last_skipped = False   # the most recent step was skipped

    def unscale_(self, grads: Mapping) -> bool:
        """Multiply every gradient by 1/scale in place; True when all of them are finite.

        One finiteness test for the whole set: the sum of squares is inf or NaN exactly when
        some entry is (or the gradients are beyond 1e19, which a clipped run never sees)."""
        arrays = list(grads.values())
        if not arrays:
            raise ValueError("grads is empty: nothing to unscale")
        xp = get_array_module(*arrays)
        inv = 1.0 / self.scale
        for g in arrays:
            g *= g.dtype.type(inv)
        total = xp.stack([xp.vdot(g.ravel(), g.ravel()) for g in arrays]).astype(xp.float64).sum()
        return bool(math.isfinite(float(total)))

    def update(self, finite: bool) -> None:
        """After the step: on overflow halve the scale and count the skipped step; after
        ``growth_interval`` clean steps in a row double it."""
        self.last_skipped = not finite
        if not finite:
            self.skipped_steps += 1
            self.clean_steps = 0
            self.scale = max(self.scale * self.backoff_factor, self.min_scale)
            return
        self.clean_steps += 1
        if self.clean_steps >= self.growth_interval:
            self.scale *= self.growth_factor
            self.clean_steps = 0

    @property
    def at_minimum(self) -> bool:
        """True when the scale cannot fall further: overflows now come from the forward,
        not from the scaled gradients, and skipping more steps will not help."""
        return self.scale <= self.min_scale

    # -- checkpoints -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"scale": self.scale, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "min_scale": self.min_scale, "clean_steps": self.clean_steps,
                "skipped_steps": self.skipped_steps, "last_skipped": self.last_skipped}

    def load_state_dict(self, state: Mapping) -> None:
        need = ("scale", "clean_steps", "skipped_steps")
        if not isinstance(state, Mapping) or any(k not in state for k in need):
            raise ValueError(f"loss-scaler state must be a dict with {need} (from state_dict()), got "
                             f"{sorted(state) if isinstance(state, Mapping) else type(state).__name__}")
        scale = state["scale"]
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"loss-scaler state: scale must be a positive finite number, got {scale!r}")
        for k in ("growth_factor", "backoff_factor", "growth_interval", "min_scale"):
            if k in state:
                setattr(self, k, type(getattr(self, k))(state[k]))
        self.scale = float(scale)
        self.clean_steps = int(state["clean_steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.last_skipped = bool(state.get("last_skipped", False))

    def __repr__(self):
        return (f"DynamicLossScaler(scale={self.scale:g}, clean_steps={self.clean_steps}, "
                f"skipped_steps={self.skipped_steps}, growth_interval={self.growth_interval})")


def make_scaler(precision, **kwargs) -> Optional[DynamicLossScaler]:
    """A :class:`DynamicLossScaler` for fp16, None for the others (bf16 has float32's
    exponent range and needs no scaling, as in PyTorch)."""
    p = precision if isinstance(precision, Precision) else resolve_precision(precision, "gpu")
    return DynamicLossScaler(**kwargs) if p.loss_scaling else None
