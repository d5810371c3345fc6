"""ALBERT: embeddings -> E->H projection -> one shared layer applied L times -> pooler.

Letters: B batch, T sequence, V vocabulary, E embedding size, H hidden size, NH heads,
HS = H // NH head size, I intermediate size, L depth (layer applications), G groups,
Tmax position-table size (max_position_embeddings), TT token types, MP most masked
predictions per sequence (the data), N labelled positions of a batch.

Every forward has a backward beside it. Parameters live in ``model.params`` and their
gradients in ``model.grads``, two dicts with the same keys (see ``param_names``):

    embeddings.{word,position,token_type}_embeddings.weight   (V|Tmax|TT, E)
    embeddings.LayerNorm.{weight,bias}                        (E,)
    encoder.embedding_hidden_mapping_in.{weight (H, E), bias (H,)}
    encoder.attention.{k}.{query,key,value,dense}.{weight (H, H), bias (H,)}
    encoder.attention.{k}.LayerNorm.{weight,bias}             (H,)
    encoder.ffn.{k}.ffn.{weight (I, H), bias (I,)}
    encoder.ffn.{k}.ffn_output.{weight (H, I), bias (H,)}
    encoder.ffn.{k}.full_layer_layer_norm.{weight,bias}       (H,)
    pooler.{weight (H, H), bias (H,)}                         (classes with a pooler)
    + the head's parameters (minialbert/heads.py)

``k`` numbers the *distinct* attention / FFN blocks: with sharing="all", application i,
inner layer j uses block ``int(i / (L / G)) * inner_group_num + j`` (HF's rule), so
ALBERT-base has exactly one of each. Weights use the torch layout (out, in).
Derivations: [docs/model/shared-layer-gradient.md](../model/shared-layer-gradient.md)
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Optional

import numpy as np

from . import hf_format
from .backend import Random, check_device, device_of, get_array_module, resolve_dtype, to_device
from .config import AlbertConfig
from .precision import activate, cast_params, resolve_precision
from .layers import (ATTENTION_PARAMS, FFN_PARAMS, IGNORE_INDEX, attention_backward, attention_forward,
                     dropout_backward, dropout_forward, embedding_backward, embedding_forward,
                     feedforward_backward, feedforward_forward, layernorm_backward,
                     layernorm_forward, linear_backward, linear_forward, make_attention_mask,
                     tanh_backward, tanh_forward)

WORD = "embeddings.word_embeddings.weight"
POS = "embeddings.position_embeddings.weight"
TYPE = "embeddings.token_type_embeddings.weight"
EMB_LN = ("embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias")
PROJ = ("encoder.embedding_hidden_mapping_in.weight", "encoder.embedding_hidden_mapping_in.bias")
POOLER = ("pooler.weight", "pooler.bias")
ATTN_LN = ("LayerNorm.weight", "LayerNorm.bias")
FFN_LN = ("full_layer_layer_norm.weight", "full_layer_layer_norm.bias")
ATTENTION_BLOCK = ATTENTION_PARAMS + ATTN_LN     # names inside encoder.attention.{k}.
FFN_BLOCK = FFN_PARAMS + FFN_LN                  # names inside encoder.ffn.{k}.


def _host_array(name, x):
    """A NumPy array from nested lists: ragged rows are a ValueError naming the argument."""
    try:
        a = np.asarray(x)
    except ValueError:
        a = None
    if a is None or a.dtype == object:
        lens = sorted({len(r) for r in x if hasattr(r, "__len__")}) if hasattr(x, "__iter__") else []
        raise ValueError(f"{name}: rows of different lengths {lens[:5]} (a ragged list): pad every row to "
                         f"one length T (e.g. tokenizer(texts, padding=True)) and pass attention_mask")
    return a


@dataclass
class AlbertOutput:
    """What a forward returns; fields a class does not produce stay None.

    loss: 0-d array (when labels were given). prediction_logits: (B, T, V), or (N, V) at
    the N labelled positions when gathered (then ``masked_positions`` = flat indices (N,)
    into B*T, row n belongs to ``labels.reshape(-1)[masked_positions[n]]``).
    sop_logits (B, num_labels); logits (B, num_labels) / (B, T, num_labels) / (B, C);
    start_logits, end_logits (B, T); last_hidden_state (B, T, H); pooler_output (B, H);
    hidden_states: 1 + L*inner_group_num arrays (B, T, H), the first after the projection
    (HF 5.x); attentions: L*inner_group_num arrays (B, NH, T, T).
    mlm_loss / sop_loss: the two parts of the pretraining loss."""
    loss: Any = None
    prediction_logits: Any = None
    sop_logits: Any = None
    logits: Any = None
    start_logits: Any = None
    end_logits: Any = None
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: Optional[tuple] = None
    attentions: Optional[tuple] = None
    masked_positions: Any = None
    mlm_loss: Any = None
    sop_loss: Any = None

    def __getitem__(self, key):
        return getattr(self, key)

    def keys(self):
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


# ----------------------------------------------------------------------------------------
# one AlbertLayer: post-LN attention block, then post-LN FFN block
# ----------------------------------------------------------------------------------------

def albert_layer_forward(h, pa, pf, config, mask_add, rng, training, return_probs=False, *, check=True):
    """Derivation: [docs/model/shared-layer-gradient.md](../model/shared-layer-gradient.md).

    Inputs: h (B, T, H); pa dict with ATTENTION_BLOCK names, pf with FFN_BLOCK names;
    check: the layers validate their arguments (the model checks once and passes False).
    Returns: h2 (B, T, H), probs (B, NH, T, T) or None, cache."""
    c = config
    if return_probs:
        a, probs, ca = attention_forward(h, pa, c.num_attention_heads, mask_add,
                                         c.attention_probs_dropout_prob, rng, training, True, check=check)
    else:
        a, ca = attention_forward(h, pa, c.num_attention_heads, mask_add,
                                  c.attention_probs_dropout_prob, rng, training, check=check)  # (B, T, H)
        probs = None
    a, cd = dropout_forward(a, c.hidden_dropout_prob, rng, training)        # attention.output_dropout
    a += h                                                                  # residual (a is ours to mutate)
    h1, cl1 = layernorm_forward(a, pa[ATTN_LN[0]], pa[ATTN_LN[1]], c.layer_norm_eps, check=check)
    f, cf = feedforward_forward(h1, pf, c.hidden_act, check=check)          # (B, T, H); HF has no FFN dropout
    f += h1
    h2, cl2 = layernorm_forward(f, pf[FFN_LN[0]], pf[FFN_LN[1]], c.layer_norm_eps, check=check)  # (B, T, H)
    return h2, probs, (ca, cd, cl1, cf, cl2)


def albert_layer_backward(dh2, cache, ga, gf):
    """Derivation: [docs/model/shared-layer-gradient.md](../model/shared-layer-gradient.md).

    Inputs: dh2 (B, T, H); ga, gf gradient buffers keyed like pa, pf (accumulated).
    Returns: dh (B, T, H)."""
    ca, cd, cl1, cf, cl2 = cache
    # h2 = LayerNorm(f + h1)
    ds2 = layernorm_backward(dh2, cl2, gf[FFN_LN[0]], gf[FFN_LN[1]])       # (B, T, H)
    # f = ffn(h1): h1 gets the residual path and the FFN path
    dh1 = feedforward_backward(ds2, cf, gf)
    dh1 += ds2
    # h1 = LayerNorm(h + dropout(attention(h)))
    ds1 = layernorm_backward(dh1, cl1, ga["LayerNorm.weight"], ga["LayerNorm.bias"])
    da = dropout_backward(ds1, cd)
    dh = attention_backward(da, ca, ga)
    dh += ds1
    return dh


# ----------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------

class AlbertPreTrainedModel:
    """Parameters, gradients, devices, train/eval, and the encoder shared by every class.

    Subclasses set ``head`` (the :func:`count_parameters` head name), ``add_pooling_layer``,
    and implement ``_head_specs``, ``forward`` and ``_head_backward``.
    """
    head = "model"
    add_pooling_layer = True

    def __init__(self, config: AlbertConfig, seed: int = 0, dtype="float32", precision="fp32"):
        if not isinstance(config, AlbertConfig):
            raise ValueError(f"config must be an AlbertConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.dtype = resolve_dtype(dtype)              # of the parameters (the float32 masters)
        self.set_precision(precision)                  # of the arithmetic (minialbert/precision.py)
        self.seed = int(seed)
        self.device = "cpu"
        self.training = True                    # as torch.nn.Module; from_pretrained returns eval()
        self.rng = Random(self.seed).fork(1)    # dropout stream; init draws from its own stream
        self._tape = None                       # caches of the last forward, consumed by backward()
        self._keep_tape = True                  # False inside `with model.no_grad():`
        init = np.random.default_rng(self.seed)
        self.params = {}
        for name, shape, kind in self._param_specs():
            self.params[name] = _init_param(init, shape, kind, config, self.dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._param_shapes = {k: tuple(v.shape) for k, v in self.params.items()}
        c = config
        self._attn_names = [{s: f"encoder.attention.{k}.{s}" for s in ATTENTION_BLOCK}
                            for k in range(c.num_attention_blocks)]
        self._ffn_names = [{s: f"encoder.ffn.{k}.{s}" for s in FFN_BLOCK}
                           for k in range(c.num_ffn_blocks)]

    # -- parameters ----------------------------------------------------------------
    def _param_specs(self):
        """[(name, shape, init kind)] in a stable order: base model, then the head."""
        c = self.config
        V, E, H, I = c.vocab_size, c.embedding_size, c.hidden_size, c.intermediate_size
        specs = [(WORD, (V, E), "embedding_pad"), (POS, (c.max_position_embeddings, E), "normal"),
                 (TYPE, (c.type_vocab_size, E), "normal"),
                 (EMB_LN[0], (E,), "ones"), (EMB_LN[1], (E,), "zeros"),
                 (PROJ[0], (H, E), "normal"), (PROJ[1], (H,), "zeros")]
        for k in range(c.num_attention_blocks):
            for s in ATTENTION_PARAMS:
                specs.append((f"encoder.attention.{k}.{s}", (H, H) if s.endswith("weight") else (H,),
                              "normal" if s.endswith("weight") else "zeros"))
            specs += [(f"encoder.attention.{k}.{ATTN_LN[0]}", (H,), "ones"),
                      (f"encoder.attention.{k}.{ATTN_LN[1]}", (H,), "zeros")]
        for k in range(c.num_ffn_blocks):
            specs += [(f"encoder.ffn.{k}.ffn.weight", (I, H), "normal"),
                      (f"encoder.ffn.{k}.ffn.bias", (I,), "zeros"),
                      (f"encoder.ffn.{k}.ffn_output.weight", (H, I), "normal"),
                      (f"encoder.ffn.{k}.ffn_output.bias", (H,), "zeros"),
                      (f"encoder.ffn.{k}.{FFN_LN[0]}", (H,), "ones"),
                      (f"encoder.ffn.{k}.{FFN_LN[1]}", (H,), "zeros")]
        if self.add_pooling_layer:
            specs += [(POOLER[0], (H, H), "normal"), (POOLER[1], (H,), "zeros")]
        return specs + list(self._head_specs())

    def _head_specs(self):
        return []

    def param_names(self):
        """The parameter keys, in order."""
        return list(self.params)

    def num_parameters(self) -> int:
        """Distinct trainable scalars (the tied decoder weight is the word embedding, counted once)."""
        return int(sum(int(v.size) for v in self.params.values()))

    def set_precision(self, precision="fp32"):
        """Run the arithmetic in 'fp32' (default), 'fp16', 'bf16' or 'tf32' (GPU only): the
        parameters, gradients and optimiser state stay in ``self.dtype`` (float32 masters);
        fp16/bf16 forwards read a cast copy of them and store activations in the low
        precision (minialbert/precision.py). Returns self."""
        prec = resolve_precision(precision, device="gpu", arg="precision")
        if prec.mixed and self.dtype != np.float32:
            raise ValueError(f"precision={prec.name!r} keeps float32 master weights: the model's dtype must "
                             f"be float32, got {self.dtype.name}")
        self.precision = prec
        self.compute_dtype = prec.compute_dtype if prec.mixed else self.dtype
        if getattr(self, "device", "cpu") == "gpu":
            activate(prec, "gpu")
        return self

    def forward_params(self):
        """The parameters as the forward reads them: ``self.params`` itself in fp32, a view that
        casts each one to the compute dtype on first use in fp16/bf16 (fresh for every call,
        so it always reflects the latest update)."""
        if self.compute_dtype == self.dtype:
            return self.params
        return cast_params(self.params, self.compute_dtype)

    def zero_grad(self):
        """Zero every gradient buffer in place (references held elsewhere stay valid)."""
        for g in self.grads.values():
            g[...] = 0

    # -- modes and devices -----------------------------------------------------------
    def train(self, mode: bool = True):
        """Dropout on (drawn from ``self.rng``)."""
        self.training = bool(mode)
        return self

    def eval(self):
        """Dropout off: the forward is deterministic."""
        return self.train(False)

    @contextmanager
    def no_grad(self):
        """``with model.no_grad(): out = model.forward(...)`` keeps no caches for
        ``backward()`` (evaluation, inference): each forward's activations are freed when it
        returns, and a following ``backward()`` is an error."""
        keep, self._keep_tape = self._keep_tape, False
        self._tape = None
        try:
            yield self
        finally:
            self._keep_tape = keep

    def to(self, device: str):
        """Move parameters and gradients to 'cpu' or 'gpu'; the dropout stream is re-seeded
        on that device from the same seed. Returns self."""
        check_device(device)
        self.params = {k: to_device(v, device) for k, v in self.params.items()}
        self.grads = {k: to_device(v, device) for k, v in self.grads.items()}
        if self.rng.device != device:
            self.rng = Random(self.rng.seed, device=device)
        self.device = device
        self._tape = None
        if device == "gpu":
            activate(self.precision, device)      # tf32: CuPy's TF32 mode before the first matmul
        return self

    # -- input checks: once per forward, here at the boundary -------------------------
    def _inputs(self, input_ids, token_type_ids=None, attention_mask=None, ndim=2):
        """Start a forward: drop the previous forward's caches (a forward that fails on bad
        input must not leave them behind for backward()) and check everything the encoder
        reads, once, so that the layers need not check it L times: the ids, types and
        mask (integers of one shape (B, T), or (B, C, T) with ndim=3, values in range, one
        host synchronisation for all three) and the parameters (names, shapes, dtype).
        Returns: input_ids, token_type_ids (zeros when None), attention_mask (None when all
        ones: HF 5.x then passes no mask at all), on the model's device."""
        self._tape = None
        c = self.config
        input_ids = self._as_ints("input_ids", input_ids, ndim)
        shape = tuple(input_ids.shape)
        if 0 in shape:
            raise ValueError(f"input_ids must have at least one sequence and one token, got shape {shape}")
        if shape[-1] > c.max_position_embeddings:
            raise ValueError(f"sequence length {shape[-1]} exceeds max_position_embeddings="
                             f"{c.max_position_embeddings}")
        xp = get_array_module(input_ids)
        if token_type_ids is None:
            token_type_ids = xp.zeros(shape, dtype=np.int64)            # HF default: segment A
        token_type_ids = self._as_ints("token_type_ids", token_type_ids, ndim, shape)
        checked = [("input_ids", input_ids, 0, c.vocab_size),
                   ("token_type_ids", token_type_ids, 0, c.type_vocab_size)]
        if attention_mask is not None:
            # other values would not mean "attend"/"padding" (HF's (1 - mask) * finfo.min
            # turns a 2 into a huge *positive* score)
            attention_mask = self._as_ints("attention_mask", attention_mask, ndim, shape)
            checked.append(("attention_mask", attention_mask, 0, 2))
        bounds = xp.stack([v for _, x, _, _ in checked for v in (x.min(), x.max())]).tolist()
        for (name, _, low, high), lo, hi in zip(checked, bounds[::2], bounds[1::2]):
            if lo < low or hi >= high:
                if name == "attention_mask":
                    raise ValueError(f"attention_mask must hold 1 (attend) and 0 (padding) only, "
                                     f"got values in [{int(lo)}, {int(hi)}]")
                raise ValueError(f"{name} must lie in [{low}, {high}), got values in [{int(lo)}, {int(hi)}]")
        if attention_mask is not None and bounds[4] == 1:
            attention_mask = None                  # all ones changes nothing
        self._check_params()
        return input_ids, token_type_ids, attention_mask

    def _as_ints(self, name, x, ndim, shape=None):
        """Integer ids on the model's device, checked for type, rank and shape."""
        if not hasattr(x, "dtype"):
            x = _host_array(name, x)
        if device_of(x) != self.device:
            x = to_device(x, self.device)
        if x.dtype.kind not in "iub":
            raise ValueError(f"{name} must be an integer array, got dtype {x.dtype}")
        if x.ndim != ndim:
            raise ValueError(f"{name} must be {ndim}-d, got shape {tuple(x.shape)}")
        if shape is not None and tuple(x.shape) != shape:
            raise ValueError(f"{name} shape {tuple(x.shape)} != input_ids shape {shape}")
        return x

    def _check_params(self):
        """The parameters are the ones the config implies: a weight replaced by hand with
        another shape or dtype is an error here, not a broadcast deep in a layer."""
        if self.params.keys() != self._param_shapes.keys():
            raise ValueError(f"model.params must hold exactly {type(self).__name__}'s parameters: "
                             f"differ in {sorted(self.params.keys() ^ self._param_shapes.keys())[:5]}")
        for k, w in self.params.items():
            if w.shape != self._param_shapes[k] or w.dtype != self.dtype:
                raise ValueError(f"model.params[{k!r}] must be {self.dtype.name}{self._param_shapes[k]}, "
                                 f"got {w.dtype}{tuple(w.shape)}")

    def _labels(self, name, x, shape, dtype=None, num_classes=None):
        """Labels on the model's device with the given shape (integers unless dtype).
        ``num_classes``: class labels, each in [0, num_classes) or IGNORE_INDEX (-100, not
        counted, as HF's CrossEntropyLoss), checked here so the error names the argument."""
        if not hasattr(x, "dtype"):
            x = _host_array(name, x)
        if device_of(x) != self.device:
            x = to_device(x, self.device)             # never np.asarray: CuPy refuses implicit copies
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")
        if dtype is not None:
            if x.dtype.kind not in "iubf":
                raise ValueError(f"{name} must be numbers, got dtype {x.dtype}")
            x = x.astype(dtype, copy=False)
            bad = int(get_array_module(x).count_nonzero(~get_array_module(x).isfinite(x)))
            if bad:                                   # the loss would silently become NaN
                raise ValueError(f"{name} hold {bad} NaN or infinite value(s); every label must be finite")
            return x
        if x.dtype.kind not in "iu":
            raise ValueError(f"{name} must be an integer array, got dtype {x.dtype}")
        if num_classes is not None:
            counted = x[x != IGNORE_INDEX]
            if counted.size:
                lo, hi = (int(v) for v in get_array_module(x).stack((counted.min(), counted.max())).tolist())
                if lo < 0 or hi >= num_classes:
                    raise ValueError(f"{name} must lie in [0, {num_classes}) or be {IGNORE_INDEX} (ignored), "
                                     f"got values in [{lo}, {hi}]")
        return x

    def _dropout_rng(self):
        if self.training and self.rng.device != self.device:
            raise ValueError(f"model.rng draws on {self.rng.device!r} but the model is on "
                             f"{self.device!r}: use Random(seed, device=model.device)")
        return self.rng

    # -- the encoder -----------------------------------------------------------------
    def _encode(self, input_ids, token_type_ids, attention_mask,
                output_attentions=False, output_hidden_states=False):
        """Embeddings -> projection -> L layer applications -> pooler, on inputs that
        :meth:`_inputs` checked (so no layer checks them again).
        Returns: seq (B, T, H), pooled (B, H) or None, attentions, hidden_states, cache."""
        c, p = self.config, self.forward_params()
        B, T = input_ids.shape
        rng, training = self._dropout_rng(), self.training
        # embeddings: word + token type + position (HF's order), LayerNorm, dropout
        e, c_word = embedding_forward(input_ids, p[WORD], padding_idx=c.pad_token_id, check=False)  # (B, T, E)
        te, c_type = embedding_forward(token_type_ids, p[TYPE], check=False)     # (B, T, E)
        e += te
        e += p[POS][:T]                                                          # (B, T, E)
        x0, c_eln = layernorm_forward(e, p[EMB_LN[0]], p[EMB_LN[1]], c.layer_norm_eps, check=False)
        x0, c_edrop = dropout_forward(x0, c.hidden_dropout_prob, rng, training)  # (B, T, E)
        h, c_proj = linear_forward(x0, p[PROJ[0]], p[PROJ[1]], check=False)      # (B, T, H)
        mask_add = None if attention_mask is None else make_attention_mask(attention_mask, self.compute_dtype)
        hidden_states = [h] if output_hidden_states else None
        attentions = [] if output_attentions else None
        layer_caches = []
        for i in range(c.num_hidden_layers):
            for j in range(c.inner_group_num):
                ka, kf = c.attention_block_of(i, j), c.ffn_block_of(i, j)
                pa = {s: p[n] for s, n in self._attn_names[ka].items()}
                pf = {s: p[n] for s, n in self._ffn_names[kf].items()}
                h, probs, lc = albert_layer_forward(h, pa, pf, c, mask_add, rng, training,
                                                    return_probs=output_attentions, check=False)  # (B, T, H)
                layer_caches.append((ka, kf, lc))
                if output_hidden_states:
                    hidden_states.append(h)
                if output_attentions:
                    attentions.append(probs)
        seq = h
        pooled = c_pool = None
        if self.add_pooling_layer:
            z, c_lin = linear_forward(seq[:, 0], p[POOLER[0]], p[POOLER[1]], check=False)  # (B, H) on [CLS]
            pooled, c_tanh = tanh_forward(z, check=False)                        # (B, H)
            c_pool = (c_lin, c_tanh)
        cache = (B, T, c_word, c_type, c_eln, c_edrop, c_proj, layer_caches, c_pool)
        return (seq, pooled, tuple(attentions) if output_attentions else None,
                tuple(hidden_states) if output_hidden_states else None, cache)

    def _encode_backward(self, dseq, dpooled, cache):
        """Inputs: dseq (B, T, H) or None, dpooled (B, H) or None. Accumulates into self.grads."""
        g = self.grads
        B, T, c_word, c_type, c_eln, c_edrop, c_proj, layer_caches, c_pool = cache
        xp = get_array_module(*g.values())
        if dpooled is not None:
            c_lin, c_tanh = c_pool
            # pooled = tanh(seq[:, 0] @ Wp.T + bp)
            dz = tanh_backward(dpooled, c_tanh)
            dcls = linear_backward(dz, c_lin, g[POOLER[0]], g[POOLER[1]])        # (B, H)
            # seq[:, 0] feeds the pooler too; copy rather than mutate the caller's array
            dseq = xp.zeros((B, T, self.config.hidden_size), self.compute_dtype) if dseq is None else dseq.copy()
            dseq[:, 0] += dcls
        if dseq is None:
            dseq = xp.zeros((B, T, self.config.hidden_size), dtype=self.compute_dtype)
        dh = dseq
        # THE SHARED LAYER'S GRADIENT IS A SUM OVER DEPTHS. The applications run here in
        # reverse; each one ADDS (+=, inside the layer backwards) into the gradient buffers of
        # the blocks it used, g["encoder.attention.{ka}.*"] and g["encoder.ffn.{kf}.*"].
        # With sharing="all" and G = 1 every depth uses block 0, so after this loop
        # g["encoder.attention.0.query.weight"] = sum over the L depths of that depth's gradient.
        # No other place sums them (docs/model/shared-layer-gradient.md).
        for ka, kf, lc in reversed(layer_caches):                                # depth L-1, ..., 0
            ga = {s: g[n] for s, n in self._attn_names[ka].items()}              # the SAME arrays at
            gf = {s: g[n] for s, n in self._ffn_names[kf].items()}               # every depth
            dh = albert_layer_backward(dh, lc, ga, gf)       # adds this depth's term into ga, gf
        # h = x0 @ Wmap.T + bmap
        dx0 = linear_backward(dh, c_proj, g[PROJ[0]], g[PROJ[1]])                # (B, T, E)
        dx0 = dropout_backward(dx0, c_edrop)
        # x0 = LayerNorm(word + type + position)
        de = layernorm_backward(dx0, c_eln, g[EMB_LN[0]], g[EMB_LN[1]])          # (B, T, E)
        embedding_backward(de, c_word, g[WORD])       # scatter-add; the pad row gets nothing here
        embedding_backward(de, c_type, g[TYPE])
        # positions 0..T-1, summed over the batch (float16/bfloat16: summed in float32)
        g[POS][:T] += de.sum(axis=0) if de.dtype == g[POS].dtype else de.sum(axis=0, dtype=g[POS].dtype)

    # -- forward / backward API ------------------------------------------------------
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def backward(self, grad_outputs: Optional[dict] = None):
        """Backpropagate from the loss of the preceding forward (upstream gradient 1), or from
        ``grad_outputs`` = {output field name: upstream gradient} (e.g. a random array for a
        gradient check; "loss" may be one of the keys). Accumulates into ``self.grads``
        (call ``zero_grad()`` first). The forward's caches are consumed: a second backward
        needs a new forward."""
        tape = self._tape
        if tape is None:
            raise RuntimeError("backward() needs a preceding forward(); none is pending "
                               "(each forward allows one backward)")
        if grad_outputs is None:
            if tape["loss"] is None:
                raise RuntimeError(f"backward() needs a loss, but the preceding {type(self).__name__}."
                                   "forward computed none: pass the labels, or give grad_outputs")
            grad_outputs = {"loss": 1.0}
        allowed = set(tape["outputs"])
        bad = set(grad_outputs) - allowed
        if bad:
            raise ValueError(f"grad_outputs for {sorted(bad)}: the forward produced only {sorted(allowed)}")
        if "loss" in grad_outputs and tape["loss"] is None:
            raise RuntimeError("grad_outputs has 'loss' but the forward computed no loss")
        # upstream arrays in the model's dtype and on its device (a float64 NumPy array would
        # otherwise turn the whole float32 backward into float64)
        xp = get_array_module(*self.params.values())
        go = {k: v if k == "loss" else xp.asarray(to_device(v, self.device), dtype=self.compute_dtype)
              for k, v in grad_outputs.items()}
        for k, v in go.items():
            want = () if k == "loss" else tape["shapes"][k]
            if tuple(getattr(v, "shape", ())) != want:
                raise ValueError(f"grad_outputs[{k!r}] must have the shape of the forward's {k}, {want}, "
                                 f"got {tuple(v.shape)}")
        dseq, dpooled = self._head_backward(tape, go)
        if go.get("last_hidden_state") is not None:
            dseq = go["last_hidden_state"] if dseq is None else dseq + go["last_hidden_state"]
        if go.get("pooler_output") is not None:
            dpooled = go["pooler_output"] if dpooled is None else dpooled + go["pooler_output"]
        self._tape = None
        self._encode_backward(dseq, dpooled, tape["enc"])

    def _head_backward(self, tape, go):
        return None, None

    def _record(self, out: AlbertOutput, enc_cache, **head_caches):
        """Keep what backward() needs; the differentiable outputs are the non-None arrays."""
        names = [k for k in ("loss", "prediction_logits", "sop_logits", "logits", "start_logits",
                             "end_logits", "last_hidden_state", "pooler_output")
                 if getattr(out, k) is not None]
        self._tape = ({"enc": enc_cache, "loss": out.loss, "outputs": names,
                       "shapes": {k: tuple(getattr(out, k).shape) for k in names}, **head_caches}
                      if self._keep_tape else None)
        return out

    # -- saving ----------------------------------------------------------------------
    def save_pretrained(self, path):
        """Write ``config.json`` + ``model.safetensors`` that ``transformers`` loads (see hf_format.py)."""
        return hf_format.save_pretrained(self, path)

    def __repr__(self):
        c = self.config
        return (f"{type(self).__name__}(L={c.num_hidden_layers}, H={c.hidden_size}, E={c.embedding_size}, "
                f"V={c.vocab_size}, sharing={c.sharing!r}, params={self.num_parameters():,}, "
                f"dtype={self.dtype.name}, device={self.device!r}, training={self.training}"
                + (f", precision={self.precision.name!r})" if self.precision.name != "fp32" else ")"))


def _init_param(rng, shape, kind, config, dtype):
    """HF's init: weights and embeddings N(0, initializer_range) (not truncated), biases 0,
    LayerNorm gamma 1 / beta 0, the padding row of the word embedding 0. Drawn on the host so
    CPU and GPU models built with the same seed are identical."""
    if kind == "zeros":
        return np.zeros(shape, dtype=dtype)
    if kind == "ones":
        return np.ones(shape, dtype=dtype)
    w = rng.standard_normal(shape, dtype=np.float32).astype(dtype) * dtype.type(config.initializer_range)
    if kind == "embedding_pad":
        w[config.pad_token_id] = 0
    return w


class AlbertModel(AlbertPreTrainedModel):
    """The bare encoder with pooler: ``last_hidden_state`` (B, T, H), ``pooler_output`` (B, H).
    No loss; ``backward(grad_outputs={"last_hidden_state": d, "pooler_output": dp})``."""
    head = "model"
    add_pooling_layer = True

    def forward(self, input_ids, token_type_ids=None, attention_mask=None,
                output_attentions=False, output_hidden_states=False):
        """Inputs: input_ids (B, T) ints in [0, V); token_type_ids (B, T) in [0, type_vocab_size)
        (default 0); attention_mask (B, T) 1 = attend, 0 = padding (default all ones).
        Returns: AlbertOutput with last_hidden_state, pooler_output."""
        input_ids, token_type_ids, attention_mask = self._inputs(input_ids, token_type_ids, attention_mask)
        seq, pooled, att, hs, cache = self._encode(input_ids, token_type_ids, attention_mask,
                                                   output_attentions, output_hidden_states)
        out = AlbertOutput(last_hidden_state=seq, pooler_output=pooled, attentions=att, hidden_states=hs)
        return self._record(out, cache)
