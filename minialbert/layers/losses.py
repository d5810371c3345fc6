"""Losses: softmax cross-entropy with ``ignore_index``, mean-squared error, and binary
cross-entropy with logits (HF's multi-label head). Each returns a 0-d array on the
input's device; its backward takes the upstream scalar gradient (1.0 for the loss).

Derivation: [docs/layers/cross_entropy.md](../layers/cross_entropy.md)
"""
from __future__ import annotations

from ..backend import get_array_module, upcast
from . import fused
from ._check import check_float, check_ids

#: The label cross-entropy skips (HF's and PyTorch's -100). Its one home: the data, the
#: task features and the heads import it from here.
IGNORE_INDEX = -100


def _upstream(dloss, like):
    """The upstream scalar gradient as a 0-d array of ``like``'s dtype, on its device. A Python
    float would be harmless, but a float64 NumPy scalar or 0-d array is not "weak" under NumPy 2's
    promotion rules and would turn a float32 gradient (and the whole backward after it) into float64."""
    return get_array_module(like).asarray(dloss, dtype=like.dtype)


def cross_entropy_forward(logits, labels, ignore_index=IGNORE_INDEX, normalizer=None, *, check=True):
    """Derivation: [docs/layers/cross_entropy.md](../layers/cross_entropy.md).

    Inputs: logits (..., C), labels (...) integers in [0, C) or ``ignore_index``;
    normalizer: what the summed loss is divided by (default: the number of counted
    positions, i.e. the mean). A training step split into micro-batches (or ranks) passes
    the count of the *whole* step, so that the pieces' losses and gradients add up to
    those of one big batch exactly; check: validate the arguments (False: the caller did;
    the range check costs a device synchronisation).
    Returns: loss = sum over counted positions of -log softmax(logits)[label] / normalizer
    (NaN when no position counts and no normalizer is given, as PyTorch), cache."""
    if check:
        _check_labels(logits, labels, ignore_index)
    xp = get_array_module(logits)
    C = logits.shape[-1]
    in_dtype = logits.dtype                                    # dlogits go back in this dtype
    y = labels.reshape(-1)                                     # (N,)
    valid = y != ignore_index                                  # (N,)
    y_safe = xp.where(valid, y, 0)
    n_valid = valid.sum() if normalizer is None else xp.asarray(normalizer)   # the divisor
    if fused.use("cross_entropy", logits):                     # opt-in CUDA kernel (no (N, C) softmax kept)
        return fused.cross_entropy_forward(logits.reshape(-1, C), y_safe, valid,
                                           n_valid.astype(xp.float32), logits.shape, in_dtype)
    z = upcast(logits).reshape(-1, C)                          # (N, C); float16 -> float32 sums
    # log softmax via the log-sum-exp trick: finite for logits of any finite size
    zmax = z.max(axis=-1, keepdims=True)
    e = xp.exp(z - zmax)
    sumexp = e.sum(axis=-1, keepdims=True)
    logp_y = (z[xp.arange(z.shape[0]), y_safe] - zmax[:, 0]) - xp.log(sumexp[:, 0])  # (N,)
    n_valid = n_valid.astype(z.dtype)                          # float: int64 / float32 would give float64
    loss = -(logp_y * valid).sum() / n_valid                   # 0-d; NaN if n_valid == 0
    P = e / sumexp                                             # (N, C) softmax, for backward
    return loss, (P, y_safe, valid, n_valid, logits.shape, in_dtype)


def cross_entropy_backward(dloss, cache):
    """Derivation: [docs/layers/cross_entropy.md](../layers/cross_entropy.md).

    dlogits = (softmax - onehot(label)) / normalizer on counted rows, 0 elsewhere."""
    if isinstance(cache[0], str):                              # the fused forward's cache
        return fused.cross_entropy_backward(dloss, cache)
    P, y_safe, valid, n_valid, shape, in_dtype = cache         # stored: softmax P, labels (ignored -> 0), count
    xp = get_array_module(P)
    d = P.copy()                                               # (N, C)
    d[xp.arange(d.shape[0]), y_safe] -= 1.0                    # P - onehot(y)
    d *= (valid * (_upstream(dloss, d) / n_valid))[:, None]     # (N, 1): 0 on ignored rows
    return d.reshape(shape).astype(in_dtype, copy=False)


def mse_forward(pred, target, *, check=True):
    """Derivation: [docs/layers/cross_entropy.md](../layers/cross_entropy.md).

    Inputs: pred, target of the same shape; check: as every layer.
    Returns: loss = mean((pred - target)^2), cache."""
    if check:
        check_float("pred", pred)
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"target must have shape {tuple(pred.shape)} like pred, got {tuple(target.shape)}")
    p32 = upcast(pred)                                         # float16/bfloat16: float32 loss
    diff = p32 - target.astype(p32.dtype, copy=False)
    return (diff * diff).mean(), (diff, pred.dtype)


def mse_backward(dloss, cache):
    """Derivation: [docs/layers/cross_entropy.md](../layers/cross_entropy.md).

    Inputs: dloss, the upstream scalar. Returns: dpred = 2 (pred - target) dloss / M,
    shaped like pred (M = pred.size)."""
    diff, in_dtype = cache                                     # stored: pred - target
    # L = mean(diff^2)  ->  dpred = 2 diff / M
    return (diff * (_upstream(dloss, diff) * (2.0 / diff.size))).astype(in_dtype, copy=False)


def bce_with_logits_forward(logits, targets, *, check=True):
    """Derivation: [docs/layers/cross_entropy.md](../layers/cross_entropy.md).

    Inputs: logits, targets in [0, 1] of the same shape; check: validate them (False: the
    caller did; the range check costs a device synchronisation).
    Returns: mean binary CE, cache."""
    if check:
        _check_targets(logits, targets)
    xp = get_array_module(logits)
    in_dtype = logits.dtype
    logits = upcast(logits)                                    # float16/bfloat16: float32 loss
    t = targets.astype(logits.dtype, copy=False)
    # log(1 + exp(-|z|)) form: stable for large |z|
    loss = (xp.maximum(logits, 0) - logits * t + xp.log1p(xp.exp(-xp.abs(logits)))).mean()
    return loss, (logits, t, in_dtype)


def bce_with_logits_backward(dloss, cache):
    """Derivation: [docs/layers/cross_entropy.md](../layers/cross_entropy.md).

    Inputs: dloss, the upstream scalar. Returns: dlogits = (sigmoid(logits) - targets)
    dloss / M, shaped like logits (M = logits.size)."""
    logits, t, in_dtype = cache
    xp = get_array_module(logits)
    sig = 1.0 / (1.0 + xp.exp(-logits))                       # sigma(z)
    # L = mean(softplus(z) - z t)  ->  dz = (sigma(z) - t) / M
    return ((sig - t) * (_upstream(dloss, logits) / logits.size)).astype(in_dtype, copy=False)


def _check_labels(logits, labels, ignore_index):
    check_float("logits", logits)
    if tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"labels must have shape {tuple(logits.shape[:-1])} to match logits "
                         f"{tuple(logits.shape)}, got {tuple(labels.shape)}")
    y = labels.reshape(-1)
    check_ids("labels", y[y != ignore_index], logits.shape[-1])


def _check_targets(logits, targets):
    check_float("logits", logits)
    if tuple(logits.shape) != tuple(targets.shape):
        raise ValueError(f"targets must have shape {tuple(logits.shape)} like logits, got {tuple(targets.shape)}")
    if targets.size:
        lo, hi = float(targets.min()), float(targets.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"targets must lie in [0, 1], got values in [{lo}, {hi}]")
