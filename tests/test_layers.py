"""Property tests for every hand-written layer: gradients, invariants, bad input.

Every gradient test draws shapes (size-1 edges included), bounded values and a *random*
upstream gradient ``dout`` with hypothesis, runs the layer's forward and backward in
float64, and compares each analytic gradient with central differences of
``sum(forward() * dout)`` (minialbert.gradcheck). Values are drawn from a NumPy stream
seeded by hypothesis (one drawn integer) rather than element by element: the shrinker
then works on shapes and seeds, and an example costs microseconds to draw.

All tests take the ``xp`` fixture from conftest.py: NumPy always, CuPy where a GPU answers.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minialbert.backend import Random, to_numpy
from minialbert.gradcheck import check_gradients, compare, numerical_gradient
from minialbert.layers import (ATTENTION_PARAMS, FFN_PARAMS, IGNORE_INDEX, attention_backward,
                               attention_forward, bce_with_logits_backward,
                               bce_with_logits_forward, cross_entropy_backward,
                               cross_entropy_forward, dropout_backward, dropout_forward,
                               embedding_backward, embedding_forward, feedforward_backward,
                               feedforward_forward, get_activation, layernorm_backward,
                               layernorm_forward, linear_backward, linear_forward,
                               make_attention_mask, mse_backward, mse_forward,
                               softmax_backward, softmax_forward)

# --- tolerances: each written once, with its reason ----------------------------------------
# Numerical gradients: the five-point central difference (gradcheck order=4) with h = 1e-3.
# Its truncation error is ~h^4 = 1e-12 and its rounding error eps*|sum(out*dout)|/h ~ 1e-12,
# so a correct backward lands near 1e-9 relative even for a gradient 1e-5 the size of the
# function (the 2-point rule with h = 1e-6 has a 1e-10 noise floor and measured rel errors
# of 2e-6 on such chance-small attention gradients; docs/gradcheck-pitfalls.md).
H_STEP, ORDER = 1e-3, 4
# Analytic vs numerical, float64: the bound; any wrong term is off by O(1).
RTOL = 1e-6
# Only for gradients that are zero analytically (attention key.bias: softmax ignores a
# per-row constant; query/key when every row attends a single key). The numerical value
# is then pure rounding noise, ~eps * |sum(out * dout)| / h = 1e-16 * 10 / 1e-3 = 1e-12.
ZERO_ATOL = 1e-10
# float32 forward vs float64 forward: float32 rounds at 6e-8 relative; the small widths
# drawn here sum at most a few dozen terms per output, so errors stay well under 1e-5.
F32_RTOL = 1e-5

# Hypothesis: the xp/device fixture is a module or a name, safe to share between examples.
prop = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

seeds = st.integers(0, 2**32 - 1)
size = st.integers(1, 3)          # B, T, heads, head size ... with the size-1 edge


def uniform(xp, r, shape, lo=-2.0, hi=2.0, dtype=np.float64):
    """Bounded values from the host stream ``r``, on the device of ``xp``."""
    return xp.asarray(r.uniform(lo, hi, size=shape).astype(dtype))


def assert_grads_match(f, inputs, analytic, dout, zero=()):
    """Every named gradient within RTOL; the names in ``zero`` are analytically zero
    and may instead be within ZERO_ATOL of it."""
    for name, res in check_gradients(f, inputs, analytic, dout, h=H_STEP, order=ORDER).items():
        atol = ZERO_ATOL if name in zero else 0.0
        assert res.ok(RTOL, atol), str(res)


def zeros_like_params(xp, p):
    return {k: xp.zeros_like(v) for k, v in p.items()}


# =============================================================================================
# Gradient checks, one per layer
# =============================================================================================

@prop
@given(B=size, T=size, n_in=size, n_out=size, bias=st.booleans(), seed=seeds)
def test_linear_gradients(xp, B, T, n_in, n_out, bias, seed):
    r = np.random.default_rng(seed)
    x, W = uniform(xp, r, (B, T, n_in)), uniform(xp, r, (n_out, n_in))
    b = uniform(xp, r, (n_out,)) if bias else None
    y, cache = linear_forward(x, W, b)
    dy = uniform(xp, r, y.shape)
    dW, db = xp.zeros_like(W), (xp.zeros_like(b) if bias else None)
    dx = linear_backward(dy, cache, dW, db)
    inputs, analytic = {"x": x, "W": W}, {"x": dx, "W": dW}
    if bias:
        inputs["b"], analytic["b"] = b, db
    assert_grads_match(lambda: linear_forward(x, W, b)[0], inputs, analytic, dy)


@prop
@given(B=size, T=st.integers(1, 5), V=st.integers(1, 4), E=size,
       use_pad=st.booleans(), seed=seeds)
def test_embedding_gradients(xp, B, T, V, E, use_pad, seed):
    # V <= 4 and up to 15 ids: repeated ids in almost every example
    r = np.random.default_rng(seed)
    ids = xp.asarray(r.integers(0, V, size=(B, T)))
    W = uniform(xp, r, (V, E))
    pad = int(r.integers(0, V)) if use_pad else None
    e, cache = embedding_forward(ids, W, padding_idx=pad)
    de = uniform(xp, r, e.shape)
    dW = xp.zeros_like(W)
    assert embedding_backward(de, cache, dW) is None
    num = numerical_gradient(lambda: embedding_forward(ids, W, padding_idx=pad)[0], W, de,
                             h=H_STEP, order=ORDER)
    if pad is not None:
        # HF's padding_idx: the lookup still returns W[pad], but that row gets no gradient
        assert float(xp.abs(dW[pad]).max()) == 0.0
        num[pad] = 0.0
    res = compare("W", dW, num)
    assert res.ok(RTOL, 0.0), str(res)


def spread_rows(xp, r, shape):
    """Rows with standard deviation in [0.5, 3] and a random offset: LayerNorm stays
    away from zero variance, where rstd = 1/sqrt(eps) and the check is ill-conditioned."""
    z = r.standard_normal(shape)
    z = (z - z.mean(-1, keepdims=True)) / z.std(-1, keepdims=True)
    scale = r.uniform(0.5, 3.0, size=shape[:-1] + (1,))
    shift = r.uniform(-3.0, 3.0, size=shape[:-1] + (1,))
    return xp.asarray(z * scale + shift)


@prop
@given(B=size, T=size, D=st.integers(3, 5), seed=seeds)
def test_layernorm_gradients(xp, B, T, D, seed):
    # D >= 3: with D = 2 the normalised row is always (+1, -1) or (-1, +1), so dx is
    # analytically zero and only rounding noise is compared (D = 1 has zero variance)
    r = np.random.default_rng(seed)
    x = spread_rows(xp, r, (B, T, D))
    gamma, beta = uniform(xp, r, (D,)), uniform(xp, r, (D,))
    y, cache = layernorm_forward(x, gamma, beta)
    dy = uniform(xp, r, y.shape)
    dgamma, dbeta = xp.zeros_like(gamma), xp.zeros_like(beta)
    dx = layernorm_backward(dy, cache, dgamma, dbeta)
    assert_grads_match(lambda: layernorm_forward(x, gamma, beta)[0],
                       {"x": x, "gamma": gamma, "beta": beta},
                       {"x": dx, "gamma": dgamma, "beta": dbeta}, dy)


@pytest.mark.parametrize("name", ["gelu_new", "gelu", "tanh"])
@prop
@given(B=size, T=size, D=st.integers(1, 5), seed=seeds)
def test_activation_gradients(xp, name, B, T, D, seed):
    fwd, bwd = get_activation(name)
    r = np.random.default_rng(seed)
    x = uniform(xp, r, (B, T, D), -4.0, 4.0)     # covers both tails and the curved middle
    y, cache = fwd(x)
    dy = uniform(xp, r, y.shape)
    dx = bwd(dy, cache)
    assert_grads_match(lambda: fwd(x)[0], {"x": x}, {"x": dx}, dy)


@prop
@given(B=size, NH=size, T=size, C=st.integers(1, 5), seed=seeds)
def test_softmax_gradients(xp, B, NH, T, C, seed):
    r = np.random.default_rng(seed)
    x = uniform(xp, r, (B, NH, T, C), -5.0, 5.0)
    P, cache = softmax_forward(x)
    dP = uniform(xp, r, P.shape)
    dx = softmax_backward(dP, cache)
    assert_grads_match(lambda: softmax_forward(x)[0], {"x": x}, {"x": dx}, dP)


@prop
@given(B=size, T=size, D=size, p=st.sampled_from([0.0, 0.1, 0.5, 0.9]),
       training=st.booleans(), seed=seeds)
def test_dropout_gradients(xp, device, B, T, D, p, training, seed):
    r = np.random.default_rng(seed)
    x = uniform(xp, r, (B, T, D))
    # the mask is fixed by the seed: every forward of the check draws the same one
    y, cache = dropout_forward(x, p, Random(seed, device), training)
    dy = uniform(xp, r, y.shape)
    dx = dropout_backward(dy, cache)
    assert_grads_match(lambda: dropout_forward(x, p, Random(seed, device), training)[0],
                       {"x": x}, {"x": dx}, dy)


def attention_params(xp, r, H, scale=2.0):
    """Weights uniform in +-scale/sqrt(H), so scores stay O(1) for every H: softmax neither
    uniform nor saturated, and the query/key gradients are not vanishingly small."""
    w = scale / np.sqrt(H)
    return {k: uniform(xp, r, (H, H), -w, w) if k.endswith("weight") else uniform(xp, r, (H,), -0.5, 0.5)
            for k in ATTENTION_PARAMS}


def random_keep(r, B, T):
    """(B, T) of 0/1 with at least one attended key per sequence (padding anywhere)."""
    keep = r.integers(0, 2, size=(B, T))
    keep[np.arange(B), r.integers(0, T, size=B)] = 1
    return keep


@prop
@given(B=st.integers(1, 2), T=st.integers(1, 4), NH=size, HS=size, masked=st.booleans(),
       return_probs=st.booleans(), dropout_p=st.sampled_from([0.0, 0.25]), seed=seeds)
def test_attention_gradients(xp, device, B, T, NH, HS, masked, return_probs, dropout_p, seed):
    r = np.random.default_rng(seed)
    H = NH * HS
    x = uniform(xp, r, (B, T, H), -1.0, 1.0)
    p = attention_params(xp, r, H)
    keep = random_keep(r, B, T) if masked else np.ones((B, T), dtype=np.int64)
    mask_add = make_attention_mask(xp.asarray(keep), dtype=np.float64) if masked else None

    def forward(with_probs=False):
        # a fresh rng with the same seed: the dropout mask is the same on every call
        return attention_forward(x, p, NH, mask_add, dropout_p, Random(seed, device),
                                 training=dropout_p > 0, return_probs=with_probs)

    if return_probs:
        out, probs, cache = forward(True)
        assert probs.shape == (B, NH, T, T)
    else:
        out, cache = forward()
    dout = uniform(xp, r, out.shape)
    g = zeros_like_params(xp, p)
    dx = attention_backward(dout, cache, g)
    # analytically zero: key.bias always (it adds q.b to a whole row of scores, which
    # softmax ignores); query and key entirely when every sequence attends one key
    zero = {"key.bias"}
    if keep.sum(axis=1).max() == 1:
        zero |= {"query.weight", "query.bias", "key.weight"}
    assert_grads_match(lambda: forward()[0], {"x": x, **p}, {"x": dx, **g}, dout, zero)


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
@prop
@given(B=size, T=size, H=st.integers(1, 4), I=st.integers(1, 6), seed=seeds)
def test_feedforward_gradients(xp, activation, B, T, H, I, seed):
    r = np.random.default_rng(seed)
    x = uniform(xp, r, (B, T, H))
    p = {"ffn.weight": uniform(xp, r, (I, H), -1, 1), "ffn.bias": uniform(xp, r, (I,)),
         "ffn_output.weight": uniform(xp, r, (H, I), -1, 1), "ffn_output.bias": uniform(xp, r, (H,))}
    out, cache = feedforward_forward(x, p, activation)
    dout = uniform(xp, r, out.shape)
    g = zeros_like_params(xp, p)
    dx = feedforward_backward(dout, cache, g)
    assert_grads_match(lambda: feedforward_forward(x, p, activation)[0],
                       {"x": x, **p}, {"x": dx, **g}, dout)


def random_labels(r, shape, C, p_ignore=0.3):
    """Labels in [0, C) with about p_ignore of them IGNORE_INDEX, at least one counted."""
    labels = r.integers(0, C, size=shape)
    labels[r.random(shape) < p_ignore] = IGNORE_INDEX
    labels.reshape(-1)[r.integers(0, labels.size)] = r.integers(0, C)
    return labels


@prop
@given(B=size, T=size, C=st.integers(1, 5), seed=seeds)
def test_cross_entropy_gradients(xp, B, T, C, seed):
    r = np.random.default_rng(seed)
    logits = uniform(xp, r, (B, T, C), -5.0, 5.0)
    labels = xp.asarray(random_labels(r, (B, T), C))
    loss, cache = cross_entropy_forward(logits, labels)
    assert loss.shape == ()
    dloss = xp.asarray(r.uniform(-2.0, 2.0))     # a random upstream scalar, not 1.0
    dlogits = cross_entropy_backward(dloss, cache)
    assert_grads_match(lambda: cross_entropy_forward(logits, labels)[0],
                       {"logits": logits}, {"logits": dlogits}, dloss)


@prop
@given(B=size, T=size, D=size, seed=seeds)
def test_mse_gradients(xp, B, T, D, seed):
    r = np.random.default_rng(seed)
    pred, target = uniform(xp, r, (B, T, D)), uniform(xp, r, (B, T, D))
    loss, cache = mse_forward(pred, target)
    dloss = xp.asarray(r.uniform(-2.0, 2.0))
    dpred = mse_backward(dloss, cache)
    assert_grads_match(lambda: mse_forward(pred, target)[0], {"pred": pred}, {"pred": dpred}, dloss)


@prop
@given(B=size, T=size, D=size, seed=seeds)
def test_bce_with_logits_gradients(xp, B, T, D, seed):
    r = np.random.default_rng(seed)
    logits = uniform(xp, r, (B, T, D), -6.0, 6.0)
    targets = uniform(xp, r, (B, T, D), 0.0, 1.0)    # soft labels too
    loss, cache = bce_with_logits_forward(logits, targets)
    dloss = xp.asarray(r.uniform(-2.0, 2.0))
    dlogits = bce_with_logits_backward(dloss, cache)
    assert_grads_match(lambda: bce_with_logits_forward(logits, targets)[0],
                       {"logits": logits}, {"logits": dlogits}, dloss)


# =============================================================================================
# Invariants
# =============================================================================================

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@prop
@given(rows=size, C=st.integers(1, 6), seed=seeds)
def test_softmax_rows_sum_to_one_and_stay_finite(xp, dtype, rows, C, seed):
    r = np.random.default_rng(seed)
    # logits of +-1e4 mixed with ordinary ones: exp(1e4) overflows without the max shift
    x = r.choice(np.array([-1e4, 1e4, 0.0, 3.0]), size=(rows, C)) + r.uniform(-1, 1, (rows, C))
    P, _ = softmax_forward(xp.asarray(x.astype(dtype)))
    P = to_numpy(P)
    assert P.dtype == dtype
    assert np.isfinite(P).all()
    assert (P >= 0).all()
    np.testing.assert_allclose(P.sum(-1), 1.0, rtol=10 * np.finfo(dtype).eps * C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@prop
@given(B=st.integers(1, 3), T=st.integers(1, 5), NH=size, HS=size, seed=seeds)
def test_masked_keys_get_exactly_zero_attention(xp, dtype, B, T, NH, HS, seed):
    r = np.random.default_rng(seed)
    H = NH * HS
    x = uniform(xp, r, (B, T, H), -3.0, 3.0, dtype)
    p = {k: v.astype(dtype) for k, v in attention_params(xp, r, H, scale=4.0).items()}
    keep = random_keep(r, B, T)
    _, probs, _ = attention_forward(x, p, NH, make_attention_mask(xp.asarray(keep), dtype),
                                    return_probs=True)
    probs = to_numpy(probs)                                  # (B, NH, T, T)
    masked = np.broadcast_to(keep[:, None, None, :] == 0, probs.shape)
    assert (probs[masked] == 0.0).all()                      # exactly, not approximately
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=10 * np.finfo(dtype).eps * T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fully_padded_sequence_stays_finite(xp, dtype):
    # every key padded: all scores equal finfo.min, softmax is uniform, nothing is NaN
    r = np.random.default_rng(3)
    x = uniform(xp, r, (2, 3, 4), dtype=dtype)
    p = {k: v.astype(dtype) for k, v in attention_params(xp, r, 4).items()}
    keep = xp.asarray(np.array([[0, 0, 0], [1, 1, 0]]))
    out, probs, _ = attention_forward(x, p, 2, make_attention_mask(keep, dtype), return_probs=True)
    assert np.isfinite(to_numpy(out)).all()
    np.testing.assert_allclose(to_numpy(probs[0]), 1.0 / 3.0, rtol=1e-6)


@prop
@given(B=st.integers(1, 3), T=st.integers(2, 5), NH=size, HS=size, seed=seeds)
def test_right_padding_does_not_change_real_tokens(xp, B, T, NH, HS, seed):
    r = np.random.default_rng(seed)
    H = NH * HS
    x = uniform(xp, r, (B, T, H), -1.0, 1.0)
    p = attention_params(xp, r, H)
    lengths = r.integers(1, T + 1, size=B)
    keep = (np.arange(T)[None, :] < lengths[:, None]).astype(np.int64)
    out, _ = attention_forward(x, p, NH, make_attention_mask(xp.asarray(keep), np.float64))
    for b in range(B):
        n = int(lengths[b])
        alone, _ = attention_forward(x[b:b + 1, :n], p, NH)    # the sequence without padding
        np.testing.assert_allclose(to_numpy(out[b, :n]), to_numpy(alone[0]), rtol=1e-12, atol=1e-14)


@prop
@given(B=size, T=size, D=st.integers(2, 6), seed=seeds)
def test_layernorm_normalises_before_the_affine(xp, B, T, D, seed):
    r = np.random.default_rng(seed)
    x = spread_rows(xp, r, (B, T, D))
    gamma, beta = uniform(xp, r, (D,)), uniform(xp, r, (D,))
    y, (xhat, rstd, _) = layernorm_forward(x, gamma, beta)
    xhat = to_numpy(xhat)
    np.testing.assert_allclose(xhat.mean(-1), 0.0, atol=1e-12)
    # biased variance (divide by D), as the forward uses; var/(var+eps) with eps = 1e-12
    np.testing.assert_allclose(xhat.var(-1), 1.0, rtol=1e-10)
    np.testing.assert_allclose(to_numpy(y), xhat * to_numpy(gamma) + to_numpy(beta), rtol=1e-12, atol=1e-12)


@prop
@given(B=size, T=st.integers(2, 4), C=st.integers(1, 5), seed=seeds)
def test_cross_entropy_ignores_minus_100_positions(xp, B, T, C, seed):
    r = np.random.default_rng(seed)
    labels = random_labels(r, (B, T), C, p_ignore=0.5)
    labels[0, 0] = IGNORE_INDEX                          # at least one ignored position
    if (labels != IGNORE_INDEX).sum() == 0:
        labels[-1, -1] = 0
    ignored = labels == IGNORE_INDEX
    logits = r.uniform(-5, 5, size=(B, T, C))
    changed = logits.copy()
    changed[ignored] = r.uniform(-1e4, 1e4, size=(int(ignored.sum()), C))
    xl = xp.asarray(labels)
    l1, c1 = cross_entropy_forward(xp.asarray(logits), xl)
    l2, c2 = cross_entropy_forward(xp.asarray(changed), xl)
    assert float(l1) == float(l2)
    d1, d2 = to_numpy(cross_entropy_backward(1.0, c1)), to_numpy(cross_entropy_backward(1.0, c2))
    np.testing.assert_array_equal(d1, d2)
    assert (d1[ignored] == 0.0).all()
    # the mean runs over counted positions only
    lp = logits - logits.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    counted = ~ignored
    expect = -lp[counted, labels[counted]].mean()
    np.testing.assert_allclose(float(l1), expect, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@prop
@given(N=size, C=st.integers(2, 5), seed=seeds)
def test_cross_entropy_finite_for_extreme_logits(xp, dtype, N, C, seed):
    r = np.random.default_rng(seed)
    logits = r.choice(np.array([-1e4, 1e4]), size=(N, C)).astype(dtype)
    labels = r.integers(0, C, size=N)
    loss, cache = cross_entropy_forward(xp.asarray(logits), xp.asarray(labels))
    d = to_numpy(cross_entropy_backward(1.0, cache))
    assert np.isfinite(float(loss)) and np.isfinite(d).all()
    # the loss is exactly what log-sum-exp says: 0 for a winning label, ~2e4 for a losing one
    lp = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    lp -= np.log(np.exp(lp).sum(-1, keepdims=True))
    np.testing.assert_allclose(float(loss), -lp[np.arange(N), labels].mean(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "bce_with_logits"])
def test_loss_backward_keeps_float32_whatever_the_upstream_scalar(xp, loss):
    # a float64 NumPy scalar or 0-d array is not "weak" under NumPy 2 promotion: multiplied in
    # as is, it turns the float32 gradient, and every backward after it, into float64
    r = np.random.default_rng(0)
    logits = uniform(xp, r, (3, 4), dtype=np.float32)
    if loss == "cross_entropy":
        _, cache = cross_entropy_forward(logits, xp.asarray(np.array([0, -100, 3])))
        bwd = cross_entropy_backward
    elif loss == "mse":
        _, cache = mse_forward(logits, uniform(xp, r, (3, 4), dtype=np.float32))
        bwd = mse_backward
    else:
        _, cache = bce_with_logits_forward(logits, uniform(xp, r, (3, 4), 0.0, 1.0, np.float32))
        bwd = bce_with_logits_backward
    ref = to_numpy(bwd(1.5, cache))
    assert ref.dtype == np.float32
    for dloss in (np.float64(1.5), np.array(1.5), xp.asarray(np.float64(1.5)), np.float32(1.5)):
        d = bwd(dloss, cache)
        assert d.dtype == np.float32, (type(dloss), d.dtype)
        np.testing.assert_array_equal(to_numpy(d), ref)


def test_layernorm_eps_of_another_dtype_does_not_upcast(xp):
    # config values may arrive as NumPy float64 scalars (np.float64 is a Python float subclass)
    r = np.random.default_rng(0)
    x, g, b = (uniform(xp, r, s, dtype=np.float32) for s in ((2, 3, 4), (4,), (4,)))
    y, (xhat, rstd, _) = layernorm_forward(x, g, b, eps=np.float64(1e-12))
    assert y.dtype == xhat.dtype == rstd.dtype == np.float32


# --- one small instance of every layer, for the properties that hold for all of them ------

def small_case(name, xp, dtype, r, device="cpu"):
    """(arrays, run_forward, run_backward) for layer ``name`` with small fixed shapes.
    ``arrays`` holds every input and parameter; ``run_backward(out, cache)`` returns the
    input gradient and fills fresh parameter-gradient buffers (returned too)."""
    B, T, NH, HS, I, V, C = 2, 3, 2, 2, 5, 4, 5
    H = NH * HS
    U = lambda *shape: uniform(xp, r, shape, dtype=dtype)            # noqa: E731
    if name == "linear":
        a = {"x": U(B, T, H), "W": U(I, H), "b": U(I)}
        fwd = lambda: linear_forward(a["x"], a["W"], a["b"])         # noqa: E731
        def bwd(dy, c, g): return linear_backward(dy, c, g["W"], g["b"])
    elif name == "embedding":
        a = {"W": U(V, H), "ids": xp.asarray(np.array([[0, 1, 1], [3, 1, 0]]))}
        fwd = lambda: embedding_forward(a["ids"], a["W"], padding_idx=0)   # noqa: E731
        def bwd(dy, c, g): return embedding_backward(dy, c, g["W"])
    elif name == "layernorm":
        a = {"x": spread_rows(xp, r, (B, T, H)).astype(dtype), "gamma": U(H), "beta": U(H)}
        fwd = lambda: layernorm_forward(a["x"], a["gamma"], a["beta"])    # noqa: E731
        def bwd(dy, c, g): return layernorm_backward(dy, c, g["gamma"], g["beta"])
    elif name in ("gelu_new", "gelu", "tanh"):
        f, b_ = get_activation(name)
        a = {"x": U(B, T, H)}
        fwd = lambda: f(a["x"])                                      # noqa: E731
        def bwd(dy, c, g): return b_(dy, c)
    elif name == "softmax":
        a = {"x": U(B, NH, T, T)}
        fwd = lambda: softmax_forward(a["x"])                        # noqa: E731
        def bwd(dy, c, g): return softmax_backward(dy, c)
    elif name == "dropout":
        a = {"x": U(B, T, H)}
        fwd = lambda: dropout_forward(a["x"], 0.3, Random(7, device))    # noqa: E731
        def bwd(dy, c, g): return dropout_backward(dy, c)
    elif name == "attention":
        a = {"x": U(B, T, H), **{k: v.astype(dtype) for k, v in attention_params(xp, r, H).items()}}
        mask = make_attention_mask(xp.asarray(np.array([[1, 1, 0], [1, 1, 1]])), dtype)
        p = {k: a[k] for k in ATTENTION_PARAMS}
        fwd = lambda: attention_forward(a["x"], p, NH, mask)         # noqa: E731
        def bwd(dy, c, g): return attention_backward(dy, c, g)
    elif name == "feedforward":
        a = {"x": U(B, T, H), "ffn.weight": U(I, H), "ffn.bias": U(I),
             "ffn_output.weight": U(H, I), "ffn_output.bias": U(H)}
        p = {k: a[k] for k in FFN_PARAMS}
        fwd = lambda: feedforward_forward(a["x"], p, "gelu_new")     # noqa: E731
        def bwd(dy, c, g): return feedforward_backward(dy, c, g)
    elif name == "cross_entropy":
        a = {"logits": U(B, T, C), "labels": xp.asarray(np.array([[0, -100, 4], [2, 2, -100]]))}
        fwd = lambda: cross_entropy_forward(a["logits"], a["labels"])    # noqa: E731
        def bwd(dy, c, g): return cross_entropy_backward(dy, c)
    elif name == "mse":
        a = {"pred": U(B, T), "target": U(B, T)}
        fwd = lambda: mse_forward(a["pred"], a["target"])            # noqa: E731
        def bwd(dy, c, g): return mse_backward(dy, c)
    elif name == "bce_with_logits":
        a = {"logits": U(B, T), "targets": uniform(xp, r, (B, T), 0.0, 1.0, dtype)}
        fwd = lambda: bce_with_logits_forward(a["logits"], a["targets"])  # noqa: E731
        def bwd(dy, c, g): return bce_with_logits_backward(dy, c)
    else:
        raise KeyError(name)
    return a, fwd, bwd


LAYERS = ["linear", "embedding", "layernorm", "gelu_new", "gelu", "tanh", "softmax", "dropout",
          "attention", "feedforward", "cross_entropy", "mse", "bce_with_logits"]
# layers with parameters: their gradient buffers, keyed like the arrays they belong to
PARAM_NAMES = {"linear": ["W", "b"], "embedding": ["W"], "layernorm": ["gamma", "beta"],
               "attention": list(ATTENTION_PARAMS), "feedforward": list(FFN_PARAMS)}


@pytest.mark.parametrize("name", LAYERS)
def test_no_layer_mutates_its_inputs(xp, device, name):
    r = np.random.default_rng(0)
    a, fwd, bwd = small_case(name, xp, np.float64, r, device)
    before = {k: to_numpy(v).copy() for k, v in a.items()}
    out, cache = fwd()
    dout = uniform(xp, r, out.shape)
    dout_before = to_numpy(dout).copy()
    g = {k: xp.zeros_like(a[k]) for k in PARAM_NAMES.get(name, [])}
    bwd(dout, cache, g)
    bwd(dout, cache, g)          # a second backward must find the cache intact too
    for k, v in a.items():
        np.testing.assert_array_equal(to_numpy(v), before[k], err_msg=f"{name} mutated {k}")
    np.testing.assert_array_equal(to_numpy(dout), dout_before, err_msg=f"{name} mutated dout")


@pytest.mark.parametrize("name", [n for n in LAYERS if n != "dropout"])
def test_float32_forward_agrees_with_float64(xp, name):
    # dropout is left out: its float32 and float64 masks come from different draws
    a64, fwd64, _ = small_case(name, xp, np.float64, np.random.default_rng(1))
    a32, fwd32, _ = small_case(name, xp, np.float32, np.random.default_rng(1))
    for k, v in a64.items():   # the same values, rounded once to float32
        if v.dtype.kind == "f":
            a32[k][...] = v.astype(np.float32)
    y64, y32 = to_numpy(fwd64()[0]), to_numpy(fwd32()[0])
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=F32_RTOL, atol=F32_RTOL * np.abs(y64).max())


@pytest.mark.parametrize("name", list(PARAM_NAMES))
def test_backward_twice_accumulates_twice_the_gradient(xp, name):
    # ALBERT's shared layer runs its backward L times into the same buffers
    r = np.random.default_rng(2)
    a, fwd, bwd = small_case(name, xp, np.float64, r)
    out, cache = fwd()
    dout = uniform(xp, r, out.shape)
    once = {k: xp.zeros_like(a[k]) for k in PARAM_NAMES[name]}
    twice = {k: xp.zeros_like(a[k]) for k in PARAM_NAMES[name]}
    bwd(dout, cache, once)
    bwd(dout, cache, twice)
    bwd(dout, cache, twice)
    for k in once:
        assert float(xp.abs(once[k]).max()) > 0, k
        np.testing.assert_allclose(to_numpy(twice[k]), 2 * to_numpy(once[k]), rtol=1e-14, err_msg=k)


@prop
@given(N=st.integers(1, 12), V=st.integers(1, 4), E=size, seed=seeds)
def test_embedding_scatter_add_counts_repeated_ids(xp, N, V, E, seed):
    r = np.random.default_rng(seed)
    ids = r.integers(0, V, size=N)
    de = r.standard_normal((N, E))
    dW = xp.zeros((V, E))
    _, cache = embedding_forward(xp.asarray(ids), xp.zeros((V, E)))
    embedding_backward(xp.asarray(de), cache, dW)
    expect = np.zeros((V, E))
    for i, row in zip(ids, de):          # one addition per occurrence, repeats included
        expect[i] += row
    np.testing.assert_allclose(to_numpy(dW), expect, rtol=1e-12, atol=1e-15)
    # the buffered form drops repeats whenever an id occurs twice
    buffered = np.zeros((V, E))
    buffered[ids] += de
    if len(set(ids.tolist())) < N:
        assert not np.allclose(buffered, expect)


# =============================================================================================
# Bad input: a ValueError that names the argument (and what was expected and received)
# =============================================================================================

def test_linear_bad_input(xp):
    x, W, b = xp.zeros((2, 3, 4)), xp.zeros((5, 4)), xp.zeros(5)
    with pytest.raises(ValueError, match=r"x last dimension must be 4.*\(2, 3, 3\)"):
        linear_forward(xp.zeros((2, 3, 3)), W, b)
    with pytest.raises(ValueError, match=r"W must be 2-d.*\(5, 4, 1\)"):
        linear_forward(x, xp.zeros((5, 4, 1)), b)
    with pytest.raises(ValueError, match=r"b must have shape \(5\).*\(4,\)"):
        linear_forward(x, W, xp.zeros(4))
    with pytest.raises(ValueError, match=r"x must be a floating-point array.*int"):
        linear_forward(xp.zeros((2, 3, 4), dtype=np.int64), W, b)
    with pytest.raises(ValueError, match=r"dtypes must match.*x=float32.*W=float64"):
        linear_forward(x.astype(np.float32), W, b)


def test_embedding_bad_input(xp):
    W = xp.zeros((5, 3))
    for bad in ([[0, 5]], [[-1, 2]]):        # CuPy would wrap these around silently
        with pytest.raises(ValueError, match=r"ids must lie in \[0, 5\)"):
            embedding_forward(xp.asarray(np.array(bad)), W)
    with pytest.raises(ValueError, match=r"ids must be an integer array.*float"):
        embedding_forward(xp.zeros((2, 2)), W)
    with pytest.raises(ValueError, match=r"W must be 2-d.*\(5,\)"):
        embedding_forward(xp.asarray(np.array([0, 1])), xp.zeros(5))
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, 5\)"):
        embedding_forward(xp.asarray(np.array([7])), W, name="token_type_ids")


def test_layernorm_bad_input(xp):
    x = xp.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"gamma.*4.*\(3,\)"):
        layernorm_forward(x, xp.ones(3), xp.zeros(4))
    with pytest.raises(ValueError, match=r"beta.*4.*\(5,\)"):
        layernorm_forward(x, xp.ones(4), xp.zeros(5))
    with pytest.raises(ValueError, match=r"gamma.*\(3, 4\)"):
        layernorm_forward(x, xp.ones((3, 4)), xp.zeros(4))   # would broadcast over T
    with pytest.raises(ValueError, match=r"x must be a floating-point array"):
        layernorm_forward(xp.zeros((2, 4), dtype=np.int32), xp.ones(4), xp.zeros(4))
    with pytest.raises(ValueError, match=r"dtypes must match"):
        layernorm_forward(x, xp.ones(4, dtype=np.float32), xp.zeros(4))


def test_activation_softmax_dropout_bad_input(xp):
    ints = xp.zeros((2, 3), dtype=np.int64)
    for name in ("gelu_new", "gelu", "tanh"):
        with pytest.raises(ValueError, match=r"x must be a floating-point array"):
            get_activation(name)[0](ints)
    with pytest.raises(ValueError, match=r"unknown activation 'relu6'"):
        get_activation("relu6")
    with pytest.raises(ValueError, match=r"x must be a floating-point array"):
        softmax_forward(ints)
    for p in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"dropout probability must be in \[0, 1\)"):
            dropout_forward(xp.zeros(3), p, Random(0))
    with pytest.raises(ValueError, match=r"seeded rng"):
        dropout_forward(xp.zeros(3), 0.5, None, training=True)


def test_attention_bad_input(xp):
    B, T, H, NH = 2, 3, 4, 2
    x = xp.zeros((B, T, H))
    p = {k: xp.zeros((H, H) if k.endswith("weight") else (H,)) for k in ATTENTION_PARAMS}
    with pytest.raises(ValueError, match=r"x must be 3-d.*\(3, 4\)"):
        attention_forward(x[0], p, NH)
    with pytest.raises(ValueError, match=r"hidden size 4 is not divisible by num_heads=3"):
        attention_forward(x, p, 3)
    with pytest.raises(ValueError, match=r"mask_add with shape \(2, 1, 1, 4\) does not broadcast to \(2, 2, 3, 3\)"):
        attention_forward(x, p, NH, xp.zeros((B, 1, 1, T + 1)))
    with pytest.raises(ValueError, match=r"mask_add with shape \(3, 1, 1, 3\)"):
        attention_forward(x, p, NH, xp.zeros((B + 1, 1, 1, T)))
    with pytest.raises(ValueError, match=r"mask_add must be a float array no wider than x \(float32\), got float64"):
        attention_forward(x.astype(np.float32), {k: v.astype(np.float32) for k, v in p.items()}, NH,
                          make_attention_mask(xp.ones((B, T)), np.float64))
    with pytest.raises(ValueError, match=r"mask_add must be a float array.*got int64"):
        attention_forward(x, p, NH, xp.zeros((B, 1, 1, T), dtype=np.int64))
    with pytest.raises(ValueError, match=r"attention parameters lack 'value.bias'"):
        attention_forward(x, {k: v for k, v in p.items() if k != "value.bias"}, NH)
    with pytest.raises(ValueError, match=r"attention query.weight must have shape \(4, 4\).*\(4, 3\)"):
        attention_forward(x, {**p, "query.weight": xp.zeros((H, 3))}, NH)
    with pytest.raises(ValueError, match=r"attention_mask must be 2-d.*\(2, 1, 3\)"):
        make_attention_mask(xp.ones((B, 1, T)))


def test_feedforward_bad_input(xp):
    x = xp.zeros((2, 3, 4))
    p = {"ffn.weight": xp.zeros((5, 4)), "ffn.bias": xp.zeros(5),
         "ffn_output.weight": xp.zeros((4, 5)), "ffn_output.bias": xp.zeros(4)}
    with pytest.raises(ValueError, match=r"feed-forward parameters lack 'ffn.bias'"):
        feedforward_forward(x, {k: v for k, v in p.items() if k != "ffn.bias"})
    with pytest.raises(ValueError, match=r"x last dimension must be 4.*\(2, 3, 3\)"):
        feedforward_forward(xp.zeros((2, 3, 3)), p)
    with pytest.raises(ValueError, match=r"unknown activation 'swish'"):
        feedforward_forward(x, p, "swish")


def test_loss_bad_input(xp):
    logits = xp.zeros((2, 3, 5))
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\).*got \(3, 2\)"):
        cross_entropy_forward(logits, xp.zeros((3, 2), dtype=np.int64))
    for bad in (5, -1, -99):        # only -100 is ignored; every other label must be a class
        labels = xp.asarray(np.array([[0, 1, bad], [2, -100, 4]]))
        with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
            cross_entropy_forward(logits, labels)
    with pytest.raises(ValueError, match=r"labels must be an integer array"):
        cross_entropy_forward(logits, xp.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"logits must be a floating-point array"):
        cross_entropy_forward(xp.zeros((2, 3, 5), dtype=np.int64), xp.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"target must have shape \(2, 3\).*\(3, 2\)"):
        mse_forward(xp.zeros((2, 3)), xp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"targets must have shape \(2, 3\).*\(2,\)"):
        bce_with_logits_forward(xp.zeros((2, 3)), xp.zeros(2))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\], got values in \[0.0, 2.0\]"):
        bce_with_logits_forward(xp.zeros((2, 3)), xp.asarray(np.array([[0, 1, 2], [1, 1, 0]])))
