"""Parity with HuggingFace transformers (test-only oracle, eager attention).

A HF model with random weights (LayerNorm gains and every bias randomised too) is saved with
``save_pretrained``, loaded with ``minialbert.from_pretrained``, and both run the same batch
(with padding inside it): outputs, loss and *every* parameter gradient must agree.

Tolerances, written once: float64 ≤ 1e-9 relative (a correct port reaches ~1e-14, spec §0;
anything structural — a missing term, a wrong group — is O(1)); float32 ≤ 1e-4 relative (the
two float32 implementations round differently, ~1e-6 on activations, amplified a little by
the backward). Some gradients are analytically zero and both sides hold rounding noise there:
``attention.key.bias`` (softmax ignores a constant added to a row of scores), and under the QA
loss ``qa_outputs.bias`` and the last ``full_layer_layer_norm.bias`` (the softmax over positions
makes Σ_t dlogits = 0 for every example). Other gradients shrink by cancellation (the QA loss
leaves the last layer's query gradient at ~1e-5 of the largest one, with a float64 error of
5e-16 absolute = 6e-14 of the largest gradient: rounding, not a bug, which would be O(1)). So
each gradient's error is measured relative to max(its own norm, FLOOR × the largest gradient
norm in the model). float64: RTOL × FLOOR = 1e-13 of the largest gradient (~500 ulps). float32:
HF's own float32 gradients differ from the float64 truth by up to 3.4e-5 of the largest gradient
(measured: inner_groups config, QA head, B=4, T=8; ours: 2.6e-5), so no float32 tolerance can be
finer than that: RTOL × FLOOR = 5e-5 of the largest gradient. A real bug is O(1) either way.
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import minialbert as ma  # noqa: E402

RTOL = {"float64": 1e-9, "float32": 1e-4}
FLOOR = {"float64": 1e-4, "float32": 0.5}    # x RTOL: 1e-13 / 5e-5 of the largest gradient
TORCH_DTYPE = {"float64": torch.float64, "float32": torch.float32}

BASE = dict(vocab_size=31, embedding_size=6, hidden_size=8, num_attention_heads=2, intermediate_size=12,
            num_hidden_layers=2, max_position_embeddings=12, type_vocab_size=2,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0)
CONFIGS = {
    "e_gt_h": dict(embedding_size=10, hidden_size=6, num_attention_heads=3, intermediate_size=9),
    "single_head": dict(num_attention_heads=1),
    "one_layer": dict(num_hidden_layers=1),
    "uneven_groups": dict(num_hidden_layers=5, num_hidden_groups=3),
    "inner_groups": dict(num_hidden_layers=4, num_hidden_groups=2, inner_group_num=2),
    "erf_gelu": dict(hidden_act="gelu", num_hidden_layers=3),
}
HEADS = ["AlbertForPreTraining", "AlbertForMaskedLM", "AlbertForSequenceClassification",
         "AlbertForTokenClassification", "AlbertForQuestionAnswering", "AlbertForMultipleChoice", "AlbertModel"]


def hf_model(arch, cfg_kw, dtype, seed):
    """A HF model of class ``arch`` with random weights everywhere, eager attention, eval mode."""
    torch.manual_seed(seed)
    cfg = transformers.AlbertConfig(**{**BASE, **cfg_kw}, attn_implementation="eager")
    model = getattr(transformers, arch)(cfg).to(TORCH_DTYPE[dtype]).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64).to(p.dtype)
            if p.ndim == 2:          # fan-in scaling keeps attention away from saturation
                p.copy_(noise / p.shape[1] ** 0.5)
            elif "LayerNorm" in name or "layer_norm" in name:
                p.copy_(1.0 + 0.3 * noise)
            else:
                p.copy_(0.3 * noise)
    return model


def batch(cfg_kw, arch, B, T, seed):
    """ids, token types, mask (with padding inside the batch: rows of different lengths) and
    the labels each class takes, as NumPy arrays."""
    c = {**BASE, **cfg_kw}
    rng = np.random.default_rng(seed)
    shape = (B, 2, T) if arch == "AlbertForMultipleChoice" else (B, T)
    ids = rng.integers(1, c["vocab_size"], shape)
    tt = rng.integers(0, 2, shape)
    am = np.ones(shape, dtype=np.int64)
    lengths = rng.integers(1, T + 1, shape[:-1])
    lengths.reshape(-1)[0] = T                                    # one full row, others padded
    for idx in np.ndindex(*shape[:-1]):
        am[idx][lengths[idx]:] = 0
        ids[idx][lengths[idx]:] = 0                               # pad id 0 (padding_idx)
    labels = {}
    if arch in ("AlbertForPreTraining", "AlbertForMaskedLM"):
        lab = np.where(rng.random(shape) < 0.4, rng.integers(0, c["vocab_size"], shape), -100)
        lab[0, 0] = 5
        labels["labels"] = lab
        if arch == "AlbertForPreTraining":
            labels["sentence_order_label"] = rng.integers(0, 2, B)
    elif arch == "AlbertForSequenceClassification":
        labels["labels"] = rng.integers(0, 2, B)
    elif arch == "AlbertForTokenClassification":
        lab = rng.integers(0, 2, shape)
        lab[am == 0] = -100
        labels["labels"] = lab
    elif arch == "AlbertForQuestionAnswering":
        labels["start_positions"] = rng.integers(0, T, B)
        labels["end_positions"] = rng.integers(0, T + 3, B)       # some out of range: ignored
    elif arch == "AlbertForMultipleChoice":
        labels["labels"] = rng.integers(0, 2, B)
    return dict(input_ids=ids, token_type_ids=tt, attention_mask=am), labels


def rel(a, b, floor=0.0):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.linalg.norm(a), np.linalg.norm(b), floor)
    return float(np.linalg.norm(a - b) / scale) if scale > 0 else 0.0


OUTPUT_FIELDS = {  # HF output field -> ours
    "AlbertForPreTraining": [("prediction_logits", "prediction_logits"), ("sop_logits", "sop_logits")],
    "AlbertModel": [("last_hidden_state", "last_hidden_state"), ("pooler_output", "pooler_output")],
    "AlbertForQuestionAnswering": [("start_logits", "start_logits"), ("end_logits", "end_logits")],
}


def hf_run(hf, arch, inputs, labels, dtype, upstream):
    """Forward + backward through a HF model. Returns ({field: array}, loss or None, {name: grad})."""
    tdt = TORCH_DTYPE[dtype]

    def to_t(x):
        t = torch.tensor(x)
        return t.to(tdt) if t.is_floating_point() else t
    out = hf(**{k: to_t(v) for k, v in {**inputs, **labels}.items()})
    if arch == "AlbertModel":     # no loss: backprop the random upstream gradient from both outputs
        sum((getattr(out, k) * torch.tensor(v, dtype=tdt)).sum() for k, v in upstream.items()).backward()
        loss = None
    else:
        out.loss.backward()
        loss = out.loss.item()
    fields = {ours: getattr(out, theirs).detach().numpy() for theirs, ours in OUTPUT_FIELDS.get(arch, [("logits", "logits")])}
    return fields, loss, {n: p.grad.detach().numpy() for n, p in hf.named_parameters()}


def run_parity(tmp_path, arch, cfg_kw, dtype, B=3, T=6, seed=0, hf_kw=None):
    """Build, save, load, run both; assert parity; return the worst relative errors.

    float32: HF float32 and minialbert float32 each differ from the exact answer by rounding,
    and a few gradients are ill-conditioned (e.g. qa_outputs.weight = Σ dlogits ⊗ h with
    Σ_t dlogits = 0 subtracts nearly equal vectors; with the inner_groups config HF's own float32
    gradient is 1.1e-4 away from the float64 answer). So a float32 quantity that misses RTOL
    against HF float32 must be at least as close to the float64 answer (HF float64 on the same,
    float32-representable weights) as HF float32 is, within a factor 2, and never worse than 1e-3."""
    hf = hf_model(arch, {**cfg_kw, **(hf_kw or {})}, "float64", seed)
    truth = None
    if dtype == "float32":
        with torch.no_grad():
            for p in hf.parameters():
                p.copy_(p.float().double())        # weights exactly representable in float32
        truth, hf = hf, copy.deepcopy(hf).float()
    hf.save_pretrained(tmp_path)
    ours = ma.from_pretrained(tmp_path, dtype=dtype)
    assert type(ours).__name__ == arch and not ours.training
    inputs, labels = batch(cfg_kw, arch, B, T, seed)
    if arch == "AlbertForSequenceClassification" and hf.config.num_labels == 1:
        labels["labels"] = np.random.default_rng(seed).standard_normal(B)
    if arch == "AlbertForSequenceClassification" and hf.config.problem_type == "multi_label_classification":
        labels["labels"] = (np.random.default_rng(seed).random((B, hf.config.num_labels)) < 0.5).astype(float)
    extra = {"full_logits": True} if arch in ("AlbertForPreTraining", "AlbertForMaskedLM") else {}
    out = ours.forward(**inputs, **labels, **extra)
    rng = np.random.default_rng(seed + 1)
    upstream = {}
    if arch == "AlbertModel":
        upstream = {k: rng.standard_normal(getattr(out, k).shape) for k in ("last_hidden_state", "pooler_output")}
        ours.zero_grad()
        ours.backward(upstream)
    else:
        ours.zero_grad()
        ours.backward()
    ref = hf_run(hf, arch, inputs, labels, dtype, upstream)
    tru = hf_run(truth, arch, inputs, labels, "float64", upstream) if truth is not None else None
    grads = ma.to_hf_state_dict(ours, grads=True)
    # every HF parameter has a gradient on our side and vice versa (tied entries aside)
    assert set(ref[2]) == set(grads) - {"predictions.decoder.weight", "predictions.decoder.bias"}
    floor = FLOOR[dtype] * max(float(np.linalg.norm(g)) for g in ref[2].values())
    items = [(k, getattr(out, k), ref[0][k], tru[0][k] if tru else None, 0.0) for k in ref[0]]
    if ref[1] is not None:
        items.append(("loss", float(out.loss), ref[1], tru[1] if tru else None, 0.0))
    items += [(f"gradient of {n}", grads[n], g, tru[2][n] if tru else None, floor) for n, g in ref[2].items()]
    errors = {"grad": 0.0}
    for name, mine, theirs, exact, fl in items:
        e = rel(mine, theirs, fl)
        if e > RTOL[dtype]:
            assert exact is not None, f"{arch} {dtype}: {name} differs, rel {e:.2e}"
            e_mine, e_hf = rel(mine, exact, fl), rel(theirs, exact, fl)
            assert e_mine <= max(RTOL[dtype], 2 * e_hf) and e_mine <= 1e-3, \
                f"{arch} {dtype}: {name} differs from HF by {e:.2e}; from float64 by {e_mine:.2e} (HF: {e_hf:.2e})"
        key = "grad" if name.startswith("gradient") else name
        errors[key] = max(errors.get(key, 0.0), e)
    return errors


@pytest.mark.parametrize("cfg_name", list(CONFIGS))
def test_pretraining_parity_float64(tmp_path, cfg_name):
    run_parity(tmp_path, "AlbertForPreTraining", CONFIGS[cfg_name], "float64", seed=len(cfg_name))


@pytest.mark.parametrize("arch", HEADS)
@pytest.mark.parametrize("cfg_name", ["uneven_groups", "e_gt_h"])
def test_head_parity_float64(tmp_path, arch, cfg_name):
    run_parity(tmp_path, arch, CONFIGS[cfg_name], "float64", seed=3)


@pytest.mark.parametrize("arch", HEADS)
def test_head_parity_float32(tmp_path, arch):
    run_parity(tmp_path, arch, CONFIGS["inner_groups"], "float32", B=4, T=8, seed=4)


def test_sequence_length_one(tmp_path):
    for i, arch in enumerate(("AlbertForPreTraining", "AlbertForSequenceClassification")):
        run_parity(tmp_path / str(i), arch, CONFIGS["single_head"], "float64", B=2, T=1, seed=5)


@pytest.mark.parametrize("problem", ["regression", "multi_label_classification"])
def test_sequence_classification_losses(tmp_path, problem):
    hf_kw = {"num_labels": 1} if problem == "regression" else {"num_labels": 3, "problem_type": problem}
    run_parity(tmp_path, "AlbertForSequenceClassification", CONFIGS["one_layer"], "float64", seed=6, hf_kw=hf_kw)


@pytest.mark.parametrize("arch", ["AlbertForPreTraining", "AlbertForSequenceClassification"])
def test_hf_to_minialbert_to_hf_round_trips_exactly(tmp_path, arch):
    for dtype in ("float64", "float32"):
        hf = hf_model(arch, CONFIGS["inner_groups"], dtype, 7)
        hf.save_pretrained(tmp_path / dtype)
        ours = ma.from_pretrained(tmp_path / dtype, dtype=dtype)
        sd = ma.to_hf_state_dict(ours)
        ref = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
        assert set(sd) == set(ref)
        for k in ref:
            assert sd[k].dtype == ref[k].dtype and np.array_equal(sd[k], ref[k]), k
        # and back into transformers through our writer
        ours.save_pretrained(tmp_path / f"{dtype}-ours")
        hf2 = getattr(transformers, arch).from_pretrained(tmp_path / f"{dtype}-ours", attn_implementation="eager",
                                                          dtype=TORCH_DTYPE[dtype])
        for k, v in hf2.state_dict().items():
            assert np.array_equal(v.detach().numpy(), ref[k]), k


def test_our_model_saved_loads_in_transformers_with_same_outputs(tmp_path):
    c = ma.AlbertConfig(**{**BASE, **CONFIGS["uneven_groups"]})
    ours = ma.AlbertForPreTraining(c, seed=3, dtype="float64").eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.AlbertForPreTraining.from_pretrained(tmp_path, attn_implementation="eager",
                                                           dtype=torch.float64).eval()
    inputs, labels = batch(CONFIGS["uneven_groups"], "AlbertForPreTraining", 2, 5, 0)
    ref = hf(**{k: torch.tensor(v) for k, v in {**inputs, **labels}.items()})
    out = ours.forward(**inputs, **labels, full_logits=True)
    assert rel(out.prediction_logits, ref.prediction_logits.detach().numpy()) <= RTOL["float64"]
    assert rel(float(out.loss), ref.loss.item()) <= RTOL["float64"]


def test_checkpoint_shape_mismatch_is_a_clear_error(tmp_path):
    hf = hf_model("AlbertForPreTraining", {}, "float32", 0)
    hf.save_pretrained(tmp_path)
    import json  # noqa: PLC0415
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["intermediate_size"] = 16
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="ffn.weight.*shape"):
        ma.from_pretrained(tmp_path)


@pytest.mark.parametrize("change, msg", [
    (dict(vocab_size=40), r"'albert.embeddings.word_embeddings.weight' has shape \(31, 6\), but the config "
                          r"implies \(40, 6\): config.json and model.safetensors do not match"),
    (dict(embedding_size=4), r"embeddings.*has shape \(31, 6\), but the config implies \(31, 4\)"),
    (dict(num_hidden_groups=2), r"checkpoint lacks 'albert.encoder.albert_layer_groups.1.albert_layers.0.*"
                                r"needed by AlbertForPreTraining"),
    (dict(num_labels=3), r"sop_classifier.classifier.weight' has shape \(2, 8\), but the config implies \(3, 8\)"),
])
def test_checkpoint_that_does_not_match_its_config_names_the_tensor(tmp_path, change, msg):
    import json  # noqa: PLC0415
    hf = hf_model("AlbertForPreTraining", {}, "float32", 0)
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(change)
    cfg.pop("id2label", None), cfg.pop("label2id", None)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=msg):
        ma.from_pretrained(tmp_path)


def test_legacy_position_ids_buffer_is_skipped(tmp_path):
    from safetensors.numpy import load_file, save_file  # noqa: PLC0415
    hf = hf_model("AlbertForMaskedLM", {}, "float32", 0)
    hf.save_pretrained(tmp_path)
    st = load_file(tmp_path / "model.safetensors")
    st["albert.embeddings.position_ids"] = np.arange(12)[None]     # as 4.30-era checkpoints have
    save_file(st, tmp_path / "model.safetensors", metadata={"format": "pt"})
    m = ma.from_pretrained(tmp_path)
    assert type(m).__name__ == "AlbertForMaskedLM" and m.unexpected_keys == []


def test_fine_tuning_start_from_a_pretraining_checkpoint(tmp_path):
    hf = hf_model("AlbertForPreTraining", {}, "float32", 0)
    hf.save_pretrained(tmp_path)
    with pytest.warns(UserWarning, match="classifier"):
        m = ma.from_pretrained(tmp_path, model_class=ma.AlbertForSequenceClassification, num_labels=3)
    assert m.params["classifier.weight"].shape == (3, 8)
    assert sorted(m.missing_keys) == ["classifier.bias", "classifier.weight"]
    assert "predictions.bias" in m.unexpected_keys
    np.testing.assert_array_equal(m.params["pooler.weight"], hf.albert.pooler.weight.detach().numpy())
