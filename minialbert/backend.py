"""NumPy on the CPU, CuPy on the GPU: the one module that knows CuPy exists.

Everything else in minialbert asks an array which module it belongs to::

    xp = get_array_module(x)      # numpy or cupy
    y = xp.tanh(x)

and crosses the host/device boundary only through :func:`to_numpy` and
:func:`to_device`, at the edges (loading data, logging a scalar, saving a
checkpoint). A Python scalar from a device array goes through ``float()``.
"""
from __future__ import annotations

import numpy as np

DEVICES = ("cpu", "gpu")

#: The default dtype of parameters and activations. float64 is for gradient checks.
DEFAULT_DTYPE = np.float32
DTYPES = {"float32": np.float32, "float64": np.float64}

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


def current_stream_ptr() -> int:
    """The current CUDA stream's handle, for NCCL calls queued on it."""
    return _require_gpu().cuda.get_current_stream().ptr
