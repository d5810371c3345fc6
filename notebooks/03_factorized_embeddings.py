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
# # 3. Factorized embeddings: V×E + E×H instead of V×H
#
# In BERT the word embeddings have the hidden size: a V×H matrix, 23M parameters for
# V = 30000, H = 768, and 123M for H = 4096. ALBERT's first idea: words do not need a
# context-sized vector. Look them up in a small E-dimensional space and project to H:
#
# $$h_0 = \mathrm{LN}\big(W_{\text{word}}[\text{ids}] + W_{\text{type}}[\text{types}] + W_{\text{pos}}[0..T)\big)\,W_{\text{map}}^\top + b_{\text{map}},
# \qquad W_{\text{word}}: V\times E,\quad W_{\text{map}}: H\times E.$$
#
# The cost drops from $VH$ to $VE + EH$. We build the lookup and projection by hand with
# their backward (the scatter-add is the interesting part), check them, compare with the
# model's projected embeddings, and reproduce the paper's Table 3 with `count_parameters`.

# %%
# Scale: the width of the model used in the comparison at the end ("tiny" runs anywhere).
PRESET = "tiny"

import matplotlib.pyplot as plt
import numpy as np

import minialbert
from minialbert import AlbertConfig, count_parameters, gradcheck
from minialbert.layers import (embedding_backward, embedding_forward, layernorm_forward,
                               linear_backward, linear_forward)

# %% [markdown]
# ## The lookup and the projection, by hand
#
# The lookup $e = W[\text{ids}]$ copies rows, so its backward *adds* each output gradient
# into the row it came from. Ids repeat (every sequence starts with `[CLS]`; "the" is
# everywhere), and that is the classic bug: `dW[ids] += de` is a buffered fancy-index
# assignment, so for a repeated id only the *last* write survives. `np.add.at` adds them all.

# %%
B, T, V, E, H = 2, 5, 11, 4, 6
rng = np.random.default_rng(0)
ids = rng.integers(0, V, (B, T)); ids[:, 0] = 2                 # [CLS] everywhere: repeats
W = rng.standard_normal((V, E))
W_map, b_map = rng.standard_normal((H, E)), rng.standard_normal(H)


def my_embed_forward(ids, W, W_map, b_map):
    e = W[ids]                                                  # (B, T, E)
    h = e @ W_map.T + b_map                                     # (B, T, H)
    return h, (ids, e)


def my_embed_backward(dh, cache, W_shape, W_map):
    ids, e = cache
    dW_map = dh.reshape(-1, H).T @ e.reshape(-1, E)             # (H, E)
    db_map = dh.sum(axis=(0, 1))
    de = dh @ W_map                                             # (B, T, E)
    dW = np.zeros(W_shape)
    np.add.at(dW, ids.reshape(-1), de.reshape(-1, E))           # scatter-ADD: repeats sum
    return dW, dW_map, db_map


h, cache = my_embed_forward(ids, W, W_map, b_map)
dh = rng.standard_normal(h.shape)
dW, dW_map, db_map = my_embed_backward(dh, cache, W.shape, W_map)

wrong = np.zeros_like(W)
wrong[ids.reshape(-1)] += (dh @ W_map).reshape(-1, E)           # the buggy version
print("row of [CLS]: add.at", dW[2].round(3), " vs  dW[ids] +=", wrong[2].round(3))

f = lambda: my_embed_forward(ids, W, W_map, b_map)[0]
for name, r in gradcheck.check_gradients(f, {"W": W, "W_map": W_map, "b_map": b_map},
                                         {"W": dW, "W_map": dW_map, "b_map": db_map}, dh).items():
    print(r)
    assert r.ok(), r
print("the buggy version's relative error:",
      f"{gradcheck.compare('W', wrong, gradcheck.numerical_gradient(f, W, dh)).rel_error:.2f}")

# %% [markdown]
# ## What it saves
#
# Embedding parameters against E for ALBERT-base (H = 768) and xxlarge (H = 4096), with
# V = 30000. The factorised cost $VE + EH$ grows with E and is far below $VH$ for any E
# worth using; at E = H it is *more* than $VH$ (the projection is pure overhead).

# %%
Vb = 30000
Es = np.array([16, 32, 64, 128, 256, 512, 768, 1024, 2048, 4096])
fig, ax = plt.subplots(figsize=(6, 3.8))
for Hh, style in ((768, "C0"), (4096, "C1")):
    Eh = Es[Es <= Hh]                                           # E beyond H makes no sense
    ax.loglog(Eh, Vb * Eh + Eh * Hh, "o-", color=style, label=f"V·E + E·H, H={Hh}")
    ax.axhline(Vb * Hh, color=style, ls="--", label=f"V·H, H={Hh}")
ax.axvline(128, color="gray", ls=":", label="ALBERT's E = 128")
ax.set_xlabel("embedding size E"); ax.set_ylabel("embedding parameters")
ax.legend(fontsize=7); ax.grid(True, which="both", alpha=0.3)
ax.set_title("Factorised embedding parameters, V = 30000"); plt.show()
for Hh in (768, 4096):
    print(f"H={Hh}: V·H = {Vb * Hh / 1e6:.1f}M, V·E + E·H at E=128 = {(Vb * 128 + 128 * Hh) / 1e6:.2f}M")

# %% [markdown]
# ## The paper's Table 3, reproduced
#
# ALBERT-base (H = 768, L = 12) with E = 64, 128, 256, 768, all layers shared and not
# shared, counted by `minialbert.count_parameters` (the closed form, which the tests pin to
# the built models). The paper's rounding follows two conventions: shared rows match the
# count *with* the pooler, not-shared rows the count *without* it; at E = 768 the
# reference TF model has no E→H projection (`projection=False`). The heads (MLM, SOP) are
# not counted.

# %%
PAPER_T3 = {("not-shared", 64): 87, ("not-shared", 128): 89, ("not-shared", 256): 93,
            ("not-shared", 768): 108, ("all-shared", 64): 10, ("all-shared", 128): 12,
            ("all-shared", 256): 16, ("all-shared", 768): 31}
rows = []
for sharing, mode in (("not-shared", "none"), ("all-shared", "all")):
    for Ee in (64, 128, 256, 768):
        cfg = AlbertConfig.from_preset("albert-base-v2", embedding_size=Ee, sharing=mode)
        proj = Ee != 768
        no_pool = count_parameters(cfg, head="encoder", projection=proj)
        pool = count_parameters(cfg, head="model", projection=proj)
        ours = pool if sharing == "all-shared" else no_pool
        rows.append((sharing, Ee, no_pool, pool, PAPER_T3[sharing, Ee], round(ours / 1e6)))
print(f"{'':11s} {'E':>4s} {'no pooler':>12s} {'with pooler':>12s} {'paper':>6s} {'ours':>5s}")
for s, Ee, a, b, paper, ours in rows:
    print(f"{s:11s} {Ee:4d} {a:12,d} {b:12,d} {paper:5d}M {ours:4d}M")
assert all(paper == ours for *_, paper, ours in rows)

# %% [markdown]
# ## The library's version: the model's first hidden state
#
# In the model the word, token-type and position embeddings are summed, normalised, then
# projected; `output_hidden_states=True` returns that projected embedding as
# `hidden_states[0]`. We recompute it from the model's own parameters with our pieces.

# %%
cfg = AlbertConfig.from_preset(PRESET)
model = minialbert.AlbertModel(cfg, seed=0, dtype="float64").eval()
p = model.params
ids = rng.integers(5, cfg.vocab_size, (2, 12)); ids[:, 0] = 2
types = np.zeros_like(ids); types[:, 6:] = 1
out = model.forward(ids, token_type_ids=types, output_hidden_states=True)

e = (p["embeddings.word_embeddings.weight"][ids] + p["embeddings.token_type_embeddings.weight"][types]
     + p["embeddings.position_embeddings.weight"][:12])                      # (B, T, E)
x0 = layernorm_forward(e, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"],
                       cfg.layer_norm_eps)[0]
h0 = x0 @ p["encoder.embedding_hidden_mapping_in.weight"].T + p["encoder.embedding_hidden_mapping_in.bias"]
print(model)
print(f"embedding share of parameters: V·E + E·H = "
      f"{cfg.vocab_size * cfg.embedding_size + cfg.embedding_size * cfg.hidden_size:,} "
      f"of {model.num_parameters():,}")

# %% [markdown]
# ## Check: our embedding and its gradient are the library's

# %%
np.testing.assert_allclose(h0, out.hidden_states[0], rtol=1e-12, atol=1e-12)
e_lib, c_lib = embedding_forward(cache[0], W)
h_lib, c_lin = linear_forward(e_lib, W_map, b_map)
dW_lib, dWm_lib, db_lib = np.zeros_like(W), np.zeros_like(W_map), np.zeros_like(b_map)
embedding_backward(linear_backward(dh, c_lin, dWm_lib, db_lib), c_lib, dW_lib)
np.testing.assert_allclose(h, h_lib, rtol=1e-12)
for a, b in ((dW, dW_lib), (dW_map, dWm_lib), (db_map, db_lib)):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
print("hand-written factorised embedding == minialbert (layers and the model's hidden_states[0])")
