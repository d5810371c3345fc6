"""``minialbert pretrain``: train ALBERT with MLM + SOP (defaults: a tiny model on the
embedded corpus, on the CPU, in a few minutes)."""
from __future__ import annotations

import argparse

HELP = "pretrain ALBERT (MLM + sentence-order prediction); no arguments: a tiny CPU demo run"


def register(subparsers) -> None:
    from ..train import OPTIMIZERS, SENTENCE_TASKS, SHARING, PretrainConfig  # noqa: PLC0415

    d = PretrainConfig()
    p = subparsers.add_parser(
        "pretrain", help=HELP, description=HELP + ".",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Writes OUT/metrics.jsonl (one record per logged step), OUT/plots/*.png, "
               "OUT/checkpoint/ (HF-compatible config.json + model.safetensors, optimiser, data "
               "position; written atomically) and OUT/run.json. Stop any time (Ctrl-C saves a "
               "checkpoint) and continue with --resume: the result is bit-identical to an "
               "uninterrupted run on the CPU.")
    g = p.add_argument_group("model and data")
    g.add_argument("--preset", default=d.preset, help="model shape (AlbertConfig.from_preset): tiny, mini, "
                   "small, albert-base-v2, ...; vocab_size comes from the tokenizer")
    g.add_argument("--corpus", default=None, metavar="PATH",
                   help="text file or folder (documents separated by blank lines); default: the "
                        "embedded standard-library docstrings")
    g.add_argument("--data", default=None, metavar="DIR", help="prebuilt shards from `minialbert data build`")
    g.add_argument("--tokenizer", default=None, metavar="PATH",
                   help="with --data: the spiece.model the shards were built with (default: a *.model in DIR)")
    g.add_argument("--vocab-size", type=int, default=d.vocab_size,
                   help="size of the tokenizer trained on the fly on --corpus")
    g.add_argument("--seq-len", type=int, default=d.seq_len, metavar="T", help="tokens per example")
    g.add_argument("--sentence-task", choices=SENTENCE_TASKS, default=d.sentence_task,
                   help="second objective: sentence order (ALBERT), next sentence (BERT) or none")
    g.add_argument("--sharing", choices=SHARING, default=d.sharing,
                   help="cross-layer parameter sharing (the paper's Table 4)")
    g.add_argument("--dupe-factor", type=int, default=d.dupe_factor,
                   help="passes over the corpus when making examples, each with fresh masks")
    g.add_argument("--include-numpy", action="store_true",
                   help="embedded corpus: add NumPy's docstrings to the standard library's")
    o = p.add_argument_group("optimisation")
    o.add_argument("--batch-size", type=int, default=d.batch_size, metavar="B", help="sequences per micro-batch")
    o.add_argument("--grad-accum", type=int, default=d.grad_accum, metavar="K",
                   help="micro-batches per optimiser step (effective batch B*K; the gradient is the mean of "
                        "the K micro-batch gradients, each of its own mean loss)")
    o.add_argument("--steps", type=int, default=d.steps, help="total optimiser steps")
    o.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="lamb and adamw: ALBERT's (no bias correction); adamw-torch: torch.optim.AdamW "
                        "(bias-corrected; the only one that leaves the unigram plateau within the "
                        "default 600 steps, see docs/training/pretraining.md)")
    o.add_argument("--lr", type=float, default=d.lr, help="peak learning rate")
    o.add_argument("--warmup", type=int, default=d.warmup, help="linear warm-up steps (then linear decay to 0)")
    o.add_argument("--weight-decay", type=float, default=d.weight_decay)
    o.add_argument("--clip-norm", type=float, default=d.clip_norm, help="global gradient-norm clip")
    o.add_argument("--seed", type=int, default=d.seed, help="model init, data order, masks, dropout")
    r = p.add_argument_group("run")
    r.add_argument("--device", choices=("cpu", "gpu"), default=d.device)
    r.add_argument("--dtype", choices=("float32", "float64"), default=d.dtype)
    r.add_argument("--out", default=d.out, metavar="DIR", help="output directory")
    r.add_argument("--resume", action="store_true", help="continue the run in --out up to --steps")
    r.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    r.add_argument("--stop-at", type=int, default=None, metavar="N",
                   help="stop after step N as if interrupted (the LR schedule still spans --steps)")
    r.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, metavar="N")
    r.add_argument("--log-every", type=int, default=d.log_every, metavar="N",
                   help="steps between metrics.jsonl records")
    r.add_argument("--eval-every", type=int, default=d.eval_every, metavar="N",
                   help="steps between held-out evaluations (0: only at the end)")
    r.add_argument("--peak-tflops", type=float, default=None,
                   help="device peak for MFU (default: measured with a short matmul)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-plots", action="store_true", help="no PNG plots at the end")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys  # noqa: PLC0415

    from ..train import PretrainConfig, TrainingDiverged, pretrain  # noqa: PLC0415

    kw = {k: v for k, v in vars(args).items() if k in PretrainConfig.__dataclass_fields__}
    cfg = PretrainConfig(**kw, progress=not args.no_progress, plots=not args.no_plots)
    try:
        s = pretrain(cfg, log=lambda m: print(m, file=sys.stderr))
    except TrainingDiverged as e:
        print(f"minialbert pretrain: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
    first, last = s.get("first", {}), s.get("last", {})
    msg = [f"done: step {s['step']}; checkpoint {s['checkpoint']}"]
    if first and last:
        msg.append(f"loss {first['loss']:.3f} -> {last['loss']:.3f}, MLM accuracy "
                   f"{first['mlm_accuracy']:.3f} -> {last['mlm_accuracy']:.3f}")
        if last.get("sop_accuracy") is not None:
            msg.append(f"SOP accuracy {first['sop_accuracy']:.3f} -> {last['sop_accuracy']:.3f}")
        if "eval_mlm_accuracy" in last:
            ev = f"held-out: MLM accuracy {last['eval_mlm_accuracy']:.3f}"
            if "eval_sop_accuracy" in last:
                ev += f", SOP accuracy {last['eval_sop_accuracy']:.3f}"
            msg.append(ev)
        msg.append(f"{last['tokens_per_s']:.0f} tokens/s, MFU {100 * last['mfu']:.1f}%")
    if s.get("plots"):
        msg.append("plots: " + ", ".join(s["plots"]))
    print("\n".join(msg))
    return 0
