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
    assert w.any(w.rank == 1) and not w.any(False)
    g2 = {k: np.full(3, w.rank + 1.0, np.float32) for k in "xy"}
    w.allreduce_gradients(g2)
    w.allreduce_gradients(g2)                      # the cached reducer, bound to g2's arrays
    np.testing.assert_array_equal(g2["y"], 6)      # 1 + 2 = 3 on both ranks, then 3 + 3
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


def guard_writes(out):
    """Make any write under ``out`` on this rank an error (the world then aborts)."""
    import builtins
    import os
    import shutil
    from pathlib import Path

    root = str(Path(out).resolve())

    def inside(p):
        try:
            return str(Path(os.fsdecode(p)).resolve()).startswith(root)
        except TypeError:
            return False

    def refuse(what, p):
        raise RuntimeError(f"rank {D.get_world().rank} wrote {p} ({what}): only rank 0 may write")

    real_open = builtins.open

    def open_(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and inside(file):
            refuse("open " + mode, file)
        return real_open(file, mode, *a, **k)

    builtins.open = open_
    for name in ("replace", "rename", "mkdir", "makedirs", "remove", "unlink", "rmdir"):
        real = getattr(os, name)

        def wrapped(p, *a, _real=real, _name=name, **k):
            if inside(p):
                refuse("os." + _name, p)
            return _real(p, *a, **k)

        setattr(os, name, wrapped)
    real_rmtree = shutil.rmtree

    def rmtree(p, *a, **k):
        if inside(p):
            refuse("rmtree", p)
        return real_rmtree(p, *a, **k)

    shutil.rmtree = rmtree


def cli(w):
    """``minialbert ARGS`` (argv[2:]) with every write under --out refused on ranks other than 0."""
    from minialbert.cli import main as cli_main

    import minialbert.config as C

    # tiny's encoder has no dropout, its SOP classifier 0.1: off, so that N ranks, one big
    # batch and accumulation compute the same function (their dropout streams differ)
    C.PRESETS["tiny"] = dict(C.PRESETS["tiny"], classifier_dropout_prob=0.0)
    args = sys.argv[2:]
    if w.rank != 0:
        guard_writes(args[args.index("--out") + 1])
    sys.exit(cli_main(args))


def main():
    with D.abort_on_failure("mpi_worker"):
        w = D.get_world()
        globals()[sys.argv[1]](w)


if __name__ == "__main__":
    main()
