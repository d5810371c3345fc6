"""The task heads on top of the ALBERT encoder, each with its loss exactly as HuggingFace.

Letters: B batch, T sequence, V vocabulary, E embedding size, H hidden size, C labels
(or choices), N labelled (masked) positions.

Head parameters (keys of ``model.params`` added to the encoder's):

    predictions.dense.{weight (E, H), bias (E,)}     MLM transform H -> E
    predictions.LayerNorm.{weight, bias} (E,)
    predictions.bias (V,)                            decoder bias; the decoder WEIGHT is
                                                     embeddings.word_embeddings.weight (tied)
    sop_classifier.{weight (C, H), bias (C,)}        sentence-order prediction (C = num_labels)
    classifier.{weight, bias}                        sequence / token classification, (1, H) for multiple choice
    qa_outputs.{weight (2, H), bias (2,)}            question answering (start, end)

Derivations: [docs/model/tied-decoder.md](../model/tied-decoder.md),
[docs/model/heads.md](../model/heads.md)
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module
from .layers import (IGNORE_INDEX, bce_with_logits_backward, bce_with_logits_forward,
                     cross_entropy_backward, cross_entropy_forward, dropout_backward,
                     dropout_forward, get_activation, layernorm_backward, layernorm_forward,
                     linear_backward, linear_forward, mse_backward, mse_forward)
from .model import WORD, AlbertModel, AlbertOutput, AlbertPreTrainedModel

MLM_PARAMS = ("predictions.dense.weight", "predictions.dense.bias",
              "predictions.LayerNorm.weight", "predictions.LayerNorm.bias", "predictions.bias")


# ----------------------------------------------------------------------------------------
# building blocks: the MLM head with its tied decoder, and dropout + linear classifiers
# ----------------------------------------------------------------------------------------

def mlm_head_forward(x, p, word_embeddings, activation="gelu_new", eps=1e-12, *, check=True):
    """Derivation: [docs/model/tied-decoder.md](../model/tied-decoder.md).

    Inputs: x (..., H) hidden states; p with MLM_PARAMS; word_embeddings (V, E), the
    tied decoder weight; check: the layers validate their arguments (False: the model did).
    Returns: logits (..., V), cache.
    Order as HF and TF: dense H->E, activation, LayerNorm, decoder E->V."""
    act_fwd, act_bwd = get_activation(activation)
    t, c_dense = linear_forward(x, p["predictions.dense.weight"], p["predictions.dense.bias"], check=check)  # (..., E)
    t, c_act = act_fwd(t, check=check)                                                        # (..., E)
    t, c_ln = layernorm_forward(t, p["predictions.LayerNorm.weight"], p["predictions.LayerNorm.bias"], eps,
                                check=check)
    logits, c_dec = linear_forward(t, word_embeddings, p["predictions.bias"], check=check)    # (..., V)
    return logits, (c_dense, c_act, act_bwd, c_ln, c_dec)


def mlm_head_backward(dlogits, cache, g, dword_embeddings):
    """Derivation: [docs/model/tied-decoder.md](../model/tied-decoder.md).

    Inputs: dlogits (..., V); g gradient buffers with MLM_PARAMS; dword_embeddings (V, E)
    the word-embedding gradient buffer. Returns: dx (..., H)."""
    c_dense, c_act, act_bwd, c_ln, c_dec = cache
    # logits = t @ W_word.T + bias. The decoder weight IS the word embedding, so its gradient
    # dlogits.T @ t is ADDED into the word-embedding gradient buffer, next to the lookup's
    # scatter-add (which arrives in the encoder backward). Row 0 (pad) does get this part.
    dt = linear_backward(dlogits, c_dec, dword_embeddings, g["predictions.bias"])     # (..., E)
    # t = LayerNorm(act(dense(x)))
    dt = layernorm_backward(dt, c_ln, g["predictions.LayerNorm.weight"], g["predictions.LayerNorm.bias"])
    dt = act_bwd(dt, c_act)
    return linear_backward(dt, c_dense, g["predictions.dense.weight"], g["predictions.dense.bias"])  # (..., H)


def classifier_forward(x, W, b, dropout_p, rng, training, *, check=True):
    """Derivation: [docs/model/heads.md](../model/heads.md).

    Inputs: x (..., H); W (C, H), b (C,); check: as every layer.
    Returns: logits (..., C) = dropout(x) @ W.T + b, cache."""
    xd, c_drop = dropout_forward(x, dropout_p, rng, training)
    logits, c_lin = linear_forward(xd, W, b, check=check)
    return logits, (c_drop, c_lin)


def classifier_backward(dlogits, cache, dW, db):
    """Derivation: [docs/model/heads.md](../model/heads.md).

    Returns dx (..., H); dW, db accumulated into."""
    c_drop, c_lin = cache
    dxd = linear_backward(dlogits, c_lin, dW, db)
    return dropout_backward(dxd, c_drop)


def _add(a, b):
    return b if a is None else (a if b is None else a + b)


def _ce_logits_grad(go, tape):
    """dlogits of a head whose loss is one cross-entropy (cache ``tape["ce"]``): the upstream
    gradient given for ``logits`` (if any) plus the loss's, or None when neither was given."""
    dlogits = go.get("logits")
    if "loss" in go:
        dlogits = _add(dlogits, cross_entropy_backward(go["loss"], tape["ce"]))
    return dlogits


def _mlm_specs(c):
    E, H, V = c.embedding_size, c.hidden_size, c.vocab_size
    return [("predictions.dense.weight", (E, H), "normal"), ("predictions.dense.bias", (E,), "zeros"),
            ("predictions.LayerNorm.weight", (E,), "ones"), ("predictions.LayerNorm.bias", (E,), "zeros"),
            ("predictions.bias", (V,), "zeros")]


class _MLMMixin:
    """The masked-LM part shared by AlbertForPreTraining and AlbertForMaskedLM."""

    def _mlm_forward(self, seq, labels, full_logits):
        """Returns logits, masked_positions (or None), labels for the CE (or None), cache.

        Only the labelled positions are decoded unless ``full_logits`` (default: gather when
        labels are given, as TF's ``gather_indexes``): the decoder E->V is the largest matmul
        of a pretraining step, and ~15% of positions are labelled."""
        c = self.config
        B, T, H = seq.shape                       # labels: (B, T), checked by the caller's forward
        gather = (labels is not None) if full_logits is None else not full_logits
        if gather and labels is None:
            raise ValueError("full_logits=False needs labels: they say which positions to decode")
        if gather:
            xp = get_array_module(seq)
            flat = labels.reshape(-1)                                     # (B*T,)
            pos = xp.nonzero(flat != IGNORE_INDEX)[0]                     # (N,)
            x = seq.reshape(B * T, H)[pos]                                # (N, H)
            targets = flat[pos]                                           # (N,)
        else:
            pos, x, targets = None, seq, labels                           # (B, T, H)
        p = self.forward_params()                 # float16/bfloat16 copies under mixed precision
        logits, cache = mlm_head_forward(x, p, p[WORD], c.hidden_act, c.layer_norm_eps, check=False)
        return logits, pos, targets, (cache, pos, (B, T, H))

    def _mlm_backward(self, dlogits, cache):
        """Returns dseq (B, T, H)."""
        head_cache, pos, (B, T, H) = cache
        dx = mlm_head_backward(dlogits, head_cache, self.grads, self.grads[WORD])
        if pos is None:
            return dx
        xp = get_array_module(dx)
        dseq = xp.zeros((B * T, H), dtype=dx.dtype)
        dseq[pos] = dx                                                    # positions are distinct
        return dseq.reshape(B, T, H)


# ----------------------------------------------------------------------------------------
# the classes
# ----------------------------------------------------------------------------------------

class AlbertForPreTraining(_MLMMixin, AlbertPreTrainedModel):
    """Encoder + pooler + MLM head (tied decoder) + SOP head.
    loss = mean CE over labelled positions + SOP CE, computed when both labels are given."""
    head = "pretraining"
    add_pooling_layer = True

    def _head_specs(self):
        c = self.config
        return _mlm_specs(c) + [("sop_classifier.weight", (c.num_labels, c.hidden_size), "normal"),
                                ("sop_classifier.bias", (c.num_labels,), "zeros")]

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                sentence_order_label=None, output_attentions=False, output_hidden_states=False,
                full_logits=None, mlm_normalizer=None, sop_normalizer=None):
        """Inputs: input_ids, token_type_ids, attention_mask (B, T); labels (B, T) token ids at
        masked positions, -100 elsewhere; sentence_order_label (B,) 0 = in order, 1 = swapped;
        full_logits: decode all B*T positions (default: only the labelled ones when labels given);
        mlm_normalizer / sop_normalizer: divide the summed MLM / SOP cross-entropy by these
        instead of this batch's own counts (a training step's global counts, so that its
        micro-batches' losses add up to one big batch's: ``train.train_step``).
        Returns: AlbertOutput with loss, mlm_loss, sop_loss, prediction_logits ((B, T, V) or
        (N, V) with masked_positions), sop_logits (B, C), last_hidden_state, pooler_output."""
        c, p = self.config, self.forward_params()
        # inputs, then labels, checked before any arithmetic: a bad label is a ValueError first
        input_ids, token_type_ids, attention_mask = self._inputs(input_ids, token_type_ids, attention_mask)
        B, T = input_ids.shape
        if labels is not None:
            labels = self._labels("labels", labels, (B, T), num_classes=c.vocab_size)
        if sentence_order_label is not None:
            sentence_order_label = self._labels("sentence_order_label", sentence_order_label, (B,),
                                                num_classes=c.num_labels)
        seq, pooled, att, hs, enc = self._encode(input_ids, token_type_ids, attention_mask,
                                                 output_attentions, output_hidden_states)
        logits, pos, targets, c_mlm = self._mlm_forward(seq, labels, full_logits)
        sop_logits, c_sop = classifier_forward(pooled, p["sop_classifier.weight"], p["sop_classifier.bias"],
                                               c.classifier_dropout_prob or 0.0, self.rng, self.training, check=False)
        mlm_loss = sop_loss = loss = c_mce = c_sce = None
        if targets is not None:
            mlm_loss, c_mce = cross_entropy_forward(logits, targets, normalizer=mlm_normalizer, check=False)
        if sentence_order_label is not None:
            sop_loss, c_sce = cross_entropy_forward(sop_logits, sentence_order_label, normalizer=sop_normalizer,
                                                check=False)
        if mlm_loss is not None and sop_loss is not None:
            loss = mlm_loss + sop_loss                   # HF: a loss only when both labels are given
        out = AlbertOutput(loss=loss, prediction_logits=logits, sop_logits=sop_logits,
                           last_hidden_state=seq, pooler_output=pooled, hidden_states=hs,
                           attentions=att, masked_positions=pos, mlm_loss=mlm_loss, sop_loss=sop_loss)
        return self._record(out, enc, mlm=c_mlm, sop=c_sop, mce=c_mce, sce=c_sce)

    def _head_backward(self, tape, go):
        dlogits, dsop = go.get("prediction_logits"), go.get("sop_logits")
        if "loss" in go:
            # loss = mlm_loss + sop_loss: the upstream gradient reaches both unchanged
            dlogits = _add(dlogits, cross_entropy_backward(go["loss"], tape["mce"]))
            dsop = _add(dsop, cross_entropy_backward(go["loss"], tape["sce"]))
        dseq = self._mlm_backward(dlogits, tape["mlm"]) if dlogits is not None else None
        dpooled = None
        if dsop is not None:
            dpooled = classifier_backward(dsop, tape["sop"], self.grads["sop_classifier.weight"],
                                          self.grads["sop_classifier.bias"])
        return dseq, dpooled


class AlbertForMaskedLM(_MLMMixin, AlbertPreTrainedModel):
    """Encoder (no pooler) + MLM head; loss = mean CE over labelled positions."""
    head = "masked_lm"
    add_pooling_layer = False

    def _head_specs(self):
        return _mlm_specs(self.config)

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                output_attentions=False, output_hidden_states=False, full_logits=None,
                mlm_normalizer=None):
        """Inputs as AlbertForPreTraining (no sentence_order_label, no sop_normalizer).
        Returns: AlbertOutput with loss, logits ((B, T, V) or (N, V) gathered), masked_positions,
        last_hidden_state."""
        input_ids, token_type_ids, attention_mask = self._inputs(input_ids, token_type_ids, attention_mask)
        if labels is not None:
            labels = self._labels("labels", labels, input_ids.shape, num_classes=self.config.vocab_size)
        seq, _, att, hs, enc = self._encode(input_ids, token_type_ids, attention_mask,
                                            output_attentions, output_hidden_states)
        logits, pos, targets, c_mlm = self._mlm_forward(seq, labels, full_logits)
        loss = c_ce = None
        if targets is not None:
            loss, c_ce = cross_entropy_forward(logits, targets, normalizer=mlm_normalizer, check=False)
        out = AlbertOutput(loss=loss, logits=logits, last_hidden_state=seq, hidden_states=hs,
                           attentions=att, masked_positions=pos)
        return self._record(out, enc, mlm=c_mlm, ce=c_ce)

    def _head_backward(self, tape, go):
        dlogits = _ce_logits_grad(go, tape)
        return (self._mlm_backward(dlogits, tape["mlm"]) if dlogits is not None else None), None


class AlbertForSequenceClassification(AlbertPreTrainedModel):
    """Encoder + pooler + dropout + linear H -> C. Loss as HF: C == 1 -> MSE (regression);
    integer labels -> CE; float labels (B, C) -> BCE with logits (multi-label).
    ``config.problem_type`` fixes the choice; when None it is inferred on every call
    (HF writes its inference into the config; we do not mutate the config)."""
    head = "sequence_classification"
    add_pooling_layer = True

    def _head_specs(self):
        c = self.config
        return [("classifier.weight", (c.num_labels, c.hidden_size), "normal"),
                ("classifier.bias", (c.num_labels,), "zeros")]

    def problem_type(self, labels) -> str:
        c = self.config
        if c.problem_type is not None:
            return c.problem_type
        if c.num_labels == 1:
            return "regression"
        if labels.dtype.kind in "iu":
            return "single_label_classification"
        return "multi_label_classification"

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        """Inputs: input_ids etc. (B, T); labels (B,) ints in [0, C), or (B,) floats for
        regression, or (B, C) floats in [0, 1] for multi-label.
        Returns: AlbertOutput with loss, logits (B, C), last_hidden_state, pooler_output."""
        c, p = self.config, self.forward_params()
        input_ids, token_type_ids, attention_mask = self._inputs(input_ids, token_type_ids, attention_mask)
        B, C = input_ids.shape[0], c.num_labels
        kind = lab = None
        if labels is not None:              # checked before the encoder runs
            if not hasattr(labels, "dtype"):
                labels = np.asarray(labels)
            kind = self.problem_type(labels)
            if kind == "regression":
                # HF: MSELoss()(logits.squeeze(), labels.squeeze()) when C == 1
                shape = (B,) if C == 1 else (B, C)
                lab = labels.reshape(-1) if C == 1 and labels.size == B else labels
                lab = self._labels("labels", lab, shape, dtype=self.dtype)
            elif kind == "single_label_classification":
                lab = self._labels("labels", labels.reshape(-1) if labels.size == B else labels, (B,),
                                   num_classes=C)
            else:
                lab = self._labels("labels", labels, (B, C), dtype=self.dtype)
                lo, hi = float(lab.min()), float(lab.max())
                if lo < 0.0 or hi > 1.0:
                    raise ValueError(f"labels for multi-label classification must lie in [0, 1], "
                                     f"got values in [{lo}, {hi}]")
        seq, pooled, att, hs, enc = self._encode(input_ids, token_type_ids, attention_mask,
                                                 output_attentions, output_hidden_states)
        logits, c_cls = classifier_forward(pooled, p["classifier.weight"], p["classifier.bias"],
                                           c.classifier_dropout_prob or 0.0, self.rng, self.training, check=False)
        loss = c_loss = None
        if kind == "regression":
            loss, c_loss = mse_forward(logits.reshape(lab.shape), lab, check=False)
        elif kind == "single_label_classification":
            loss, c_loss = cross_entropy_forward(logits, lab, check=False)
        elif kind is not None:
            loss, c_loss = bce_with_logits_forward(logits, lab, check=False)
        out = AlbertOutput(loss=loss, logits=logits, last_hidden_state=seq, pooler_output=pooled,
                           hidden_states=hs, attentions=att)
        return self._record(out, enc, cls=c_cls, loss_cache=c_loss, kind=kind, logits_shape=logits.shape)

    def _head_backward(self, tape, go):
        dlogits = go.get("logits")
        if "loss" in go:
            kind, cl = tape["kind"], tape["loss_cache"]
            if kind == "regression":
                d = mse_backward(go["loss"], cl).reshape(tape["logits_shape"])
            elif kind == "single_label_classification":
                d = cross_entropy_backward(go["loss"], cl)
            else:
                d = bce_with_logits_backward(go["loss"], cl)
            dlogits = _add(dlogits, d)
        if dlogits is None:
            return None, None
        dpooled = classifier_backward(dlogits, tape["cls"], self.grads["classifier.weight"],
                                      self.grads["classifier.bias"])
        return None, dpooled


class AlbertForTokenClassification(AlbertPreTrainedModel):
    """Encoder (no pooler) + dropout + linear H -> C at every position; CE over labels != -100
    (padding is not ignored by itself: label it -100)."""
    head = "token_classification"
    add_pooling_layer = False

    def _head_specs(self):
        c = self.config
        return [("classifier.weight", (c.num_labels, c.hidden_size), "normal"),
                ("classifier.bias", (c.num_labels,), "zeros")]

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        """Inputs: input_ids etc. (B, T); labels (B, T) in [0, C) or -100.
        Returns: AlbertOutput with loss, logits (B, T, C), last_hidden_state."""
        c, p = self.config, self.forward_params()
        input_ids, token_type_ids, attention_mask = self._inputs(input_ids, token_type_ids, attention_mask)
        if labels is not None:
            labels = self._labels("labels", labels, input_ids.shape, num_classes=c.num_labels)
        seq, _, att, hs, enc = self._encode(input_ids, token_type_ids, attention_mask,
                                            output_attentions, output_hidden_states)
        drop = c.classifier_dropout_prob if c.classifier_dropout_prob is not None else c.hidden_dropout_prob
        logits, c_cls = classifier_forward(seq, p["classifier.weight"], p["classifier.bias"],
                                           drop, self.rng, self.training, check=False)          # (B, T, C)
        loss = c_ce = None
        if labels is not None:
            loss, c_ce = cross_entropy_forward(logits, labels, check=False)
        out = AlbertOutput(loss=loss, logits=logits, last_hidden_state=seq, hidden_states=hs, attentions=att)
        return self._record(out, enc, cls=c_cls, ce=c_ce)

    def _head_backward(self, tape, go):
        dlogits = _ce_logits_grad(go, tape)
        if dlogits is None:
            return None, None
        return classifier_backward(dlogits, tape["cls"], self.grads["classifier.weight"],
                                   self.grads["classifier.bias"]), None


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    """Encoder (no pooler) + linear H -> 2 (no dropout): start and end logits (B, T).
    Loss as HF: positions clamped to [0, T], position T ignored, (start CE + end CE) / 2."""
    head = "question_answering"
    add_pooling_layer = False

    def __init__(self, config, seed=0, dtype="float32", precision="fp32"):
        if config.num_labels != 2:
            raise ValueError(f"AlbertForQuestionAnswering needs config.num_labels == 2 (start, end), "
                             f"got {config.num_labels}")
        super().__init__(config, seed, dtype, precision)

    def _head_specs(self):
        H = self.config.hidden_size
        return [("qa_outputs.weight", (2, H), "normal"), ("qa_outputs.bias", (2,), "zeros")]

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, start_positions=None,
                end_positions=None, output_attentions=False, output_hidden_states=False):
        """Inputs: input_ids etc. (B, T); start_positions, end_positions (B,) ints.
        Returns: AlbertOutput with loss, start_logits, end_logits (B, T), last_hidden_state."""
        p = self.forward_params()
        input_ids, token_type_ids, attention_mask = self._inputs(input_ids, token_type_ids, attention_mask)
        B, T = input_ids.shape
        xp = get_array_module(input_ids)
        with_loss = start_positions is not None and end_positions is not None
        if with_loss:                            # checked before the encoder runs
            def positions(name, x):
                x = x if hasattr(x, "dtype") else np.asarray(x)
                x = self._labels(name, x.reshape(-1) if x.size == B else x, (B,))
                return xp.clip(x, 0, T)          # out-of-range answers -> T, which is ignored (HF)
            start_positions = positions("start_positions", start_positions)
            end_positions = positions("end_positions", end_positions)
        seq, _, att, hs, enc = self._encode(input_ids, token_type_ids, attention_mask,
                                            output_attentions, output_hidden_states)
        logits, c_qa = linear_forward(seq, p["qa_outputs.weight"], p["qa_outputs.bias"], check=False)  # (B, T, 2)
        start = xp.ascontiguousarray(logits[..., 0])                                      # (B, T)
        end = xp.ascontiguousarray(logits[..., 1])                                        # (B, T)
        loss = c_s = c_e = None
        if with_loss:
            ls, c_s = cross_entropy_forward(start, start_positions, ignore_index=T, check=False)
            le, c_e = cross_entropy_forward(end, end_positions, ignore_index=T, check=False)
            loss = (ls + le) / 2
        out = AlbertOutput(loss=loss, start_logits=start, end_logits=end, last_hidden_state=seq,
                           hidden_states=hs, attentions=att)
        return self._record(out, enc, qa=c_qa, s=c_s, e=c_e)

    def _head_backward(self, tape, go):
        dstart, dend = go.get("start_logits"), go.get("end_logits")
        if "loss" in go:
            # loss = (start_loss + end_loss) / 2
            dstart = _add(dstart, cross_entropy_backward(go["loss"] * 0.5, tape["s"]))
            dend = _add(dend, cross_entropy_backward(go["loss"] * 0.5, tape["e"]))
        if dstart is None and dend is None:
            return None, None
        ref = dstart if dstart is not None else dend
        xp = get_array_module(ref)
        dlogits = xp.zeros(ref.shape + (2,), dtype=ref.dtype)                         # (B, T, 2)
        if dstart is not None:
            dlogits[..., 0] = dstart
        if dend is not None:
            dlogits[..., 1] = dend
        return linear_backward(dlogits, tape["qa"], self.grads["qa_outputs.weight"],
                               self.grads["qa_outputs.bias"]), None


class AlbertForMultipleChoice(AlbertPreTrainedModel):
    """Inputs (B, C, T) are flattened to (B*C, T); encoder + pooler + dropout + linear H -> 1;
    logits (B, C); CE over the choices."""
    head = "multiple_choice"
    add_pooling_layer = True

    def _head_specs(self):
        return [("classifier.weight", (1, self.config.hidden_size), "normal"), ("classifier.bias", (1,), "zeros")]

    def forward(self, input_ids, token_type_ids=None, attention_mask=None, labels=None,
                output_attentions=False, output_hidden_states=False):
        """Inputs: input_ids, token_type_ids, attention_mask (B, C, T); labels (B,) in [0, C).
        Returns: AlbertOutput with loss, logits (B, C)."""
        c, p = self.config, self.forward_params()
        input_ids, token_type_ids, attention_mask = self._inputs(input_ids, token_type_ids, attention_mask,
                                                                 ndim=3)
        B, C, T = input_ids.shape
        if labels is not None:
            labels = self._labels("labels", labels, (B,), num_classes=C)
        if attention_mask is not None:
            attention_mask = attention_mask.reshape(B * C, T)
        seq, pooled, att, hs, enc = self._encode(input_ids.reshape(B * C, T), token_type_ids.reshape(B * C, T),
                                                 attention_mask, output_attentions, output_hidden_states)
        logits, c_cls = classifier_forward(pooled, p["classifier.weight"], p["classifier.bias"],   # (B*C, 1)
                                           c.classifier_dropout_prob or 0.0, self.rng, self.training, check=False)
        logits = logits.reshape(B, C)
        loss = c_ce = None
        if labels is not None:
            loss, c_ce = cross_entropy_forward(logits, labels, check=False)
        out = AlbertOutput(loss=loss, logits=logits, hidden_states=hs, attentions=att)
        return self._record(out, enc, cls=c_cls, ce=c_ce)

    def _head_backward(self, tape, go):
        dlogits = _ce_logits_grad(go, tape)
        if dlogits is None:
            return None, None
        dpooled = classifier_backward(dlogits.reshape(-1, 1), tape["cls"], self.grads["classifier.weight"],
                                      self.grads["classifier.bias"])
        return None, dpooled


MODEL_CLASSES = {cls.__name__: cls for cls in (
    AlbertModel, AlbertForPreTraining, AlbertForMaskedLM, AlbertForSequenceClassification,
    AlbertForTokenClassification, AlbertForQuestionAnswering, AlbertForMultipleChoice)}
