"""Data-parallel pretraining through ``mpiexec -n 2``: N ranks x B equal one process x N*B and
one process x B with --grad-accum N; only rank 0 writes; resume; mismatched flags.
Skipped where mpi4py or mpiexec is missing (CI installs the [mpi] extra)."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_distributed import ROOT, WORKER, _env, mpiexec, needs_mpi
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """200 documents of the embedded corpus as a text file."""
    from minialbert.data import load_default_corpus

    docs = load_default_corpus(include_numpy=False)[:200]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs), encoding="utf-8")
    return str(path)


SMALL = dict(vocab_size=400, seq_len=32, steps=3, lr=3e-3, warmup=1, optimizer="lamb", log_every=1,
             checkpoint_every=3, eval_size=32, peak_tflops=0.1)


def _cli_args(corpus, out, **kw):
    opts = dict(SMALL, corpus=corpus, out=str(out), **kw)
    args = ["pretrain", "--no-progress", "--no-plots"]
    for k, v in opts.items():
        if v is True:
            args.append(f"--{k.replace('_', '-')}")
        elif v is not False:
            args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def _weights(run_dir):
    from safetensors.numpy import load_file

    return load_file(str(Path(run_dir) / "checkpoint" / "model.safetensors"))


def _losses(run_dir):
    import json

    return [json.loads(line)["loss"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@needs_mpi
def test_two_ranks_equal_one_big_batch_and_accumulation(corpus, tmp_path, monkeypatch):
    # one global batch of 8 per step three ways; unequal masked-token counts across ranks
    # and micro-batches, so only the global normalisation makes them agree
    import minialbert.config as C
    from minialbert.train import PretrainConfig, pretrain

    monkeypatch.setitem(C.PRESETS, "tiny", dict(C.PRESETS["tiny"], classifier_dropout_prob=0.0))
    from minialbert.train import prepare_data

    _, stream, _, _ = prepare_data(PretrainConfig(**SMALL, corpus=corpus, batch_size=4), log=lambda *a: None)
    counts = [int((next(stream)["labels"] != -100).sum()) for _ in range(2 * SMALL["steps"])]
    # rank 0's and rank 1's rows of some step hold different numbers of masked tokens: the
    # case a per-rank mean gets wrong
    assert any(counts[2 * i] != counts[2 * i + 1] for i in range(SMALL["steps"])), counts
    two = tmp_path / "two_ranks"
    r = mpiexec(2, [str(WORKER), "cli", *_cli_args(corpus, two, batch_size=4)], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("done: step 3") == 1            # rank 0 alone reports
    quiet = lambda *a, **k: None  # noqa: E731
    pretrain(PretrainConfig(**SMALL, corpus=corpus, out=str(tmp_path / "big"), batch_size=8,
                            progress=False, plots=False), log=quiet)
    pretrain(PretrainConfig(**SMALL, corpus=corpus, out=str(tmp_path / "accum"), batch_size=4, grad_accum=2,
                            progress=False, plots=False), log=quiet)
    w2, wb, wa = _weights(two), _weights(tmp_path / "big"), _weights(tmp_path / "accum")
    assert set(w2) == set(wb) == set(wa)
    for k in wb:
        np.testing.assert_allclose(w2[k], wb[k], rtol=1e-5, atol=1e-6, err_msg=k)
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(_losses(two), _losses(tmp_path / "big"), rtol=1e-5)
    assert len(_losses(two)) == 3                          # one writer: no doubled records
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (tmp_path / "big").iterdir())


@needs_mpi
def test_two_rank_resume_same_n_is_exact_other_n_is_a_clear_error(corpus, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    r = mpiexec(2, [str(WORKER), "cli", *_cli_args(corpus, full, batch_size=4)], timeout=300)
    assert r.returncode == 0, r.stderr
    r = mpiexec(2, [str(WORKER), "cli", *_cli_args(corpus, part, batch_size=4, stop_at=2)], timeout=300)
    assert r.returncode == 0, r.stderr
    one = subprocess.run([sys.executable, "-m", "minialbert", *_cli_args(corpus, part, batch_size=4, resume=True)],
                         capture_output=True, text=True, env=_env(), timeout=300, cwd=ROOT)
    assert one.returncode != 0
    assert "2 ranks" in one.stderr and "mpiexec -n 2" in one.stderr, one.stderr
    r = mpiexec(2, [str(WORKER), "cli", *_cli_args(corpus, part, batch_size=4, resume=True)], timeout=300)
    assert r.returncode == 0, r.stderr
    wf, wp = _weights(full), _weights(part)
    for k in wf:
        np.testing.assert_array_equal(wf[k], wp[k], err_msg=k)


@needs_mpi
def test_two_ranks_started_with_different_flags_stop_before_writing(corpus, tmp_path):
    out = tmp_path / "r"
    a, b = _cli_args(corpus, out, batch_size=4), _cli_args(corpus, out, batch_size=5)
    exe = shutil.which("mpiexec")
    r = subprocess.run([exe, "-n", "1", sys.executable, "-m", "minialbert", *a, ":",
                        "-n", "1", sys.executable, "-m", "minialbert", *b],
                       capture_output=True, text=True, timeout=120, env=_env(), cwd=ROOT)
    assert r.returncode != 0
    assert "batch_size: ranks 0: 4; ranks 1: 5" in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())


@needs_mpi
def test_two_rank_finetuning_equals_one_process_with_the_global_batch(tmp_path):
    from minialbert.config import AlbertConfig
    from minialbert.finetune import FinetuneConfig, finetune
    from minialbert.heads import AlbertForPreTraining
    from minialbert.tokenizer import Tokenizer

    rng = np.random.default_rng(0)
    words = "alpha beta gamma delta river stone cloud paper music light green table good bad".split()
    sents = [" ".join(rng.choice(words, size=rng.integers(3, 12))) for _ in range(64)]
    tok = Tokenizer.train(sents * 4, vocab_size=40)
    model = tmp_path / "model"
    cfg = AlbertConfig.from_preset("tiny", vocab_size=tok.vocab_size, num_hidden_layers=2, hidden_size=32,
                                   intermediate_size=64, embedding_size=16, num_attention_heads=2,
                                   classifier_dropout_prob=0.0)
    AlbertForPreTraining(cfg, seed=0).save_pretrained(model)
    tok.save(model / "spiece.model")
    train = tmp_path / "train.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{s}\t{'good' in s}\n" for s in sents))
    common = ["--model", str(model), "--task", "classification", "--train", str(train), "--epochs", "1",
              "--lr", "3e-3", "--max-length", "16", "--no-progress"]
    two = tmp_path / "two"
    r = mpiexec(2, [str(WORKER), "cli", "finetune", *common, "--batch-size", "4", "--out", str(two)], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("model and eval_results.json in") == 1      # rank 0 alone reports
    finetune(FinetuneConfig(model=str(model), task="classification", train=str(train), epochs=1, lr=3e-3,
                            max_length=16, progress=False, batch_size=8, out=str(tmp_path / "one")),
             log=lambda *a: None)
    from safetensors.numpy import load_file

    w2, w1 = load_file(str(two / "model.safetensors")), load_file(str(tmp_path / "one" / "model.safetensors"))
    for k in w1:
        np.testing.assert_allclose(w2[k], w1[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
