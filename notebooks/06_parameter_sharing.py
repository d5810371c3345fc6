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
# # 6. Parameter sharing: one layer, applied L times
#
# ALBERT's second idea: all L layers of the encoder are *the same layer*. BERT-base has 12
# sets of attention and feed-forward weights; ALBERT-base has one, applied 12 times. The
# forward is a loop; the backward runs the loop in reverse, and because every backward
# **adds** into the gradient buffers, the shared parameters receive the sum of the
# gradients of all L applications:
#
# $$\frac{\partial \ell}{\partial \theta} = \sum_{i=1}^{L} \frac{\partial \ell}{\partial \theta^{(i)}}
# \Big|_{\theta^{(1)} = \dots = \theta^{(L)} = \theta}.$$
#
# We write the loop by hand, check its gradient numerically and against an *unshared
# twin* (L copies holding the same weights), count the paper's Table 4 sharing strategies,
# and measure memory and time: ALBERT is smaller, not faster.

# %%
# Scale: the model measured in the memory/time section ("mini" on a CPU; try "albert-base-v2"
# with B=8, T=128 on a GPU or a patient CPU).
MEASURE_PRESET, MEASURE_B, MEASURE_T = "mini", 4, 64

import time

import matplotlib.pyplot as plt
import numpy as np

import minialbert
from minialbert import AlbertConfig, count_parameters, gradcheck
from minialbert.model import ATTENTION_BLOCK, FFN_BLOCK, albert_layer_backward, albert_layer_forward
from minialbert.optim import LAMB

cfg = AlbertConfig(vocab_size=50, embedding_size=8, hidden_size=16, num_hidden_layers=4,
                   num_attention_heads=2, intermediate_size=32, max_position_embeddings=16,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                   initializer_range=0.3)   # larger than 0.02 so attention is far from uniform
L = cfg.num_hidden_layers
model = minialbert.AlbertModel(cfg, seed=0, dtype="float64").eval()
print(model)
print("encoder parameter blocks:", sorted({k.split(".")[1] + "." + k.split(".")[2]
                                          for k in model.params if k.startswith("encoder.") and
                                          k.split(".")[1] in ("attention", "ffn")}))

# %% [markdown]
# ## The loop, by hand
#
# `albert_layer_forward/backward` is one post-LN layer: notebook 5 ends by checking that it
# equals the layer built there by hand. Its parameters come as two dicts, as in HF's
# `AlbertLayer`: `pa`, the attention block (`query`, `key`, `value`, `dense`, and the first
# LayerNorm), and `pf`, the feed-forward block (`ffn`, `ffn_output` and the second
# LayerNorm). The model stores them as `encoder.attention.0.*` and `encoder.ffn.0.*`; two
# dicts rather than one so that Table 4 below can share one block and not the other.
# The other arguments: `mask_add=None` (no padding), `rng=None` (no random stream: no
# dropout) and `training=False`.
#
# Sharing is nothing but passing the same parameter dicts `pa, pf` at every depth, and the
# same gradient buffers `ga, gf` to every backward.

# %%
p = model.params
pa = {s: p[f"encoder.attention.0.{s}"] for s in ATTENTION_BLOCK}   # THE attention block
pf = {s: p[f"encoder.ffn.0.{s}"] for s in FFN_BLOCK}               # THE feed-forward block
rng = np.random.default_rng(0)
B, T, H = 2, 6, cfg.hidden_size
h0 = rng.standard_normal((B, T, H))


def shared_forward(h):
    caches = []
    for i in range(L):                                   # same pa, pf at every depth
        h, _, c = albert_layer_forward(h, pa, pf, cfg, mask_add=None, rng=None, training=False)
        caches.append(c)
    return h, caches


def shared_backward(dh, caches):
    ga = {k: np.zeros_like(v) for k, v in pa.items()}   # zeroed once...
    gf = {k: np.zeros_like(v) for k, v in pf.items()}
    per_depth = []                                       # (for the plot) the gradient added at each depth
    for c in reversed(caches):                           # ...accumulated L times
        before = ga["query.weight"].copy()
        dh = albert_layer_backward(dh, c, ga, gf)
        per_depth.append(ga["query.weight"] - before)
    return dh, ga, gf, per_depth[::-1]


hL, caches = shared_forward(h0)
dout = rng.standard_normal(hL.shape)                     # random upstream gradient
dh0, ga, gf, per_depth = shared_backward(dout, caches)

# %% [markdown]
# ## Gradient check, inline
#
# Numerically, perturbing one shared weight moves all L applications at once, so the
# finite difference *is* the total derivative; the analytic sum over depths must match it.

# %%
f = lambda: shared_forward(h0)[0]
checks = {"h0": (h0, dh0), "attention query.weight": (pa["query.weight"], ga["query.weight"]),
          "attention LayerNorm.weight": (pa["LayerNorm.weight"], ga["LayerNorm.weight"]),
          "ffn.weight": (pf["ffn.weight"], gf["ffn.weight"]),
          "full_layer_layer_norm.bias": (pf["full_layer_layer_norm.bias"], gf["full_layer_layer_norm.bias"])}
for name, (x, g) in checks.items():
    r = gradcheck.compare(name, g, gradcheck.numerical_gradient(f, x, dout))
    print(r)
    assert r.ok(), r

# %% [markdown]
# Each depth contributes its own piece, of its own size and direction: the norm of the sum
# is smaller than the sum of the norms, because the pieces partly cancel. What an unshared
# stack (BERT) would contribute to the *global* gradient norm, the one that global-norm
# clipping (`optim.clip_grad_norm`) looks at, is $\sqrt{\sum_i \lVert g_i\rVert^2}$; the shared
# sum can be larger or smaller than that, depending on how aligned the pieces are.
# (LAMB does not see the difference: its update $m/\sqrt{v}$ is unchanged when a tensor's
# gradient is scaled, and its trust ratio uses the update's norm, not the gradient's.)

# %%
plt.figure(figsize=(5, 3))
plt.bar(range(1, L + 1), [np.linalg.norm(d) for d in per_depth])
plt.axhline(np.linalg.norm(ga["query.weight"]), color="C3", ls="--", label="norm of the sum")
norms = [np.linalg.norm(d) for d in per_depth]
print(f"sum of the norms {sum(norms):.2f} >= norm of the sum {np.linalg.norm(ga['query.weight']):.2f}; "
      f"an unshared stack's sqrt(sum of squared norms) {np.sqrt(sum(n * n for n in norms)):.2f}")
plt.xticks(range(1, L + 1)); plt.xlabel("depth i"); plt.ylabel("‖dℓ/dW_q at depth i‖"); plt.legend()
plt.title("The shared query weight's gradient, depth by depth"); plt.show()

# %% [markdown]
# ## The unshared twin
#
# `sharing="none"` gives every depth its own block. Copy the shared weights into all L
# blocks: the twin computes exactly the same function, and the shared model's gradient
# must be the sum of the twin's L block gradients. (This is also how the test suite
# checks the model.)

# %%
twin = minialbert.AlbertModel(cfg.replace(sharing="none"), seed=1, dtype="float64").eval()
for k, v in p.items():
    if k.startswith("encoder.attention.0.") or k.startswith("encoder.ffn.0."):
        for i in range(L):
            twin.params[k.replace(".0.", f".{i}.", 1)][...] = v
    else:
        twin.params[k][...] = v
ids = rng.integers(5, cfg.vocab_size, (B, T))
d_seq, d_pool = rng.standard_normal((B, T, H)), rng.standard_normal((B, H))
outs = {}
for m in (model, twin):
    outs[m] = m.forward(ids)
    m.zero_grad()
    m.backward({"last_hidden_state": d_seq, "pooler_output": d_pool})
np.testing.assert_allclose(outs[model].last_hidden_state, outs[twin].last_hidden_state, rtol=1e-12)
worst = 0.0
for s in ATTENTION_BLOCK:
    summed = sum(twin.grads[f"encoder.attention.{i}.{s}"] for i in range(L))
    shared = model.grads[f"encoder.attention.0.{s}"]
    worst = max(worst, np.abs(summed - shared).max() / np.abs(shared).max())
for s in FFN_BLOCK:
    summed = sum(twin.grads[f"encoder.ffn.{i}.{s}"] for i in range(L))
    shared = model.grads[f"encoder.ffn.0.{s}"]
    worst = max(worst, np.abs(summed - shared).max() / np.abs(shared).max())
print(f"shared gradient vs sum of the twin's {L} gradients: worst relative difference {worst:.1e}")
assert worst < 1e-12

# %% [markdown]
# ## The sharing strategies of Table 4
#
# Share everything (ALBERT), only the attention blocks, only the feed-forward blocks, or
# nothing (BERT-like with factorised embeddings), at E = 768 and E = 128, ALBERT-base
# otherwise. Same counting conventions as Table 3 (notebook 3): shared rows with the pooler,
# the not-shared row without; no projection at E = 768. The feed-forward block holds
# 2/3 of a layer's weights, so sharing it saves more than sharing attention.

# %%
PAPER_T4 = {768: {"all": 31, "attention": 83, "ffn": 57, "none": 108},
            128: {"all": 12, "attention": 64, "ffn": 38, "none": 89}}
print(f"{'sharing':10s} {'E':>4s} {'parameters':>12s} {'paper':>6s}")
for Ee, row in PAPER_T4.items():
    for mode, paper in row.items():
        c = AlbertConfig.from_preset("albert-base-v2", embedding_size=Ee, sharing=mode)
        n = count_parameters(c, head="encoder" if mode == "none" else "model", projection=Ee != 768)
        print(f"{mode:10s} {Ee:4d} {n:12,d} {paper:5d}M")
        assert round(n / 1e6) == paper

# %% [markdown]
# ## Smaller, not faster: parameters, activations, optimiser state, time
#
# Sharing divides the *encoder's* parameters (and their gradients and LAMB's two moments)
# by L; the embeddings and heads are untouched. It does not change the *computation*: every depth still runs a full layer, so FLOPs,
# activation memory (what the backward needs) and time per step are those of the unshared
# model. Measured on the same shape with `sharing="all"` and `sharing="none"`:

# %%
def nbytes(obj, seen):
    """Bytes of the distinct arrays reachable from obj (the forward's saved caches)."""
    if isinstance(obj, np.ndarray):
        base = obj if obj.base is None else obj.base
        if id(base) in seen or not isinstance(base, np.ndarray):
            return 0
        seen.add(id(base))
        return base.nbytes
    if isinstance(obj, dict):
        return sum(nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v, seen) for v in obj)
    return 0


measured = {}
for mode in ("all", "none"):
    c = AlbertConfig.from_preset(MEASURE_PRESET, sharing=mode)
    m = minialbert.AlbertForPreTraining(c, seed=0)
    mids = np.random.default_rng(0).integers(5, c.vocab_size, (MEASURE_B, MEASURE_T))
    labels = np.where(np.random.default_rng(1).random(mids.shape) < 0.15, mids, -100)
    sol = np.zeros(MEASURE_B, dtype=np.int64)
    times = []
    for rep in range(6):                    # one warm-up step, then best of 5: the CPU is shared
        t0 = time.perf_counter()
        m.forward(mids, labels=labels, sentence_order_label=sol)
        params_b = sum(v.nbytes for v in m.params.values())
        act_b = nbytes(m._tape, {id(v) for v in m.params.values()})   # caches, not the weights
        m.zero_grad(); m.backward()
        times.append(time.perf_counter() - t0)
    step_s = min(times[1:])
    opt = LAMB(m.params, lr=1e-3)
    opt.step(m.grads)
    opt_b = sum(a.nbytes for a in opt.m.values()) + sum(a.nbytes for a in opt.v.values())
    measured[mode] = dict(parameters=params_b, gradients=sum(v.nbytes for v in m.grads.values()),
                          optimiser=opt_b, activations=act_b, seconds=step_s)
    print(f"sharing={mode:4s}: {m.num_parameters():>10,d} parameters; MB: params "
          f"{params_b / 2**20:6.1f}, grads {measured[mode]['gradients'] / 2**20:6.1f}, LAMB state "
          f"{opt_b / 2**20:6.1f}, activations {act_b / 2**20:6.1f}; forward+backward {step_s:.3f} s")

fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.2))
kinds = ["parameters", "gradients", "optimiser", "activations"]
x = np.arange(len(kinds))
for k, mode in enumerate(("all", "none")):
    a1.bar(x + 0.4 * k - 0.2, [measured[mode][q] / 2**20 for q in kinds], 0.4, label=f"sharing={mode}")
a1.set_xticks(x, kinds); a1.set_ylabel("MB"); a1.legend(); a1.set_title(f"memory, {MEASURE_PRESET}, B={MEASURE_B}, T={MEASURE_T}")
a2.bar(["all", "none"], [measured[m]["seconds"] for m in ("all", "none")], color=["C0", "C1"])
a2.set_ylabel("seconds"); a2.set_title("one forward + backward (best of 5)")
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Check: our shared loop is the model's encoder
#
# Feed the model's projected embedding (`hidden_states[0]`) through our loop: the output
# must be the model's `last_hidden_state`, and the gradients our loop accumulates must be
# the model's `encoder.*.0.*` gradients.

# %%
out = model.forward(ids, output_hidden_states=True)
h_mine, caches = shared_forward(out.hidden_states[0])
np.testing.assert_allclose(h_mine, out.last_hidden_state, rtol=1e-12, atol=1e-13)
model.zero_grad()
model.backward({"last_hidden_state": d_seq})
_, ga, gf, _ = shared_backward(d_seq, caches)
for s in ATTENTION_BLOCK:
    np.testing.assert_allclose(ga[s], model.grads[f"encoder.attention.0.{s}"], rtol=1e-10, atol=1e-13)
for s in FFN_BLOCK:
    np.testing.assert_allclose(gf[s], model.grads[f"encoder.ffn.0.{s}"], rtol=1e-10, atol=1e-13)
print("hand-written shared loop (forward and summed gradients) == minialbert.AlbertModel")
