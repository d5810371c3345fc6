"""Data parallelism: one full model replica per process, gradients summed across processes.

``mpiexec -n N minialbert pretrain ...`` starts N copies of the same command. Each copy
(a *rank*) finds its place in the world through MPI (mpi4py), reads its own share of every
global batch, and after the backward pass the ranks add their gradients together with one
all-reduce over a few large flat buffers (:class:`GradientAllReducer`). Every rank then
holds the same gradient and applies the same update, so the replicas stay identical.

Two engines do the communication, none of it hand-written:

- **MPI** (mpi4py, ``pip install minialbert[mpi]``): process discovery, the control
  messages (settings fingerprint, broadcasts) and the all-reduce of NumPy buffers on CPU
  ranks;
- **NCCL** (``cupy.cuda.nccl``, reached through :mod:`minialbert.backend`): the all-reduce
  of CuPy buffers on GPU ranks, device to device, one GPU per rank. Its unique id is made
  on rank 0 and broadcast over MPI.

A plain ``minialbert pretrain`` (no MPI launcher in the environment) never imports mpi4py:
:func:`get_world` returns :class:`SingleProcess`, whose collectives are no-ops.

Failure handling: collective *setup* steps (the settings check, the NCCL handshake) run
under a watchdog (``MINIALBERT_DIST_TIMEOUT`` seconds, default 300) that aborts the whole
world instead of hanging, and :func:`abort_on_failure` turns an exception, or a non-zero
exit code, on any one rank into ``MPI_Abort`` of all ranks (a Python exception on one rank
would otherwise leave the others waiting forever in the next all-reduce).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import threading
import traceback
from contextlib import contextmanager
from typing import Iterable, Optional

import numpy as np

from . import backend
import socket

#: Environment variables set by MPI launchers (MPICH/Intel MPI hydra, Open MPI, MVAPICH,
#: PMIx) that give the world size. Their presence is what "launched under MPI" means.
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_SIZE")
RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "PMIX_RANK")
#: Seconds a setup collective may wait for the other ranks before the world is aborted.
TIMEOUT_VAR = "MINIALBERT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
#: Gradient bucket size: ALBERT-base's 11.7 M float32 gradients (47 MB) fit one bucket.
DEFAULT_BUCKET_BYTES = 64 << 20
INSTALL_HINT = "pip install minialbert[mpi]"


def launched_under_mpi(environ=None) -> Optional[str]:
    """The launcher variable that is set (e.g. ``"PMI_SIZE=2"``), or None for a plain process."""
    env = os.environ if environ is None else environ
    for k in SIZE_VARS:
        if env.get(k):
            return f"{k}={env[k]}"
    return None


def setup_timeout(environ=None) -> float:
    env = os.environ if environ is None else environ
    v = env.get(TIMEOUT_VAR)
    if not v:
        return DEFAULT_TIMEOUT_S
    try:
        t = float(v)
    except ValueError:
        t = -1.0
    if not t > 0:
        raise ValueError(f"{TIMEOUT_VAR}={v!r}: expected a positive number of seconds")
    return t


def settings_fingerprint(settings) -> str:
    """A short hash of a JSON-able settings dict (key order does not matter)."""
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def params_fingerprint(params: dict) -> str:
    """A hash of parameter *values* (host copies), to check that replicas are identical."""
    h = hashlib.sha256()
    for k in sorted(params):
        a = np.ascontiguousarray(backend.to_numpy(params[k]))
        h.update(k.encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# communicators


class SingleProcess:
    """The world of one process: every collective is the identity. The default ``comm``."""

    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    backend = "none"

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def allreduce_sum(self, array):
        """Sum ``array`` over ranks, in place; returns it."""
        return array

    def broadcast_array(self, array, root: int = 0):
        """Overwrite ``array`` (in place) with rank ``root``'s; returns it."""
        return array

    def bcast(self, obj, root: int = 0):
        """Rank ``root``'s Python object, on every rank."""
        return obj

    def allgather(self, obj) -> list:
        """Every rank's Python object, in rank order."""
        return [obj]

    def barrier(self, what: str = "a barrier") -> None:
        pass

    def check_same(self, settings, what: str = "the settings") -> str:
        """Check that every rank passes equal ``settings`` (a JSON-able dict); returns its
        fingerprint. Raises ValueError naming the keys that differ and the ranks."""
        return settings_fingerprint(settings)

    def abort(self, code: int = 1):
        os._exit(code)

    def allreduce_gradients(self, grads: dict) -> dict:
        """Sum a model's gradients over ranks in place with a :class:`GradientAllReducer`
        (built on first use, rebuilt when the dict changes); the identity for one process."""
        if self.size == 1:
            return grads
        red = getattr(self, "_reducer", None)
        if red is None or red.source is not grads or list(grads) != red.names:
            red = self._reducer = GradientAllReducer(self, grads)
            red.source = grads
        return red.allreduce(grads)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (e.g. a stop request)."""
        if self.size == 1:
            return bool(flag)
        return bool(self.allreduce_sum(np.array([1.0 if flag else 0.0]))[0] > 0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, backend={self.backend!r})"


class MPIComm(SingleProcess):
    """A world of MPI processes (mpi4py). Collectives on NumPy arrays go through MPI;
    on CuPy arrays too (staged through the host), unless the subclass :class:`NCCLComm`
    is used, which is what GPU training does."""

    backend = "mpi"

    def __init__(self, mpi_module, comm=None, timeout: Optional[float] = None):
        self.MPI = mpi_module
        self.comm = comm if comm is not None else mpi_module.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.timeout = setup_timeout() if timeout is None else float(timeout)
        # ranks on the same machine: for the GPU of each rank
        node = self.comm.Split_type(mpi_module.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    # -- the watchdog ------------------------------------------------------------------
    @contextmanager
    def deadline(self, what: str, seconds: Optional[float] = None):
        """Abort the whole world if the block does not finish within ``seconds``
        (default: the setup timeout). For setup collectives, never for training steps."""
        seconds = self.timeout if seconds is None else seconds
        done = threading.Event()

        def fire():
            if not done.is_set():
                sys.stderr.write(
                    f"minialbert: rank {self.rank} of {self.size}: {what} did not complete within "
                    f"{seconds:g} s (another rank failed, was started with other arguments, or is stuck); "
                    f"aborting all ranks. Set {TIMEOUT_VAR} to wait longer.\n")
                sys.stderr.flush()
                self.abort(1)

        t = threading.Timer(seconds, fire)
        t.daemon = True
        t.start()
        try:
            yield
        finally:
            done.set()
            t.cancel()

    # -- collectives ---------------------------------------------------------------------
    def allreduce_sum(self, array):
        if backend.is_cupy_array(array):          # no CUDA-aware MPI assumed: via the host
            host = backend.to_numpy(array).copy()
            self.comm.Allreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
            array[...] = backend.to_device(host, "gpu")
            return array
        if not (isinstance(array, np.ndarray) and array.flags.c_contiguous):
            raise TypeError("allreduce_sum: expected a C-contiguous NumPy or CuPy array, got "
                            f"{type(array).__name__}")
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def broadcast_array(self, array, root: int = 0):
        if backend.is_cupy_array(array):
            host = backend.to_numpy(array).copy()
            self.comm.Bcast(host, root=root)
            array[...] = backend.to_device(host, "gpu")
            return array
        self.comm.Bcast(array, root=root)
        return array

    def bcast(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def allgather(self, obj) -> list:
        return self.comm.allgather(obj)

    def barrier(self, what: str = "a barrier") -> None:
        with self.deadline(what):
            self.comm.Barrier()

    def check_same(self, settings, what: str = "the settings") -> str:
        fp = settings_fingerprint(settings)
        with self.deadline(f"comparing {what} across ranks"):
            fps = self.comm.allgather(fp)
            if len(set(fps)) == 1:
                return fp
            everyone = self.comm.allgather(settings)
        raise ValueError(describe_mismatch(everyone, what))

    def abort(self, code: int = 1):
        sys.stderr.flush()
        sys.stdout.flush()
        self.comm.Abort(int(code) or 1)


class NCCLComm(MPIComm):
    """GPU ranks: gradients all-reduced by NCCL on device buffers (no host copies);
    MPI still carries the control messages. One GPU per rank, chosen by local rank."""

    backend = "nccl"

    def __init__(self, mpi_module=None, comm=None, timeout: Optional[float] = None):
        if mpi_module is None:                   # one rank, no MPI (the GPU unit tests)
            self.MPI, self.comm = None, None
            self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
            self.timeout = setup_timeout() if timeout is None else float(timeout)
        else:
            super().__init__(mpi_module, comm, timeout)
        self.device_id = select_gpu(self.local_rank, self.local_size, self if self.comm is not None else None)
        nccl = backend.nccl_module()
        with self.deadline("the NCCL handshake"):
            uid = nccl.get_unique_id() if self.rank == 0 else None
            if self.comm is not None:
                uid = self.comm.bcast(uid, root=0)
            self.nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                       np.dtype(np.float16): nccl.NCCL_FLOAT16}
        self._sum = nccl.NCCL_SUM

    @contextmanager
    def deadline(self, what: str, seconds: Optional[float] = None):
        if self.comm is None:
            yield
            return
        with super().deadline(what, seconds):
            yield

    def allreduce_sum(self, array):
        if not backend.is_cupy_array(array):
            if self.comm is None:
                return array
            return super().allreduce_sum(array)
        if not array.flags.c_contiguous:
            raise TypeError("allreduce_sum: expected a C-contiguous CuPy array")
        dt = self._types.get(np.dtype(array.dtype))
        if dt is None:
            raise TypeError(f"allreduce_sum: NCCL sums float16/32/64 here, got {array.dtype}")
        self.nccl.allReduce(array.data.ptr, array.data.ptr, array.size, dt, self._sum,
                            backend.current_stream_ptr())
        return array

    def broadcast_array(self, array, root: int = 0):
        if not backend.is_cupy_array(array) or self.comm is None:
            return super().broadcast_array(array, root) if self.comm is not None else array
        nccl_t = self._types.get(np.dtype(array.dtype))
        if nccl_t is None:
            return super().broadcast_array(array, root)
        self.nccl.bcast(array.data.ptr, array.size, nccl_t, root, backend.current_stream_ptr())
        return array

    def bcast(self, obj, root: int = 0):
        return obj if self.comm is None else super().bcast(obj, root)

    def allgather(self, obj) -> list:
        return [obj] if self.comm is None else super().allgather(obj)

    def barrier(self, what: str = "a barrier") -> None:
        if self.comm is not None:
            super().barrier(what)

    def check_same(self, settings, what: str = "the settings") -> str:
        if self.comm is None:
            return settings_fingerprint(settings)
        return super().check_same(settings, what)

    def abort(self, code: int = 1):
        try:
            self.nccl.abort()
        except Exception:
            pass
        if self.comm is None:
            os._exit(code)
        super().abort(code)


def select_gpu(local_rank: int, local_size: int, comm=None) -> int:
    """Make GPU ``local_rank % visible`` this process's device, and check (over ``comm``)
    that no two ranks got the same physical GPU (NCCL refuses two ranks on one GPU). Ranks
    given one GPU each through their own ``CUDA_VISIBLE_DEVICES`` all pick index 0 of
    different GPUs, which is fine."""
    n = backend.cuda_device_count()
    if n < 1:
        raise RuntimeError("--device gpu under MPI: no CUDA GPU is visible to this rank "
                           f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    dev = local_rank % n
    backend.use_cuda_device(dev)
    if comm is not None:
        mine = (socket.gethostname(), backend.cuda_pci_bus_id(dev))
        with _deadline_of(comm, "choosing each rank's GPU"):
            everyone = comm.allgather(mine)
        shared = [r for r, g in enumerate(everyone) if g == mine]
        if len(shared) > 1:
            raise RuntimeError(f"--device gpu: ranks {', '.join(map(str, shared))} would share GPU {mine[1]} on "
                               f"{mine[0]} ({local_size} ranks on this machine, {n} visible GPU(s)); start one "
                               "rank per GPU (mpiexec -n <number of GPUs>), or give each rank its own "
                               "CUDA_VISIBLE_DEVICES")
    return dev


def _deadline_of(comm, what):
    return comm.deadline(what) if hasattr(comm, "deadline") else _nullcontext()


@contextmanager
def _nullcontext():
    yield


def describe_mismatch(everyone: list, what: str) -> str:
    """The error for ranks started with different settings: which keys, which ranks."""
    ref = everyone[0]
    lines = []
    if isinstance(ref, dict):
        keys = sorted(set().union(*[set(s) for s in everyone if isinstance(s, dict)]))
        for k in keys:
            vals = [s.get(k) if isinstance(s, dict) else None for s in everyone]
            if any(v != vals[0] for v in vals):
                by = {}
                for r, v in enumerate(vals):
                    by.setdefault(json.dumps(v, default=str), []).append(r)
                shown = "; ".join(f"ranks {','.join(map(str, rs))}: {v}" for v, rs in by.items())
                lines.append(f"{k}: {shown}")
    detail = " | ".join(lines[:8]) or "values differ"
    return (f"the {len(everyone)} ranks were started with different {what} ({detail}); "
            "every rank must run the same command with the same files")


# --------------------------------------------------------------------------------------
# the world


_WORLD = None


def get_world(device: str = "cpu"):
    """This process's communicator, created once: :class:`SingleProcess` when no MPI
    launcher started us (mpi4py is then never imported), else :class:`MPIComm`, or
    :class:`NCCLComm` for ``device == "gpu"`` with more than one rank."""
    global _WORLD
    if _WORLD is None:
        how = launched_under_mpi()
        _WORLD = SingleProcess() if how is None else MPIComm(import_mpi(how))
    if device == "gpu" and _WORLD.size > 1 and not isinstance(_WORLD, NCCLComm):
        _WORLD = NCCLComm(_WORLD.MPI, _WORLD.comm, _WORLD.timeout)
    return _WORLD


def current_world():
    """The world made by :func:`get_world`, or None (no collective has been set up)."""
    return _WORLD


def import_mpi(how: str = "an MPI launcher"):
    """``mpi4py.MPI``, or a clear error naming the extra to install."""
    try:
        from mpi4py import MPI  # noqa: PLC0415
    except ImportError as e:
        raise RuntimeError(
            f"this process was started by an MPI launcher ({how}) for data-parallel training, "
            f"but mpi4py cannot be imported ({e}); install it with `{INSTALL_HINT}` "
            "(or run without mpiexec for a single process)") from None
    return MPI


@contextmanager
def abort_on_failure(command: str = "minialbert"):
    """Around a whole command: an exception on one rank of a multi-rank world prints
    that rank's error (traceback for unexpected ones) and aborts every rank, instead of
    leaving the others blocked in a collective. A single process is untouched."""
    try:
        yield
    except BaseException as e:  # noqa: BLE001
        w = _WORLD
        if w is None or w.size == 1 or isinstance(e, SystemExit) and not e.code:
            raise
        head = f"{command} [rank {w.rank} of {w.size}]"
        if isinstance(e, (ValueError, FileNotFoundError, FileExistsError, RuntimeError)):
            sys.stderr.write(f"{head}: error: {e}\n")
        elif isinstance(e, KeyboardInterrupt):
            sys.stderr.write(f"{head}: interrupted\n")
        else:
            sys.stderr.write(f"{head}: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        w.abort(130 if isinstance(e, KeyboardInterrupt) else 1)


def rank_label() -> str:
    """``" [rank r of N]"`` on a rank of several, else ``""`` (for messages)."""
    w = _WORLD
    return f" [rank {w.rank} of {w.size}]" if w is not None and w.size > 1 else ""


def exit_code(rc: int, command: str = "minialbert") -> int:
    """A command's exit code; a non-zero one on a rank of a multi-rank world aborts all
    ranks (the others may be blocked waiting for this one)."""
    w = _WORLD
    if rc and w is not None and w.size > 1:
        sys.stderr.write(f"{command}{rank_label()}: exit code {rc}; aborting all ranks\n")
        w.abort(rc)
    return rc


def check_resume_world(saved_size: int, comm, out) -> None:
    """``--resume`` with another number of ranks than the run was trained with is an error:
    the global batch N*B*K, and so the run, would change."""
    saved_size = int(saved_size or 1)
    if saved_size == comm.size:
        return
    how = (f"mpiexec -n {saved_size} minialbert pretrain --resume ..." if saved_size > 1 else
           "minialbert pretrain --resume ... without mpiexec")
    raise ValueError(f"--resume: the run in {out} was trained on {saved_size} rank{'s' * (saved_size > 1)} "
                     f"and this is {comm.size}; the global batch (ranks x --batch-size x --grad-accum) "
                     f"would change. Resume it with the same number: {how}")


# --------------------------------------------------------------------------------------
# gradients


def plan_buckets(sizes: Iterable[int], itemsize: int, bucket_bytes: int = DEFAULT_BUCKET_BYTES) -> list:
    """Split tensors (element counts, in order) into consecutive buckets of at most
    ``bucket_bytes`` each (a larger tensor gets a bucket of its own). Returns a list of
    lists of indices."""
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be positive, got {bucket_bytes}")
    buckets, cur, cur_bytes = [], [], 0
    for i, n in enumerate(sizes):
        b = int(n) * itemsize
        if cur and cur_bytes + b > bucket_bytes:
            buckets.append(cur)
            cur, cur_bytes = [], 0
        cur.append(i)
        cur_bytes += b
    if cur:
        buckets.append(cur)
    return buckets


class GradientAllReducer:
    """Sum a model's gradients over ranks with one collective per bucket.

    The gradient tensors (in ``grads``' order, the same on every rank) are laid out
    back to back in a few flat buffers of at most ``bucket_bytes`` (one for ALBERT-base:
    its 11.7 M float32 gradients are 47 MB), grouped by dtype. With ``bind=True`` the
    dict's arrays are replaced by views into those buffers, so the backward pass
    accumulates straight into them and no copy is needed; an array that was replaced
    since (``grads[k] = ...``) is copied in and out instead, so the result is right
    either way. Buffers live on the gradients' device (NumPy or CuPy)."""

    def __init__(self, comm, grads: dict, bucket_bytes: int = DEFAULT_BUCKET_BYTES, bind: bool = True):
        self.comm = comm
        self.names = list(grads)
        self.buckets = []   # (flat buffer, [(name, start, stop, shape)])
        by_dtype = {}
        for k in self.names:
            by_dtype.setdefault(np.dtype(grads[k].dtype), []).append(k)
        for dt, names in by_dtype.items():
            xp = backend.get_array_module(grads[names[0]])
            for idx in plan_buckets([grads[k].size for k in names], dt.itemsize, bucket_bytes):
                members = [names[i] for i in idx]
                total = sum(int(grads[k].size) for k in members)
                flat = xp.zeros(total, dtype=dt)
                layout, o = [], 0
                for k in members:
                    n = int(grads[k].size)
                    layout.append((k, o, o + n, grads[k].shape))
                    o += n
                self.buckets.append((flat, layout))
        self.views = {}
        for flat, layout in self.buckets:
            for k, a, b, shape in layout:
                self.views[k] = flat[a:b].reshape(shape)
        if bind:
            for k, v in self.views.items():
                v[...] = grads[k]
                grads[k] = v

    @property
    def num_buckets(self) -> int:
        return len(self.buckets)

    @property
    def nbytes(self) -> int:
        return int(sum(f.nbytes for f, _ in self.buckets))

    def allreduce(self, grads: dict, scale: Optional[float] = None) -> dict:
        """Sum ``grads`` over all ranks in place (times ``scale`` if given); returns it."""
        if list(grads) != self.names:
            raise ValueError("GradientAllReducer: the gradient names changed since it was built")
        for flat, layout in self.buckets:
            loose = [(k, a, b) for k, a, b, _ in layout if grads[k] is not self.views[k]]
            for k, a, b in loose:
                flat[a:b] = grads[k].reshape(-1)
            self.comm.allreduce_sum(flat)
            if scale is not None and scale != 1:
                flat *= flat.dtype.type(scale)
            for k, a, b in loose:
                grads[k][...] = flat[a:b].reshape(grads[k].shape)
        return grads


def dropout_stream(root, comm, *keys: int):
    """The dropout stream of one micro-batch: ``root.fork(*keys)`` for one process (as before
    data parallelism, so single-process runs and their checkpoints are unchanged), and
    ``root.fork(*keys, rank)`` on a rank of several, so that ranks draw different masks.
    Pretraining's keys are (step, micro-batch), fine-tuning's (step,)."""
    if comm.size == 1:
        return root.fork(*keys)
    return root.fork(*keys, comm.rank)


def rank_slice(batch: dict, comm) -> dict:
    """This rank's rows of a global micro-batch (N*B rows -> rows r*B .. (r+1)*B).

    With every rank reading the same global stream of N*B-row micro-batches and keeping
    its slice, N ranks of B see exactly the examples one process of N*B sees, in the same
    micro-batches."""
    if comm.size == 1:
        return batch
    n = None
    for v in batch.values():
        if hasattr(v, "shape") and getattr(v, "ndim", 0) >= 1:
            n = v.shape[0]
            break
    if n is None or n % comm.size:
        raise ValueError(f"rank_slice: a global micro-batch of {n} rows does not split over {comm.size} ranks")
    b = n // comm.size
    lo, hi = comm.rank * b, (comm.rank + 1) * b
    return {k: (v[lo:hi] if hasattr(v, "shape") and getattr(v, "ndim", 0) >= 1 else v)
            for k, v in batch.items()}


class RankSlicedLoader:
    """Wrap a batch stream that yields global micro-batches of N*B rows: yields this
    rank's B rows of each. ``state_dict``/``load_state_dict`` are the wrapped stream's
    (the same on every rank)."""

    def __init__(self, stream, comm):
        self.stream, self.comm = stream, comm

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return rank_slice(next(self.stream), self.comm)

    def state_dict(self):
        return self.stream.state_dict()

    def load_state_dict(self, state) -> None:
        self.stream.load_state_dict(state)

    def __getattr__(self, name):
        return getattr(self.stream, name)
