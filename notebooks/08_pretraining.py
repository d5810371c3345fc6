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
# # 8. Pretraining a tiny ALBERT
#
# One optimiser step of ALBERT pretraining is: zero the gradients, forward a batch
# (masked-LM loss + sentence-order loss), backward, clip the global gradient norm to 1,
# and update the weights at the scheduled learning rate (linear warm-up, then linear
# decay to zero) with ALBERT's optimiser, **LAMB**. We check the pretraining loss's gradient where it is subtle (the tied
# word embedding receives gradient from the lookup *and* from the MLM decoder), write the
# LAMB update by hand and compare it with the library's, then pretrain with
# `minialbert.train.pretrain` (what `minialbert pretrain` runs), plot the curves, and ask
# the model to fill in masks before and after.

# %%
# Scale: optimiser steps of the run below. 80 takes seconds on a CPU and the MLM loss falls
# clearly; sentence-order accuracy needs a few hundred steps (the CLI default is 600) to
# leave chance. On a GPU try STEPS = 2000, DEVICE = "gpu", PRESET = "mini".
# OPTIMIZER = None uses the library's default for short runs; "lamb" is ALBERT's choice.
STEPS, PRESET, DEVICE, OPTIMIZER = 80, "tiny", "cpu", None

import json
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minialbert
from minialbert import AlbertConfig, gradcheck
from minialbert.optim import LAMB, lr_at
from minialbert.train import PretrainConfig, pretrain

# %% [markdown]
# ## The loss's gradient through the tied embedding, checked
#
# The MLM decoder is the word-embedding matrix itself, transposed: logits $= t\,W_{\text{word}}^\top + b$.
# So $W_{\text{word}}$ gets two gradients, added into one buffer: the scatter-add of the
# input lookup and $dW = d\text{logits}^\top t$ from the decoder. A small float64 model, the
# real loss (MLM + SOP), central differences:

# %%
small = AlbertConfig(vocab_size=30, embedding_size=6, hidden_size=8, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=16, max_position_embeddings=12,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=0.3)
m = minialbert.AlbertForPreTraining(small, seed=0, dtype="float64").eval()
r = np.random.default_rng(0)
ids = r.integers(5, 30, (2, 8)); ids[:, 0] = 2
labels = np.full((2, 8), -100); labels[0, 3], labels[1, 5] = ids[0, 3], 7
sol = np.array([0, 1])
loss = lambda: m.forward(ids, labels=labels, sentence_order_label=sol).loss
loss()
m.zero_grad(); m.backward()
for k in ("embeddings.word_embeddings.weight", "predictions.bias", "encoder.ffn.0.ffn.weight"):
    res = gradcheck.compare(k, m.grads[k], gradcheck.numerical_gradient(loss, m.params[k], 1.0))
    print(res)
    assert res.ok()

# %% [markdown]
# ## LAMB, by hand
#
# ALBERT's optimiser (google-research/albert `lamb_optimizer.py`): Adam's moments without
# bias correction, decoupled weight decay inside the update, and a per-tensor *trust
# ratio* $\lVert w\rVert / \lVert u\rVert$ that makes the step size relative to the
# weight's own scale. LayerNorm parameters and biases get neither decay nor trust ratio.
#
# $$m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
# u = \frac{m}{\sqrt{v} + \epsilon} + \lambda w,\quad
# w \leftarrow w - \eta\,\frac{\lVert w\rVert}{\lVert u\rVert}\,u.$$

# %%
def my_lamb_step(w, g, m_, v_, lr, name, b1=0.9, b2=0.999, eps=1e-6, wd=0.01):
    excluded = any(s in name for s in ("LayerNorm", "layer_norm", "bias"))
    m_[...] = b1 * m_ + (1 - b1) * g
    v_[...] = b2 * v_ + (1 - b2) * g * g
    u = m_ / (np.sqrt(v_) + eps) + (0.0 if excluded else wd * w)
    wn, un = np.linalg.norm(w), np.linalg.norm(u)
    ratio = wn / un if (wn > 0 and un > 0 and not excluded) else 1.0
    w -= lr * ratio * u


mine = {k: v.copy() for k, v in m.params.items()}
moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in mine.items()}
lib = LAMB(m.params, lr=1e-2, weight_decay=0.01)
for step in range(3):                                   # three steps with the same gradients
    for k in mine:
        my_lamb_step(mine[k], m.grads[k], *moments[k], lr=1e-2, name=k)
    lib.step(m.grads)
worst = max(np.abs(mine[k] - m.params[k]).max() for k in mine)
print(f"after 3 steps, max |hand-written LAMB - library LAMB| = {worst:.1e}")

# %% [markdown]
# ## Pretraining with the library
#
# `pretrain` trains a tokenizer on the embedded corpus (the standard library's
# docstrings), makes SOP examples with n-gram masking (notebook 7), and runs the loop above,
# logging to `metrics.jsonl` and checkpointing in HuggingFace format; `minialbert pretrain
# --steps 80` does the same. Its default optimiser for short runs is torch's bias-corrected
# AdamW: in a few hundred CPU steps ALBERT's LAMB (and ALBERT's AdamW without bias
# correction) stay on the "unigram plateau", predicting token frequencies (measured in
# *Training → Pretraining* of the docs). Set `OPTIMIZER = "lamb"` above to see it.
#
# The schedule first: linear warm-up to the peak, then linear decay to zero, counted from
# step 0 as TF's `polynomial_decay` does.

# %%
out_dir = Path(tempfile.mkdtemp()) / "run"
opts = {} if OPTIMIZER is None else {"optimizer": OPTIMIZER, "lr": 5e-3 if OPTIMIZER == "lamb" else 1e-3}
cfg = PretrainConfig(preset=PRESET, steps=STEPS, warmup=max(1, STEPS // 8), device=DEVICE, out=str(out_dir),
                     log_every=max(1, STEPS // 20), checkpoint_every=STEPS, progress=False, **opts)
steps = np.arange(STEPS + 1)
plt.figure(figsize=(5, 2.6))
plt.plot(steps, [lr_at(int(s_), cfg.lr, cfg.warmup, STEPS) for s_ in steps])
plt.xlabel("optimiser step"); plt.ylabel("learning rate"); plt.title(f"{cfg.optimizer}: warm-up, then linear decay")
plt.grid(alpha=0.3); plt.show()

# %%
summary = pretrain(cfg)
records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
print(f"{len(records)} log records; first: loss {records[0]['loss']:.3f}, last: loss {records[-1]['loss']:.3f}")
print(sorted(p.name for p in out_dir.iterdir()))

# %%
st = [r_["step"] for r_ in records]
fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(12, 3))
a1.plot(st, [r_["loss"] for r_ in records], label="total"); a1.plot(st, [r_["mlm_loss"] for r_ in records], label="MLM")
V = json.loads((out_dir / "run.json").read_text())["model_config"]["vocab_size"]
a1.axhline(np.log(V), ls=":", color="gray", label="ln V (a uniform guess)")
a1.set_title("loss"); a1.legend(fontsize=8)
a2.plot(st, [r_["mlm_accuracy"] for r_ in records]); a2.set_title("MLM accuracy (masked positions)")
a3.plot(st, [r_["sop_accuracy"] for r_ in records]); a3.axhline(0.5, ls=":", color="gray")
a3.set_title("SOP accuracy"); a3.set_ylim(0, 1)
for a in (a1, a2, a3):
    a.set_xlabel("step"); a.grid(alpha=0.3)
plt.tight_layout(); plt.show()

# %% [markdown]
# ## Fill in the blanks, before and after
#
# The checkpoint is a HuggingFace-format directory with the tokenizer beside it;
# `fill_mask` (what `minialbert fill-mask RUN "text with [MASK]"` prints) reads the most
# probable pieces at each mask. For "before" we save the untrained model (same
# architecture, seed 0) the same way. It guesses at random; after a few dozen steps the
# guesses are the corpus's most frequent pieces, and with a longer run (`STEPS`) they
# start to fit the context.

# %%
from minialbert.cli.fill_mask import fill_mask

trained = minialbert.from_pretrained(out_dir / "checkpoint")
before_dir = out_dir.parent / "untrained"
minialbert.AlbertForPreTraining(trained.config, seed=0).save_pretrained(before_dir)
(before_dir / "spiece.model").write_bytes((out_dir / "spiece.model").read_bytes())
for text in ("return the [MASK] of the list.", "raise a [MASK] if the value is invalid."):
    print(text)
    for name, d in (("before", before_dir), ("after", out_dir)):
        preds = fill_mask(d, text, top_k=5)[0]
        print(f"   {name:6s}", [(p["token"], round(p["score"], 3)) for p in preds])

# %% [markdown]
# ## Attention maps of the trained model
#
# Notebook 4 drew the attention of random weights. Here is what the model just trained
# attends to: the probabilities $P$ of every head at the first and the last application of
# the shared layer, on one sentence (rows: queries, columns: keys). After a short run on a
# tiny model, expect structure rather than meaning: heads that look at the token itself,
# at a neighbour, or at `[CLS]`/`[SEP]`.

# %%
tok = minialbert.Tokenizer(out_dir / "spiece.model")
sentence = "return the sum of the values in the list."
ids_s = [2] + tok.encode(sentence) + [3]                    # [CLS] ... [SEP]
labels_s = ["[CLS]"] + tok.id_to_piece(ids_s[1:-1]) + ["[SEP]"]
enc = trained.eval().forward(np.array([ids_s]), output_attentions=True)
att = enc.attentions                                        # one (1, NH, T, T) per application
NHt = trained.config.num_attention_heads
shown = (0, len(att) - 1)
fig, axes = plt.subplots(len(shown), NHt, figsize=(2.7 * NHt, 2.8 * len(shown)), squeeze=False)
for row, depth in enumerate(shown):
    for head in range(NHt):
        ax = axes[row, head]
        ax.imshow(np.asarray(att[depth][0, head]), vmin=0, vmax=1, cmap="viridis")
        ax.set_title(f"application {depth + 1}, head {head + 1}", fontsize=8)
        ax.set_xticks(range(len(labels_s))); ax.set_xticklabels(labels_s, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels_s))); ax.set_yticklabels(labels_s, fontsize=6)
plt.tight_layout(); plt.show()
rows_sum = np.asarray(att[-1][0]).sum(-1)
print(f"{len(att)} applications x {NHt} heads; every row sums to 1: max |sum - 1| = {np.abs(rows_sum - 1).max():.1e}")

# %% [markdown]
# ## LAMB at work: the trust ratios over a run
#
# LAMB scales each tensor's Adam-style update $u$ by its own trust ratio
# $r = \lVert w\rVert / \lVert u\rVert$, so every adapted tensor moves by exactly
# $\eta\,\lVert w\rVert$ per step: a *relative* step, whatever the gradient's size. We run
# the same pretraining with `optimizer="lamb"` and record $r$ for a few tensors at every
# step. The `before_update` hook of `pretrain` sees the step's gradients just before the
# optimiser; the ratio is recomputed from them with moments kept beside the optimiser's
# (the hand-written LAMB above, checked against the library). LayerNorm parameters and
# biases are excluded: their ratio is 1.

# %%
LAMB_STEPS = STEPS
watch = ["embeddings.word_embeddings.weight", "encoder.embedding_hidden_mapping_in.weight",
         "encoder.attention.0.query.weight", "encoder.ffn.0.ffn.weight",
         "encoder.ffn.0.ffn_output.weight", "pooler.weight"]
shadow, ratios = {}, {k: [] for k in watch}


def record_trust_ratio(step, model, b1=0.9, b2=0.999, eps=1e-6, wd=0.01):
    for k in watch:
        w, g = np.asarray(model.params[k], dtype=np.float64), np.asarray(model.grads[k], dtype=np.float64)
        m_, v_ = shadow.setdefault(k, (np.zeros_like(w), np.zeros_like(w)))
        m_[...] = b1 * m_ + (1 - b1) * g
        v_[...] = b2 * v_ + (1 - b2) * g * g
        u = m_ / (np.sqrt(v_) + eps) + wd * w
        ratios[k].append(np.linalg.norm(w) / np.linalg.norm(u))


lamb_dir = out_dir.parent / "run-lamb"
lamb_cfg = PretrainConfig(preset=PRESET, steps=LAMB_STEPS, warmup=max(1, LAMB_STEPS // 8), device=DEVICE,
                          out=str(lamb_dir), log_every=max(1, LAMB_STEPS // 20), checkpoint_every=LAMB_STEPS,
                          progress=False, optimizer="lamb", lr=5e-3)
pretrain(lamb_cfg, log=lambda *a, **k: None, hooks={"before_update": record_trust_ratio})
plt.figure(figsize=(6.5, 3.4))
for k in watch:
    plt.semilogy(range(1, len(ratios[k]) + 1), ratios[k], label=k.replace("encoder.", ""))
plt.xlabel("optimiser step"); plt.ylabel("trust ratio |w| / |u|")
plt.title("LAMB: one step size per tensor"); plt.legend(fontsize=7); plt.grid(alpha=0.3, which="both")
plt.show()
for k in watch:
    print(f"{k:45s} first {ratios[k][0]:.3g}, last {ratios[k][-1]:.3g}")

# %% [markdown]
# At the first step every ratio is about (the weights' initial scale) / (the size of
# $u$'s entries): $0.02 / 3.16 \approx 0.006$, because without bias correction $u_1$ has
# entries of size $(1-\beta_1)/\sqrt{1-\beta_2} = 3.16$ (see *Training → Optimisers*).
# The printout shows 0.0065 to 0.04. Then the ratios move apart, each on its own path:
# the run above ends with them spread over almost three orders of magnitude. A single
# learning rate for all tensors, as in Adam, would give each of them the same step
# *size*; LAMB gives each the same step *relative to its norm*, $\eta\,\lVert w\rVert$,
# which is what lets ALBERT train with batches of 4096 at a high learning rate.

# %% [markdown]
# ## Check: our LAMB step is the library's, and the loss fell

# %%
assert worst < 1e-12, worst
assert records[-1]["mlm_loss"] < records[0]["mlm_loss"] - 0.5, (records[0], records[-1])
print("hand-written LAMB == minialbert.optim.LAMB; MLM loss fell from "
      f"{records[0]['mlm_loss']:.2f} to {records[-1]['mlm_loss']:.2f}")
