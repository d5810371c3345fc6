"""Mixed precision (minialbert/precision.py): fp16/bf16 layers, the model's float32 masters,
dynamic loss scaling, and the GPU's batched GEMM.

The CPU runs float16 through NumPy: matmuls as float32 products of float16 operands rounded
once (what a tensor core computes), everything else as the layers do it on the GPU.

Tolerances are derived, not tuned. float16 has unit roundoff u = 2^-11 (bfloat16: 2^-8).
Every stored float16 tensor is rounded once (relative error <= u), every sum runs in float32
(its error, <= K * 2^-24 for K terms, is below u for the K <= 512 used here). The gradient
of the tiny model passes through n roundings along its longest path: about 12 per layer
application (q/k/v, scores, P, context, dense, residual, LayerNorm, FFN in, GELU, FFN out,
residual, LayerNorm) forward and as many backward, times L = 4 applications, plus ~20 in the
embeddings and heads: n = 2 * 12 * 4 + 20 = 116. The worst case is gamma_n ~ n u (5.7e-2 for
fp16); independent rounding errors add like a random walk, sqrt(n) u = 5.3e-3 (bf16: 4.2e-2).
We require the global relative error of the gradient <= sqrt(n) u and every tensor's <= 2
sqrt(n) u; measured: fp16 1.2e-3 global, 2.2e-3 worst tensor; bf16 1.0e-2, 1.5e-2.
"""
import json
import math

import numpy as np
import pytest

from minialbert import backend
from minialbert.config import AlbertConfig
from minialbert.heads import AlbertForPreTraining
from minialbert.layers import (attention_forward, cross_entropy_backward, cross_entropy_forward,
                               gelu_new_backward, gelu_new_forward, layernorm_backward,
                               layernorm_forward, linear_forward, make_attention_mask,
                               softmax_backward, softmax_forward)
from minialbert.precision import (PRECISIONS, DynamicLossScaler, cast_params, make_scaler,
                                  resolve_precision)

U16 = 2.0 ** -11
UBF = 2.0 ** -8
N_ROUNDINGS = 2 * 12 * 4 + 20


def _bf16():
    pytest.importorskip("ml_dtypes")          # bfloat16 in NumPy comes from ml_dtypes (the [bf16] extra)
    return backend.bfloat16_dtype()


# ---------------------------------------------------------------------------------------
# names and errors


def test_resolve_precision_names_and_errors():
    assert PRECISIONS == ("fp32", "fp16", "bf16", "tf32")
    assert resolve_precision("fp16").compute_dtype == np.float16
    assert resolve_precision("fp16").loss_scaling and not resolve_precision("bf16").loss_scaling
    assert resolve_precision("fp32").compute_dtype == np.float32
    assert resolve_precision("tf32", device="gpu").compute_dtype == np.float32
    with pytest.raises(ValueError, match=r"--precision tf32 needs a GPU.*'cpu'.*--precision fp32"):
        resolve_precision("tf32", device="cpu")
    with pytest.raises(ValueError, match=r"--precision: expected one of .*'fp16'.*got 'half'"):
        resolve_precision("half")
    assert make_scaler("fp16") is not None and make_scaler("bf16") is None and make_scaler("fp32") is None


def test_model_precision_argument_keeps_float32_masters():
    cfg = AlbertConfig.from_preset("tiny")
    m = AlbertForPreTraining(cfg, seed=0, precision="fp16")
    assert m.precision.name == "fp16" and m.compute_dtype == np.float16
    assert all(v.dtype == np.float32 for v in list(m.params.values()) + list(m.grads.values()))
    assert "precision='fp16'" in repr(m)
    with pytest.raises(ValueError, match=r"precision='fp16' keeps float32 master weights.*float64"):
        AlbertForPreTraining(cfg, seed=0, dtype="float64", precision="fp16")
    with pytest.raises(ValueError, match=r"precision: expected one of"):
        AlbertForPreTraining(cfg, seed=0, precision="int8")
    # fp32 forward_params is the parameter dict itself: nothing cast, nothing copied
    assert AlbertForPreTraining(cfg, seed=0).forward_params() is not None
    m32 = AlbertForPreTraining(cfg, seed=0)
    assert m32.forward_params() is m32.params


def test_cast_params_is_fresh_and_lazy():
    p = {"a": np.ones(3, np.float32), "b": np.zeros(2, np.float32)}
    assert cast_params(p, np.float32) is p
    v = cast_params(p, np.float16)
    assert v["a"].dtype == np.float16 and v["a"] is v["a"] and len(v) == 2 and list(v) == ["a", "b"]
    p["a"] += 1                                   # an update after the view was made...
    assert cast_params(p, np.float16)["a"][0] == 2  # ...is seen by the next forward's view


# ---------------------------------------------------------------------------------------
# matmuls: float32 accumulation, one rounding


@pytest.mark.parametrize("batched", [False, True])
def test_cpu_low_precision_matmul_is_fp32_accumulate_then_round(batched):
    r = np.random.default_rng(0)
    shape_a, shape_b = ((3, 5, 64, 48), (3, 5, 48, 40)) if batched else ((64, 300), (300, 40))
    a = r.standard_normal(shape_a).astype(np.float16)
    b = r.standard_normal(shape_b).astype(np.float16)
    f = backend.batched_matmul if batched else backend.matmul
    ref = (a.astype(np.float64) @ b.astype(np.float64)).astype(np.float16)   # exact, rounded once
    # a transposed view (another BLAS summation order) is as close to the exact product
    for bb in (b, np.ascontiguousarray(b.swapaxes(-1, -2)).swapaxes(-1, -2)):
        got = f(a, bb)
        assert got.dtype == np.float16 and got.shape == shape_a[:-1] + shape_b[-1:]
        # float32 accumulation of K <= 300 products (error <= K 2^-24 < u / 4) then one
        # rounding: at most one float16 ulp (2u relative) from the exact product rounded
        assert np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))
                      / np.maximum(np.abs(ref.astype(np.float64)), 2.0 ** -14)) <= 2 * U16
    # float32 is untouched: exactly `@`
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    np.testing.assert_array_equal(f(a32, b32), a32 @ b32)


def test_resolve_bf16():
    assert resolve_precision("bf16").compute_dtype == _bf16()


def _column_major_gemm_strided_batched(transa, transb, m, n, k, A, lda, strideA, B, ldb, strideB,
                                       ldc, strideC, batch):
    """A NumPy model of cublasGemmStridedBatchedEx (alpha 1, beta 0) on raw memory: element
    (r, c) of a column-major matrix with leading dimension ld sits at r + c * ld."""
    def mat(buf, off, rows, cols, ld):
        return np.array([[buf[off + r + c * ld] for c in range(cols)] for r in range(rows)])

    C = np.zeros(batch * strideC)
    for i in range(batch):
        opA = mat(A, i * strideA, k, m, lda).T if transa else mat(A, i * strideA, m, k, lda)   # m x k
        opB = mat(B, i * strideB, n, k, ldb).T if transb else mat(B, i * strideB, k, n, ldb)   # k x n
        Ci = opA @ opB
        for r in range(m):
            for c in range(n):
                C[i * strideC + r + c * ldc] = Ci[r, c]
    return C


def _raw(x):
    """The memory of x from its first element on, in address order (as cuBLAS sees it)."""
    span = 1 + sum((d - 1) * st // x.itemsize for d, st in zip(x.shape, x.strides))
    return np.lib.stride_tricks.as_strided(x, shape=(span,), strides=(x.itemsize,))


def test_strided_batched_gemm_arguments_compute_a_at_b():
    """The GPU's batched GEMM cannot run here, but its arguments can be checked: fed to a NumPy
    model of the column-major cuBLAS routine, they give a @ b, for plain and transposed operands
    (the attention products: q k^T, P v, and the backward's transposes), batched and 2-D."""
    r = np.random.default_rng(5)
    M, K, N = 3, 4, 5
    for lead in ((), (2,), (2, 3)):
        a = r.standard_normal((*lead, M, K))
        b = r.standard_normal((*lead, K, N))
        aT = np.ascontiguousarray(a.swapaxes(-1, -2)).swapaxes(-1, -2)     # transposed views
        bT = np.ascontiguousarray(b.swapaxes(-1, -2)).swapaxes(-1, -2)
        for x, y in ((a, b), (aT, b), (a, bT), (aT, bT), (a[..., :, :], b[..., ::1, :])):
            first, second, g = backend._gemm_plan(x, y, np)
            C = _column_major_gemm_strided_batched(
                g["transa"], g["transb"], g["m"], g["n"], g["k"], _raw(first), g["lda"], g["strideA"],
                _raw(second), g["ldb"], g["strideB"], g["ldc"], g["strideC"], g["batch"])
            np.testing.assert_allclose(C.reshape(*lead, M, N), x @ y, rtol=1e-12, atol=1e-12)
    # a view that is neither layout (a head split of (B, T, NH, HS)) is copied, then planned
    v = r.standard_normal((2, 6, 3, 4)).transpose(0, 2, 1, 3)          # (B, NH, T, HS) view
    w = r.standard_normal((2, 3, 4, 6))
    first, second, g = backend._gemm_plan(v, w, np)
    assert second.flags.c_contiguous and g["batch"] == 6
    C = _column_major_gemm_strided_batched(g["transa"], g["transb"], g["m"], g["n"], g["k"], _raw(first),
                                           g["lda"], g["strideA"], _raw(second), g["ldb"], g["strideB"],
                                           g["ldc"], g["strideC"], g["batch"])
    np.testing.assert_allclose(C.reshape(2, 3, 6, 6), v @ w, rtol=1e-12, atol=1e-12)


def test_matmul_bfloat16_on_cpu():
    bf = _bf16()
    r = np.random.default_rng(1)
    a, b = r.standard_normal((8, 64)).astype(bf), r.standard_normal((64, 4)).astype(bf)
    got = backend.matmul(a, b)
    assert got.dtype == bf
    ref = a.astype(np.float64) @ b.astype(np.float64)
    assert np.max(np.abs(got.astype(np.float64) - ref) / np.maximum(np.abs(ref), 1e-3)) <= 2 * UBF


# ---------------------------------------------------------------------------------------
# layers: float32 inside, low precision outside


def test_layers_keep_low_precision_and_match_float32():
    r = np.random.default_rng(2)
    x32 = r.standard_normal((2, 6, 16)).astype(np.float32)
    x16 = x32.astype(np.float16)
    g, b = (1 + 0.1 * r.standard_normal(16)).astype(np.float32), (0.1 * r.standard_normal(16)).astype(np.float32)
    dy32 = r.standard_normal(x32.shape).astype(np.float32)
    # LayerNorm: statistics in float32, y and dx in float16, dgamma/dbeta summed in float32
    y16, c16 = layernorm_forward(x16, g.astype(np.float16), b.astype(np.float16))
    y32, c32 = layernorm_forward(x16.astype(np.float32), g.astype(np.float16).astype(np.float32),
                                 b.astype(np.float16).astype(np.float32))
    assert y16.dtype == np.float16 and c16[1].dtype == np.float32     # rstd kept in float32
    np.testing.assert_allclose(y16.astype(np.float32), y32, rtol=2 * U16, atol=4 * U16)
    dg, db = np.zeros(16, np.float32), np.zeros(16, np.float32)
    dx16 = layernorm_backward(dy32.astype(np.float16), c16, dg, db)
    dg32, db32 = np.zeros(16, np.float32), np.zeros(16, np.float32)
    dx32 = layernorm_backward(dy32.astype(np.float16).astype(np.float32), c32, dg32, db32)
    assert dx16.dtype == np.float16 and dg.dtype == np.float32
    np.testing.assert_allclose(dx16.astype(np.float32), dx32, rtol=8 * U16, atol=8 * U16 * np.abs(dx32).max())
    np.testing.assert_allclose(dg, dg32, rtol=8 * U16, atol=8 * U16 * np.abs(dg32).max())
    np.testing.assert_allclose(db, db32, rtol=1e-6, atol=1e-6)   # exact inputs, float32 sums
    # GELU and softmax: float16 in and out, float32 inside
    y, c = gelu_new_forward(x16)
    assert y.dtype == np.float16 and gelu_new_backward(dy32.astype(np.float16), c).dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), gelu_new_forward(x16.astype(np.float32))[0],
                               rtol=U16, atol=U16)
    big = (x16 * np.float16(300)).astype(np.float16)          # exp(300) overflows even float32...
    P, cP = softmax_forward(big)                               # ...but the max is subtracted first
    assert P.dtype == np.float16 and np.all(np.isfinite(P.astype(np.float32)))
    np.testing.assert_allclose(P.astype(np.float32).sum(-1), 1.0, atol=P.shape[-1] * U16)
    assert softmax_backward(dy32.astype(np.float16), cP).dtype == np.float16


def test_cross_entropy_in_float32_dlogits_in_float16():
    r = np.random.default_rng(3)
    logits = (8 * r.standard_normal((10, 50))).astype(np.float16)
    labels = r.integers(0, 50, 10)
    loss, cache = cross_entropy_forward(logits, labels)
    ref, _ = cross_entropy_forward(logits.astype(np.float32), labels)
    assert loss.dtype == np.float32 and float(loss) == pytest.approx(float(ref), rel=1e-6)
    d = cross_entropy_backward(2.0 ** 16, cache)             # a loss scale as upstream gradient
    assert d.dtype == np.float16 and np.all(np.isfinite(d.astype(np.float32)))


def test_fp16_attention_with_padding_mask_is_finite():
    # a float16 score plus the mask's -65504 overflows to -inf in float16; the scores are
    # masked and normalised in float32, so padded keys get weight 0 and nothing is NaN
    cfg = AlbertConfig.from_preset("tiny")
    m = AlbertForPreTraining(cfg, seed=0, precision="fp16")
    p = {k.split("encoder.attention.0.")[1]: v for k, v in m.forward_params().items()
         if k.startswith("encoder.attention.0.")}
    x = np.random.default_rng(4).standard_normal((2, 8, cfg.hidden_size)).astype(np.float16)
    am = np.ones((2, 8), int)
    am[1, 3:] = 0
    out, probs, _ = attention_forward(x, p, cfg.num_attention_heads, make_attention_mask(am, np.float16),
                                      return_probs=True)
    assert out.dtype == np.float16 and np.all(np.isfinite(out.astype(np.float32)))
    assert np.all(probs[1, :, :, 3:] == 0)


def test_bfloat16_mask_and_linear():
    bf = _bf16()
    mask = make_attention_mask(np.array([[1, 0]]), bf)
    assert mask.dtype == bf and float(mask[0, 0, 0, 1]) < -1e38
    x = np.ones((2, 3), bf)
    y, _ = linear_forward(x, np.ones((4, 3), bf), np.zeros(4, bf))
    assert y.dtype == bf and np.all(y.astype(np.float32) == 3)


# ---------------------------------------------------------------------------------------
# the whole model: gradients against float32, within the derived tolerance


def _batch(cfg, B=4, T=32, seed=0):
    r = np.random.default_rng(seed)
    ids = r.integers(5, cfg.vocab_size, (B, T))
    labels = np.where(r.random((B, T)) < 0.2, ids, -100)
    labels[:, 1] = ids[:, 1]
    am = np.ones((B, T), int)
    am[0, 20:] = 0
    return dict(input_ids=ids, attention_mask=am, labels=labels, sentence_order_label=r.integers(0, 2, B))


def _grads(precision, scale=1.0):
    cfg = AlbertConfig.from_preset("tiny")
    m = AlbertForPreTraining(cfg, seed=0, precision=precision)
    out = m.forward(**_batch(cfg))
    m.zero_grad()
    m.backward({"loss": scale})
    return float(out.loss), {k: v / np.float32(scale) for k, v in m.grads.items()}


@pytest.mark.parametrize("precision,u,scale", [("fp16", U16, 2.0 ** 10), ("bf16", UBF, 1.0)])
def test_model_gradients_agree_with_fp32_within_derived_tolerance(precision, u, scale):
    if precision == "bf16":
        _bf16()
    assert AlbertConfig.from_preset("tiny").num_hidden_layers == 4      # n below assumes L = 4
    tol = math.sqrt(N_ROUNDINGS) * u
    loss32, g32 = _grads("fp32")
    loss, g = _grads(precision, scale)
    assert all(v.dtype == np.float32 for v in g.values())
    assert abs(loss - loss32) <= tol * abs(loss32)
    sq = lambda d: math.sqrt(sum(float(np.vdot(v, v)) for v in d.values()))  # noqa: E731
    total = sq(g32)
    err = sq({k: g[k] - g32[k] for k in g})
    assert err <= tol * total, (err / total, tol)
    for k in g:
        n32 = float(np.linalg.norm(g32[k]))
        # the key bias's gradient is zero in exact arithmetic (softmax ignores a per-row
        # constant): no relative error exists for it, so tensors below 1e-3 of the total
        # are held to the global bound instead
        if n32 >= 1e-3 * total:
            assert float(np.linalg.norm(g[k] - g32[k])) <= 2 * tol * n32, (k, precision)
        else:
            assert float(np.linalg.norm(g[k] - g32[k])) <= tol * total, (k, precision)


# ---------------------------------------------------------------------------------------
# dynamic loss scaling


def test_scaler_halves_on_overflow_and_grows_after_clean_run():
    s = DynamicLossScaler(init_scale=8.0, growth_interval=3)
    g = {"w": np.ones(3, np.float32) * 8}
    assert s.unscale_(g) and np.all(g["w"] == 1)
    s.update(True)
    s.update(True)
    assert s.scale == 8.0 and s.clean_steps == 2
    g = {"w": np.array([1.0, np.inf, 0.0], np.float32)}
    assert not s.unscale_(g)
    s.update(False)
    assert s.scale == 4.0 and s.skipped_steps == 1 and s.clean_steps == 0 and s.last_skipped
    assert not s.unscale_({"w": np.array([np.nan], np.float32)})
    for _ in range(3):
        s.update(True)
    assert s.scale == 8.0 and s.clean_steps == 0 and not s.last_skipped
    state = s.state_dict()
    t = DynamicLossScaler()
    t.load_state_dict(state)
    assert t.state_dict() == state
    with pytest.raises(ValueError, match="loss-scaler state must be a dict"):
        t.load_state_dict({"scale": 1.0})
    with pytest.raises(ValueError, match="scale must be a positive finite number"):
        t.load_state_dict({**state, "scale": float("inf")})
    with pytest.raises(ValueError, match="growth_interval must be a positive integer"):
        DynamicLossScaler(growth_interval=0)
    m = DynamicLossScaler(init_scale=1.0, min_scale=1.0)
    m.update(False)
    assert m.scale == 1.0 and m.at_minimum


def _manual_train(precision, steps, overflow_at=(), seed=0):
    """A tiny fp16 training loop written out: scaled backward, unscale, skip or step."""
    from minialbert import optim

    cfg = AlbertConfig.from_preset("tiny")
    m = AlbertForPreTraining(cfg, seed=seed, precision=precision)
    opt = optim.make_optimizer("adamw", m, lr=3e-3, bias_correction=True, weight_decay=0.0)
    scaler = make_scaler(precision, init_scale=2.0 ** 12, growth_interval=4)
    batch = _batch(cfg, B=8, T=32, seed=seed)
    losses, scales, snapshots = [], [], []
    for step in range(steps):
        out = m.forward(**batch)
        losses.append(float(out.loss))
        m.zero_grad()
        m.backward({"loss": scaler.scale})
        if step in overflow_at:                                  # an injected overflow
            m.grads["encoder.ffn.0.ffn.weight"][0, 0] = np.inf
        snapshots.append({k: v.copy() for k, v in m.params.items()})
        scales.append(scaler.scale)
        ok = scaler.unscale_(m.grads)
        if ok:
            optim.clip_grad_norm(m.grads, 1.0)
            opt.step(m.grads)
        scaler.update(ok)
    return m, opt, scaler, losses, scales, snapshots


def test_fp16_training_loss_falls_and_injected_overflow_skips_exactly_that_step():
    m, opt, scaler, losses, scales, snaps = _manual_train("fp16", 12, overflow_at={5})
    assert losses[-1] < 0.7 * losses[0], losses
    assert scaler.skipped_steps == 1 and opt.t == 11
    # step 5 changed nothing: the parameters before step 6 are those before step 5
    for k in snaps[5]:
        np.testing.assert_array_equal(snaps[5][k], snaps[6][k])
    # every other step did change them
    assert all(any(not np.array_equal(snaps[i][k], snaps[i + 1][k]) for k in snaps[i])
               for i in range(11) if i != 5)
    # the scale: 2^12 doubles after 4 clean steps (before step 4), halves at the overflow
    assert scales[:7] == [4096.0] * 4 + [8192.0, 8192.0, 4096.0], scales


# ---------------------------------------------------------------------------------------
# GPU: the batched GEMM runs in float16 on the tensor cores (skipped without a device)


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_gpu_batched_matmul_matches_rounded_reference(dtype):
    dt = np.dtype(np.float16) if dtype == "float16" else _bf16()
    r = np.random.default_rng(0)
    a = r.standard_normal((4, 3, 64, 32)).astype(np.float32)
    b = r.standard_normal((4, 3, 32, 48)).astype(np.float32)
    ref = backend.batched_matmul(a.astype(dt), b.astype(dt)).astype(np.float32)   # CPU emulation
    ga, gb = backend.to_device(a.astype(dt), "gpu"), backend.to_device(b.astype(dt), "gpu")
    for x, y in ((ga, gb), (ga, backend.xp_for("gpu").ascontiguousarray(gb.swapaxes(-1, -2)).swapaxes(-1, -2)),
                 (backend.xp_for("gpu").ascontiguousarray(ga.swapaxes(-1, -2)).swapaxes(-1, -2), gb)):
        out = backend.batched_matmul(x, y)
        assert out.dtype == dt
        got = backend.to_numpy(out).astype(np.float32)
        u = U16 if dtype == "float16" else UBF
        np.testing.assert_allclose(got, ref, rtol=2 * u, atol=2 * u * np.abs(ref).max())
    # 2-D too (bfloat16 goes through cuBLAS because CuPy's matmul refuses it)
    out2 = backend.to_numpy(backend.matmul(ga[0, 0], gb[0, 0])).astype(np.float32)
    np.testing.assert_allclose(out2, ref[0, 0], rtol=2 * u, atol=2 * u * np.abs(ref).max())


@pytest.mark.gpu
@pytest.mark.skipif(not backend.gpu_available(), reason="no CUDA GPU")
def test_gpu_fp16_attention_products_do_not_run_in_fp32():
    """float16 and float32 accumulate alike (exact products, float32 sums), so numbers cannot
    tell a tensor-core GEMM from CuPy's silent float32 fallback; time can. The attention
    products of ALBERT-xxlarge at B=8, T=512 (64 heads of 64) run at least 2x faster in fp16
    than the same batched product in float32 (without TF32); an upcast to float32 would be
    at best as fast as float32 (H200: ~60 TFLOP/s float32 against ~990 float16, and half the
    bytes to move)."""
    cp = backend.xp_for("gpu")
    from cupyx.profiler import benchmark

    q = cp.random.standard_normal((8 * 64, 512, 64), dtype=cp.float32)
    k = cp.random.standard_normal((8 * 64, 512, 64), dtype=cp.float32)
    times = {}
    for dt in (np.float32, np.float16):
        a, b = q.astype(dt), k.astype(dt).swapaxes(-1, -2)
        res = benchmark(backend.batched_matmul, (a, b), n_repeat=20, n_warmup=3)
        times[np.dtype(dt).name] = float(np.median(res.gpu_times))
    assert times["float16"] * 2 <= times["float32"], times


# ---------------------------------------------------------------------------------------
# the pretraining loop in fp16: --precision, skipped steps, metrics, exact resume


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """200 documents of the embedded corpus as a text file (as tests/test_train.py)."""
    from minialbert.data import load_default_corpus

    docs = load_default_corpus(include_numpy=False)[:200]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs), encoding="utf-8")
    return str(path)


def _fp16_run(corpus, out, **kw):
    from minialbert.train import PretrainConfig

    # lr 1e-3: ALBERT's AdamW (no bias correction) at 3e-3 with 2 warm-up steps throws the E=128
    # tiny (issue 10) to MLM losses of 7-11 within 20 steps, in fp32 and fp16 alike
    base = dict(corpus=corpus, vocab_size=400, seq_len=32, batch_size=8, steps=6, lr=1e-3, warmup=2,
                optimizer="adamw", out=str(out), progress=False, log_every=1, checkpoint_every=3,
                eval_size=32, peak_tflops=0.1, plots=False, precision="fp16")
    base.update(kw)
    return PretrainConfig(**base)


def _overflow_at(bad_step, snapshots=None):
    """A before_step hook: at step ``bad_step`` the backward leaves an inf in one gradient (as a
    float16 overflow would); ``snapshots`` collects the parameters before every step."""
    def hook(step, model):
        if snapshots is not None:
            snapshots.append({k: np.array(v, copy=True) for k, v in model.params.items()})
        model.__dict__.pop("backward", None)
        if step == bad_step:
            plain = type(model).backward

            def backward(grad_outputs=None):
                plain(model, grad_outputs)
                model.grads["encoder.ffn.0.ffn.weight"][0, 0] = np.inf
            model.backward = backward
    return hook


def test_pretrain_fp16_skips_exactly_the_overflowing_step_and_logs_the_scale(corpus, tmp_path):
    from minialbert import metrics as M
    from minialbert.train import pretrain

    snaps = []
    cfg = _fp16_run(corpus, tmp_path / "r", steps=20, log_every=1, checkpoint_every=20)
    pretrain(cfg, log=lambda *a, **k: None, hooks={"before_step": _overflow_at(4, snaps)})
    recs = M.read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(1, 21))
    # the 5th step (index 4) was skipped: weights unchanged across it, changed across every
    # other (but the first, whose warm-up learning rate is 0)
    for k in snaps[4]:
        np.testing.assert_array_equal(snaps[4][k], snaps[5][k])
    assert all(any(not np.array_equal(snaps[i][k], snaps[i + 1][k]) for k in snaps[i])
               for i in range(1, len(snaps) - 1) if i != 4)
    assert [r["skipped_steps"] for r in recs] == [0] * 4 + [1] * 16
    assert [r["loss_scale"] for r in recs] == [2.0 ** 16] * 4 + [2.0 ** 15] * 16
    # the old fields are all there, and the loss falls (fp16 trains)
    for k in ("loss", "mlm_loss", "mlm_accuracy", "lr", "tokens_per_s", "mfu", "grad_norm"):
        assert all(k in r for r in recs if r["step"] != 5), k
    first = np.mean([r["mlm_loss"] for r in recs[:3]])
    last = np.mean([r["mlm_loss"] for r in recs[-3:]])
    assert first - last > 0.5, (first, last)
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["config"]["precision"] == "fp16"


def test_pretrain_fp16_resume_is_exact_with_the_scaler_state(corpus, tmp_path):
    from minialbert import checkpoint as ckpt
    from minialbert import metrics as M
    from minialbert.train import pretrain

    quiet = lambda *a, **k: None  # noqa: E731
    pretrain(_fp16_run(corpus, tmp_path / "full"), log=quiet, hooks={"before_step": _overflow_at(1)})
    pretrain(_fp16_run(corpus, tmp_path / "part", stop_at=3), log=quiet, hooks={"before_step": _overflow_at(1)})
    state = ckpt.load_checkpoint(tmp_path / "part" / "checkpoint")
    assert state["extra"]["loss_scaler"]["scale"] == 2.0 ** 15
    assert state["extra"]["loss_scaler"]["skipped_steps"] == 1
    pretrain(_fp16_run(corpus, tmp_path / "part", resume=True), log=quiet)
    a = ckpt.load_checkpoint(tmp_path / "full" / "checkpoint")
    b = ckpt.load_checkpoint(tmp_path / "part" / "checkpoint")
    for k in a["model_state"]:
        np.testing.assert_array_equal(a["model_state"][k], b["model_state"][k])
    for k in a["optimizer_state"]["m"]:
        np.testing.assert_array_equal(a["optimizer_state"]["m"][k], b["optimizer_state"]["m"][k])
    assert a["extra"]["loss_scaler"] == b["extra"]["loss_scaler"]
    ra = M.read_metrics(tmp_path / "full" / "metrics.jsonl")
    rb = M.read_metrics(tmp_path / "part" / "metrics.jsonl")
    keys = ("step", "loss", "mlm_loss", "loss_scale", "skipped_steps")
    assert [[r.get(k) for k in keys] for r in ra] == [[r.get(k) for k in keys] for r in rb]


def test_precision_flag_errors_write_nothing(corpus, tmp_path):
    from minialbert.train import pretrain

    for kw, msg in ((dict(precision="tf32"), r"--precision tf32 needs a GPU"),
                    (dict(precision="fp16", dtype="float64"), r"--precision fp16 keeps float32 master weights"),
                    (dict(precision="half"), r"--precision: expected one of")):
        with pytest.raises(ValueError, match=msg):
            pretrain(_fp16_run(corpus, tmp_path / "r", **kw), log=lambda *a, **k: None)
        assert not (tmp_path / "r").exists()


def test_fp32_runs_keep_their_fingerprint():
    # --precision joined the run's fingerprint only for fp16/bf16/tf32: an fp32 run of before
    # still resumes
    from minialbert.train import FINGERPRINT_FIELDS, PretrainConfig

    a = PretrainConfig()
    d = {k: getattr(a, k) for k in FINGERPRINT_FIELDS}
    import hashlib
    assert a.fingerprint() == hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
    assert PretrainConfig(precision="fp16").fingerprint() != a.fingerprint()


def test_finetune_fp16_learns_an_easy_task_and_saves_float32(tmp_path):
    import csv

    from minialbert import metrics as M
    from minialbert.finetune import FinetuneConfig, finetune
    from minialbert.tokenizer import Tokenizer

    words = ("alpha beta gamma delta river stone cloud paper music light green table window "
             "seven happy quickly north garden yellow simple").split()
    rng = np.random.default_rng(0)
    sent = lambda: " ".join(rng.choice(words, size=rng.integers(4, 9)))  # noqa: E731
    tok = Tokenizer.train([sent() for _ in range(400)] + ["good bad the is of what where when"], vocab_size=60)
    cfg = AlbertConfig.from_preset("tiny", vocab_size=tok.vocab_size, num_hidden_layers=2, hidden_size=64,
                                   intermediate_size=128, embedding_size=32, num_attention_heads=2)
    model_dir = tmp_path / "model"
    AlbertForPreTraining(cfg, seed=0).save_pretrained(model_dir)
    tok.save(model_dir / "spiece.model")
    rows = []
    for i in range(160):
        s = sent().split()
        s.insert(int(rng.integers(0, len(s))), "good" if i % 2 else "bad")
        rows.append({"sentence": " ".join(s), "label": ["neg", "pos"][i % 2]})
    with open(tmp_path / "train.tsv", "w", newline="") as f:
        w = csv.DictWriter(f, ["sentence", "label"], delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    ft = dict(model=str(model_dir), out=str(tmp_path / "out"), progress=False, epochs=4, batch_size=8,
              lr=2e-3, max_length=32, train=str(tmp_path / "train.tsv"), task="classification")
    with pytest.raises(ValueError, match=r"--precision tf32 needs a GPU"):
        finetune(FinetuneConfig(**ft, precision="tf32"), log=lambda *a, **k: None)
    res = finetune(FinetuneConfig(**ft, precision="fp16"), log=lambda *a, **k: None)
    assert res["accuracy"] >= 0.9, res                       # chance is 0.5
    recs = M.read_metrics(tmp_path / "out" / "metrics.jsonl")
    # a real overflow may happen at the initial 2^16 (it does here: one step, in epoch 1); each
    # halves the scale, and no run of 2000 clean steps doubles it again in 72 steps
    assert all(r["loss_scale"] == 2.0 ** 16 / 2 ** r["skipped_steps"] for r in recs), recs
    assert recs[-1]["skipped_steps"] <= 3
    from safetensors.numpy import load_file
    assert {a.dtype for a in load_file(tmp_path / "out" / "model.safetensors").values()} == {np.dtype(np.float32)}


def test_pretrain_fp16_stops_when_the_scale_cannot_fall_further(corpus, tmp_path):
    # a NaN weight makes every forward NaN: each step is skipped and halves the scale, from 2^16
    # down to the floor 2^-24 (40 halvings, the 40th some 40 steps after the poison); then the run stops as an fp32 run would
    from minialbert.train import TrainingDiverged, pretrain

    def poison(step, model):
        if step == 2:
            model.params["embeddings.LayerNorm.weight"][:] = np.nan

    cfg = _fp16_run(corpus, tmp_path / "r", steps=60, checkpoint_every=2, log_every=10, batch_size=2,
                    seq_len=16, eval_size=8)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 4[12]; .*The fp16 loss scale is at its minimum"):
        pretrain(cfg, log=lambda *a, **k: None, hooks={"before_step": poison})
