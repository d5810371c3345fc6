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
# # 10. The same model on a GPU (CuPy), and how fast each device runs it
#
# minialbert's code never names NumPy or CuPy: each function asks its input
# `xp = get_array_module(x)` and calls `xp.tanh`, `xp.exp`, `@`. Move the parameters with
# `model.to("gpu")` and the same Python runs on CuPy. This notebook writes a
# device-agnostic function by hand, checks it on every device present, counts the FLOPs
# of a training step, and compares NumPy with CuPy: time per step, tokens per second and
# model FLOP utilisation (MFU). The last part trains in **mixed precision** (fp16 with a
# dynamic loss scale, and bf16), the way a GPU's tensor cores want it.
#
# **Without a GPU** (as in CI) the notebook says so and runs every CPU part. The GPU numbers
# of this notebook have **not been measured yet**: no session so far had a GPU. The proof
# script `bash benchmarks/gpu_check.sh` runs this notebook at GPU scale
# (`MINIALBERT_NB_SCALE=gpu`) and measures the tables for docs/benchmarks.md.

# %%
# Scale: "cpu-small" (CI) or "gpu": ALBERT-base width and longer sequences on the GPU.
import os

SCALE = os.environ.get("MINIALBERT_NB_SCALE", "cpu-small")

import time

import matplotlib.pyplot as plt
import numpy as np

import minialbert
from minialbert import backend, gradcheck
from minialbert.layers import gelu_new_backward, gelu_new_forward
from minialbert.metrics import measure_peak_flops, train_flops

HAVE_GPU = backend.gpu_available()
DEVICES = ["cpu", "gpu"] if HAVE_GPU else ["cpu"]
if not HAVE_GPU:
    print("No GPU here (CuPy missing or no CUDA device): running the CPU parts only.\n"
          "On a GPU machine: pip install -e '.[cuda12]' (or cuda13) and set MINIALBERT_NB_SCALE=gpu.")
else:
    import cupy  # noqa: F401  (only to print its version; minialbert itself imports it in backend.py)
    print("GPU available: CuPy", cupy.__version__)

# %% [markdown]
# ## A device-agnostic function, by hand
#
# ALBERT's GELU and its derivative, written once for both devices. The only rule:
# take the array module from the input, and create new arrays with it.

# %%
def my_gelu(x):
    xp = backend.get_array_module(x)              # numpy or cupy, from the input
    c = np.sqrt(2.0 / np.pi)
    t = xp.tanh(c * (x + 0.044715 * x * x * x))
    y = 0.5 * x * (1.0 + t)
    dy_dx = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * c * (1.0 + 3 * 0.044715 * x * x)
    return y, dy_dx


for dev in DEVICES:
    x = backend.to_device(np.linspace(-4, 4, 9), dev)             # float64 for the check
    y, dydx = my_gelu(x)
    g = backend.to_device(np.random.default_rng(0).standard_normal(9), dev)
    r = gradcheck.compare(f"gelu on {dev}", dydx * g,
                          gradcheck.numerical_gradient(lambda: my_gelu(x)[0], x, g))
    print(r, "| output lives on", backend.device_of(y))
    assert r.ok()

# %% [markdown]
# ## FLOPs of a training step, by hand
#
# A matmul with a weight of $n$ parameters costs $2n$ FLOPs per token forward and $4n$
# backward: $6n$ per token per step. ALBERT's shared layer has the weights of one layer
# but runs L times, so FLOPs count **applications**, not distinct parameters: ALBERT-base
# costs what BERT-base costs per token (minus the embedding difference). Attention adds
# $QK^\top$ and $PV$: $2 \cdot 2TH$ per token per application, times 3 for the step.
# The MLM decoder ($E\times V$) runs only where logits are computed (the masked positions).

# %%
def my_train_flops(c, B, T, n_pred):
    H, I, E, V, L = c.hidden_size, c.intermediate_size, c.embedding_size, c.vocab_size, c.num_hidden_layers
    layer = 4 * (H * H + H) + (H * I + I + I * H + H) + 4 * H        # one application's weights
    per_token = (E * H + H) + L * layer                                # projection + L applications
    attention = 2 * L * T * H                                          # QK^T and P@V, per token
    mlm = H * E + E + 2 * E + E * V + V                                # per predicted position
    sop = H * H + H + 2 * H + 2                                        # pooler + SOP, per sequence
    return 6 * (per_token * B * T + attention * B * T + mlm * n_pred + sop * B)


base = minialbert.AlbertConfig.from_preset("albert-base-v2")
bert = minialbert.AlbertConfig.from_preset("bert-base")
for name, c in (("albert-base", base), ("bert-base", bert)):
    print(f"{name:12s} parameters {minialbert.count_parameters(c, head='pretraining') / 1e6:6.1f}M, "
          f"GFLOPs per step at B=8, T=128 (20 predictions each): {my_train_flops(c, 8, 128, 160) / 1e9:6.1f}")

# %% [markdown]
# ## NumPy against CuPy on the same model
#
# The same pretraining step (forward, backward; float32) on each device, at a few batch
# sizes. Timing a GPU needs a `synchronize()`: CuPy returns before the kernels finish.
# MFU = counted FLOPs per second / the device's measured matmul peak.

# %%
if SCALE == "gpu":
    cfg = minialbert.AlbertConfig.from_preset("albert-base-v2", vocab_size=30000)
    T, batches, repeats = 128, [8, 32, 64], 3
else:
    cfg = minialbert.AlbertConfig.from_preset("tiny")
    T, batches, repeats = 64, [2, 8], 2

results = {}
for dev in DEVICES:
    peak = measure_peak_flops(dev)
    model = minialbert.AlbertForPreTraining(cfg, seed=0).to(dev)
    # at GPU scale the CPU only runs the smallest batch (an ALBERT-base step takes seconds there)
    for B in (batches[:1] if SCALE == "gpu" and dev == "cpu" else batches):
        r = np.random.default_rng(B)
        ids = r.integers(5, cfg.vocab_size, (B, T))
        labels = np.where(r.random((B, T)) < 0.15, ids, -100)
        labels[:, 1] = ids[:, 1]                                   # at least one prediction each
        sol = r.integers(0, 2, B)
        best = np.inf
        for rep in range(repeats + 1):                             # the first run warms up
            t0 = time.perf_counter()
            out = model.forward(ids, labels=labels, sentence_order_label=sol)
            model.zero_grad(); model.backward()
            backend.synchronize(dev)
            if rep:
                best = min(best, time.perf_counter() - t0)
        flops = my_train_flops(cfg, B, T, int((labels != -100).sum()))
        results[dev, B] = dict(s=best, tok_s=B * T / best, mfu=flops / best / peak, loss=float(out.loss))
        print(f"{dev}: B={B:3d} T={T}: {best * 1e3:8.1f} ms/step, {B * T / best:9.0f} tokens/s, "
              f"MFU {100 * flops / best / peak:5.1f}% of a measured {peak / 1e9:.0f} GFLOP/s")

fig, ax = plt.subplots(figsize=(5, 3.2))
for dev in DEVICES:
    bs = [B for B in batches if (dev, B) in results]
    ax.plot(bs, [results[dev, B]["tok_s"] for B in bs], "o-", label=dev)
ax.set_xlabel("batch size B"); ax.set_ylabel("tokens / s"); ax.set_yscale("log")
ax.set_title(f"pretraining step, {'ALBERT-base' if SCALE == 'gpu' else 'tiny'}, T={T}")
ax.legend(); ax.grid(alpha=0.3); plt.show()

# %% [markdown]
# ## The same loss on both devices
#
# With a GPU, a model built with the same seed gives the same loss on both devices to
# float32 precision (different summation orders, so not bit for bit).

# %%
if HAVE_GPU:
    for B in [B for B in batches if ("cpu", B) in results]:
        a, b = results["cpu", B]["loss"], results["gpu", B]["loss"]
        print(f"B={B}: loss on cpu {a:.6f}, on gpu {b:.6f}")
        assert abs(a - b) <= 1e-4 * abs(a)
else:
    print("No GPU: nothing to compare the CPU loss with.")

# %% [markdown]
# ## Check: our pieces are the library's
#
# The hand-written GELU equals `gelu_new_forward/backward` on every device present, and
# the FLOP count equals `minialbert.metrics.train_flops`, which the training loop uses
# for its MFU.

# %%
for dev in DEVICES:
    x = backend.to_device(np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32), dev)
    y_lib, cache = gelu_new_forward(x)
    y, dydx = my_gelu(x)
    ones = backend.xp_for(dev).ones_like(x)
    np.testing.assert_allclose(backend.to_numpy(y), backend.to_numpy(y_lib), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(backend.to_numpy(dydx), backend.to_numpy(gelu_new_backward(ones, cache)),
                               rtol=1e-6, atol=1e-7)
for c in (cfg, base, bert):
    for B, T_, n in ((8, 128, 160), (2, 64, 128)):
        assert my_train_flops(c, B, T_, n) == train_flops(c, B, T_, n_predictions=n), c
print("hand-written device-agnostic GELU and FLOP count == minialbert (layers, metrics)")


# %% [markdown]
# ## Mixed precision: float32 masters, float16 arithmetic
#
# A GPU's tensor cores multiply float16 (or bfloat16) matrices about 15x faster than its
# float32 units (H100: ~990 against ~67 TFLOP/s dense). `precision="fp16"` runs the forward
# and backward in float16 while the parameters, their gradients and the optimiser state stay
# float32 (the *masters*): each forward reads a float16 copy of the weights, every matmul
# sums in float32, and LayerNorm statistics, softmax and the losses run in float32 inside.
#
# float16's smallest normal number is $2^{-14} \approx 6 \cdot 10^{-5}$: small gradients would
# flush to zero. So the backward starts from a **loss scale** $s$ (say $2^{16}$) instead of 1;
# the gradients come out $s$ times too large, safely inside float16's range, and are
# divided by $s$ in float32 before the update. If any gradient overflowed (inf/NaN), the step
# is skipped and $s$ halves; after a run of clean steps it doubles.
#
# On the CPU, NumPy has no fast float16 matmul, so minialbert forms each product of float16
# operands in float32 and rounds it once, which is what a tensor core computes. The numbers
# are the GPU's; the speed is not.
#
# From the command line: `minialbert pretrain --device gpu --precision fp16` (or `bf16`, or
# `tf32`); `metrics.jsonl` then logs `loss_scale` and `skipped_steps`
# ([docs/training/mixed-precision.md](../training/mixed-precision.md)).

# %%
from minialbert import optim
from minialbert.precision import make_scaler

small = minialbert.AlbertConfig.from_preset("tiny")
r = np.random.default_rng(0)
ids = r.integers(5, small.vocab_size, (8, 32))
labels = np.where(r.random((8, 32)) < 0.15, ids, -100)
labels[:, 1] = ids[:, 1]
sol = r.integers(0, 2, 8)


def grads_of(precision, scale=1.0):
    m = minialbert.AlbertForPreTraining(small, seed=0, precision=precision)
    out = m.forward(ids, labels=labels, sentence_order_label=sol)
    m.zero_grad()
    m.backward({"loss": scale})
    return float(out.loss), {k: v / np.float32(scale) for k, v in m.grads.items()}


loss32, g32 = grads_of("fp32")
norm = lambda d: np.sqrt(sum(float(np.vdot(v, v)) for v in d.values()))  # noqa: E731
for prec, scale in (("fp16", 2.0 ** 12), ("bf16", 1.0)):
    loss_p, gp = grads_of(prec, scale)
    rel = norm({k: gp[k] - g32[k] for k in gp}) / norm(g32)
    print(f"{prec}: loss {loss_p:.5f} (fp32 {loss32:.5f}); gradient relative error {rel:.1e}; "
          f"gradients stored as {gp[next(iter(gp))].dtype}")
    # tests/test_precision.py derives the bound: sqrt(n) u, n ~ 116 roundings, u = 2^-11 / 2^-8
    assert rel <= np.sqrt(116) * (2.0 ** -11 if prec == "fp16" else 2.0 ** -8)

# %% [markdown]
# A few fp16 steps with the dynamic loss scale, and an overflow planted at step 3: that step
# is skipped (the weights do not move, so with dropout off step 4 repeats step 3's loss
# exactly), the scale halves, and training goes on.

# %%
m = minialbert.AlbertForPreTraining(small, seed=0, precision="fp16").eval()   # dropout off
losses = []
opt = optim.make_optimizer("adamw", m, lr=3e-3, bias_correction=True, weight_decay=0.0)
scaler = make_scaler("fp16", init_scale=2.0 ** 12, growth_interval=3)
for step in range(8):
    out = m.forward(ids, labels=labels, sentence_order_label=sol)
    losses.append(float(out.loss))
    m.zero_grad()
    m.backward({"loss": scaler.scale})
    if step == 3:
        m.grads["encoder.ffn.0.ffn.weight"][0, 0] = np.inf          # a planted overflow
    scale_used = scaler.scale
    ok = scaler.unscale_(m.grads)
    if ok:
        optim.clip_grad_norm(m.grads, 1.0)
        opt.step(m.grads)
    scaler.update(ok)
    print(f"step {step}: loss {float(out.loss):.4f}, scale {scale_used:>6.0f}, "
          f"{'update' if ok else 'SKIPPED (overflow)'}")
assert scaler.skipped_steps == 1 and opt.t == 7 and losses[4] == losses[3]

# %% [markdown]
# ### Time per step by precision (GPU)
#
# With a GPU, the same ALBERT step in fp32, tf32, fp16 and bf16, with MFU against each
# precision's own measured matmul peak. (Without a GPU this cell only says so.)

# %%
if HAVE_GPU and SCALE == "gpu":
    gcfg = minialbert.AlbertConfig.from_preset("albert-base-v2", vocab_size=30000)
    B, Tg = 32, 128
    r = np.random.default_rng(1)
    gids = r.integers(5, gcfg.vocab_size, (B, Tg))
    glabels = np.where(r.random((B, Tg)) < 0.15, gids, -100)
    glabels[:, 1] = gids[:, 1]
    gsol = r.integers(0, 2, B)
    flops = train_flops(gcfg, B, Tg, n_predictions=int((glabels != -100).sum()))
    for prec, dt in (("fp32", "float32"), ("fp16", "float16"), ("bf16", "bfloat16"), ("tf32", "float32")):
        m = minialbert.AlbertForPreTraining(gcfg, seed=0, precision=prec).to("gpu")  # tf32 last: it stays on
        peak = measure_peak_flops("gpu", dt)
        best = np.inf
        for rep in range(4):
            t0 = time.perf_counter()
            m.forward(gids, labels=glabels, sentence_order_label=gsol)
            m.zero_grad(); m.backward({"loss": 1024.0} if prec == "fp16" else None)
            backend.synchronize("gpu")
            if rep:
                best = min(best, time.perf_counter() - t0)
        print(f"{prec}: {best * 1e3:7.1f} ms/step, {B * Tg / best:8.0f} tokens/s, "
              f"MFU {100 * flops / best / peak:5.1f}% of a measured {peak / 1e12:.0f} TFLOP/s")
else:
    print("No GPU (or SCALE != 'gpu'): the precision comparison needs a device. "
          "Run `bash benchmarks/gpu_check.sh` on one.")
