"""The position-wise feed-forward block: ``act(x @ W1.T + b1) @ W2.T + b2``.

Parameters (HF names inside an AlbertLayer): ffn.weight (I, H), ffn.bias (I,),
ffn_output.weight (H, I), ffn_output.bias (H,).
Derivation: [docs/layers/feedforward.md](../layers/feedforward.md)
"""
from __future__ import annotations

from ._check import check_float, check_keys
from .activations import get_activation
from .linear import linear_backward, linear_forward

FFN_PARAMS = ("ffn.weight", "ffn.bias", "ffn_output.weight", "ffn_output.bias")


def feedforward_forward(x, p, activation="gelu_new", *, check=True):
    """Derivation: [docs/layers/feedforward.md](../layers/feedforward.md).

    Inputs: x (..., H); p dict with FFN_PARAMS; check: validate the arguments (False: the
    caller did). Returns: out (..., H), cache."""
    if check:
        check_float("x", x)
        check_keys("feed-forward parameters", p, FFN_PARAMS)
    act_fwd, act_bwd = get_activation(activation)
    h, c1 = linear_forward(x, p["ffn.weight"], p["ffn.bias"], check=check)                # (..., I)
    a, ca = act_fwd(h, check=check)                                                       # (..., I)
    out, c2 = linear_forward(a, p["ffn_output.weight"], p["ffn_output.bias"], check=check)  # (..., H)
    return out, (c1, ca, c2, act_bwd)


def feedforward_backward(dout, cache, g):
    """Derivation: [docs/layers/feedforward.md](../layers/feedforward.md).

    Inputs: dout (..., H); g gradient buffers keyed like FFN_PARAMS (accumulated).
    Returns: dx (..., H)."""
    c1, ca, c2, act_bwd = cache
    # out = a @ W2.T + b2
    da = linear_backward(dout, c2, g.get("ffn_output.weight"), g.get("ffn_output.bias"))
    # a = act(h)
    dh = act_bwd(da, ca)
    # h = x @ W1.T + b1
    return linear_backward(dh, c1, g.get("ffn.weight"), g.get("ffn.bias"))
