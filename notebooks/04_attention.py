# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 4. Multi-head self-attention, forward and backward by hand
#
# ALBERT's attention is BERT's: every position mixes the value vectors of all positions,
# weighted by a softmax over scaled dot products of queries and keys, in NH heads of
# size HS = H / NH. We write the forward in a few lines, derive and write the backward,
# check it numerically, handle padding with an additive mask, plot attention maps, and
# end by checking our version against `minialbert.layers.attention_forward/backward`.
# The full derivation is in the docs: *Layers → Attention* (docs/layers/attention.md).

# %%
# Scale: "cpu-small" for CI and laptops; "gpu" runs the timing cell on CuPy with larger sizes.
SCALE = "cpu-small"

import time

import matplotlib.pyplot as plt
import numpy as np

from minialbert import backend, gradcheck
from minialbert.layers import (ATTENTION_PARAMS, attention_backward, attention_forward,
                               make_attention_mask)

B, T, H, NH = 2, 6, 8, 2          # batch, sequence, hidden, heads
HS = H // NH                      # head size
rng = np.random.default_rng(0)
x = rng.standard_normal((B, T, H))                          # float64 for the checks
p = {k: rng.standard_normal((H, H) if k.endswith("weight") else (H,)) * 0.5
     for k in ATTENTION_PARAMS}
print({k: v.shape for k, v in p.items()})

# %% [markdown]
# ## Forward
#
# With $X \in \mathbb{R}^{T\times H}$ for one sequence, per head $h$:
#
# $$Q = X W_q^\top + b_q,\quad K = X W_k^\top + b_k,\quad V = X W_v^\top + b_v
# \qquad (T, H) \to NH \text{ heads of } (T, HS)$$
#
# $$S_h = \frac{Q_h K_h^\top}{\sqrt{HS}} + M,\qquad P_h = \mathrm{softmax}(S_h),\qquad
# C_h = P_h V_h,\qquad \mathrm{out} = [C_1 \dots C_{NH}]\, W_d^\top + b_d.$$
#
# $M$ is the additive padding mask: 0 for real keys, a huge negative number for padding,
# so that after the softmax a padded key gets weight exactly zero.

# %%
def split_heads(a):               # (B, T, H) -> (B, NH, T, HS)
    return a.reshape(B, T, NH, HS).transpose(0, 2, 1, 3)


def merge_heads(a):               # (B, NH, T, HS) -> (B, T, H)
    return a.transpose(0, 2, 1, 3).reshape(B, T, H)


def my_attention_forward(x, p, mask_add=None):
    q = split_heads(x @ p["query.weight"].T + p["query.bias"])      # (B, NH, T, HS)
    k = split_heads(x @ p["key.weight"].T + p["key.bias"])          # (B, NH, T, HS)
    v = split_heads(x @ p["value.weight"].T + p["value.bias"])      # (B, NH, T, HS)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(HS)                   # (B, NH, T, T)
    if mask_add is not None:
        s = s + mask_add
    e = np.exp(s - s.max(axis=-1, keepdims=True))                   # stable softmax
    P = e / e.sum(axis=-1, keepdims=True)                           # (B, NH, T, T)
    ctx = merge_heads(P @ v)                                        # (B, T, H)
    out = ctx @ p["dense.weight"].T + p["dense.bias"]               # (B, T, H)
    return out, (x, q, k, v, P, ctx)


out, my_cache = my_attention_forward(x, p)
lib_out, lib_P, lib_cache = attention_forward(x, p, NH, return_probs=True)
print("forward max |mine - library| =", np.abs(out - lib_out).max())
print("attention rows sum to 1:", np.allclose(my_cache[4].sum(-1), 1))

# %% [markdown]
# ## Backward
#
# Walk the forward from the end, one line at a time (the forward line is written as a
# comment above its gradient, as in the library). With $dY$ the upstream gradient:
#
# * $\mathrm{out} = C W_d^\top + b_d$: $\;dC = d\mathrm{out}\, W_d$, $\;dW_d = d\mathrm{out}^\top C$, $\;db_d = \sum d\mathrm{out}$.
# * $C_h = P_h V_h$: $\;dP_h = dC_h V_h^\top$, $\;dV_h = P_h^\top dC_h$.
# * $P = \mathrm{softmax}(S)$ row by row: $\;dS_{ij} = P_{ij}\,(dP_{ij} - \sum_k dP_{ik} P_{ik})$.
#   The mask is a constant: no gradient.
# * $S_h = Q_h K_h^\top / \sqrt{HS}$: $\;dQ_h = dS_h K_h / \sqrt{HS}$, $\;dK_h = dS_h^\top Q_h / \sqrt{HS}$.
# * $Q, K, V$ are three linear maps of the same $X$, so $dX$ is the **sum** of three terms.

# %%
def my_attention_backward(dout, cache, p):
    x, q, k, v, P, ctx = cache
    g = {}
    # out = ctx @ Wd.T + bd
    g["dense.weight"] = dout.reshape(-1, H).T @ ctx.reshape(-1, H)
    g["dense.bias"] = dout.sum(axis=(0, 1))
    dctx = split_heads(dout @ p["dense.weight"])                    # (B, NH, T, HS)
    # ctx_h = P @ v
    dP = dctx @ v.transpose(0, 1, 3, 2)                             # (B, NH, T, T)
    dv = P.transpose(0, 1, 3, 2) @ dctx                             # (B, NH, T, HS)
    # P = softmax(s)
    ds = P * (dP - (dP * P).sum(axis=-1, keepdims=True))            # (B, NH, T, T)
    # s = q @ k.T / sqrt(HS)
    dq = ds @ k / np.sqrt(HS)
    dk = ds.transpose(0, 1, 3, 2) @ q / np.sqrt(HS)
    dx = np.zeros_like(x)
    for name, d in (("query", dq), ("key", dk), ("value", dv)):
        d = merge_heads(d)                                          # (B, T, H)
        # q = x @ Wq.T + bq (and k, v): three paths from x, their gradients add
        g[f"{name}.weight"] = d.reshape(-1, H).T @ x.reshape(-1, H)
        g[f"{name}.bias"] = d.sum(axis=(0, 1))
        dx += d @ p[f"{name}.weight"]
    return dx, g


dout = rng.standard_normal((B, T, H))           # a random upstream gradient, never ones
dx, g = my_attention_backward(dout, my_cache, p)

# %% [markdown]
# ## Gradient check, inline
#
# Central differences in float64 with the same random upstream gradient, for the input
# and all eight parameters (`minialbert.gradcheck`, built by hand in notebook 1).
# One thing to notice: **the key bias gets zero gradient.**
# Adding $b_k$ to every key adds $q_i \cdot b_k$ to every score in row $i$, and a softmax
# does not change when a constant is added to its row.

# %%
f = lambda: my_attention_forward(x, p)[0]
res = gradcheck.check_gradients(f, {"x": x, **p}, {"x": dx, **g}, dout)
for r in res.values():
    print(r)
print("max |d key.bias| =", np.abs(g["key.bias"]).max())
# Relative error 1e-6 everywhere, except key.bias: it is zero analytically, so its
# numerical value is pure rounding noise, eps * |sum(out * dout)| / h ~ 1e-16 * 10 / 1e-6.
for name, r in res.items():
    assert r.ok(rtol=1e-6, atol=1e-8 if name == "key.bias" else 0.0), r

# %% [markdown]
# ## Padding masks
#
# Sequences in a batch have different lengths; the shorter ones are padded.
# `make_attention_mask` turns a (B, T) 0/1 mask into an additive (B, 1, 1, T) mask that
# broadcasts over heads and query positions. Two properties to check: padded keys get
# weight exactly 0, and the outputs at real tokens do not depend on what the padding holds.

# %%
attention_mask = np.ones((B, T), dtype=np.int64)
attention_mask[1, 4:] = 0                       # the second sequence has 4 real tokens
mask_add = make_attention_mask(attention_mask, dtype=np.float64)
out_m, cache_m = my_attention_forward(x, p, mask_add)
P_m = cache_m[4]
print("weight on padded keys:", P_m[1, :, :, 4:].max())

x_junk = x.copy()
x_junk[1, 4:] = 100 * rng.standard_normal((T - 4, H))              # garbage in the padding
out_junk = my_attention_forward(x_junk, p, mask_add)[0]
print("real-token outputs unchanged:", np.abs(out_junk[1, :4] - out_m[1, :4]).max())
assert P_m[1, :, :, 4:].max() == 0.0

# %% [markdown]
# ## Attention maps
#
# Rows are query positions, columns are keys. With random weights the pattern is noise,
# but the mask is plain to see: the padded columns of the second sequence are exactly zero
# (and the padded *rows* still attend to the real tokens: their outputs are ignored later).
# The attention maps of a *trained* model, on a real sentence, are in notebook 8.

# %%
fig, axes = plt.subplots(B, NH, figsize=(2.6 * NH, 2.4 * B), squeeze=False)
for b in range(B):
    for h in range(NH):
        ax = axes[b, h]
        im = ax.imshow(P_m[b, h], vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"sequence {b}, head {h}", fontsize=9)
        ax.set_xlabel("key"); ax.set_ylabel("query")
fig.colorbar(im, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# ## The library's version
#
# `attention_forward(x, p, num_heads, mask_add, dropout_p, rng, training, return_probs)`
# returns `(out, cache)` and `attention_backward(dout, cache, grads)` accumulates into
# gradient buffers we zero once. The library also validates shapes before any
# arithmetic and supports dropout on the probabilities (seeded, mask in the cache).

# %%
grads = {k: np.zeros_like(v) for k, v in p.items()}
lib_out_m, lib_cache_m = attention_forward(x, p, NH, mask_add=mask_add)
lib_dx = attention_backward(dout, lib_cache_m, grads)
my_dx, my_g = my_attention_backward(dout, cache_m, p)

SIZES = {"cpu-small": (8, 128, 256, 4), "gpu": (32, 512, 768, 12)}[SCALE]
Bt, Tt, Ht, NHt = SIZES
dev = "gpu" if SCALE == "gpu" and backend.gpu_available() else "cpu"
r32 = backend.Random(0, device=dev)
xt = r32.normal((Bt, Tt, Ht))
pt = {k: r32.normal((Ht, Ht) if k.endswith("weight") else (Ht,), std=0.02) for k in ATTENTION_PARAMS}
gt = {k: backend.xp_for(dev).zeros_like(v) for k, v in pt.items()}
t0 = time.perf_counter()
o, c = attention_forward(xt, pt, NHt)
attention_backward(o, c, gt)
backend.synchronize(dev)
print(f"float32 forward+backward at B={Bt}, T={Tt}, H={Ht}, NH={NHt} on {dev}: "
      f"{(time.perf_counter() - t0) * 1e3:.0f} ms")

# %% [markdown]
# ## Check: our attention is the library's

# %%
np.testing.assert_allclose(out_m, lib_out_m, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(my_dx, lib_dx, rtol=1e-10, atol=1e-12)
for k in ATTENTION_PARAMS:
    np.testing.assert_allclose(my_g[k], grads[k], rtol=1e-10, atol=1e-12, err_msg=k)
print("hand-written attention forward and backward == minialbert.layers.attention")
