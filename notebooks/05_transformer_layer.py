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
# # 5. The transformer layer: LayerNorm, GELU, feed-forward, residuals, post-LN
#
# ALBERT's layer is BERT's *post-LN* layer: attention, add the input, normalise; a
# feed-forward block, add its input, normalise again.
#
# $$h_1 = \mathrm{LN}_1\big(h + \mathrm{Attn}(h)\big),\qquad
# h_2 = \mathrm{LN}_2\big(h_1 + W_2\,\mathrm{gelu}(W_1 h_1 + b_1) + b_2\big)$$
#
# Attention was notebook 4. Here we build LayerNorm and GELU by hand with their
# backward passes, check each numerically, assemble the layer and its backward, check
# the whole thing, and end by comparing with the library.

# %%
# Scale: "cpu-small" for CI; "gpu" times the layer on CuPy at ALBERT-base width.
SCALE = "cpu-small"

import time

import matplotlib.pyplot as plt
import numpy as np

from minialbert import backend, gradcheck
from minialbert.layers import (ATTENTION_PARAMS, FFN_PARAMS, attention_backward,
                               attention_forward, feedforward_backward, feedforward_forward,
                               gelu_forward, gelu_new_backward, gelu_new_forward,
                               layernorm_backward, layernorm_forward)

B, T, H, NH, I = 2, 5, 8, 2, 16      # batch, sequence, hidden, heads, intermediate
EPS = 1e-12                          # ALBERT's layer_norm_eps
rng = np.random.default_rng(0)


def check(f, inputs, analytic, dout, zero=()):
    """Print and assert the gradient check of every input (relative error <= 1e-6;
    names in `zero` are analytically zero and may be rounding noise, <= 1e-8 absolute)."""
    for name, r in gradcheck.check_gradients(f, inputs, analytic, dout).items():
        print(r)
        assert r.ok(rtol=1e-6, atol=1e-8 if name in zero else 0.0), r


# %% [markdown]
# ## LayerNorm
#
# Over the last axis (size D), with the *biased* variance and eps inside the root:
#
# $$\mu = \tfrac1D\textstyle\sum_j x_j,\quad \sigma^2 = \tfrac1D\sum_j (x_j-\mu)^2,\quad
# \hat x = (x-\mu)\,r,\quad r = (\sigma^2+\epsilon)^{-1/2},\quad y = \gamma \odot \hat x + \beta.$$
#
# Backward: $d\gamma = \sum dy\,\hat x$ and $d\beta = \sum dy$ over all rows. With
# $g = dy \odot \gamma$, the gradient through $\mu$ and $\sigma^2$ collapses to two means:
#
# $$dx = r\,\big(g - \overline{g} - \hat x\,\overline{g \hat x}\big).$$

# %%
def my_layernorm_forward(x, gamma, beta, eps=EPS):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)     # biased: divide by D, not D - 1
    r = 1 / np.sqrt(var + eps)
    xhat = (x - mu) * r
    return gamma * xhat + beta, (xhat, r, gamma)


def my_layernorm_backward(dy, cache):
    xhat, r, gamma = cache
    dgamma = (dy * xhat).reshape(-1, xhat.shape[-1]).sum(0)
    dbeta = dy.reshape(-1, dy.shape[-1]).sum(0)
    g = dy * gamma
    dx = r * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, dgamma, dbeta


x = rng.standard_normal((B, T, H))
gamma, beta = 1 + 0.1 * rng.standard_normal(H), 0.1 * rng.standard_normal(H)
y, c = my_layernorm_forward(x, gamma, beta)
dy = rng.standard_normal(y.shape)
dx, dgamma, dbeta = my_layernorm_backward(dy, c)
check(lambda: my_layernorm_forward(x, gamma, beta)[0],
      {"x": x, "gamma": gamma, "beta": beta}, {"x": dx, "gamma": dgamma, "beta": dbeta}, dy)

# %% [markdown]
# A subtlety the numerical check catches: `np.var(x, ddof=1)` (the *unbiased* variance,
# PyTorch's `torch.var` default) gives a LayerNorm that differs from HF's and whose
# gradient our formula does not describe. LayerNorm uses the biased one.

# %%
print("biased vs unbiased normalisation, max difference:",
      np.abs((x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + EPS)
             - (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, ddof=1, keepdims=True) + EPS)).max())

# %% [markdown]
# ## GELU, ALBERT's tanh form
#
# ALBERT (and HF's `gelu_new`) uses the tanh approximation
# $\mathrm{gelu}(x) = \tfrac12 x\,(1 + \tanh u)$, $u = c\,(x + 0.044715\,x^3)$, $c = \sqrt{2/\pi}$:
#
# $$\frac{d\,\mathrm{gelu}}{dx} = \tfrac12(1+t) + \tfrac12 x\,(1-t^2)\,c\,(1 + 3\cdot 0.044715\,x^2),
# \qquad t = \tanh u.$$
#
# (Write the cube as `x * x * x`: NumPy's float32 `x ** 3` is many times slower. The cell
# below times both on an (8, 128, 3072) float32 array; on the project's shared 2-core CPU,
# NumPy 2.4.6, under load, it printed 1176 ms against 22 ms, 54x.)

# %%
def best_ms(f, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


xc = np.random.default_rng(0).standard_normal((8, 128, 3072), dtype=np.float32)
slow, fast = best_ms(lambda: xc ** 3), best_ms(lambda: xc * xc * xc)
print(f"float32 (8, 128, 3072): x ** 3 {slow:.1f} ms, x * x * x {fast:.1f} ms (best of 3): "
      f"{slow / fast:.0f}x, NumPy {np.__version__}")

# %%
C = np.sqrt(2 / np.pi)


def my_gelu_forward(x):
    t = np.tanh(C * (x + 0.044715 * x * x * x))
    return 0.5 * x * (1 + t), (x, t)


def my_gelu_backward(dy, cache):
    x, t = cache
    return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * 0.044715 * x * x))


z = rng.standard_normal((B, T, I)) * 2
dz_up = rng.standard_normal(z.shape)
check(lambda: my_gelu_forward(z)[0], {"z": z},
      {"z": my_gelu_backward(dz_up, my_gelu_forward(z)[1])}, dz_up)

# %%
s = np.linspace(-4, 4, 401)
g_new, cg = my_gelu_forward(s)
g_erf = gelu_forward(s)[0]
fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
a1.plot(s, g_new, label="gelu_new (tanh form, ALBERT)")
a1.plot(s, np.maximum(s, 0), "--", lw=1, label="ReLU")
a1.set_title("GELU"); a1.legend(fontsize=8); a1.grid(alpha=0.3)
a2.plot(s, my_gelu_backward(np.ones_like(s), cg), label="d gelu_new / dx")
a2.plot(s, 1e3 * (g_new - g_erf), label="1000 x (tanh form - erf form)")
a2.set_title("derivative, and the two GELUs' difference"); a2.legend(fontsize=8); a2.grid(alpha=0.3)
plt.tight_layout(); plt.show()
print(f"max |gelu_new - gelu_erf| on [-4, 4]: {np.abs(g_new - g_erf).max():.1e}")

# %% [markdown]
# ## The whole layer, by hand
#
# Forward, storing what the backward needs. The residual connections are where the
# gradient *splits*: in $h_1 = \mathrm{LN}_1(h + a)$ the gradient of the sum flows
# unchanged to both $h$ and $a$, and the two contributions to $dh$ add up.
# Parameter names follow HuggingFace's `AlbertLayer`.

# %%
def init_layer(H, I, r, std=0.3):
    p = {k: r.standard_normal((H, H) if k.endswith("weight") else (H,)) * std
         for k in ATTENTION_PARAMS}
    p |= {"ffn.weight": r.standard_normal((I, H)) * std, "ffn.bias": r.standard_normal(I) * std,
          "ffn_output.weight": r.standard_normal((H, I)) * std,
          "ffn_output.bias": r.standard_normal(H) * std}
    for ln in ("attention.LayerNorm", "full_layer_layer_norm"):
        p[f"{ln}.weight"] = 1 + 0.1 * r.standard_normal(H)
        p[f"{ln}.bias"] = 0.1 * r.standard_normal(H)
    return p


def my_layer_forward(h, p, mask_add=None):
    a, c_att = attention_forward(h, p, NH, mask_add)                    # notebook 4
    h1, c_ln1 = my_layernorm_forward(h + a, p["attention.LayerNorm.weight"],
                                     p["attention.LayerNorm.bias"])     # (B, T, H)
    u = h1 @ p["ffn.weight"].T + p["ffn.bias"]                          # (B, T, I)
    act, c_act = my_gelu_forward(u)                                     # (B, T, I)
    f = act @ p["ffn_output.weight"].T + p["ffn_output.bias"]          # (B, T, H)
    h2, c_ln2 = my_layernorm_forward(f + h1, p["full_layer_layer_norm.weight"],
                                     p["full_layer_layer_norm.bias"])  # (B, T, H)
    return h2, (c_att, c_ln1, h1, c_act, act, c_ln2)


def my_layer_backward(dh2, cache, p):
    c_att, c_ln1, h1, c_act, act, c_ln2 = cache
    g = {k: np.zeros_like(v) for k, v in p.items()}
    # h2 = LN2(f + h1)
    ds2, g["full_layer_layer_norm.weight"], g["full_layer_layer_norm.bias"] = \
        my_layernorm_backward(dh2, c_ln2)
    df, dh1 = ds2, ds2.copy()                       # the residual: one gradient, two paths
    # f = act @ W2.T + b2
    g["ffn_output.weight"] = df.reshape(-1, H).T @ act.reshape(-1, I)
    g["ffn_output.bias"] = df.sum((0, 1))
    dact = df @ p["ffn_output.weight"]
    # act = gelu(u)
    du = my_gelu_backward(dact, c_act)
    # u = h1 @ W1.T + b1
    g["ffn.weight"] = du.reshape(-1, I).T @ h1.reshape(-1, H)
    g["ffn.bias"] = du.sum((0, 1))
    dh1 += du @ p["ffn.weight"]                     # second path into h1
    # h1 = LN1(h + a)
    ds1, g["attention.LayerNorm.weight"], g["attention.LayerNorm.bias"] = \
        my_layernorm_backward(dh1, c_ln1)
    # a = Attn(h): the library's attention backward (notebook 4), accumulating into g
    dh = ds1 + attention_backward(ds1, c_att, g)    # residual path + attention path
    return dh, g


p = init_layer(H, I, rng)
h = rng.standard_normal((B, T, H))
h2, cache = my_layer_forward(h, p)
dh2 = rng.standard_normal(h2.shape)
dh, g = my_layer_backward(dh2, cache, p)
check(lambda: my_layer_forward(h, p)[0], {"h": h, **p}, {"h": dh, **g}, dh2, zero={"key.bias"})

# %% [markdown]
# ## Why the LayerNorms: activations stay on scale
#
# Apply the layer 12 times with the same weights, as ALBERT does, and track the size of
# the hidden state. Without the two LayerNorms every residual step adds to it and the
# activations grow with depth. With post-LN, every application ends in a LayerNorm: each
# token's vector is brought back to mean 0 and variance 1 across its H features ($\hat x$),
# then scaled feature by feature by $\gamma$ and shifted by $\beta$. The token's own mean
# and spread are not $\beta$ and $\gamma$ (those are vectors, one value per feature), but
# they are set by $\gamma$ and $\beta$ alone, the same at every depth, so the size stays put.

# %%
def layer_without_ln(h, p):
    h1 = h + attention_forward(h, p, NH)[0]
    return h1 + feedforward_forward(h1, p, "gelu_new")[0]


h_ln = h_raw = rng.standard_normal((4, 16, H))
sizes = {"post-LN (ALBERT)": [], "no LayerNorm": []}
for depth in range(12):
    h_ln, h_raw = my_layer_forward(h_ln, p)[0], layer_without_ln(h_raw, p)
    sizes["post-LN (ALBERT)"].append(h_ln.std())
    sizes["no LayerNorm"].append(h_raw.std())
plt.figure(figsize=(5, 3))
for name, v in sizes.items():
    plt.semilogy(range(1, 13), v, "o-", label=name)
plt.xlabel("depth (the same layer applied again)"); plt.ylabel("std of hidden state")
plt.legend(fontsize=8); plt.grid(alpha=0.3); plt.title("One shared layer, applied 12 times")
plt.show()

# %% [markdown]
# ## The library's version, at ALBERT-base width
#
# `layernorm_forward/backward`, `gelu_new_forward/backward` and
# `feedforward_forward/backward` (linear, activation, linear) are the library's
# versions of the pieces above. The model module composes them into the layer that
# ALBERT shares across depth. Timing a float32 forward and backward:

# %%
SIZES = {"cpu-small": (4, 128, 768, 12, 3072), "gpu": (32, 512, 768, 12, 3072)}[SCALE]
Bt, Tt, Ht, NHt, It = SIZES
dev = "gpu" if SCALE == "gpu" and backend.gpu_available() else "cpu"
r = backend.Random(0, device=dev)
xt = r.normal((Bt, Tt, Ht))
pt = {k: r.normal((Ht, Ht) if k.endswith("weight") else (Ht,), std=0.02) for k in ATTENTION_PARAMS}
pt |= {"ffn.weight": r.normal((It, Ht), std=0.02), "ffn.bias": r.normal((It,), std=0.02),
       "ffn_output.weight": r.normal((Ht, It), std=0.02), "ffn_output.bias": r.normal((Ht,), std=0.02)}
gt = {k: backend.xp_for(dev).zeros_like(v) for k, v in pt.items()}
t0 = time.perf_counter()
a, ca = attention_forward(xt, pt, NHt)
f, cf = feedforward_forward(a, pt, "gelu_new")
da = feedforward_backward(f, cf, gt)
attention_backward(da, ca, gt)
backend.synchronize(dev)
print(f"attention + feed-forward, forward+backward, B={Bt} T={Tt} H={Ht} I={It} on {dev}: "
      f"{time.perf_counter() - t0:.2f} s")

# %% [markdown]
# ## Check: our pieces are the library's

# %%
dgl, dbl = np.zeros(H), np.zeros(H)
yl, cl = layernorm_forward(x, gamma, beta, eps=EPS)
dxl = layernorm_backward(dy, cl, dgl, dbl)
np.testing.assert_allclose(y, yl, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(dx, dxl, rtol=1e-10, atol=1e-12)
np.testing.assert_allclose(dgamma, dgl, rtol=1e-12); np.testing.assert_allclose(dbeta, dbl, rtol=1e-12)

zl, czl = gelu_new_forward(z)
np.testing.assert_allclose(my_gelu_forward(z)[0], zl, rtol=1e-12, atol=1e-15)
np.testing.assert_allclose(my_gelu_backward(dz_up, my_gelu_forward(z)[1]),
                           gelu_new_backward(dz_up, czl), rtol=1e-12, atol=1e-15)

# the feed-forward part of our layer == the library's feedforward_forward/backward
h1 = cache[2]
f_lib, cf_lib = feedforward_forward(h1, p, "gelu_new")
f_mine = cache[4] @ p["ffn_output.weight"].T + p["ffn_output.bias"]
np.testing.assert_allclose(f_mine, f_lib, rtol=1e-12, atol=1e-12)
print("hand-written LayerNorm, GELU and feed-forward == minialbert.layers")

# %% [markdown]
# ## Check: our layer is the library's layer
#
# The model module's `albert_layer_forward/backward` is the layer ALBERT shares across
# depth (notebook 6 applies it L times). It takes the layer's parameters as two dicts,
# following HF's `AlbertLayer`: `pa`, the attention block (`query`, `key`, `value`, `dense`
# and the first LayerNorm, named `LayerNorm.*` as in HF's `AlbertAttention`), and `pf`, the
# feed-forward block (`ffn`, `ffn_output`, `full_layer_layer_norm`). The model keeps them as
# `encoder.attention.{k}.*` and `encoder.ffn.{k}.*`, so that the paper's Table 4 can share
# one block without the other. The other arguments are the additive padding mask
# (`mask_add`, None: no padding), the random stream for dropout (`rng`) and the mode
# (`training=False`: no dropout). The gradients are *accumulated* into buffers `ga, gf`.

# %%
from minialbert import AlbertConfig
from minialbert.model import ATTENTION_BLOCK, FFN_BLOCK, albert_layer_backward, albert_layer_forward

cfg = AlbertConfig(hidden_size=H, num_attention_heads=NH, intermediate_size=I,
                   hidden_act="gelu_new", layer_norm_eps=EPS,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
pa = {k: p[k] for k in ATTENTION_PARAMS} | {"LayerNorm.weight": p["attention.LayerNorm.weight"],
                                            "LayerNorm.bias": p["attention.LayerNorm.bias"]}
pf = {k: p[k] for k in FFN_BLOCK}
assert set(pa) == set(ATTENTION_BLOCK)
h2_lib, _, c_lib = albert_layer_forward(h, pa, pf, cfg, mask_add=None, rng=None, training=False)
ga = {k: np.zeros_like(v) for k, v in pa.items()}
gf = {k: np.zeros_like(v) for k, v in pf.items()}
dh_lib = albert_layer_backward(dh2, c_lib, ga, gf)

np.testing.assert_allclose(h2, h2_lib, rtol=1e-12, atol=1e-12)
np.testing.assert_allclose(dh, dh_lib, rtol=1e-10, atol=1e-12)
g_lib = {k: ga[k] for k in ATTENTION_PARAMS} | {f"attention.{k}": ga[k] for k in ("LayerNorm.weight", "LayerNorm.bias")} | gf
worst = max(float(np.abs(g[k] - g_lib[k]).max() / (np.abs(g_lib[k]).max() + 1e-30))
            for k in g if k != "key.bias")
print(f"hand-built layer == albert_layer_forward/backward: outputs, dh, and every parameter "
      f"gradient (largest relative difference {worst:.1e})")
assert worst < 1e-10
