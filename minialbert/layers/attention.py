"""Multi-head scaled-dot-product self-attention with an additive padding mask.

Letters: B batch, T sequence, H hidden, NH heads, HS = H // NH head size.
Parameters (HF names inside ``attention.``): query/key/value/dense .weight (H, H), .bias (H,).
Derivation: [docs/layers/attention.md](../layers/attention.md)
"""
from __future__ import annotations

import numpy as np

from ..backend import batched_matmul, finfo, get_array_module, is_float_dtype, is_low_precision
from . import fused
from ._check import (check_broadcastable, check_float, check_keys, check_ndim, check_same_dtype,
                     check_shape)
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward

ATTENTION_PARAMS = ("query.weight", "query.bias", "key.weight", "key.bias",
                    "value.weight", "value.bias", "dense.weight", "dense.bias")


def make_attention_mask(attention_mask, dtype=np.float32):
    """(B, T) of 1 (attend) / 0 (padding) -> additive mask (B, 1, 1, T): 0 where
    attended, the dtype's most negative finite number where padded (as HF eager does).
    After the row-max subtraction in softmax those keys get exactly zero weight."""
    check_ndim("attention_mask", attention_mask, 2)
    xp = get_array_module(attention_mask)
    dtype = np.dtype(dtype)
    carrier = dtype if dtype.kind == "f" else np.dtype(np.float32)   # bfloat16: built in float32
    neg = carrier.type(finfo(dtype).min)
    add = xp.where(attention_mask[:, None, None, :] > 0, carrier.type(0), neg)
    return add.astype(dtype, copy=False)


def _split_heads(x, NH):
    B, T, H = x.shape
    return x.reshape(B, T, NH, H // NH).transpose(0, 2, 1, 3)   # (B, NH, T, HS)


def _merge_heads(x):
    B, NH, T, HS = x.shape
    return x.transpose(0, 2, 1, 3).reshape(B, T, NH * HS)        # (B, T, H)


def attention_forward(x, p, num_heads, mask_add=None, dropout_p=0.0, rng=None,
                      training=False, return_probs=False, *, check=True):
    """Derivation: [docs/layers/attention.md](../layers/attention.md).

    Inputs: x (B, T, H); p dict with ATTENTION_PARAMS; mask_add broadcastable to
    (B, NH, T, T) (from :func:`make_attention_mask`) or None; dropout on the
    probabilities with ``dropout_p`` in training mode; check: validate the arguments
    (False: the caller did, e.g. the model once per forward rather than L times).
    Returns: out (B, T, H), cache — or (out, probs (B, NH, T, T), cache) with return_probs.
    ``out`` is the attention output after ``dense``, before residual and LayerNorm."""
    if check:
        _check_args(x, p, num_heads, mask_add)
    B, T, H = x.shape
    NH = num_heads
    HS = H // NH
    q, cq = linear_forward(x, p["query.weight"], p["query.bias"], check=False)   # (B, T, H)
    k, ck = linear_forward(x, p["key.weight"], p["key.bias"], check=False)       # (B, T, H)
    v, cv = linear_forward(x, p["value.weight"], p["value.bias"], check=False)   # (B, T, H)
    qh, kh, vh = _split_heads(q, NH), _split_heads(k, NH), _split_heads(v, NH)  # (B, NH, T, HS)
    scale = x.dtype.type(HS ** -0.5)
    # batched_matmul is ``@`` over (B, NH); in float16/bfloat16 on the GPU it is one strided-
    # batched cuBLAS GEMM (CuPy's matmul would run a >2-d float16 product in float32)
    scores = batched_matmul(qh, kh.transpose(0, 1, 3, 2))            # (B, NH, T, T)
    if fused.use("softmax", scores) and (mask_add is None or (mask_add.ndim == 4 and mask_add.shape[1:3] == (1, 1))):
        # opt-in CUDA kernel: scale, key-padding mask (B, 1, 1, T) and softmax in one pass
        probs = c_probs = fused.masked_softmax_forward(scores, HS ** -0.5, mask_add)
    elif is_low_precision(scores.dtype):
        # float16/bfloat16: scale, mask and softmax in float32 (a float16 score plus the mask's
        # -65504 would overflow to -inf); probs are stored in the low precision
        s32 = scores.astype(np.float32)
        s32 *= np.float32(HS ** -0.5)
        if mask_add is not None:
            s32 += mask_add
        probs = c_probs = softmax_forward(s32, check=False)[0].astype(x.dtype)
    else:
        scores *= scale
        if mask_add is not None:
            scores += mask_add
        probs, c_probs = softmax_forward(scores, check=False)       # (B, NH, T, T)
    probs_d, cd = dropout_forward(probs, dropout_p, rng, training)  # (B, NH, T, T)
    ctx = _merge_heads(batched_matmul(probs_d, vh))                 # (B, T, H)
    out, co = linear_forward(ctx, p["dense.weight"], p["dense.bias"], check=False)  # (B, T, H)
    cache = (NH, scale, cq, ck, cv, qh, kh, vh, c_probs, probs_d, cd, co)
    if return_probs:
        return out, probs, cache
    return out, cache


def attention_backward(dout, cache, g):
    """Derivation: [docs/layers/attention.md](../layers/attention.md).

    Inputs: dout (B, T, H); g dict of gradient buffers keyed like ATTENTION_PARAMS
    (accumulated into; a missing key skips that gradient). Returns: dx (B, T, H).
    Stored in the cache: the inputs of every matmul and the probabilities."""
    NH, scale, cq, ck, cv, qh, kh, vh, c_probs, probs_d, cd, co = cache  # matmul inputs, probs, mask
    # out = ctx @ Wd.T + bd
    dctx = linear_backward(dout, co, g.get("dense.weight"), g.get("dense.bias"))  # (B, T, H)
    dctx_h = _split_heads(dctx, NH)                                 # (B, NH, T, HS): backward of merge
    # ctx_h = probs_d @ vh
    dprobs_d = batched_matmul(dctx_h, vh.transpose(0, 1, 3, 2))     # dC vh^T   (B, NH, T, T)
    dvh = batched_matmul(probs_d.transpose(0, 1, 3, 2), dctx_h)     # probs_d^T dC   (B, NH, T, HS)
    dprobs = dropout_backward(dprobs_d, cd)                         # dprobs_d * mask
    # probs = softmax(scores); the additive mask is a constant: no gradient
    dscores = softmax_backward(dprobs, c_probs)                     # (B, NH, T, T)
    dscores *= scale
    # scores = qh @ kh.T * scale
    dqh = batched_matmul(dscores, kh)                               # (B, NH, T, HS)
    dkh = batched_matmul(dscores.transpose(0, 1, 3, 2), qh)         # (B, NH, T, HS)
    dx = linear_backward(_merge_heads(dqh), cq, g.get("query.weight"), g.get("query.bias"))
    dx += linear_backward(_merge_heads(dkh), ck, g.get("key.weight"), g.get("key.bias"))
    dx += linear_backward(_merge_heads(dvh), cv, g.get("value.weight"), g.get("value.bias"))
    return dx


def _check_args(x, p, num_heads, mask_add):
    check_float("x", x)
    check_ndim("x", x, 3)
    B, T, H = x.shape
    if num_heads < 1 or H % num_heads:
        raise ValueError(f"hidden size {H} is not divisible by num_heads={num_heads}")
    check_keys("attention parameters", p, ATTENTION_PARAMS)
    for k in ATTENTION_PARAMS:
        check_shape(f"attention {k}", p[k], (H, H) if k.endswith("weight") else (H,))
    check_same_dtype(x=x, **{k.replace(".", "_"): p[k] for k in ATTENTION_PARAMS})
    if mask_add is not None:
        check_broadcastable("mask_add", mask_add, (B, num_heads, T, T))
        # a float64 mask's finfo.min becomes -inf in float32 scores: a fully padded row is NaN
        if not is_float_dtype(mask_add.dtype) or mask_add.dtype.itemsize > x.dtype.itemsize:
            raise ValueError(f"mask_add must be a float array no wider than x ({x.dtype}), got "
                             f"{mask_add.dtype}: use make_attention_mask(attention_mask, dtype=x.dtype)")
