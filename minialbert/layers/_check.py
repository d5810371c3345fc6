"""Input validation shared by the layers: fail early, name the argument, never guess.

Every check runs before any arithmetic, so a wrong shape gives a ``ValueError`` that
says what was expected instead of a broadcasting error from deep inside NumPy, and an
out-of-range id is caught before CuPy would silently wrap it around.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, is_float_dtype


def check_float(name: str, x) -> None:
    if not hasattr(x, "dtype") or not is_float_dtype(x.dtype):   # bfloat16's kind is 'V'
        got = getattr(x, "dtype", type(x).__name__)
        raise ValueError(f"{name} must be a floating-point array, got {got}")


def check_ndim(name: str, x, ndims) -> None:
    ndims = (ndims,) if isinstance(ndims, int) else tuple(ndims)
    if x.ndim not in ndims:
        want = " or ".join(f"{n}-d" for n in ndims)
        raise ValueError(f"{name} must be {want}, got shape {tuple(x.shape)}")


def check_shape(name: str, x, expected) -> None:
    """``expected`` is a tuple of ints, with None for any size."""
    shape = tuple(x.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        want = "(" + ", ".join("*" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {want}, got {shape}")


def check_last_dim(name: str, x, size: int, what: str) -> None:
    if x.ndim == 0 or x.shape[-1] != size:
        raise ValueError(f"{name} last dimension must be {size} ({what}), got shape {tuple(x.shape)}")


def check_same_dtype(**arrays) -> None:
    dts = {k: v.dtype for k, v in arrays.items() if v is not None}
    if len(set(dts.values())) > 1:
        desc = ", ".join(f"{k}={v}" for k, v in dts.items())
        raise ValueError(f"dtypes must match: {desc}")


def check_keys(what: str, p, names) -> None:
    for k in names:
        if k not in p:
            raise ValueError(f"{what} lack {k!r}")


def check_ids(name: str, ids, high: int, low: int = 0) -> None:
    """Integer ids in [low, high): checked on the values, before indexing."""
    if not hasattr(ids, "dtype") or ids.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array, got {getattr(ids, 'dtype', type(ids).__name__)}")
    if ids.size == 0:
        return
    xp = get_array_module(ids)
    # one device -> host transfer for both bounds (on CuPy each int() is a synchronisation)
    lo, hi = (int(v) for v in xp.stack((ids.min(), ids.max())).tolist())
    if lo < low or hi >= high:
        raise ValueError(f"{name} must lie in [{low}, {high}), got values in [{lo}, {hi}]")


def check_broadcastable(name: str, x, target_shape) -> None:
    try:
        ok = np.broadcast_shapes(tuple(x.shape), tuple(target_shape)) == tuple(target_shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} with shape {tuple(x.shape)} does not broadcast to {tuple(target_shape)}")
