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
# # 11. HuggingFace interop: load an ALBERT directory, compare with `transformers`
#
# A HuggingFace ALBERT directory is a `config.json` and a `model.safetensors`. minialbert
# reads both with NumPy (no torch), builds the class named in `architectures`, and writes
# directories that `transformers` loads. The weights need no transposes (both use the
# torch layout `(out, in)`); what differs is the *names*: HF nests the shared layer as
# `albert_layer_groups.{g}.albert_layers.{j}`, minialbert numbers distinct blocks `k`.
#
# We write that name mapping by hand, load a directory, and compare outputs, the loss and
# every gradient with `transformers` when it is installed (the `hf` extra). Without it,
# the notebook makes the directory with minialbert itself and skips the comparison.

# %%
# Scale: the config of the random model; "tiny-ish" runs in seconds. With network access
# you could point HF_DIR at a downloaded albert-base-v2 directory instead.
HF_DIR = None            # None: build a random model here; or a path to an HF ALBERT directory
DTYPE = "float64"        # float64 shows agreement to ~1e-12; float32 to ~1e-6

import json
import tempfile
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import minialbert
from minialbert import gradcheck
from minialbert.hf import name_map, to_hf_state_dict

warnings.filterwarnings("ignore", message="IProgress not found")   # tqdm without ipywidgets
try:
    import torch
    import transformers
    transformers.utils.logging.disable_progress_bar()
    HAVE_HF = True
    print("transformers", transformers.__version__, "| torch", torch.__version__)
except ImportError:
    HAVE_HF = False
    print("transformers/torch not installed (pip install -e '.[hf]'): "
          "the comparison with HuggingFace is skipped, everything else runs.")

CFG = dict(vocab_size=60, embedding_size=12, hidden_size=16, num_hidden_layers=4,
           num_hidden_groups=2, inner_group_num=1, num_attention_heads=2, intermediate_size=24,
           max_position_embeddings=16, hidden_act="gelu_new",
           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
workdir = Path(tempfile.mkdtemp())

# %% [markdown]
# ## A HuggingFace directory
#
# With `transformers`: a random `AlbertForPreTraining` with *every* tensor randomised
# (LayerNorm gains and biases too, so that a swapped name cannot hide), two parameter
# groups so that the group rule matters, saved with `save_pretrained`.

# %%
if HF_DIR is None:
    HF_DIR = workdir / "hf-albert"
    if HAVE_HF:
        torch.manual_seed(0)
        hf = transformers.AlbertForPreTraining(
            transformers.AlbertConfig(**CFG, attn_implementation="eager")).double().eval()
        with torch.no_grad():
            for name, p in hf.named_parameters():
                noise = torch.randn_like(p)
                p.copy_(noise / p.shape[1] ** 0.5 if p.ndim == 2 else
                        1 + 0.3 * noise if "LayerNorm" in name else 0.3 * noise)
        hf.save_pretrained(HF_DIR)
    else:
        m = minialbert.AlbertForPreTraining(minialbert.AlbertConfig(**CFG), seed=0, dtype=DTYPE)
        m.save_pretrained(HF_DIR)
print(sorted(p.name for p in Path(HF_DIR).iterdir()))
print({k: v for k, v in json.loads((Path(HF_DIR) / "config.json").read_text()).items()
       if k in ("architectures", "num_hidden_layers", "num_hidden_groups", "embedding_size")})

# %% [markdown]
# ## The name mapping, by hand
#
# Layer application $i$ uses group $g = \lfloor i / (L/G) \rfloor$ (HF's rule, float
# division then truncation), and inside a group, layers $j = 0..\text{inner}-1$. minialbert
# keeps one attention block and one feed-forward block per distinct layer, numbered
# $k = g\cdot\text{inner} + j$, so that attention and FFN can be shared separately (the
# Table 4 ablations, which HF cannot express). Everything else maps name for name.

# %%
def my_hf_name(ours, inner=CFG["inner_group_num"], prefix="albert."):
    parts = ours.split(".")
    if parts[0] == "encoder" and parts[1] in ("attention", "ffn"):
        g, j = divmod(int(parts[2]), inner)
        layer = f"{prefix}encoder.albert_layer_groups.{g}.albert_layers.{j}."
        rest = ".".join(parts[3:])
        return layer + (f"attention.{rest}" if parts[1] == "attention" else rest)
    if parts[0] == "sop_classifier":
        return "sop_classifier.classifier." + parts[1]
    if parts[0] == "predictions":
        return ours                                   # heads sit outside the "albert." prefix
    return prefix + ours


model = minialbert.from_pretrained(HF_DIR, dtype=DTYPE)
print(model)
for k in list(model.params)[:3] + [k for k in model.params if ".attention.1." in k][:2] + ["sop_classifier.weight"]:
    print(f"{k:45s} -> {my_hf_name(k)}")

# %% [markdown]
# ## Same outputs, same loss, same gradients
#
# A batch with padding inside it, masked-LM labels and sentence-order labels. Both models
# compute the loss; both backpropagate it; we compare the logits, the loss and the
# gradient of every parameter, mapped by name.

# %%
rng = np.random.default_rng(0)
B, T = 3, 10
ids = rng.integers(5, CFG["vocab_size"], (B, T)); ids[:, 0] = 2
mask = np.ones((B, T), dtype=np.int64); mask[1, 7:] = 0; mask[2, 4:] = 0
types = np.zeros((B, T), dtype=np.int64); types[:, 5:] = 1
labels = np.where(rng.random((B, T)) < 0.3, ids, -100); labels[:, 1] = ids[:, 1]
sol = np.array([0, 1, 0])

out = model.forward(ids, token_type_ids=types, attention_mask=mask, labels=labels,
                    sentence_order_label=sol, full_logits=True)
model.zero_grad()
model.backward()
print(f"minialbert loss {float(out.loss):.12f}")

rel_grad = {}
if HAVE_HF:
    t = lambda a: torch.as_tensor(a)
    hf = transformers.AlbertForPreTraining.from_pretrained(HF_DIR, attn_implementation="eager",
                                                           dtype=torch.float64).eval()
    hf_out = hf(input_ids=t(ids), token_type_ids=t(types), attention_mask=t(mask), labels=t(labels),
                sentence_order_label=t(sol))
    hf_out.loss.backward()
    print(f"HF loss         {hf_out.loss.item():.12f}")
    hf_grads = {n: p.grad.numpy() for n, p in hf.named_parameters()}
    ours = to_hf_state_dict(model, grads=True, tied=False)
    for name, g in ours.items():
        # relative to the gradient's size; the floor is for attention.key.bias, which is zero
        # analytically (softmax ignores a per-row constant): both sides are ~1e-17 of noise there
        rel_grad[name] = np.abs(g - hf_grads[name]).max() / max(np.abs(hf_grads[name]).max(), 1e-6)
    logit_err = np.abs(out.prediction_logits - hf_out.prediction_logits.detach().numpy()).max()
    worst = max((n for n in rel_grad if not n.endswith("key.bias")), key=rel_grad.get)
    print(f"max |logits difference| {logit_err:.1e}; worst parameter gradient {worst}: "
          f"{rel_grad[worst]:.1e} relative")

    names = sorted(rel_grad, key=rel_grad.get)
    plt.figure(figsize=(7, 3))
    plt.semilogy(range(len(names)), [max(rel_grad[n], 1e-17) for n in names], "o")
    plt.xlabel(f"the {len(names)} HF parameter tensors, sorted"); plt.ylabel("max relative difference")
    plt.title(f"Gradients: minialbert vs transformers ({DTYPE})"); plt.grid(alpha=0.3); plt.show()
else:
    print("no transformers: skipping the comparison")

# %% [markdown]
# ## A gradient check, inline
#
# The comparison above checks minialbert against another implementation; a numerical
# gradient checks it against the definition. The SOP classifier and the first group's
# attention LayerNorm gain, in float64, with the loss itself as the output.

# %%
if DTYPE == "float64":
    def loss():
        return model.forward(ids, token_type_ids=types, attention_mask=mask, labels=labels,
                             sentence_order_label=sol).loss
    for k in ("sop_classifier.weight", "encoder.attention.0.LayerNorm.weight"):
        analytic = model.grads[k].copy()
        r = gradcheck.compare(k, analytic, gradcheck.numerical_gradient(loss, model.params[k], 1.0))
        print(r)
        assert r.ok()

# %% [markdown]
# ## The round trip
#
# minialbert → `save_pretrained` → (transformers when installed) → the same tensors.

# %%
back = workdir / "round-trip"
model.save_pretrained(back)
again = minialbert.from_pretrained(back, dtype=DTYPE)
assert all(np.array_equal(again.params[k], v) for k, v in model.params.items())
if HAVE_HF:
    hf2 = transformers.AlbertForPreTraining.from_pretrained(back, dtype=torch.float64)
    sd = hf2.state_dict()
    assert all(np.array_equal(sd[k].numpy(), v) for k, v in to_hf_state_dict(model).items())
    print("minialbert -> save_pretrained -> transformers: every tensor identical")
print("minialbert -> save_pretrained -> minialbert: every tensor identical")

# %% [markdown]
# ## Check: our name mapping is the library's

# %%
lib_names = name_map(model)
assert all(my_hf_name(k) == v for k, v in lib_names.items()), \
    [(k, my_hf_name(k), v) for k, v in lib_names.items() if my_hf_name(k) != v][:3]
if HAVE_HF:
    assert set(lib_names.values()) == {n for n, _ in hf.named_parameters()}
    assert abs(float(out.loss) - hf_out.loss.item()) <= 1e-10 * abs(hf_out.loss.item())
    assert max(rel_grad.values()) <= (1e-9 if DTYPE == "float64" else 1e-4)
print(f"hand-written name mapping == minialbert.hf.name_map for all {len(lib_names)} parameters")
