r"""Fused CUDA kernels for the GPU, beside the readable layers they speed up. OFF by default.

Derivation: [docs/layers/fused.md](../layers/fused.md)

Each kernel does in one pass over memory what the plain CuPy path does in several launches
(CuPy launches one kernel per array operation, and each reads and writes the whole tensor):

| name | replaces | cache |
|---|---|---|
| `gelu` | `gelu_new_forward` / `gelu_new_backward` (tanh form) | `(x, None)`: t recomputed |
| `layernorm` | `layernorm_forward` / `layernorm_backward` | as the plain one |
| `softmax` | scale + additive mask + softmax in attention; `softmax_backward` | as the plain one |
| `dropout` | `dropout_forward` (compare, cast, scale, multiply) | as the plain one |
| `cross_entropy` | `cross_entropy_forward` / `_backward`: keeps the per-row log-sum-exp, not the (N, V) softmax | `("fused", ...)` |

All arithmetic is float32 inside, whatever the storage dtype (float32, float16, bfloat16);
float64 and NumPy arrays always take the plain path. The kernels are CUDA C++ compiled at
first use through CuPy's `RawModule` (NVRTC), by way of `minialbert.backend.raw_module`
(the only module that touches CuPy). The source needs no CUDA header: float16 and bfloat16
are converted with PTX and bit arithmetic.

**Opt in.** A kernel runs only when named in the environment variable `MINIALBERT_FUSED`
(`MINIALBERT_FUSED=gelu,layernorm` or `MINIALBERT_FUSED=all`) or switched on with
[enable][minialbert.layers.fused.enable]. None is the default, and none becomes the default
before its test in `tests/test_fused.py` has passed on a real GPU. None has yet: no session
so far had a GPU.
"""
from __future__ import annotations

import os

import numpy as np

from .. import backend

KERNELS = ("gelu", "layernorm", "softmax", "dropout", "cross_entropy")
ENV = "MINIALBERT_FUSED"

_enabled_override = None        # set by enable()/disable(); None: read the environment

# CUDA C++ storage types of the dtypes the kernels are instantiated for
_CTYPES = {"float32": "float", "float16": "half_t", "bfloat16": "bf16_t"}
_TEMPLATES = ("gelu_fwd", "gelu_bwd", "dropout_fwd", "layernorm_fwd", "layernorm_bwd",
              "softmax_fwd", "softmax_bwd", "xent_fwd", "xent_bwd")
_BLOCK = 256

SOURCE = r"""
// Storage types by bit pattern, converted with PTX / bit arithmetic: no CUDA header needed,
// so NVRTC compiles this wherever CuPy runs (cuda_fp16.h is not always on its include path).
struct half_t { unsigned short bits; };
struct bf16_t { unsigned short bits; };

#define NEG_INF __int_as_float(0xff800000)   // -inf (NVRTC has no <cmath> INFINITY)

// loads widen to float, stores round (to nearest even) from float: kernels compute in float32
__device__ __forceinline__ float ld(const float* p, long long i) { return p[i]; }
__device__ __forceinline__ float ld(const half_t* p, long long i) {
    float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p[i].bits)); return f;
}
__device__ __forceinline__ float ld(const bf16_t* p, long long i) {
    return __uint_as_float(((unsigned int)p[i].bits) << 16);
}
__device__ __forceinline__ void st(float* p, long long i, float v) { p[i] = v; }
__device__ __forceinline__ void st(half_t* p, long long i, float v) {
    unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v)); p[i].bits = h;
}
__device__ __forceinline__ void st(bf16_t* p, long long i, float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) { p[i].bits = (unsigned short)((u >> 16) | 0x40u); return; }  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);                       // round to nearest, ties to even
    p[i].bits = (unsigned short)(u >> 16);
}

// sum / max of one float per thread over the block (blockDim.x a multiple of 32, <= 1024);
// every thread gets the result. `sh` is __shared__ float[32].
__device__ float block_sum(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();                       // sh may still be read by a previous call
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = (threadIdx.x < nw) ? sh[threadIdx.x] : 0.0f;
    if (warp == 0) for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    return sh[0];
}

__device__ float block_max(float v, float* sh) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    v = (threadIdx.x < nw) ? sh[threadIdx.x] : NEG_INF;
    if (warp == 0) for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (threadIdx.x == 0) sh[0] = v;
    __syncthreads();
    return sh[0];
}

#define GRID_STRIDE(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

// GELU, tanh form: y = 0.5 x (1 + tanh(c (x + a x^3)))
template <typename T>
__global__ void gelu_fwd(const T* x, T* y, long long n) {
    GRID_STRIDE(i, n) {
        const float v = ld(x, i);
        const float t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
        st(y, i, 0.5f * v * (1.0f + t));
    }
}

// dy/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 a x^2); t recomputed, not stored
template <typename T>
__global__ void gelu_bwd(const T* dy, const T* x, T* dx, long long n) {
    GRID_STRIDE(i, n) {
        const float v = ld(x, i);
        const float t = tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v));
        const float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * v * v);
        st(dx, i, ld(dy, i) * (0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * du));
    }
}

// inverted dropout from given uniforms: mask = (u >= p) * scale, y = x * mask
template <typename T>
__global__ void dropout_fwd(const T* x, const float* u, float p, float scale, T* y, T* mask, long long n) {
    GRID_STRIDE(i, n) {
        const float m = (u[i] >= p) ? scale : 0.0f;
        st(mask, i, m);
        st(y, i, ld(x, i) * m);
    }
}

// LayerNorm of one row per block: two passes (mean, then the variance about it)
template <typename T>
__global__ void layernorm_fwd(const T* x, const T* gamma, const T* beta, float eps,
                              T* y, T* xhat, float* rstd, int D) {
    __shared__ float sh[32];
    const long long off = (long long)blockIdx.x * D;
    float s = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) s += ld(x, off + j);
    const float mean = block_sum(s, sh) / D;
    float q = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) { const float d = ld(x, off + j) - mean; q += d * d; }
    const float r = 1.0f / sqrtf(block_sum(q, sh) / D + eps);
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        const float h = (ld(x, off + j) - mean) * r;
        st(xhat, off + j, h);
        st(y, off + j, h * ld(gamma, j) + ld(beta, j));
    }
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// dx = r (g - mean(g) - xhat mean(g xhat)), g = dy * gamma, per row
template <typename T>
__global__ void layernorm_bwd(const T* dy, const T* xhat, const float* rstd, const T* gamma, T* dx, int D) {
    __shared__ float sh[32];
    const long long off = (long long)blockIdx.x * D;
    float s1 = 0.0f, s2 = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        const float g = ld(dy, off + j) * ld(gamma, j);
        s1 += g;
        s2 += g * ld(xhat, off + j);
    }
    const float m1 = block_sum(s1, sh) / D;
    const float m2 = block_sum(s2, sh) / D;
    const float r = rstd[blockIdx.x];
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        const float h = ld(xhat, off + j);
        st(dx, off + j, r * (ld(dy, off + j) * ld(gamma, j) - m1 - h * m2));
    }
}

// P = softmax(scale * s + mask) over rows of C; mask (batches, C) additive, one row of it
// per `rows_per_batch` rows of s (the B of (B, NH, T, T) scores); has_mask = 0: no mask
template <typename T>
__global__ void softmax_fwd(const T* s, const float* mask, int has_mask, long long rows_per_batch,
                            float scale, T* P, int C) {
    __shared__ float sh[32];
    const long long off = (long long)blockIdx.x * C;
    const float* mr = mask + (has_mask ? (blockIdx.x / rows_per_batch) * C : 0);
    float m = NEG_INF;
    for (int j = threadIdx.x; j < C; j += blockDim.x)
        m = fmaxf(m, ld(s, off + j) * scale + (has_mask ? mr[j] : 0.0f));
    m = block_max(m, sh);
    float z = 0.0f;
    for (int j = threadIdx.x; j < C; j += blockDim.x)
        z += expf(ld(s, off + j) * scale + (has_mask ? mr[j] : 0.0f) - m);
    const float inv = 1.0f / block_sum(z, sh);
    for (int j = threadIdx.x; j < C; j += blockDim.x)
        st(P, off + j, expf(ld(s, off + j) * scale + (has_mask ? mr[j] : 0.0f) - m) * inv);
}

// dx = P (dP - sum_j dP_j P_j), per row
template <typename T>
__global__ void softmax_bwd(const T* dP, const T* P, T* dx, int C) {
    __shared__ float sh[32];
    const long long off = (long long)blockIdx.x * C;
    float s = 0.0f;
    for (int j = threadIdx.x; j < C; j += blockDim.x) s += ld(dP, off + j) * ld(P, off + j);
    s = block_sum(s, sh);
    for (int j = threadIdx.x; j < C; j += blockDim.x)
        st(dx, off + j, ld(P, off + j) * (ld(dP, off + j) - s));
}

// per row: lse = log sum exp z, loss = lse - z[y] (0 where ignored, valid == 0)
template <typename T>
__global__ void xent_fwd(const T* z, const long long* y, const unsigned char* valid,
                         float* lse, float* loss, int C) {
    __shared__ float sh[32];
    const long long off = (long long)blockIdx.x * C;
    float m = NEG_INF;
    for (int j = threadIdx.x; j < C; j += blockDim.x) m = fmaxf(m, ld(z, off + j));
    m = block_max(m, sh);
    float s = 0.0f;
    for (int j = threadIdx.x; j < C; j += blockDim.x) s += expf(ld(z, off + j) - m);
    s = block_sum(s, sh);
    if (threadIdx.x == 0) {
        const float l = m + logf(s);
        lse[blockIdx.x] = l;
        loss[blockIdx.x] = valid[blockIdx.x] ? l - ld(z, off + y[blockIdx.x]) : 0.0f;
    }
}

// dz = (exp(z - lse) - onehot(y)) * coef, coef = valid * dloss / n_counted, per row
template <typename T>
__global__ void xent_bwd(const T* z, const long long* y, const float* lse, const float* coef, T* dz, int C) {
    const long long off = (long long)blockIdx.x * C;
    const float l = lse[blockIdx.x], c = coef[blockIdx.x];
    const long long label = y[blockIdx.x];
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        float p = expf(ld(z, off + j) - l);
        if (j == label) p -= 1.0f;
        st(dz, off + j, p * c);
    }
}
"""


def name_expressions():
    """Every template instantiation the module compiles: kernel<ctype>."""
    return [f"{k}<{t}>" for k in _TEMPLATES for t in _CTYPES.values()]


# ---------------------------------------------------------------------------------------
# the opt-in switch


def _parse(value: str) -> frozenset:
    names = {v.strip() for v in value.split(",") if v.strip()}
    if names & {"all", "1"}:
        return frozenset(KERNELS)
    if names & {"0", "none"}:
        return frozenset()
    bad = sorted(names - set(KERNELS))
    if bad:
        raise ValueError(f"{ENV}={value!r}: unknown kernel(s) {bad}; expected a comma-separated list "
                         f"of {KERNELS}, or 'all'")
    return frozenset(names)


def enabled_kernels() -> frozenset:
    """The kernels switched on: by :func:`enable`, else by ``MINIALBERT_FUSED`` (default none)."""
    if _enabled_override is not None:
        return _enabled_override
    return _parse(os.environ.get(ENV, ""))


def enable(*names: str) -> None:
    """Switch kernels on for this process (``enable("all")`` for every one); overrides the
    environment variable until :func:`reset`."""
    global _enabled_override
    _enabled_override = _parse(",".join(names)) if names else frozenset()


def reset() -> None:
    """Forget :func:`enable`: the environment variable decides again."""
    global _enabled_override
    _enabled_override = None


def use(name: str, x) -> bool:
    """True when kernel ``name`` is switched on and ``x`` is a CuPy array of a dtype it has
    (float32, float16, bfloat16). NumPy arrays and float64 always take the plain path."""
    return (backend.is_cupy_array(x) and x.dtype.name in _CTYPES
            and name in enabled_kernels())


# ---------------------------------------------------------------------------------------
# launching


_module = None


def _kernel(name: str, dtype):
    global _module
    if _module is None:
        _module = backend.raw_module(SOURCE, name_expressions())
    return _module.get_function(f"{name}<{_CTYPES[np.dtype(dtype).name]}>")


def _elementwise_grid(n: int):
    return (max(1, min((n + _BLOCK - 1) // _BLOCK, 2 ** 31 - 1)),)


def _rows(x):
    """(rows, row length) of a C-contiguous array reduced over its last axis."""
    C = x.shape[-1]
    return (x.size // C if C else 0), C


def gelu_new_forward(x):
    """Derivation: [docs/layers/fused.md](../layers/fused.md).

    Fused GELU (tanh form). Returns y, cache = (x, None): t is recomputed in backward."""
    x = backend.get_array_module(x).ascontiguousarray(x)
    y = backend.get_array_module(x).empty_like(x)
    if x.size:
        _kernel("gelu_fwd", x.dtype)(_elementwise_grid(x.size), (_BLOCK,), (x, y, np.int64(x.size)))
    return y, (x, None)


def gelu_new_backward(dy, cache):
    """Derivation: [docs/layers/fused.md](../layers/fused.md)."""
    x, _ = cache
    xp = backend.get_array_module(x)
    dy = xp.ascontiguousarray(dy.astype(x.dtype, copy=False))
    dx = xp.empty_like(x)
    if x.size:
        _kernel("gelu_bwd", x.dtype)(_elementwise_grid(x.size), (_BLOCK,), (dy, x, dx, np.int64(x.size)))
    return dx


def dropout_forward(x, p, rng):
    """Derivation: [docs/layers/fused.md](../layers/fused.md).

    Fused inverted dropout from the same uniforms as the plain path (same masks)."""
    xp = backend.get_array_module(x)
    x = xp.ascontiguousarray(x)
    u = rng.random(x.shape, dtype=np.float32 if x.dtype != np.float64 else np.float64)
    scale = float(x.dtype.type(1.0 / (1.0 - p)))          # the mask value, rounded as the plain path
    y, mask = xp.empty_like(x), xp.empty_like(x)
    if x.size:
        _kernel("dropout_fwd", x.dtype)(_elementwise_grid(x.size), (_BLOCK,),
                                        (x, u, np.float32(p), np.float32(scale), y, mask, np.int64(x.size)))
    return y, mask


def layernorm_forward(x, gamma, beta, eps):
    """Derivation: [docs/layers/fused.md](../layers/fused.md).

    Fused LayerNorm: same cache as the plain one, (xhat, rstd (..., 1) float32, gamma)."""
    xp = backend.get_array_module(x)
    x = xp.ascontiguousarray(x)
    rows, D = _rows(x)
    y, xhat = xp.empty_like(x), xp.empty_like(x)
    rstd = xp.empty(x.shape[:-1] + (1,), dtype=np.float32)
    if rows:
        _kernel("layernorm_fwd", x.dtype)((rows,), (_BLOCK,),
                                          (x, xp.ascontiguousarray(gamma), xp.ascontiguousarray(beta),
                                           np.float32(eps), y, xhat, rstd, np.int32(D)))
    return y, (xhat, rstd, gamma)


def layernorm_backward(dy, cache, dgamma=None, dbeta=None):
    """Derivation: [docs/layers/fused.md](../layers/fused.md)."""
    xhat, rstd, gamma = cache
    xp = backend.get_array_module(xhat)
    dy = xp.ascontiguousarray(dy.astype(xhat.dtype, copy=False))
    lead = tuple(range(xhat.ndim - 1))
    if dgamma is not None:
        dgamma += (dy.astype(np.float32) * xhat.astype(np.float32)).sum(axis=lead).astype(dgamma.dtype)
    if dbeta is not None:
        dbeta += dy.sum(axis=lead, dtype=np.float32).astype(dbeta.dtype)
    rows, D = _rows(xhat)
    dx = xp.empty_like(xhat)
    if rows:
        _kernel("layernorm_bwd", xhat.dtype)((rows,), (_BLOCK,),
                                             (dy, xhat, rstd.astype(np.float32, copy=False),
                                              xp.ascontiguousarray(gamma), dx, np.int32(D)))
    return dx


def masked_softmax_forward(scores, scale, mask_add=None):
    """Derivation: [docs/layers/fused.md](../layers/fused.md).

    P = softmax(scores * scale + mask_add) over the last axis, one pass.

    scores (B, NH, T, C); mask_add broadcastable as (B, 1, 1, C) (make_attention_mask) or
    None. Returns P in scores' dtype (the cache of softmax_backward)."""
    xp = backend.get_array_module(scores)
    s = xp.ascontiguousarray(scores)
    rows, C = _rows(s)
    B = s.shape[0]
    if mask_add is not None:
        mask = xp.ascontiguousarray(xp.broadcast_to(mask_add, (B, 1, 1, C)).reshape(B, C).astype(np.float32))
        has, per = 1, rows // B
    else:
        mask, has, per = xp.zeros(1, dtype=np.float32), 0, max(rows, 1)
    P = xp.empty_like(s)
    if rows:
        _kernel("softmax_fwd", s.dtype)((rows,), (_BLOCK,),
                                        (s, mask, np.int32(has), np.int64(per), np.float32(scale), P, np.int32(C)))
    return P


def softmax_backward(dP, P):
    """Derivation: [docs/layers/fused.md](../layers/fused.md)."""
    xp = backend.get_array_module(P)
    dP = xp.ascontiguousarray(dP.astype(P.dtype, copy=False))
    P = xp.ascontiguousarray(P)
    rows, C = _rows(P)
    dx = xp.empty_like(P)
    if rows:
        _kernel("softmax_bwd", P.dtype)((rows,), (_BLOCK,), (dP, P, dx, np.int32(C)))
    return dx


def cross_entropy_forward(z, y_safe, valid, n_valid, shape, in_dtype):
    """Derivation: [docs/layers/fused.md](../layers/fused.md).

    Fused MLM cross-entropy on (N, C) logits. Returns loss (0-d float32) and the cache
    ("fused", z, y, lse, valid, n_valid, shape, in_dtype): the (N, C) softmax is not kept."""
    xp = backend.get_array_module(z)
    z = xp.ascontiguousarray(z)
    N, C = z.shape
    y = xp.ascontiguousarray(y_safe.astype(np.int64))
    v = xp.ascontiguousarray(valid.astype(np.uint8))
    lse = xp.empty(N, dtype=np.float32)
    per_row = xp.empty(N, dtype=np.float32)
    if N:
        _kernel("xent_fwd", z.dtype)((N,), (_BLOCK,), (z, y, v, lse, per_row, np.int32(C)))
    loss = per_row.sum() / n_valid.astype(np.float32)
    return loss, ("fused", z, y, lse, valid, n_valid, shape, in_dtype)


def cross_entropy_backward(dloss, cache):
    """Derivation: [docs/layers/fused.md](../layers/fused.md)."""
    _, z, y, lse, valid, n_valid, shape, in_dtype = cache
    xp = backend.get_array_module(z)
    N, C = z.shape
    coef = xp.ascontiguousarray((valid * (xp.asarray(dloss, dtype=np.float32) / n_valid)).astype(np.float32))
    dz = xp.empty_like(z)
    if N:
        _kernel("xent_bwd", z.dtype)((N,), (_BLOCK,), (z, y, lse, coef, dz, np.int32(C)))
    return dz.reshape(shape).astype(in_dtype, copy=False)
