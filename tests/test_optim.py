"""Optimisers, schedule, clipping and layer-wise LR decay (minialbert/optim.py).

The ALBERT optimisers are checked against a direct NumPy transcription of the TF update
rules (lamb_optimizer.py / AdamWeightDecayOptimizer), written below one tensor at a time;
the bias-corrected AdamW against torch.optim.AdamW itself.
"""
import math
import re

import numpy as np
import pytest

from minialbert.backend import to_device, to_numpy
from minialbert.optim import (EXCLUDE_FROM_WEIGHT_DECAY, LAMB, AdamW, clip_grad_norm,
                              global_grad_norm, layerwise_lr_multipliers, lr_at, make_optimizer,
                              parameter_depths)

# float64: the same formulas evaluated in a different order (or torch's FMA in lerp)
# differ by a few ulp per step; 1e-12 relative leaves room for ~10 steps of that and
# nothing else. float32 vs torch: a few ulp of float32 (eps 1.2e-7) on O(1) weights.
RTOL64 = 1e-12
TOL32 = dict(rtol=2e-6, atol=2e-7)

# names that exercise every exclusion rule: LayerNorm, layer_norm, bias, predictions.bias
NAMES_SHAPES = {
    "embeddings.word_embeddings.weight": (11, 4),
    "embeddings.LayerNorm.weight": (4,),
    "encoder.attention.0.query.weight": (6, 6),
    "encoder.attention.0.query.bias": (6,),
    "encoder.ffn.0.full_layer_layer_norm.weight": (6,),
    "encoder.ffn.0.ffn.weight": (8, 6),
    "predictions.bias": (11,),
    "zero.weight": (3, 3),              # all zeros: |w| = 0, so the trust ratio is 1
}


def make_params(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    p = {k: rng.standard_normal(s).astype(dtype) for k, s in NAMES_SHAPES.items()}
    p["zero.weight"][...] = 0
    return p


def make_grads(params, rng):
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


# ----------------------------------------------------------------------------------------
# the reference: TF's per-variable update, transcribed
# ----------------------------------------------------------------------------------------

def reference_step(params, grads, m, v, learning_rate, lamb, weight_decay_rate=0.01, beta_1=0.9,
                   beta_2=0.999, epsilon=1e-6, exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
                   exclude_from_layer_adaptation=None, multipliers=None):
    """apply_gradients of lamb_optimizer.py (lamb=True) / AdamWeightDecayOptimizer (False),
    one variable at a time, returning new dicts."""
    if exclude_from_layer_adaptation is None:
        exclude_from_layer_adaptation = exclude_from_weight_decay

    def do_use_weight_decay(param_name):
        if not weight_decay_rate:
            return False
        for r in exclude_from_weight_decay:
            if re.search(r, param_name) is not None:
                return False
        return True

    def do_layer_adaptation(param_name):
        for r in exclude_from_layer_adaptation:
            if re.search(r, param_name) is not None:
                return False
        return True

    new_p, new_m, new_v = {}, {}, {}
    for param_name in params:
        param, grad = params[param_name], grads[param_name]
        lr = learning_rate * (multipliers or {}).get(param_name, 1.0)
        next_m = beta_1 * m[param_name] + (1.0 - beta_1) * grad
        next_v = beta_2 * v[param_name] + (1.0 - beta_2) * np.square(grad)
        update = next_m / (np.sqrt(next_v) + epsilon)
        if do_use_weight_decay(param_name):
            update += weight_decay_rate * param
        ratio = 1.0
        if lamb and do_layer_adaptation(param_name):
            w_norm = np.linalg.norm(param, ord=2) if param.ndim == 1 else np.sqrt(np.sum(param * param))
            g_norm = np.linalg.norm(update, ord=2) if update.ndim == 1 else np.sqrt(np.sum(update * update))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(w_norm > 0, np.where(g_norm > 0, w_norm / g_norm, 1.0), 1.0)
        update_with_lr = ratio * lr * update
        new_p[param_name] = param - update_with_lr
        new_m[param_name], new_v[param_name] = next_m, next_v
    return new_p, new_m, new_v


def run_both(xp, device, cls, lamb, steps=5, opt_kwargs=None, ref_kwargs=None, multipliers=None):
    """Run our optimiser on the device and the reference in NumPy float64 on the same
    gradients; returns (ours, reference) parameters as NumPy."""
    rng = np.random.default_rng(1)
    ref = make_params()
    ours = {k: to_device(v.copy(), device) for k, v in ref.items()}
    m = {k: np.zeros_like(a) for k, a in ref.items()}
    v = {k: np.zeros_like(a) for k, a in ref.items()}
    opt = cls(ours, lr=0.0, lr_multipliers=multipliers, **(opt_kwargs or {}))
    for t in range(steps):
        g = make_grads(ref, rng)
        lr = lr_at(t + 1, 0.05, 2, steps + 1)           # a changing LR, as in training
        ref, m, v = reference_step(ref, g, m, v, lr, lamb, multipliers=multipliers, **(ref_kwargs or {}))
        opt.step({k: to_device(a, device) for k, a in g.items()}, lr)
    return {k: to_numpy(a) for k, a in ours.items()}, ref


# ----------------------------------------------------------------------------------------
# ALBERT's AdamW and LAMB vs the transcription
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,lamb", [(AdamW, False), (LAMB, True)], ids=["adamw", "lamb"])
def test_matches_reference_update(xp, device, cls, lamb):
    mult = {"embeddings.word_embeddings.weight": 0.5, "predictions.bias": 2.0}
    ours, ref = run_both(xp, device, cls, lamb, multipliers=mult)
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=RTOL64, atol=0, err_msg=k)
    assert np.any(ours["zero.weight"] != 0)          # a zero tensor still moves (ratio 1)


def test_lamb_custom_layer_adaptation_list(xp, device):
    kw = dict(weight_decay=0.05, exclude_from_layer_adaptation=["bias"])
    ours, ref = run_both(xp, device, LAMB, True, opt_kwargs=kw,
                         ref_kwargs=dict(weight_decay_rate=0.05, exclude_from_layer_adaptation=["bias"]))
    for k in ref:
        np.testing.assert_allclose(ours[k], ref[k], rtol=RTOL64, atol=0, err_msg=k)


def test_albert_adamw_float32_is_the_same_arithmetic():
    # Same formulas in the same order in float32: bit-identical to the transcription.
    rng = np.random.default_rng(2)
    ref = make_params(dtype=np.float32)
    ours = {k: a.copy() for k, a in ref.items()}
    m = {k: np.zeros_like(a) for k, a in ref.items()}
    v = {k: np.zeros_like(a) for k, a in ref.items()}
    opt = AdamW(ours)
    for _ in range(3):
        g = make_grads(ref, rng)
        ref, m, v = reference_step(ref, g, m, v, np.float32(1e-2), lamb=False)
        opt.step(g, 1e-2)
    for k in ref:
        assert ours[k].dtype == np.float32
        np.testing.assert_array_equal(ours[k], ref[k], err_msg=k)


def test_lamb_trust_ratio_only_on_included_names():
    """LAMB and ALBERT-AdamW differ exactly by the trust ratio, which excluded names lack."""
    rng = np.random.default_rng(3)
    pa, pl = make_params(), make_params()
    oa, ol = AdamW(pa), LAMB(pl)
    g = make_grads(pa, rng)
    oa.step(g, 1e-3)
    ol.step(g, 1e-3)
    for k in pa:
        excluded = any(re.search(p, k) for p in EXCLUDE_FROM_WEIGHT_DECAY)
        assert excluded == (not ol.uses_layer_adaptation(k)) == (not oa.uses_weight_decay(k))
        if excluded or k == "zero.weight":
            np.testing.assert_array_equal(pl[k], pa[k], err_msg=k)
        else:
            assert not np.allclose(pl[k], pa[k], rtol=1e-3), k


def test_lamb_trust_ratio_by_hand():
    w0 = np.array([[3.0, 4.0]])                                   # |w| = 5
    p = {"dense.weight": w0.copy()}
    g = {"dense.weight": np.array([[1.0, -2.0]])}
    LAMB(p, weight_decay=0.0).step(g, 0.1)
    # first step: m = 0.1 g, v = 0.001 g^2, u = m / (sqrt(v) + eps) ~= sign(g) * 0.1/sqrt(0.001)
    u = 0.1 * g["dense.weight"] / (np.sqrt(0.001 * g["dense.weight"] ** 2) + 1e-6)
    r = 5.0 / np.linalg.norm(u)
    np.testing.assert_allclose(p["dense.weight"], w0 - r * 0.1 * u, rtol=1e-14)
    # the step length is lr * |w| whatever the gradient's scale: LAMB's point
    np.testing.assert_allclose(np.linalg.norm(p["dense.weight"] - w0), 0.1 * 5.0, rtol=1e-12)


def test_lamb_zero_norm_cases():
    # |u| = 0 (zero gradient, no decay) -> ratio 1 and no movement; |w| = 0 -> ratio 1.
    p = {"a.weight": np.array([1.0, 2.0]), "b.weight": np.zeros(2)}
    g = {"a.weight": np.zeros(2), "b.weight": np.array([0.5, -0.5])}
    with np.errstate(all="raise"):                       # no 0/0 evaluated on the way
        LAMB(p, weight_decay=0.0).step(g, 0.1)
    np.testing.assert_array_equal(p["a.weight"], [1.0, 2.0])
    gb = np.array([0.5, -0.5])
    u = (0.1 * gb) / (np.sqrt(0.001 * gb * gb) + 1e-6)             # m / (sqrt(v) + eps), step 1
    np.testing.assert_allclose(p["b.weight"], -0.1 * u, rtol=1e-14)


def test_exclusion_rule_names():
    opt = AdamW({"x.weight": np.zeros(1)})
    for name in ("albert.embeddings.LayerNorm.weight", "encoder.ffn.0.full_layer_layer_norm.bias",
                 "encoder.attention.0.query.bias", "predictions.bias", "pooler.bias"):
        assert not opt.uses_weight_decay(name), name
    for name in ("embeddings.word_embeddings.weight", "pooler.weight", "sop_classifier.weight",
                 "encoder.embedding_hidden_mapping_in.weight"):
        assert opt.uses_weight_decay(name), name
    assert not AdamW({"x.weight": np.zeros(1)}, weight_decay=0.0).uses_weight_decay("pooler.weight")


# ----------------------------------------------------------------------------------------
# bias-corrected AdamW vs torch.optim.AdamW
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bias_corrected_adamw_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    params = make_params(dtype=dtype)
    mult = {"encoder.ffn.0.ffn.weight": 0.25}
    tp = {k: torch.tensor(a.copy(), requires_grad=True) for k, a in params.items()}
    groups = [{"params": [tp[k]], "name": k, "lr_mult": mult.get(k, 1.0),
               "weight_decay": 0.0 if any(re.search(p, k) for p in EXCLUDE_FROM_WEIGHT_DECAY) else 0.01}
              for k in params]
    topt = torch.optim.AdamW(groups, lr=1e-3)                      # torch defaults: eps 1e-8
    opt = AdamW(params, bias_correction=True, lr_multipliers=mult)
    assert opt.eps == 1e-8
    for t in range(6):
        lr = lr_at(t + 1, 0.02, 3, 10)
        g = make_grads(params, rng)
        for group in topt.param_groups:
            group["lr"] = lr * group["lr_mult"]
            group["params"][0].grad = torch.tensor(g[group["name"]])
        topt.step()
        opt.step(g, lr)
    tol = dict(rtol=RTOL64, atol=0) if dtype == np.float64 else TOL32
    for k in params:
        np.testing.assert_allclose(params[k], tp[k].detach().numpy(), err_msg=k, **tol)
    # and it is not the ALBERT variant (bias correction makes the first steps much larger)
    p2 = make_params(dtype=dtype)
    AdamW(p2).step(make_grads(p2, np.random.default_rng(4)), 0.02 / 3)
    assert not np.allclose(p2["encoder.ffn.0.ffn.weight"], params["encoder.ffn.0.ffn.weight"])


def test_bias_corrected_adamw_on_device(xp, device):
    # the same numbers on either backend (the torch comparison above runs on the CPU)
    rng = np.random.default_rng(5)
    host = make_params()
    dev = {k: to_device(a.copy(), device) for k, a in host.items()}
    oh, od = AdamW(host, bias_correction=True), AdamW(dev, bias_correction=True)
    for _ in range(3):
        g = make_grads(host, rng)
        oh.step(g, 1e-2)
        od.step({k: to_device(a, device) for k, a in g.items()}, 1e-2)
    for k in host:
        np.testing.assert_allclose(to_numpy(dev[k]), host[k], rtol=RTOL64, atol=0, err_msg=k)


# ----------------------------------------------------------------------------------------
# in place, accumulation, state
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lamb", "adamw"])
def test_step_updates_in_place_and_leaves_grads(xp, device, name):
    params = {k: to_device(a, device) for k, a in make_params().items()}
    before = {k: id(a) for k, a in params.items()}
    grads = {k: to_device(a, device) for k, a in make_grads(params, np.random.default_rng(6)).items()}
    gcopy = {k: to_numpy(a).copy() for k, a in grads.items()}
    opt = make_optimizer(name, params, lr=1e-2)
    opt.step(grads)
    assert {k: id(a) for k, a in params.items()} == before
    for k in grads:
        np.testing.assert_array_equal(to_numpy(grads[k]), gcopy[k])
        assert type(opt.m[k]) is type(params[k])           # state on the parameters' device


def test_optimizer_built_on_a_model_follows_its_params_dict():
    class Model:
        def __init__(self):
            self.params = make_params()
    model = Model()
    opt = LAMB(model)
    old = model.params
    model.params = {k: a.copy() for k, a in old.items()}           # what model.to(device) does
    opt.step(make_grads(old, np.random.default_rng(7)), 1e-2)
    for k in old:
        assert not np.array_equal(model.params[k], old[k]), k      # the live dict moved...
    np.testing.assert_array_equal(old["predictions.bias"], make_params()["predictions.bias"])  # ...not the old


def test_state_dict_round_trip_gives_identical_updates(xp, device):
    rng = np.random.default_rng(8)
    for cls, kw in ((LAMB, {}), (AdamW, {}), (AdamW, {"bias_correction": True})):
        p1 = {k: to_device(a, device) for k, a in make_params().items()}
        o1 = cls(p1, **kw)
        for _ in range(3):
            o1.step({k: to_device(a, device) for k, a in make_grads(p1, rng).items()}, 1e-2)
        state = o1.state_dict()
        assert state["step"] == 3
        assert all(isinstance(a, np.ndarray) for a in state["m"].values())
        p2 = {k: to_device(to_numpy(a).copy(), device) for k, a in p1.items()}
        o2 = cls(p2, **kw)
        o2.load_state_dict(state)
        state["m"]["zero.weight"][...] = 123.0                         # no aliasing either way
        for _ in range(3):
            g = make_grads(p1, rng)
            o1.step({k: to_device(a, device) for k, a in g.items()}, 1e-2)
            o2.step({k: to_device(a, device) for k, a in g.items()}, 1e-2)
        for k in p1:
            np.testing.assert_array_equal(to_numpy(p1[k]), to_numpy(p2[k]), err_msg=f"{cls.__name__} {k}")


def test_load_state_dict_rejects_mismatches():
    p = make_params()
    opt = LAMB(p)
    opt.step(make_grads(p, np.random.default_rng(9)), 1e-3)
    state = opt.state_dict()
    with pytest.raises(ValueError, match="optimizer=.lamb"):
        AdamW(make_params()).load_state_dict(state)
    with pytest.raises(ValueError, match="weight_decay"):
        LAMB(make_params(), weight_decay=0.1).load_state_dict(state)
    LAMB(make_params(), weight_decay=0.1).load_state_dict(state, strict=False)
    with pytest.raises(ValueError, match="no state for"):
        LAMB({**make_params(), "extra.weight": np.zeros(2)}).load_state_dict(state)
    with pytest.raises(ValueError, match="float32"):
        LAMB(make_params(dtype=np.float32)).load_state_dict(state)
    with pytest.raises(ValueError, match="'step'"):
        LAMB(make_params()).load_state_dict({**state, "step": -1})
    with pytest.raises(ValueError, match="'m' and 'v'"):
        LAMB(make_params()).load_state_dict({"step": 1})


def test_step_bad_input():
    p = make_params()
    opt = AdamW(p)
    g = make_grads(p, np.random.default_rng(10))
    with pytest.raises(ValueError, match="no gradient for"):
        opt.step({k: a for k, a in g.items() if k != "predictions.bias"})
    with pytest.raises(ValueError, match="shape"):
        opt.step({**g, "predictions.bias": np.zeros(3)})
    with pytest.raises(ValueError, match="lr"):
        opt.step(g, float("nan"))
    with pytest.raises(ValueError, match="lr_multipliers"):
        AdamW(p, lr_multipliers={"nope.weight": 0.5})
    with pytest.raises(ValueError, match="betas"):
        LAMB(p, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="exclude_from_weight_decay"):
        LAMB(p, exclude_from_weight_decay="bias")
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("sgd", p)
    with pytest.raises(ValueError, match="params"):
        LAMB([1, 2])


# ----------------------------------------------------------------------------------------
# schedule
# ----------------------------------------------------------------------------------------

def test_lr_schedule_values():
    peak, W, T = 1e-3, 10, 100
    assert lr_at(0, peak, W, T) == 0.0                             # TF: the first update has lr 0
    assert lr_at(5, peak, W, T) == pytest.approx(peak * 5 / 10, rel=1e-15)
    assert lr_at(9, peak, W, T) == pytest.approx(peak * 0.9, rel=1e-15)
    # after warm-up the decay is counted from step 0 (TF polynomial_decay): (1 - 10/100)
    assert lr_at(10, peak, W, T) == pytest.approx(peak * 0.9, rel=1e-15)
    assert lr_at(55, peak, W, T) == pytest.approx(peak * 0.45, rel=1e-15)
    assert lr_at(99, peak, W, T) == pytest.approx(peak * 0.01, rel=1e-12)
    assert lr_at(100, peak, W, T) == 0.0 and lr_at(1000, peak, W, T) == 0.0
    assert lr_at(0, peak, 0, T) == peak                            # no warm-up: peak at step 0
    assert lr_at(50, peak, 0, T, power=2.0) == pytest.approx(peak * 0.25, rel=1e-15)
    lrs = [lr_at(t, peak, W, T) for t in range(T + 1)]
    assert max(lrs) == lrs[9] == lrs[10] and all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


@pytest.mark.parametrize("kw,match", [
    (dict(step=-1), "step"), (dict(step=1.5), "step"), (dict(total_steps=0), "total_steps"),
    (dict(warmup_steps=200), "warmup_steps"), (dict(peak_lr=-1.0), "peak_lr"), (dict(power=0), "power"),
])
def test_lr_schedule_bad_input(kw, match):
    args = dict(step=1, peak_lr=1e-3, warmup_steps=10, total_steps=100)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        lr_at(**args)


# ----------------------------------------------------------------------------------------
# clipping
# ----------------------------------------------------------------------------------------

def test_clip_grad_norm_below_and_above(xp, device):
    rng = np.random.default_rng(11)
    host = {"a": rng.standard_normal((4, 5)), "b": rng.standard_normal(7)}
    expected = math.sqrt(sum(float(np.sum(a * a)) for a in host.values()))
    # below: returned norm, grads unchanged
    g = {k: to_device(a.copy(), device) for k, a in host.items()}
    n = clip_grad_norm(g, max_norm=expected * 1.5)
    assert isinstance(n, float) and n == pytest.approx(expected, rel=1e-14)
    for k in host:
        np.testing.assert_array_equal(to_numpy(g[k]), host[k])
    # above: scaled to norm max_norm, same direction, pre-clip norm returned
    n = clip_grad_norm(g, max_norm=1.0)
    assert n == pytest.approx(expected, rel=1e-14) and expected > 1.0
    assert global_grad_norm(g) == pytest.approx(1.0, rel=1e-14)
    for k in host:
        np.testing.assert_allclose(to_numpy(g[k]), host[k] / expected, rtol=1e-14)


def test_clip_grad_norm_nonfinite_and_bad_input():
    g = {"a": np.array([1.0, np.inf]), "b": np.array([3.0])}
    assert clip_grad_norm(g, 1.0) == math.inf
    np.testing.assert_array_equal(g["b"], [3.0])                   # untouched: caller stops
    g = {"a": np.array([np.nan])}
    assert math.isnan(clip_grad_norm(g, 1.0))
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"a": np.ones(2)}, 0.0)
    with pytest.raises(ValueError, match="empty"):
        clip_grad_norm({}, 1.0)


# ----------------------------------------------------------------------------------------
# layer-wise learning-rate decay
# ----------------------------------------------------------------------------------------

def _synthetic_names(n_attn, n_ffn):
    names = ["embeddings.word_embeddings.weight", "embeddings.LayerNorm.bias",
             "encoder.embedding_hidden_mapping_in.weight"]
    names += [f"encoder.attention.{k}.query.weight" for k in range(n_attn)]
    names += [f"encoder.ffn.{k}.ffn_output.bias" for k in range(n_ffn)]
    return names + ["pooler.weight", "classifier.weight", "qa_outputs.bias"]


def _config(**kw):
    from minialbert.config import AlbertConfig
    return AlbertConfig.from_preset("tiny", **kw)        # L = 4


def test_llrd_sharing_none_is_the_usual_per_layer_form():
    L, d = 4, 0.8
    mult = layerwise_lr_multipliers(_synthetic_names(L, L), _config(sharing="none"), d)
    for layer in range(L):
        assert mult[f"encoder.attention.{layer}.query.weight"] == pytest.approx(d ** (L - layer))
        assert mult[f"encoder.ffn.{layer}.ffn_output.bias"] == pytest.approx(d ** (L - layer))
    for name in ("embeddings.word_embeddings.weight", "embeddings.LayerNorm.bias",
                 "encoder.embedding_hidden_mapping_in.weight"):
        assert mult[name] == pytest.approx(d ** (L + 1))
    for name in ("pooler.weight", "classifier.weight", "qa_outputs.bias"):
        assert mult[name] == 1.0


def test_llrd_all_shared_counts_distinct_blocks():
    d = 0.5
    mult = layerwise_lr_multipliers(_synthetic_names(1, 1), _config(sharing="all"), d)
    assert mult["encoder.attention.0.query.weight"] == d
    assert mult["encoder.ffn.0.ffn_output.bias"] == d
    assert mult["embeddings.word_embeddings.weight"] == d ** 2
    assert mult["classifier.weight"] == 1.0
    # G = 2 groups: the upper group is nearer the top
    mult = layerwise_lr_multipliers(_synthetic_names(2, 2), _config(num_hidden_groups=2), d)
    assert [mult[f"encoder.attention.{k}.query.weight"] for k in (1, 0)] == [d, d ** 2]
    assert mult["embeddings.LayerNorm.bias"] == d ** 3


def test_llrd_hf_names_and_bad_names():
    c = _config(sharing="none")
    hf = ["albert.encoder.albert_layer_groups.3.albert_layers.0.ffn.weight",
          "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.weight",
          "albert.embeddings.word_embeddings.weight", "albert.pooler.weight", "predictions.bias"]
    assert parameter_depths(hf, c) == {hf[0]: 1, hf[1]: 4, hf[2]: 5, hf[3]: 0, hf[4]: 0}
    with pytest.raises(ValueError, match="block 4"):
        parameter_depths(["encoder.attention.4.query.weight"], c)
    with pytest.raises(ValueError, match="encoder"):
        parameter_depths(["encoder.something_new.weight"], c)
    with pytest.raises(ValueError, match="decay"):
        layerwise_lr_multipliers(["pooler.weight"], c, 0.0)
    with pytest.raises(ValueError, match="decay"):
        layerwise_lr_multipliers(["pooler.weight"], c, 1.5)


@pytest.mark.parametrize("sharing", ["all", "attention", "ffn", "none"])
def test_llrd_on_the_real_model_keys(sharing):
    from minialbert import (AlbertForPreTraining, AlbertForQuestionAnswering,
                            AlbertForSequenceClassification, AlbertForTokenClassification)
    c = _config(sharing=sharing)                                    # L = 4, one group
    KA = c.num_attention_blocks
    KF = c.num_ffn_blocks
    assert (KA, KF) == {"all": (1, 1), "attention": (1, 4), "ffn": (4, 1), "none": (4, 4)}[sharing]
    d = 0.9
    for cls in (AlbertForSequenceClassification, AlbertForTokenClassification,
                AlbertForQuestionAnswering, AlbertForPreTraining):
        model = cls(c, dtype="float64")
        mult = layerwise_lr_multipliers(model.params, c, d)
        assert set(mult) == set(model.params)
        for name, m in mult.items():
            if name.startswith("embeddings.") or "embedding_hidden_mapping_in" in name:
                want = d ** (max(KA, KF) + 1)
            elif name.startswith("encoder.attention."):
                want = d ** (KA - int(name.split(".")[2]))
            elif name.startswith("encoder.ffn."):
                want = d ** (KF - int(name.split(".")[2]))
            else:                                                   # pooler and heads
                assert not name.startswith("encoder."), name
                want = 1.0
            assert m == pytest.approx(want, rel=1e-15), name
        # the multipliers plug into the optimisers, and scale the update as promised
        p1 = {k: a.copy() for k, a in model.params.items()}
        p2 = {k: a.copy() for k, a in model.params.items()}
        g = make_grads(p1, np.random.default_rng(12))
        AdamW(p1, weight_decay=0.0, lr_multipliers=mult).step(g, 1e-3)
        AdamW(p2, weight_decay=0.0).step(g, 1e-3)
        w = "embeddings.word_embeddings.weight"
        np.testing.assert_allclose(p1[w] - model.params[w], (p2[w] - model.params[w]) * mult[w],
                                   rtol=1e-9, atol=0)    # differences of nearby float64 weights
