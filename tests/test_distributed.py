"""Data parallelism (minialbert.distributed): buckets, the reducer, world detection, and
2-rank runs through ``mpiexec`` (skipped where mpi4py or mpiexec is missing)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minialbert import distributed as D

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("mpi_worker.py")


def _have_mpi() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return shutil.which("mpiexec") is not None


needs_mpi = pytest.mark.skipif(not _have_mpi(), reason="needs mpi4py and mpiexec (pip install minialbert[mpi])")


def _env(**extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    for k in D.SIZE_VARS + D.RANK_VARS:           # the suite itself may run under a launcher
        env.pop(k, None)
    env.update(extra)
    return env


def mpiexec(n, args, timeout=120, **env):
    return subprocess.run([shutil.which("mpiexec"), "-n", str(n), sys.executable, *args],
                          capture_output=True, text=True, timeout=timeout, env=_env(**env), cwd=ROOT)


# -- pure parts ----------------------------------------------------------------------


def test_plan_buckets():
    assert D.plan_buckets([3, 3, 3], 4, bucket_bytes=24) == [[0, 1], [2]]
    assert D.plan_buckets([10, 1, 1], 4, bucket_bytes=8) == [[0], [1, 2]]   # a big tensor: its own
    assert D.plan_buckets([5] * 4, 4, bucket_bytes=1 << 20) == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match="bucket_bytes"):
        D.plan_buckets([1], 4, 0)


class _Doubling(D.SingleProcess):
    """A stand-in for two ranks holding the same gradients: the sum doubles them."""

    def __init__(self):
        self.calls = []

    def allreduce_sum(self, array):
        self.calls.append(array.size)
        array *= 2
        return array


def test_reducer_one_call_per_bucket_and_binds_views():
    rng = np.random.default_rng(0)
    grads = {k: rng.standard_normal(s).astype(np.float32) for k, s in
             [("emb", (7, 4)), ("w", (4, 4)), ("b", (4,)), ("ln", (4,))]}
    want = {k: 2 * v for k, v in grads.items()}
    comm = _Doubling()
    red = D.GradientAllReducer(comm, grads)        # default 64 MB: one bucket
    assert red.num_buckets == 1 and red.nbytes == 4 * (28 + 16 + 4 + 4)
    assert all(np.shares_memory(grads[k], red.views[k]) for k in grads)   # bound: no copies
    red.allreduce(grads)
    assert comm.calls == [52]
    for k in grads:
        np.testing.assert_array_equal(grads[k], want[k])
    # a gradient replaced after binding is copied in and out, still summed
    grads["w"] = grads["w"].copy()
    red.allreduce(grads, scale=0.5)
    for k in grads:
        np.testing.assert_array_equal(grads[k], want[k])
    small = D.GradientAllReducer(_Doubling(), {k: v.copy() for k, v in grads.items()}, bucket_bytes=64)
    assert small.num_buckets == 3


def test_reducer_groups_dtypes_and_rejects_renamed_grads():
    grads = {"a": np.ones(3, np.float32), "b": np.ones(2, np.float64), "c": np.ones(2, np.float32)}
    red = D.GradientAllReducer(_Doubling(), grads)
    assert sorted(f.dtype.name for f, _ in red.buckets) == ["float32", "float64"]
    red.allreduce(grads)
    assert all((g == 2).all() for g in grads.values())
    with pytest.raises(ValueError, match="names changed"):
        red.allreduce({"a": grads["a"]})


def test_rank_slice_gives_each_rank_its_rows():
    batch = {"input_ids": np.arange(16).reshape(8, 2), "labels": np.arange(8)}

    class R(D.SingleProcess):
        size = 2

        def __init__(self, r):
            self.rank = r

    parts = [D.rank_slice(batch, R(r)) for r in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([p["input_ids"] for p in parts]), batch["input_ids"])
    np.testing.assert_array_equal(parts[1]["labels"], [4, 5, 6, 7])
    assert D.rank_slice(batch, D.SingleProcess()) is batch
    with pytest.raises(ValueError, match="does not split"):
        D.rank_slice({"x": np.arange(3)}, R(0))


def test_dropout_streams_differ_per_rank_and_keep_the_single_process_stream():
    from minialbert.backend import Random

    class R(D.SingleProcess):
        size = 2

        def __init__(self, r):
            self.rank = r

    root = Random(0).fork(2)
    one = D.dropout_stream(root, D.SingleProcess(), 5, 1).random(4)
    np.testing.assert_array_equal(one, root.fork(5, 1).random(4))       # unchanged for one process
    r0, r1 = (D.dropout_stream(root, R(r), 5, 1).random(4) for r in (0, 1))
    assert not np.array_equal(r0, r1) and not np.array_equal(r0, one)
    assert D.SingleProcess().any(True) and not D.SingleProcess().any(False)


def test_launcher_detection_and_timeout_setting():
    assert D.launched_under_mpi({}) is None
    assert D.launched_under_mpi({"PMI_SIZE": "2"}) == "PMI_SIZE=2"
    assert D.launched_under_mpi({"OMPI_COMM_WORLD_SIZE": "4"}) == "OMPI_COMM_WORLD_SIZE=4"
    assert D.setup_timeout({}) == D.DEFAULT_TIMEOUT_S
    assert D.setup_timeout({D.TIMEOUT_VAR: "2.5"}) == 2.5
    with pytest.raises(ValueError, match=D.TIMEOUT_VAR):
        D.setup_timeout({D.TIMEOUT_VAR: "soon"})


def test_mismatch_message_names_the_keys_and_ranks():
    msg = D.describe_mismatch([{"batch_size": 4, "lr": 1}, {"batch_size": 8, "lr": 1}], "the settings")
    assert "batch_size" in msg and "ranks 0: 4" in msg and "ranks 1: 8" in msg and "lr" not in msg


def test_plain_process_never_imports_mpi4py():
    code = ("import sys; import minialbert.distributed as D; import minialbert.train; "
            "w = D.get_world(); assert w.size == 1 and w.rank == 0, w; "
            "assert 'mpi4py' not in sys.modules; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_missing_mpi4py_under_a_launcher_names_the_extra(tmp_path):
    block = tmp_path / "block" / "mpi4py"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('No module named mpi4py (blocked by the test)')\n")
    code = "import minialbert.distributed as D; D.get_world()"
    env = _env(PMI_SIZE="2", PMI_RANK="0")
    env["PYTHONPATH"] = str(tmp_path / "block") + os.pathsep + env["PYTHONPATH"]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    assert "pip install minialbert[mpi]" in r.stderr and "PMI_SIZE=2" in r.stderr
    # the command: one clear line, no traceback, nothing written
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "minialbert", "pretrain", "--steps", "1", "--warmup", "0", "--no-progress",
                        "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    assert "minialbert pretrain: error:" in r.stderr and "pip install minialbert[mpi]" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


# -- two ranks through mpiexec ----------------------------------------------------------------


@needs_mpi
def test_two_rank_collectives_and_bucketed_reducer():
    r = mpiexec(2, [str(WORKER), "collectives"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "rank 0: collectives ok" in r.stdout and "rank 1: collectives ok" in r.stdout


@needs_mpi
def test_two_ranks_with_different_settings_stop_with_a_clear_error():
    r = mpiexec(2, [str(WORKER), "mismatch"], timeout=60)
    assert r.returncode != 0
    assert "different the command-line settings" in r.stderr or "different" in r.stderr
    assert "batch_size: ranks 0: 4; ranks 1: 5" in r.stderr, r.stderr


@needs_mpi
def test_a_failing_rank_aborts_the_world_instead_of_hanging():
    r = mpiexec(2, [str(WORKER), "fail"], timeout=60)
    assert r.returncode != 0
    assert "[rank 1 of 2]: error: rank 1 cannot read its shard" in r.stderr, r.stderr


@needs_mpi
def test_setup_collective_times_out_and_aborts():
    r = mpiexec(2, [str(WORKER), "timeout"], timeout=60, MINIALBERT_DIST_TIMEOUT="2")
    assert r.returncode != 0
    assert "the start-up barrier did not complete within 2 s" in r.stderr, r.stderr


# -- one GPU: what a single device can test of the NCCL path --------------------------------


def _need_gpu():
    from minialbert import backend

    if not backend.gpu_available():
        pytest.skip("no CUDA GPU")
    return backend


@pytest.mark.gpu
def test_one_rank_nccl_allreduce_on_device_buffers():
    backend = _need_gpu()
    comm = D.NCCLComm()                          # one rank, no MPI: a 1-member NCCL communicator
    assert comm.size == 1 and comm.backend == "nccl"
    x = backend.to_device(np.arange(10, dtype=np.float32), "gpu")
    ptr = x.data.ptr
    assert comm.allreduce_sum(x) is x and x.data.ptr == ptr          # in place, on the device
    np.testing.assert_array_equal(backend.to_numpy(x), np.arange(10))
    for dt in (np.float64, np.float16):
        y = backend.to_device(np.ones(3, dt), "gpu")
        comm.allreduce_sum(y)
        np.testing.assert_array_equal(backend.to_numpy(y), 1)


@pytest.mark.gpu
def test_one_rank_nccl_bucketed_reducer_on_model_gradients():
    backend = _need_gpu()
    from minialbert.config import AlbertConfig
    from minialbert.heads import AlbertForPreTraining

    m = AlbertForPreTraining(AlbertConfig.from_preset("tiny", vocab_size=50), seed=0)
    m.to("gpu")
    rng = np.random.default_rng(0)
    for g in m.grads.values():
        g[...] = backend.to_device(rng.standard_normal(g.shape).astype(g.dtype), "gpu")
    want = {k: backend.to_numpy(v).copy() for k, v in m.grads.items()}
    comm = D.NCCLComm()
    red = D.GradientAllReducer(comm, m.grads, bucket_bytes=1 << 14)
    assert red.num_buckets > 1
    assert all(backend.is_cupy_array(f) for f, _ in red.buckets)
    red.allreduce(m.grads, scale=0.5)
    for k in want:
        np.testing.assert_allclose(backend.to_numpy(m.grads[k]), 0.5 * want[k], rtol=1e-6)



def test_gpu_choice_by_local_rank_and_two_ranks_on_one_gpu_is_a_clear_error(monkeypatch):
    # the selection logic with the CUDA runtime faked (the real one is in the gpu tests)
    import socket

    from minialbert import backend

    used = []
    monkeypatch.setattr(backend, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(backend, "use_cuda_device", used.append)
    monkeypatch.setattr(backend, "cuda_pci_bus_id", lambda i: f"0000:0{i}:00.0")

    class Peers(D.SingleProcess):
        def __init__(self, others):
            self.others = others

        def allgather(self, obj):
            return [obj, *self.others]

    host = socket.gethostname()
    assert D.select_gpu(1, 2, Peers([(host, "0000:00:00.0")])) == 1 and used == [1]
    with pytest.raises(RuntimeError, match="ranks 0, 1 would share GPU 0000:01:00.0"):
        D.select_gpu(3, 4, Peers([(host, "0000:01:00.0")]))
    assert D.select_gpu(0, 2, Peers([("other-node", "0000:00:00.0")])) == 0    # same id, other machine
    monkeypatch.setattr(backend, "cuda_device_count", lambda: 0)
    with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
        D.select_gpu(0, 1)
