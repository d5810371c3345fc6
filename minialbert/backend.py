"""NumPy on the CPU, CuPy on the GPU: the one module that knows CuPy exists.

Everything else in minialbert asks an array which module it belongs to::

    xp = get_array_module(x)      # numpy or cupy
    y = xp.tanh(x)

and crosses the host/device boundary only through :func:`to_numpy` and
:func:`to_device`, at the edges (loading data, logging a scalar, saving a
checkpoint). A Python scalar from a device array goes through ``float()``.
"""
from __future__ import annotations

import os

import numpy as np

DEVICES = ("cpu", "gpu")

#: The default dtype of parameters and activations. float64 is for gradient checks.
DEFAULT_DTYPE = np.float32
DTYPES = {"float32": np.float32, "float64": np.float64}
#: Cuda data-type and cuBLAS constants used by :func:`batched_matmul` (cuda library_types.h,
#: cublas_api.h): CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF; CUBLAS_COMPUTE_32F; CUBLAS_GEMM_DEFAULT.
_CUDA_R = {"float32": 0, "float16": 2, "bfloat16": 14}
_CUBLAS_COMPUTE_32F = 68
_CUBLAS_GEMM_DEFAULT = -1

_cupy = None  # the cupy module once imported; False when the import failed
_cupy_error: str | None = None


def _import_cupy():
    """Import CuPy lazily, remembering why it failed."""
    global _cupy, _cupy_error
    if _cupy is None:
        try:
            import cupy  # noqa: PLC0415  (only this module imports CuPy)

            _cupy = cupy
        except Exception as e:  # ImportError, or a broken CUDA install
            _cupy = False
            _cupy_error = f"{type(e).__name__}: {e}"
    return _cupy or None


def gpu_available() -> bool:
    """True when CuPy imports *and* a CUDA device answers.

    ``import cupy`` succeeds on machines without a GPU; the first array
    creation would then fail, so we ask the runtime instead.
    """
    cp = _import_cupy()
    if cp is None:
        return False
    try:
        return bool(cp.cuda.is_available())
    except Exception:
        return False


def _require_gpu():
    cp = _import_cupy()
    if cp is None:
        raise RuntimeError(
            "device 'gpu' needs CuPy, which is not installed or failed to import "
            f"({_cupy_error}). Install it with `pip install minialbert[cuda12]` "
            "(CUDA 12) or `pip install minialbert[cuda13]` (CUDA 13)."
        )
    if not gpu_available():
        raise RuntimeError(
            "device 'gpu' was requested and CuPy is installed, but no CUDA GPU is "
            "available (cupy.cuda.is_available() is False): check the driver with "
            "`nvidia-smi`, or use device='cpu'."
        )
    return cp


def check_device(device: str) -> str:
    """Validate a device name and return it."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    if device == "gpu":
        _require_gpu()
    return device


def resolve_dtype(dtype) -> np.dtype:
    """'float32' / 'float64' / np.float32 ... -> np.dtype, with a clear error."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}: expected one of {tuple(DTYPES)}")
        return np.dtype(DTYPES[dtype])
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"unsupported dtype {dt}: expected float32 or float64")
    return dt


def is_cupy_array(x) -> bool:
    cp = _cupy or None
    return cp is not None and isinstance(x, cp.ndarray)


def get_array_module(*arrays):
    """numpy, or cupy if any of ``arrays`` lives on the GPU (DeZero/Chainer style)."""
    if _cupy:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def device_of(x) -> str:
    """'gpu' for a CuPy array, 'cpu' for anything else."""
    return "gpu" if is_cupy_array(x) else "cpu"


def xp_for(device: str):
    """The array module for a device name."""
    check_device(device)
    return _cupy if device == "gpu" else np


def to_numpy(x):
    """A NumPy array (host copy of a CuPy array; NumPy arrays pass through)."""
    if is_cupy_array(x):
        return x.get()
    return np.asarray(x)


def to_device(x, device: str):
    """Move an array to ``device`` ('cpu' or 'gpu'); a no-op when it is already there."""
    check_device(device)
    if device == "gpu":
        cp = _require_gpu()
        return x if isinstance(x, cp.ndarray) else cp.asarray(x)
    return to_numpy(x)


def synchronize(device: str = "gpu") -> None:
    """Wait for queued GPU work (for timing); a no-op on the CPU."""
    if device == "gpu" and gpu_available():
        _cupy.cuda.Device().synchronize()


class Random:
    """One seeded random stream that works on both devices.

    NumPy's Generator draws everything; on the GPU, CuPy's Generator only has a few
    methods (no ``normal``/``choice``/``permutation``), so ``normal`` is built from
    ``standard_normal`` and discrete choices (shuffles, data sampling) are always
    drawn on the host with NumPy. The state of both streams can be saved and restored
    exactly (:meth:`get_state` / :meth:`set_state`) for checkpoints that resume bit for bit.
    """

    def __init__(self, seed: int = 0, device: str = "cpu"):
        self.seed = int(seed)
        self.device = check_device(device)
        self.host = np.random.default_rng(self.seed)  # host stream: init, shuffles, choices
        self._dev = None
        if device == "gpu":
            self._dev = _cupy.random.default_rng(self.seed)

    # -- continuous draws on the stream's device ------------------------------------
    def standard_normal(self, shape, dtype=DEFAULT_DTYPE):
        if self._dev is not None:
            return self._dev.standard_normal(shape, dtype=dtype)
        return self.host.standard_normal(shape, dtype=dtype)

    def normal(self, shape, std=1.0, mean=0.0, dtype=DEFAULT_DTYPE):
        out = self.standard_normal(shape, dtype=dtype)
        out *= np.dtype(dtype).type(std)
        if mean:
            out += mean
        return out

    def random(self, shape, dtype=DEFAULT_DTYPE):
        """Uniform [0, 1) on the stream's device (dropout masks)."""
        if self._dev is not None:
            return self._dev.random(shape, dtype=dtype)
        return self.host.random(shape, dtype=dtype)

    # -- discrete draws, always on the host -------------------------------------------
    def permutation(self, n: int) -> np.ndarray:
        return self.host.permutation(n)

    def integers(self, low, high=None, size=None):
        return self.host.integers(low, high, size=size)

    def choice(self, a, size=None, replace=True, p=None):
        return self.host.choice(a, size=size, replace=replace, p=p)

    # -- state for exact resume ------------------------------------------------------
    def get_state(self) -> dict:
        """The host stream's state (a dict of ints). CuPy's device stream state is not
        portable, so GPU code that must resume exactly re-seeds per step instead (see
        :meth:`fork`)."""
        return {"seed": self.seed, "host": self.host.bit_generator.state}

    def set_state(self, state: dict) -> None:
        self.host.bit_generator.state = state["host"]

    def fork(self, *keys: int) -> "Random":
        """A new independent stream seeded from (seed, *keys): e.g. ``rng.fork(step)``
        gives every training step its own dropout stream, so a resumed run draws the
        same masks as an uninterrupted one on both devices."""
        # len(keys) first: SeedSequence zero-pads its entropy, so (seed, k) and (seed, k, 0)
        # would otherwise give the same stream
        ss = np.random.SeedSequence([self.seed, len(keys), *map(int, keys)])
        return Random(int(ss.generate_state(1)[0]), device=self.device)


def as_rng(rng, device: str = "cpu") -> Random:
    """Accept a :class:`Random`, an int seed or None (seed 0)."""
    if isinstance(rng, Random):
        return rng
    return Random(0 if rng is None else int(rng), device=device)


def erf(x):
    """The error function on either device (for the exact, erf-form GELU of v1 configs).
    NumPy has none of its own: SciPy's on the CPU, cupyx.scipy's on the GPU."""
    if is_cupy_array(x):
        from cupyx.scipy.special import erf as _erf  # noqa: PLC0415
    else:
        from scipy.special import erf as _erf  # noqa: PLC0415
    return _erf(x)


# -- for data-parallel GPU ranks (minialbert.distributed) --------------------------------


def nccl_module():
    """``cupy.cuda.nccl`` (NCCL's communicator and constants), or a clear error."""
    cp = _require_gpu()
    try:
        from cupy.cuda import nccl  # noqa: PLC0415  (only this module imports CuPy)
    except Exception as e:
        raise RuntimeError(f"--device gpu with several ranks needs NCCL through CuPy, which failed to "
                           f"import ({type(e).__name__}: {e}); CuPy's wheels load NCCL from the "
                           "nvidia-nccl-cu12/13 package (`pip install nvidia-nccl-cu12`)") from None
    if not getattr(nccl, "available", True):
        raise RuntimeError("--device gpu with several ranks: this CuPy build has no NCCL support "
                           "(cupy.cuda.nccl.available is False); install nvidia-nccl-cu12/13")
    del cp
    return nccl


def cuda_device_count() -> int:
    """Number of CUDA devices this process sees (0 without CuPy or a GPU)."""
    if not gpu_available():
        return 0
    return int(_cupy.cuda.runtime.getDeviceCount())


def use_cuda_device(index: int) -> None:
    """Make device ``index`` (among the visible ones) current for this process."""
    _require_gpu().cuda.Device(int(index)).use()


def cuda_pci_bus_id(index: int) -> str:
    """The PCI bus id of visible device ``index`` (the same GPU has the same id in every
    process, whatever CUDA_VISIBLE_DEVICES numbers it)."""
    return str(_require_gpu().cuda.Device(int(index)).pci_bus_id)


def current_stream_ptr() -> int:
    """The current CUDA stream's handle, for NCCL calls queued on it."""
    return _require_gpu().cuda.get_current_stream().ptr


# ----------------------------------------------------------------------------------------
# reduced precision (minialbert/precision.py builds on these)
# ----------------------------------------------------------------------------------------

def bfloat16_dtype() -> np.dtype:
    """NumPy's bfloat16 dtype, from the ``ml_dtypes`` package (NumPy has none of its own)."""
    try:
        import ml_dtypes  # noqa: PLC0415
    except ImportError:
        raise RuntimeError("bfloat16 needs the ml_dtypes package (pip install ml_dtypes); "
                           "use fp16 or fp32 instead") from None
    return np.dtype(ml_dtypes.bfloat16)


def is_float_dtype(dtype) -> bool:
    """True for float16/32/64 and bfloat16 (whose NumPy kind is 'V', not 'f')."""
    dt = np.dtype(dtype)
    return dt.kind == "f" or dt.name == "bfloat16"


def finfo(dtype):
    """``np.finfo``, which also knows bfloat16 (through ``ml_dtypes.finfo``)."""
    dt = np.dtype(dtype)
    if dt.name == "bfloat16":
        import ml_dtypes  # noqa: PLC0415

        return ml_dtypes.finfo(dt)
    return np.finfo(dt)


def is_low_precision(dtype) -> bool:
    """float16 or bfloat16: the 2-byte types whose arithmetic minialbert does in float32."""
    dt = np.dtype(dtype)
    return dt.itemsize == 2 and is_float_dtype(dt)


def upcast(x):
    """``x`` as float32 when it is float16/bfloat16 (a new array), else ``x`` itself. Layers call
    it on entry, so statistics, exponentials and sums run in float32 (as PyTorch's autocast and
    its "opmath" do), and cast their outputs back with ``y.astype(x.dtype)``."""
    return x.astype(np.float32) if is_low_precision(x.dtype) else x


def matmul(a, b):
    """``a @ b`` for 2-D operands (transposed views allowed), float32 accumulation in every dtype.

    float32/float64: exactly ``a @ b``. float16/bfloat16 on the GPU: one cuBLAS GEMM on the
    tensor cores with float32 accumulation (CuPy's own 2-D ``matmul`` for float16; bfloat16,
    which CuPy's ``matmul`` refuses, goes through :func:`batched_matmul`). On the CPU, which
    has no float16 GEMM worth the name (NumPy's float16 ``matmul`` is a scalar loop), the
    product of the two float16 operands is formed in float32 and rounded once to float16:
    what a tensor core computes (exact products, float32 sums, one rounding of the result)."""
    if not is_low_precision(a.dtype):
        return a @ b
    if is_cupy_array(a):
        if a.dtype == np.float16 and b.dtype == np.float16:
            return a @ b                         # 2-D: cuBLAS gemmEx, float32 compute
        return batched_matmul(a, b)
    return (a.astype(np.float32) @ b.astype(np.float32)).astype(a.dtype)


def batched_matmul(a, b):
    """``a @ b`` over leading batch axes: a (..., M, K), b (..., K, N) -> (..., M, N).

    float32/float64 (and every NumPy dtype): ``a @ b`` as before, with the same CPU
    emulation as :func:`matmul` for float16/bfloat16. On the GPU in float16/bfloat16, ONE
    strided-batched cuBLAS GEMM (``gemmStridedBatchedEx``, float32 compute): CuPy's ``matmul``
    on more than two dimensions silently upcasts float16 to float32 (and fails for
    bfloat16), which would throw the tensor cores away. A transposed view of the last two
    axes (``x.swapaxes(-1, -2)``) is passed to cuBLAS as a transpose flag, not copied."""
    if not (is_cupy_array(a) and is_low_precision(a.dtype)):
        if is_low_precision(a.dtype):
            return (a.astype(np.float32) @ b.astype(np.float32)).astype(a.dtype)
        return a @ b
    return _cublas_batched_gemm(a, b)


def _gemm_operand(x, xp):
    """(array, transposed?) with each matrix of ``x`` stored densely, either row-major (N) or
    as the transpose of a row-major matrix (T), and the batch axes one uniform stride apart;
    anything else is copied to C order first."""
    *lead, R, C = x.shape
    isz = x.dtype.itemsize
    s = x.strides
    batch_ok = all(s[i] == s[i + 1] * x.shape[i + 1] for i in range(len(lead) - 1)) if lead else True
    if batch_ok and (not lead or s[len(lead) - 1] == R * C * isz):
        if s[-1] == isz and s[-2] == C * isz:
            return x, False
        if s[-2] == isz and s[-1] == R * isz:
            return x, True
    return xp.ascontiguousarray(x), False


def _gemm_plan(a, b, xp):
    """The arguments of one column-major ``cublasGemmStridedBatchedEx`` that computes the
    row-major ``a @ b`` over the batch axes: (first operand, second operand, dict of ints).

    cuBLAS is column-major: a row-major C (M x N) is the column-major C^T (N x M), so it
    computes C^T = op(B)^T op(A)^T: the operands swap, and cuBLAS gets N and M in that order.
    A row-major (M x K) matrix read column-major is its transpose, leading dimension K (op N);
    a transposed view of a row-major (K x M) matrix is read with op T and leading dimension M.
    tests/test_precision.py checks these arguments on the CPU against a NumPy model of the
    column-major routine."""
    lead = a.shape[:-2]
    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    a, ta = _gemm_operand(a, xp)
    b, tb = _gemm_operand(b, xp)
    args = dict(transa=1 if tb else 0, transb=1 if ta else 0, m=N, n=M, k=K,
                lda=K if tb else N, strideA=K * N,          # cuBLAS's A is our b
                ldb=M if ta else K, strideB=M * K,          # cuBLAS's B is our a
                ldc=N, strideC=M * N, batch=int(np.prod(lead)) if lead else 1)
    return b, a, args


def _cublas_batched_gemm(a, b):
    cp = _cupy
    if a.dtype != b.dtype:
        raise ValueError(f"batched_matmul: operands must share a dtype, got {a.dtype} and {b.dtype}")
    if a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"batched_matmul: shapes {tuple(a.shape)} @ {tuple(b.shape)} do not match")
    from cupy.cuda import cublas  # noqa: PLC0415  (this module is the only one that touches CuPy)

    M, K, N = a.shape[-2], a.shape[-1], b.shape[-1]
    out = cp.empty((*a.shape[:-2], M, N), dtype=a.dtype)
    if out.size == 0:
        return out
    if K == 0:
        out[...] = 0
        return out
    first, second, g = _gemm_plan(a, b, cp)
    dt = _CUDA_R[a.dtype.name]
    one = np.array(1.0, dtype=np.float32)          # host scalars (pointer mode host), float32:
    zero = np.array(0.0, dtype=np.float32)         # the compute type's
    cublas.gemmStridedBatchedEx(
        cp.cuda.device.get_cublas_handle(), g["transa"], g["transb"], g["m"], g["n"], g["k"],
        one.ctypes.data, first.data.ptr, dt, g["lda"], g["strideA"],
        second.data.ptr, dt, g["ldb"], g["strideB"],
        zero.ctypes.data, out.data.ptr, dt, g["ldc"], g["strideC"],
        g["batch"], _CUBLAS_COMPUTE_32F, _CUBLAS_GEMM_DEFAULT)
    return out


def gpu_memory_reset() -> None:
    """Return CuPy's cached blocks to the driver, so :func:`gpu_memory_peak` measures afresh."""
    if gpu_available():
        _cupy.get_default_memory_pool().free_all_blocks()


def gpu_memory_peak() -> int:
    """Bytes CuPy's memory pool holds: it keeps every block it ever needed, so after a
    :func:`gpu_memory_reset` this is the peak of what the work since needed at once
    (rounded up to the pool's block sizes). 0 without a GPU."""
    if not gpu_available():
        return 0
    return int(_cupy.get_default_memory_pool().total_bytes())


def gpu_name() -> str:
    """The current CUDA device's name ('' without one)."""
    if not gpu_available():
        return ""
    props = _cupy.cuda.runtime.getDeviceProperties(_cupy.cuda.Device().id)
    name = props.get("name", b"")
    return name.decode() if isinstance(name, bytes) else str(name)


def raw_module(code: str, name_expressions, options=("-std=c++14",)):
    """A compiled CUDA C++ module (``cupy.RawModule`` through NVRTC) with the given template
    instantiations; minialbert/layers/fused.py keeps its kernels' source."""
    cp = _require_gpu()
    return cp.RawModule(code=code, options=tuple(options), name_expressions=list(name_expressions))


def enable_tf32() -> None:
    """Let CuPy run float32 matmuls on the tensor cores in TF32 (10-bit mantissa inputs, float32
    accumulation). CuPy reads ``CUPY_TF32`` at its first float32 matmul and keeps the answer,
    so the setting is also pushed into CuPy's compute-type table directly."""
    cp = _require_gpu()
    os.environ["CUPY_TF32"] = "1"
    try:
        from cupy._core import _routines_linalg as _lin  # noqa: PLC0415

        _lin.set_compute_type(np.float32, 7)          # COMPUTE_TYPE_TF32
    except (ImportError, AttributeError):             # an older CuPy: the variable alone
        pass
    return cp
