"""Data-parallel throughput on one machine: 1 rank x 2 BLAS threads against 2 ranks x 1 thread
(``mpiexec -n 2``), same global batch, side by side and alternating (A B C A B C ...) so that
a machine loaded by other work slows all alike; C = 1 rank x 1 thread, the reference that
shows what the threads themselves cost. Also the time of the gradient all-reduce.

    python benchmarks/data_parallel.py                                 # tiny and albert-base-v2
    python benchmarks/data_parallel.py --presets tiny --rounds 3
    python benchmarks/data_parallel.py --volume                        # gradient bytes per step

One "step" is what a pretraining step does with the model: zero the gradients, forward and
backward on this rank's rows of the global batch, sum the gradients over the ranks with one
bucketed all-reduce (minialbert.distributed.GradientAllReducer), clip, LAMB update. The
global batch G is split G/N per rank; tokens/s counts all G*T tokens. Needs mpi4py and
mpiexec (pip install minialbert[mpi]).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = {"tiny": dict(vocab=2000, batch=32, seq=64, steps=6),
          "albert-base-v2": dict(vocab=30000, batch=8, seq=128, steps=2)}


def worker(args) -> None:
    sys.path.insert(0, str(HERE))
    from bench_step import make_batch  # noqa: PLC0415

    from minialbert import distributed as D  # noqa: PLC0415
    from minialbert import optim  # noqa: PLC0415
    from minialbert.config import AlbertConfig  # noqa: PLC0415
    from minialbert.heads import AlbertForPreTraining  # noqa: PLC0415

    with D.abort_on_failure("data_parallel"):
        comm = D.get_world()
        cfg = AlbertConfig.from_preset(args.preset, vocab_size=args.vocab)
        model = AlbertForPreTraining(cfg, seed=0)
        opt = optim.make_optimizer("lamb", model, lr=1e-4)
        reducer = D.GradientAllReducer(comm, model.grads)
        batch = D.rank_slice(make_batch(args.batch, args.seq, cfg.vocab_size, 20), comm)
        steps, reduce_t = [], []
        for i in range(args.steps + 1):
            comm.barrier("the step barrier")
            t0 = time.perf_counter()
            model.zero_grad()
            model.forward(**batch)
            model.backward()
            t1 = time.perf_counter()
            reducer.allreduce(model.grads)
            t2 = time.perf_counter()
            optim.clip_grad_norm(model.grads, 1.0)
            opt.step(model.grads, 1e-4)
            t3 = time.perf_counter()
            if i:                              # the first step is a warm-up
                steps.append(t3 - t0)
                reduce_t.append(t2 - t1)
        times = comm.allgather(statistics.median(steps))
        if comm.rank == 0:
            print(json.dumps({"step_s": max(times), "allreduce_s": statistics.median(reduce_t),
                              "grad_bytes": reducer.nbytes, "buckets": reducer.num_buckets,
                              "ranks": comm.size, "params": model.num_parameters()}))


# (name, preset, overrides, BERT-style count without the E->H projection)
VOLUME_ROWS = [
    ("ALBERT base", "albert-base-v2", {}, False),
    ("BERT base", "bert-base", {}, True),
    ("ALBERT large", "albert-large-v2", {}, False),
    ("BERT large", "bert-large", {}, True),
    ("ALBERT xlarge", "albert-xlarge-v2", {}, False),
    ("BERT xlarge (H=2048, L=24)", "bert-large",
     dict(hidden_size=2048, embedding_size=2048, intermediate_size=8192, num_attention_heads=16), True),
    ("ALBERT xxlarge", "albert-xxlarge-v2", {}, False),
    ("BERT of xxlarge's shape (H=4096, L=12)", "bert-large",
     dict(hidden_size=4096, embedding_size=4096, intermediate_size=16384, num_attention_heads=64,
          num_hidden_layers=12, num_hidden_groups=12), True),
]


def volume(ranks: int = 8) -> None:
    """The gradient bytes all-reduced per step, from parameter counts (no run needed)."""
    from minialbert.config import AlbertConfig, count_parameters  # noqa: PLC0415

    print(f"| model | parameters | gradient MB (float32) | sent per rank per step, ring, N={ranks}: MB |")
    print("|---|---|---|---|")
    for name, preset, over, bert in VOLUME_ROWS:
        n = count_parameters(AlbertConfig.from_preset(preset, **over), head="pretraining",
                             projection=not bert)
        mb = 4 * n / 1e6
        print(f"| {name} | {n / 1e6:,.1f}M | {mb:,.0f} | {2 * (ranks - 1) / ranks * mb:,.0f} |")


def run(preset, shape, ranks, threads) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    for k in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE"):
        env.pop(k, None)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--preset", preset,
           "--vocab", str(shape["vocab"]), "--batch", str(shape["batch"]), "--seq", str(shape["seq"]),
           "--steps", str(shape["steps"])]
    if ranks > 1:
        cmd = [shutil.which("mpiexec"), "-n", str(ranks)] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--rounds", type=int, default=2, help="A/B alternations per preset")
    ap.add_argument("--volume", action="store_true",
                    help="print the gradient bytes per step of ALBERT and BERT shapes and exit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    ap.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.volume:
        return volume()
    if shutil.which("mpiexec") is None:
        raise SystemExit("needs mpiexec: pip install minialbert[mpi]")
    print(f"# {platform.machine()}, {os.cpu_count()} cores; steps timed after one warm-up, median; "
          f"{args.rounds} alternating rounds")
    print("| model | global batch x T | 1 rank x 2 threads: step s | 2 ranks x 1 thread: step s | "
          "speed-up | 1 rank x 1 thread: step s | all-reduce s (2 ranks) | gradient MB |")
    print("|---|---|---|---|---|---|---|---|")
    out = {}
    for p in args.presets:
        s = SHAPES[p]
        a, b, c = [], [], []
        for _ in range(args.rounds):
            a.append(run(p, s, 1, 2))
            b.append(run(p, s, 2, 1))
            c.append(run(p, s, 1, 1))
        ta, tb, tc = (statistics.median(x["step_s"] for x in r) for r in (a, b, c))
        red = statistics.median(x["allreduce_s"] for x in b)
        out[p] = {"one_rank_two_threads": a, "two_ranks_one_thread": b, "one_rank_one_thread": c}
        print(f"| {p} | {s['batch']} x {s['seq']} | {ta:.3f} | {tb:.3f} | {ta / tb:.2f}x | {tc:.3f} | {red:.4f} | "
              f"{b[0]['grad_bytes'] / 1e6:.1f} |", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
