"""Pretraining loop: exact resume, NaN stop, a falling loss, output-directory ownership,
and the FLOP count behind MFU. Tiny settings throughout (seconds per run)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from minialbert import checkpoint as ckpt
from minialbert import metrics as M
from minialbert.config import AlbertConfig
from minialbert.train import PretrainConfig, TrainingDiverged, pretrain


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """200 documents of the embedded corpus as a text file (blank line between documents)."""
    from minialbert.data import load_default_corpus

    docs = load_default_corpus(include_numpy=False)[:200]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs), encoding="utf-8")
    return str(path)


def tiny(corpus, out, **kw):
    base = dict(corpus=corpus, vocab_size=400, seq_len=32, batch_size=8, steps=6, lr=3e-3,
                warmup=2, optimizer="adamw", out=str(out), progress=False, log_every=1,
                checkpoint_every=3, eval_size=32, peak_tflops=0.1, plots=False)
    base.update(kw)
    return PretrainConfig(**base)


def _quiet(*a, **k):
    pass


def _ckpt_arrays(path):
    state = ckpt.load_checkpoint(path)
    return state["model_state"], state["optimizer_state"], state["step"]


@pytest.mark.parametrize("optimizer,grad_accum", [("lamb", 2), ("adamw-torch", 1)])
def test_resume_is_bit_exact(corpus, tmp_path, optimizer, grad_accum):
    # uninterrupted 6 steps vs stopped after 3 (as if killed) and resumed to 6
    full = tiny(corpus, tmp_path / "full", optimizer=optimizer, grad_accum=grad_accum)
    pretrain(full, log=_quiet)
    part = tiny(corpus, tmp_path / "part", optimizer=optimizer, grad_accum=grad_accum, stop_at=3)
    s = pretrain(part, log=_quiet)
    assert s["step"] == 3 and _ckpt_arrays(tmp_path / "part" / "checkpoint")[2] == 3
    w3, _, _ = _ckpt_arrays(tmp_path / "part" / "checkpoint")
    resumed = tiny(corpus, tmp_path / "part", optimizer=optimizer, grad_accum=grad_accum, resume=True)
    s = pretrain(resumed, log=_quiet)
    assert s["start_step"] == 3 and s["step"] == 6
    wa, oa, sa = _ckpt_arrays(tmp_path / "full" / "checkpoint")
    wb, ob, sb = _ckpt_arrays(tmp_path / "part" / "checkpoint")
    assert sa == sb == 6
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and np.array_equal(wa[k], wb[k]), k
    for k in oa["m"]:
        assert np.array_equal(oa["m"][k], ob["m"][k]) and np.array_equal(oa["v"][k], ob["v"][k]), k
    # and the weights did move after the resume: not a comparison of two frozen states
    k = "albert.encoder.embedding_hidden_mapping_in.weight"
    assert not np.array_equal(w3[k], wa[k])
    # metrics.jsonl of the resumed run reads like the uninterrupted one
    la = [r["loss"] for r in M.read_metrics(tmp_path / "full" / "metrics.jsonl")]
    lb = [r["loss"] for r in M.read_metrics(tmp_path / "part" / "metrics.jsonl")]
    assert la == lb and len(la) == 6


def test_nan_loss_stops_and_keeps_last_checkpoint(corpus, tmp_path):
    def poison(step, model):
        if step == 4:   # before the 5th update: checkpoints exist at steps 2 and 4
            model.params["embeddings.LayerNorm.weight"][:] = np.nan

    cfg = tiny(corpus, tmp_path / "r", steps=8, checkpoint_every=2)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 5.*step 4.*intact"):
        pretrain(cfg, log=_quiet, hooks={"before_step": poison})
    w, _, step = _ckpt_arrays(tmp_path / "r" / "checkpoint")   # verifies every hash
    assert step == 4
    assert all(np.isfinite(a).all() for a in w.values())
    assert json.loads((tmp_path / "r" / "run.json").read_text())["step"] == 4


def test_short_run_lowers_the_loss(corpus, tmp_path):
    cfg = tiny(corpus, tmp_path / "r", steps=40, batch_size=16, log_every=5, checkpoint_every=40)
    s = pretrain(cfg, log=_quiet)
    recs = M.read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert [r["step"] for r in recs] == list(range(5, 41, 5))
    for r in recs:
        for k in ("step", "loss", "mlm_loss", "mlm_accuracy", "sop_accuracy", "lr", "tokens_per_s", "mfu"):
            assert k in r and r[k] is not None, k
    # the untrained model's loss is ln(400) = 6.0 (logits ~ 0); a real margin below it, not noise
    # (batch-to-batch spread is ~0.2), and below the first record (the mean of steps 1-5, which
    # the E=128 tiny already brings under 6.0)
    losses = [r["mlm_loss"] for r in recs]
    assert math.log(400) - losses[-1] > 0.7 and losses[-1] < losses[0], losses
    assert recs[-1]["mlm_accuracy"] > recs[0]["mlm_accuracy"]
    assert "eval_mlm_accuracy" in s["last"]


def test_out_dir_ownership(corpus, tmp_path):
    out = tmp_path / "r"
    pretrain(tiny(corpus, out, steps=3), log=_quiet)
    manifest = (out / "checkpoint" / "manifest.json").read_bytes()
    metrics = (out / "metrics.jsonl").read_bytes()
    # another run (different seed) into the same directory: refused
    with pytest.raises(ValueError, match="holds run .* --resume .* --overwrite"):
        pretrain(tiny(corpus, out, seed=1), log=_quiet)
    # resuming with other settings: refused, naming the difference
    with pytest.raises(ValueError, match=r"different settings.*--seed 0 -> 1"):
        pretrain(tiny(corpus, out, seed=1, resume=True), log=_quiet)
    # resuming a finished run without raising --steps
    with pytest.raises(ValueError, match="already >= --steps"):
        pretrain(tiny(corpus, out, steps=3, resume=True), log=_quiet)
    assert (out / "checkpoint" / "manifest.json").read_bytes() == manifest
    assert (out / "metrics.jsonl").read_bytes() == metrics
    # a folder with someone else's files
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no minialbert run"):
        pretrain(tiny(corpus, other), log=_quiet)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    # --overwrite replaces the run
    s = pretrain(tiny(corpus, out, seed=1, overwrite=True, steps=2), log=_quiet)
    assert s["step"] == 2 and _ckpt_arrays(out / "checkpoint")[2] == 2


def test_bad_options_write_nothing(corpus, tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ValueError, match="unknown preset"):
        pretrain(tiny(corpus, out, preset="albert-huge"), log=_quiet)
    with pytest.raises(ValueError, match="larger than the data"):
        pretrain(tiny(corpus, out, batch_size=100000), log=_quiet)
    with pytest.raises(ValueError, match="no checkpoint to resume"):
        pretrain(tiny(corpus, out, resume=True), log=_quiet)
    with pytest.raises(ValueError, match="--sentence-task"):
        pretrain(tiny(corpus, out, sentence_task="xyz"), log=_quiet)
    with pytest.raises(ValueError, match="--stop-at"):
        pretrain(tiny(corpus, out, stop_at=99), log=_quiet)
    assert not out.exists()


def test_corrupt_checkpoint_is_a_clear_error(corpus, tmp_path):
    out = tmp_path / "r"
    pretrain(tiny(corpus, out, steps=3, stop_at=3), log=_quiet)
    f = out / "checkpoint" / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])                 # truncated
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors"):
        pretrain(tiny(corpus, out, steps=6, resume=True), log=_quiet)


# -- FLOPs and MFU -----------------------------------------------------------------------

def test_train_flops_counts_each_application():
    c = AlbertConfig.from_preset("tiny", vocab_size=1000)
    B, T = 4, 32
    E, H, I, L, V = c.embedding_size, c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    layer = 4 * H * H + 4 * H + 2 * H * I + I + H + 4 * H
    per_tok = (E * H + H) + L * layer + 2 * L * T * H + (H * E + 3 * E + E * V + V)
    want = 6 * (per_tok * B * T + (H * H + 3 * H + 2) * B)
    assert M.train_flops(c, B, T) == pytest.approx(want, rel=1e-12)
    # sharing changes the parameter count, not the arithmetic
    none = AlbertConfig.from_preset("tiny", vocab_size=1000, sharing="none")
    assert M.train_flops(none, B, T) == M.train_flops(c, B, T)
    # gathering the masked positions only: decoder counted on those
    n = 20
    assert M.train_flops(c, B, T) - M.train_flops(c, B, T, n_predictions=n) == pytest.approx(
        6 * (H * E + 3 * E + E * V + V) * (B * T - n))
    assert M.train_flops(c, B, T, training=False) == pytest.approx(M.train_flops(c, B, T) / 3)


def test_peak_flops_is_positive_and_finite():
    peak = M.measure_peak_flops("cpu", n=256, repeats=3)
    assert math.isfinite(peak) and peak > 1e8


def test_metrics_log_truncates_on_resume(tmp_path):
    p = tmp_path / "m.jsonl"
    with M.MetricsLog(p) as log:
        for s in range(1, 6):
            log.write({"step": s, "loss": float(s), "x": np.float32(1.5)})
    with open(p, "a") as f:
        f.write('{"step": 6, "lo')                       # a run killed mid-write
    with M.MetricsLog(p, resume_step=3) as log:
        log.write({"step": 4, "loss": 40.0})
    assert [(r["step"], r["loss"]) for r in M.read_metrics(p)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    pngs = M.plot_metrics([{"step": 1, "loss": 2.0, "mlm_accuracy": 0.1, "sop_accuracy": 0.5},
                           {"step": 2, "loss": 1.0, "mlm_accuracy": 0.2, "sop_accuracy": 0.6}], tmp_path / "plots")
    assert {Path(p).name for p in pngs} == {"loss.png", "accuracy.png"}
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_ctrl_c_saves_the_last_finished_step_and_resumes_exactly(corpus, tmp_path):
    def interrupt(step, model):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(corpus, tmp_path / "a", checkpoint_every=100), log=_quiet, hooks={"before_step": interrupt})
    assert _ckpt_arrays(tmp_path / "a" / "checkpoint")[2] == 4
    pretrain(tiny(corpus, tmp_path / "a", checkpoint_every=100, resume=True), log=_quiet)
    pretrain(tiny(corpus, tmp_path / "b", checkpoint_every=100), log=_quiet)
    wa, _, _ = _ckpt_arrays(tmp_path / "a" / "checkpoint")
    wb, _, _ = _ckpt_arrays(tmp_path / "b" / "checkpoint")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def test_grad_accum_equals_one_big_batch_exactly(corpus, tmp_path, monkeypatch):
    # One optimiser step of K=2 micro-batches of B=4 with UNEQUAL masked-token counts must
    # give the gradient of one batch of 8 (the loss is normalised by the step's global
    # counts of masked tokens and sentence pairs, not averaged per micro-batch: that was
    # 3% off at 19 vs 20 masked tokens). Dropout off (the SOP classifier has 0.1) so both
    # runs compute the same function; float64; no clipping; Adam's first moment after one
    # step is (1 - beta1) * gradient, so the checkpoints compare the gradients themselves.
    import minialbert.config as C
    from minialbert.train import prepare_data

    monkeypatch.setitem(C.PRESETS, "tiny", dict(C.PRESETS["tiny"], classifier_dropout_prob=0.0))
    kw = dict(steps=1, warmup=0, dtype="float64", clip_norm=1e9, optimizer="adamw-torch", checkpoint_every=1)
    for seed in range(20):                                 # the first seed whose two micro-batches
        acc = tiny(corpus, tmp_path / "acc", batch_size=4, grad_accum=2, seed=seed, **kw)
        _, stream, _, _ = prepare_data(acc, log=_quiet)    # have unequal masked-token counts
        counts = [int((next(stream)["labels"] != -100).sum()) for _ in range(2)]
        if counts[0] != counts[1]:
            break
    assert counts[0] != counts[1], counts                  # the case the old averaging got wrong
    big = tiny(corpus, tmp_path / "big", batch_size=8, grad_accum=1, seed=seed, **kw)
    sa, sb = pretrain(acc, log=_quiet), pretrain(big, log=_quiet)
    assert sa["last"]["loss"] == pytest.approx(sb["last"]["loss"], rel=1e-12)
    assert sa["last"]["mlm_accuracy"] == sb["last"]["mlm_accuracy"]
    wa, oa, _ = _ckpt_arrays(tmp_path / "acc" / "checkpoint")
    wb, ob, _ = _ckpt_arrays(tmp_path / "big" / "checkpoint")
    for k in oa["m"]:
        np.testing.assert_allclose(oa["m"][k], ob["m"][k], rtol=1e-11, atol=1e-17, err_msg=k)
    from minialbert.hf_format import name_map
    from minialbert.train import build_model
    ours = {hf: o for o, hf in name_map(build_model(big, 400)).items()}   # tiny(): V=400
    for k in wa:
        if k.endswith("attention.key.bias"):
            # its gradient is exactly 0 (softmax ignores a shift per query row): both runs
            # hold round-off only, whose digits depend on the summation order
            assert np.abs(wa[k]).max() < 1e-12 and np.abs(wb[k]).max() < 1e-12, k
            continue
        # Adam's first step moves w by lr * g / (|g| + eps): where |g| is near eps that ratio
        # turns the round-off the m check allows (1e-11 |g| + 1e-16) into up to
        # lr * eps * dg / (|g| + eps)^2 of the weight, far above 1e-11 of it
        g = np.abs(ob["m"][ours[k]]) / 0.1
        dg = 1e-11 * g + 1e-16
        allowed = 3e-3 * 1e-8 * dg / (g + 1e-8) ** 2 + 1e-11 * np.abs(wb[k]) + 1e-15
        bad = np.abs(wa[k] - wb[k]) > allowed
        assert not bad.any(), (k, wa[k][bad], wb[k][bad], g[bad])


def test_train_step_is_one_readable_step_with_a_default_comm(corpus, tmp_path):
    # the public step: K micro-batches in, StepStats out; the loss is the global mean
    from minialbert.optim import make_optimizer
    from minialbert.train import SingleProcess, build_model, model_inputs, prepare_data, train_step

    cfg = tiny(corpus, tmp_path / "x", batch_size=4, dtype="float64")
    tok, stream, _, _ = prepare_data(cfg, log=_quiet)
    batches = [model_inputs(next(stream), "sop") for _ in range(3)]
    model = build_model(cfg, tok.vocab_size).eval()
    opt = make_optimizer("adamw", model, lr=1e-3)
    comm = SingleProcess()
    assert (comm.rank, comm.size) == (0, 1)
    with model.no_grad():                                   # the same loss on one batch of 12
        ref = model.forward(**{k: np.concatenate([b[k] for b in batches]) for k in batches[0]})
    assert model._tape is None                              # no caches kept under no_grad
    with pytest.raises(RuntimeError, match="preceding forward"):
        model.backward()
    before = {k: v.copy() for k, v in model.params.items()}
    stats = train_step(model, opt, batches, 1e-3, comm=comm)
    n = sum(int((b["labels"] != -100).sum()) for b in batches)
    assert stats.updated and stats.mlm_count == n and stats.sentence_count == 12
    assert stats.loss == pytest.approx(float(ref.loss), rel=1e-12)
    assert stats.mlm_loss == pytest.approx(float(ref.mlm_loss), rel=1e-12)
    assert stats.sentence_loss == pytest.approx(float(ref.sop_loss), rel=1e-12)
    assert math.isfinite(stats.grad_norm) and 0 <= stats.mlm_correct <= n
    assert any(not np.array_equal(before[k], model.params[k]) for k in before)


def test_resume_is_bit_exact_with_dropout_and_accumulation(corpus, tmp_path, monkeypatch):
    # the presets trained here have dropout 0 (ALBERT v2); give tiny dropout 0.1 so the
    # per-(step, micro) dropout streams are exercised across the stop/resume boundary
    import minialbert.config as C

    monkeypatch.setitem(C.PRESETS, "tiny", dict(C.PRESETS["tiny"], hidden_dropout_prob=0.1,
                                                attention_probs_dropout_prob=0.1))
    kw = dict(optimizer="lamb", grad_accum=2, batch_size=4, steps=4)
    pretrain(tiny(corpus, tmp_path / "full", **kw), log=_quiet)
    pretrain(tiny(corpus, tmp_path / "part", stop_at=2, **kw), log=_quiet)
    pretrain(tiny(corpus, tmp_path / "part", resume=True, **kw), log=_quiet)
    wa, oa, sa = _ckpt_arrays(tmp_path / "full" / "checkpoint")
    wb, ob, sb = _ckpt_arrays(tmp_path / "part" / "checkpoint")
    assert sa == sb == 4
    for k in wa:
        assert np.array_equal(wa[k], wb[k]), k
    for k in oa["m"]:
        assert np.array_equal(oa["m"][k], ob["m"][k]) and np.array_equal(oa["v"][k], ob["v"][k]), k
    # dropout really acted: without it the same run ends elsewhere
    monkeypatch.setitem(C.PRESETS, "tiny", dict(C.PRESETS["tiny"], hidden_dropout_prob=0.0,
                                                attention_probs_dropout_prob=0.0))
    pretrain(tiny(corpus, tmp_path / "nodrop", **kw), log=_quiet)
    wc, _, _ = _ckpt_arrays(tmp_path / "nodrop" / "checkpoint")
    k = "albert.encoder.embedding_hidden_mapping_in.weight"
    assert not np.array_equal(wa[k], wc[k])


def test_resume_with_stop_at_not_after_the_checkpoint_is_an_error(corpus, tmp_path):
    pretrain(tiny(corpus, tmp_path / "r", steps=4, stop_at=2, checkpoint_every=2), log=_quiet)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").rglob("*")}
    with pytest.raises(ValueError, match=r"--stop-at 1: the checkpoint is already at step 2"):
        pretrain(tiny(corpus, tmp_path / "r", steps=4, stop_at=1, resume=True), log=_quiet)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "r").rglob("*")} == before
    s = pretrain(tiny(corpus, tmp_path / "r", steps=4, stop_at=3, resume=True), log=_quiet)
    assert s["start_step"] == 2 and s["step"] == 3


def test_resume_from_another_runs_checkpoint_is_an_error(corpus, tmp_path):
    # same model shape, other --lr: the checkpoint copied into this run's directory must not
    # be taken for this run's own
    import shutil

    pretrain(tiny(corpus, tmp_path / "a", steps=4, stop_at=2, checkpoint_every=2, lr=1e-3), log=_quiet)
    pretrain(tiny(corpus, tmp_path / "b", steps=4, stop_at=2, checkpoint_every=2), log=_quiet)
    shutil.rmtree(tmp_path / "b" / "checkpoint")
    shutil.copytree(tmp_path / "a" / "checkpoint", tmp_path / "b" / "checkpoint")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b").rglob("*")}
    with pytest.raises(ValueError, match=r"--resume: .* was written by another run"):
        pretrain(tiny(corpus, tmp_path / "b", steps=4, resume=True), log=_quiet)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "b").rglob("*")} == before


# -- issue 9: nothing a user saved is lost; SIGTERM; every flag checked before writing ----

def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def test_overwrite_replaces_only_what_minialbert_wrote(corpus, tmp_path):
    out = tmp_path / "r"
    pretrain(tiny(corpus, out, steps=2, checkpoint_every=2), log=_quiet)
    assert "plots/loss.png" in json.loads((out / "run.json").read_text())["files"]
    # a user's figure next to ours, and notes at the top: --overwrite refuses, naming them
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / "figure1.png").write_bytes(b"mine")
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"did not write \(notes\.txt, plots/figure1\.png\)"):
        pretrain(tiny(corpus, out, steps=3, seed=1, overwrite=True), log=_quiet)
    assert _snapshot(out) == before
    # with only minialbert's files there, --overwrite replaces them (and the user's are back)
    (out / "plots" / "figure1.png").unlink()
    (out / "notes.txt").unlink()
    (out / "run.json.tmp4242").write_text("{")              # a stale temporary of a killed run
    s = pretrain(tiny(corpus, out, steps=3, seed=1, overwrite=True, checkpoint_every=3), log=_quiet)
    assert s["step"] == 3 and json.loads((out / "run.json").read_text())["config"]["seed"] == 1
    assert [r["step"] for r in M.read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    assert not (out / "run.json.tmp4242").exists()


def test_resume_rewrites_metrics_by_rename_and_cleans_stale_temporaries(corpus, tmp_path, monkeypatch):
    out = tmp_path / "r"
    pretrain(tiny(corpus, out, steps=6, stop_at=4, checkpoint_every=2), log=_quiet)
    # the checkpoint is at step 4 and metrics.jsonl holds steps 1..4: make it look as if the
    # run had logged steps 5 and 6 after that checkpoint, then was killed
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 1.0}) + "\n" + json.dumps({"step": 6, "loss": 1.0}) + "\n")
    (out / "run.json.tmp999999").write_text("{")
    metrics_before = (out / "metrics.jsonl").read_bytes()

    # a kill in the middle of the rewrite (first bytes of the temporary written, then the
    # process dies): every atomic write goes through minialbert.atomic's mkstemp + fdopen
    from conftest import break_atomic_writes
    metrics_fds = break_atomic_writes(monkeypatch, KeyboardInterrupt("killed"), prefix="metrics.jsonl")
    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(corpus, out, steps=6, resume=True), log=_quiet)
    monkeypatch.undo()
    assert metrics_fds                                                 # the rewrite was reached
    assert (out / "metrics.jsonl").read_bytes() == metrics_before     # nothing lost
    s = pretrain(tiny(corpus, out, steps=6, resume=True), log=_quiet)
    assert s["step"] == 6
    assert [r["step"] for r in M.read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert not list(out.glob("*.tmp*"))


def test_sigterm_finishes_the_step_checkpoints_and_exits(corpus, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "r"
    args = ["pretrain", "--corpus", corpus, "--out", str(out), "--vocab-size", "400", "--seq-len", "32",
            "--batch-size", "8", "--warmup", "2", "--log-every", "1", "--checkpoint-every", "100000",
            "--peak-tflops", "0.1", "--no-progress", "--no-plots"]
    p = subprocess.Popen([sys.executable, "-m", "minialbert", *args, "--steps", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 300
        while not M.read_metrics(out / "metrics.jsonl") and time.time() < deadline and p.poll() is None:
            time.sleep(0.2)
        assert p.poll() is None, p.communicate()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    step = _ckpt_arrays(out / "checkpoint")[2]
    assert step >= 1 and f"interrupted: checkpoint at step {step}" in err
    assert json.loads((out / "run.json").read_text())["step"] == step
    # and the run continues from there
    from minialbert.cli import main
    assert main([*args, "--steps", str(step + 1), "--resume"]) == 0
    assert _ckpt_arrays(out / "checkpoint")[2] == step + 1


def test_every_flag_is_checked_before_anything_is_written(corpus, tmp_path):
    out = tmp_path / "r"
    with pytest.raises(ValueError, match=r"--clip-norm must be a positive number, got -1"):
        pretrain(tiny(corpus, out, clip_norm=-1.0), log=_quiet)
    with pytest.raises(ValueError, match=r"--seq-len 100000: at most 512"):
        pretrain(tiny(corpus, out, seq_len=100000), log=_quiet)
    with pytest.raises(ValueError, match=r"--weight-decay"):
        pretrain(tiny(corpus, out, weight_decay=float("nan")), log=_quiet)
    assert not out.exists()
    # --resume with fewer --steps than the checkpoint has: a clear error, nothing touched
    pretrain(tiny(corpus, out, steps=6, stop_at=4, checkpoint_every=2), log=_quiet)
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ValueError, match=r"checkpoint is at step 4, already >= --steps 3"):
        pretrain(tiny(corpus, out, steps=3, resume=True), log=_quiet)
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_shards_fix_the_sentence_task_and_nsp_runs_log_nsp(corpus, tmp_path):
    from minialbert.cli import main

    data = tmp_path / "nsp-shards"
    assert main(["data", "build", "--input", corpus, "--output", str(data), "--vocab-size", "400",
                 "--max-seq-length", "32", "--sentence-task", "nsp", "--quiet"]) == 0
    out = tmp_path / "r"
    with pytest.raises(ValueError, match=r"--sentence-task sop: the shards in .* were built for 'nsp'"):
        pretrain(tiny(None, out, data=str(data), steps=2), log=_quiet)
    assert not out.exists()
    pretrain(tiny(None, out, data=str(data), steps=2, sentence_task="nsp"), log=_quiet)
    recs = M.read_metrics(out / "metrics.jsonl")
    assert all("nsp_accuracy" in r and "nsp_loss" in r for r in recs)
    assert not any(k.startswith("sop_") for r in recs for k in r)


# -- the CLI's flags are the config's fields -------------------------------------------------

PRETRAIN_FLAGS = ("--preset --corpus --data --tokenizer --vocab-size --seq-len --sentence-task --sharing "
                  "--dupe-factor --include-numpy --batch-size --grad-accum --steps --optimizer --lr --warmup "
                  "--weight-decay --clip-norm --seed --device --dtype --out --resume --overwrite --stop-at "
                  "--checkpoint-every --log-every --eval-every --peak-tflops --no-progress --no-plots").split()
FINETUNE_FLAGS = ("--model --task --train --eval --tokenizer --text-columns --label-column --max-length "
                  "--doc-stride --max-query-length --epochs --batch-size --lr --warmup-ratio --weight-decay "
                  "--optimizer --layerwise-lr-decay --seed --device --dtype --out --overwrite "
                  "--demo-per-class --no-progress").split()


@pytest.mark.parametrize("command,flags", [("pretrain", PRETRAIN_FLAGS), ("finetune", FINETUNE_FLAGS)])
def test_cli_flags_are_the_config_fields(command, flags):
    from dataclasses import fields

    from minialbert.cli import build_parser
    from minialbert.finetune import FinetuneConfig
    from minialbert.options import config_from_args

    cls = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}[command]
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command]
    have = {s for a in sub._actions for s in a.option_strings}
    assert set(flags) <= have, sorted(set(flags) - have)            # every flag of before is kept
    # parsing no flags gives the config's defaults; every field has its flag and help
    assert config_from_args(cls, parser.parse_args([command])) == cls()
    for f in fields(cls):
        assert f.metadata.get("help"), f.name
    args = parser.parse_args([command, "--no-progress", "--seed", "7"])
    assert config_from_args(cls, args) == cls(progress=False, seed=7)


def test_before_update_hook_sees_the_summed_gradients_before_clipping(corpus, tmp_path):
    seen = []
    pretrain(tiny(corpus, tmp_path / "r", steps=2, grad_accum=2, batch_size=4, clip_norm=1e-3),
             log=_quiet, hooks={"before_update": lambda step, model: seen.append(
                 (step, math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in model.grads.values()))))})
    assert [s for s, _ in seen] == [0, 1] and all(n > 1e-3 for _, n in seen)     # not yet clipped
    with pytest.raises(ValueError, match="hooks: unknown"):
        pretrain(tiny(corpus, tmp_path / "x"), log=_quiet, hooks={"after_step": print})
