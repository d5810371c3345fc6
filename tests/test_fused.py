"""Fused CUDA kernels (minialbert/layers/fused.py) against the readable NumPy layers.

On the CPU: the opt-in switch (off by default; NumPy arrays never take a kernel). On a GPU
(marked ``gpu``, skipped elsewhere): every kernel, forward and backward, in float32 and
float16, against the NumPy layer on the same inputs, as llm.c checks its kernels against
its CPU reference. Tolerances: float32 kernels differ from NumPy only in summation order
and libm (a few float32 ulps: rtol 1e-5); float16 outputs are rounded once from float32
(2^-11 relative), and the plain path rounds its float16 inputs the same way: rtol 2^-9.
"""
import numpy as np
import pytest

from minialbert import backend
from minialbert.layers import (cross_entropy_backward, cross_entropy_forward, dropout_forward,
                               fused, gelu_new_backward, gelu_new_forward, layernorm_backward,
                               layernorm_forward, make_attention_mask, softmax_backward,
                               softmax_forward)


@pytest.fixture(autouse=True)
def _reset_switch(monkeypatch):
    monkeypatch.delenv(fused.ENV, raising=False)
    fused.reset()
    yield
    fused.reset()


def test_fused_kernels_are_off_by_default_and_opt_in(monkeypatch):
    assert fused.enabled_kernels() == frozenset()
    monkeypatch.setenv(fused.ENV, "gelu, layernorm")
    assert fused.enabled_kernels() == {"gelu", "layernorm"}
    monkeypatch.setenv(fused.ENV, "all")
    assert fused.enabled_kernels() == set(fused.KERNELS)
    monkeypatch.setenv(fused.ENV, "gelu,flash")
    with pytest.raises(ValueError, match=r"MINIALBERT_FUSED='gelu,flash': unknown kernel\(s\) \['flash'\]"):
        fused.enabled_kernels()
    fused.enable("softmax")                         # the API overrides the environment
    assert fused.enabled_kernels() == {"softmax"}
    fused.reset()
    monkeypatch.setenv(fused.ENV, "0")
    assert fused.enabled_kernels() == frozenset()


def test_numpy_arrays_never_take_a_kernel(monkeypatch):
    monkeypatch.setenv(fused.ENV, "all")
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    assert not fused.use("gelu", x)
    y, cache = gelu_new_forward(x)                  # the plain path: its cache holds t
    assert cache[1] is not None
    P, _ = softmax_forward(x)
    np.testing.assert_allclose(P.sum(-1), 1, rtol=1e-6)


def test_kernel_source_instantiates_every_kernel_for_every_dtype():
    names = fused.name_expressions()
    assert len(names) == 9 * 3 and "layernorm_fwd<half_t>" in names and "xent_bwd<bf16_t>" in names
    for n in names:
        assert n.split("<")[0] in fused.SOURCE


# ---------------------------------------------------------------------------------------
# on the GPU: each kernel against the readable layer

gpu = pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA GPU")
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float16, id="float16")]


def _tol(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=2.0 ** -9, atol=2.0 ** -11)


def _both(fn, *arrays):
    """fn on NumPy copies (plain path) and on device copies with every kernel on."""
    ref = fn(*arrays)
    fused.enable("all")
    try:
        got = fn(*(backend.to_device(a, "gpu") if isinstance(a, np.ndarray) else a for a in arrays))
    finally:
        fused.reset()
    return ref, got


def _close(got, ref, dtype, scale=1.0):
    tol = _tol(dtype)
    g = backend.to_numpy(got).astype(np.float32)
    r = np.asarray(ref).astype(np.float32)
    np.testing.assert_allclose(g, r, rtol=tol["rtol"], atol=tol["atol"] * max(scale, 1.0))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_fused_gelu(dtype):
    r = np.random.default_rng(0)
    x = (3 * r.standard_normal((4, 33, 70))).astype(dtype)
    dy = r.standard_normal(x.shape).astype(dtype)

    def run(x, dy):
        y, c = gelu_new_forward(x)
        return y, gelu_new_backward(dy, c), c[1] is None

    (y0, d0, f0), (y1, d1, f1) = _both(run, x, dy)
    assert not f0 and f1                        # the kernel really ran (its cache has no t)
    _close(y1, y0, dtype)
    _close(d1, d0, dtype)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("D", [64, 768, 4096 + 3])
def test_gpu_fused_layernorm(dtype, D):
    r = np.random.default_rng(1)
    x = (2 + 3 * r.standard_normal((5, 7, D))).astype(dtype)
    g = (1 + 0.1 * r.standard_normal(D)).astype(dtype)
    b = (0.1 * r.standard_normal(D)).astype(dtype)
    dy = r.standard_normal(x.shape).astype(dtype)

    def run(x, g, b, dy):
        xp = backend.get_array_module(x)
        y, c = layernorm_forward(x, g, b, 1e-12)
        dg, db = xp.zeros(D, np.float32), xp.zeros(D, np.float32)
        dx = layernorm_backward(dy, c, dg, db)
        return y, dx, dg, db, c[1]

    ref, got = _both(run, x, g, b, dy)
    for a, e in zip(got, ref):
        _close(a, e, dtype, scale=float(np.abs(np.asarray(e, np.float32)).max()))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("T", [8, 128, 512])
def test_gpu_fused_masked_softmax(dtype, T):
    r = np.random.default_rng(2)
    B, NH = 3, 4
    s = (4 * r.standard_normal((B, NH, T, T))).astype(dtype)
    am = np.ones((B, T), int)
    am[1, T // 2:] = 0
    scale = 0.125
    dP = r.standard_normal(s.shape).astype(dtype)
    # the readable reference: scale and mask in float32, then softmax
    s32 = s.astype(np.float32) * np.float32(scale) + make_attention_mask(am, np.float32)
    P_ref = softmax_forward(s32)[0]
    dx_ref = softmax_backward(dP.astype(np.float32), P_ref.astype(dtype).astype(np.float32))
    fused.enable("softmax")
    try:
        P = fused.masked_softmax_forward(backend.to_device(s, "gpu"), scale,
                                         backend.to_device(make_attention_mask(am, dtype), "gpu"))
        dx = softmax_backward(backend.to_device(dP, "gpu"), P)
    finally:
        fused.reset()
    _close(P, P_ref, dtype)
    assert np.all(backend.to_numpy(P)[1, :, :, T // 2:] == 0)
    _close(dx, dx_ref, dtype, scale=float(np.abs(dx_ref).max()))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_fused_dropout_draws_the_plain_masks(dtype):
    x = np.random.default_rng(3).standard_normal((6, 50)).astype(dtype)
    rng_plain = backend.Random(7, device="gpu")
    rng_fused = backend.Random(7, device="gpu")
    xd = backend.to_device(x, "gpu")
    y0, m0 = dropout_forward(xd, 0.1, rng_plain, True)
    fused.enable("dropout")
    try:
        y1, m1 = dropout_forward(xd, 0.1, rng_fused, True)
    finally:
        fused.reset()
    np.testing.assert_array_equal(backend.to_numpy(m1), backend.to_numpy(m0))
    np.testing.assert_array_equal(backend.to_numpy(y1), backend.to_numpy(y0))


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_fused_cross_entropy(dtype):
    r = np.random.default_rng(4)
    N, V = 300, 30000
    logits = (3 * r.standard_normal((N, V))).astype(dtype)
    labels = r.integers(0, V, N)
    labels[::7] = -100

    def run(z, y):
        loss, c = cross_entropy_forward(z, y)
        return loss, cross_entropy_backward(1024.0, c), isinstance(c[0], str)

    (l0, d0, f0), (l1, d1, f1) = _both(run, logits, labels)
    assert not f0 and f1
    assert float(l1) == pytest.approx(float(l0), rel=1e-5)
    _close(d1, d0, dtype, scale=float(np.abs(np.asarray(d0, np.float32)).max()))


@pytest.mark.gpu
@gpu
def test_gpu_fused_model_step_matches_plain():
    """All kernels on: one fp16 pretraining step of the tiny model gives the plain path's loss
    and gradients within fp16 accuracy (see test_precision.py for the derivation)."""
    from minialbert.config import AlbertConfig
    from minialbert.heads import AlbertForPreTraining

    cfg = AlbertConfig.from_preset("tiny")
    r = np.random.default_rng(5)
    ids = r.integers(5, cfg.vocab_size, (4, 32))
    labels = np.where(r.random((4, 32)) < 0.2, ids, -100)
    labels[:, 1] = ids[:, 1]
    am = np.ones((4, 32), int)
    am[0, 20:] = 0
    sol = r.integers(0, 2, 4)
    res = []
    for on in (False, True):
        m = AlbertForPreTraining(cfg, seed=0, precision="fp16").to("gpu")
        if on:
            fused.enable("all")
        try:
            out = m.forward(ids, attention_mask=am, labels=labels, sentence_order_label=sol)
            m.zero_grad()
            m.backward({"loss": 1024.0})
        finally:
            fused.reset()
        res.append((float(out.loss), {k: backend.to_numpy(v) / 1024 for k, v in m.grads.items()}))
    (l0, g0), (l1, g1) = res
    assert l1 == pytest.approx(l0, rel=1e-2)
    num = np.sqrt(sum(float(((g1[k] - g0[k]) ** 2).sum()) for k in g0))
    den = np.sqrt(sum(float((g0[k] ** 2).sum()) for k in g0))
    assert num <= 1.1e-2 * den, num / den
