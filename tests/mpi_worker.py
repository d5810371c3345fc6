"""Run by tests/test_distributed.py under ``mpiexec -n 2``: one scenario per argv[1]."""
import sys
import time

import numpy as np

from minialbert import distributed as D


def collectives(w):
    assert w.size == 2 and w.backend == "mpi", w
    a = np.full(5, w.rank + 1, np.float32)
    assert w.allreduce_sum(a) is a
    np.testing.assert_array_equal(a, 3)
    b = np.full(3, float(w.rank), np.float64)
    w.broadcast_array(b, root=1)
    np.testing.assert_array_equal(b, 1)
    assert w.bcast({"x": w.rank}, root=0) == {"x": 0}
    assert w.allgather(w.rank) == [0, 1]
    w.check_same({"lr": 1e-3, "batch_size": 4})
    # three gradients, two buckets (bucket of 40 bytes = 10 float32)
    rng = np.random.default_rng(w.rank)
    grads = {"a": rng.standard_normal((2, 3)).astype(np.float32),
             "b": rng.standard_normal(4).astype(np.float32),
             "c": rng.standard_normal((3, 3)).astype(np.float32)}
    every = w.allgather({k: v.copy() for k, v in grads.items()})
    calls = []
    real = w.allreduce_sum
    w.allreduce_sum = lambda x: (calls.append(x.size), real(x))[1]
    red = D.GradientAllReducer(w, grads, bucket_bytes=40)
    grads["b"] = grads["b"].copy()              # a loose array: copied in and out
    red.allreduce(grads)
    assert calls == [10, 9], calls
    for k in grads:
        np.testing.assert_allclose(grads[k], every[0][k] + every[1][k], rtol=1e-6)
    print(f"rank {w.rank}: collectives ok", flush=True)


def mismatch(w):
    w.check_same({"batch_size": 4 + w.rank, "lr": 1e-3}, "the command-line settings")


def fail(w):
    if w.rank == 1:
        raise RuntimeError("rank 1 cannot read its shard")
    w.allreduce_sum(np.ones(3))          # would wait forever without the abort


def timeout(w):
    if w.rank == 1:
        time.sleep(60)
    w.barrier("the start-up barrier")


def main():
    with D.abort_on_failure("mpi_worker"):
        w = D.get_world()
        globals()[sys.argv[1]](w)


if __name__ == "__main__":
    main()
