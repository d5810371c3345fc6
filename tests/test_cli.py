"""CLI smoke tests through minialbert.cli.main: pretrain -> fill-mask -> finetune (demo),
and one-line errors for bad input. Tiny settings (seconds)."""
import json

import numpy as np
import pytest

from minialbert.cli import main


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from minialbert.data import load_default_corpus

    docs = load_default_corpus(include_numpy=False)[:150]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs), encoding="utf-8")
    return str(path)


TINY = ["--vocab-size", "400", "--seq-len", "32", "--batch-size", "8", "--steps", "4", "--warmup", "1",
        "--log-every", "2", "--checkpoint-every", "2", "--peak-tflops", "0.1", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r"
    assert main(["pretrain", "--corpus", corpus, "--out", str(out), *TINY]) == 0
    return out


def test_pretrain_writes_metrics_plots_and_a_hf_checkpoint(run_dir, capsys):
    recs = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4]
    for k in ("step", "loss", "mlm_loss", "mlm_accuracy", "sop_accuracy", "lr", "tokens_per_s"):
        assert all(k in r for r in recs), k
    assert {p.name for p in (run_dir / "plots").iterdir()} >= {"loss.png", "accuracy.png", "lr.png"}
    ck = run_dir / "checkpoint"
    for f in ("config.json", "model.safetensors", "spiece.model", "optimizer.safetensors",
              "trainer_state.json", "manifest.json"):
        assert (ck / f).is_file(), f
    cfg = json.loads((ck / "config.json").read_text())
    assert cfg["architectures"] == ["AlbertForPreTraining"] and cfg["vocab_size"] == 400


def test_pretrain_loads_in_transformers(run_dir):
    transformers = pytest.importorskip("transformers")
    m = transformers.AlbertForPreTraining.from_pretrained(str(run_dir / "checkpoint"))
    assert m.config.vocab_size == 400


def test_fill_mask_output(run_dir, capsys):
    capsys.readouterr()
    assert main(["fill-mask", str(run_dir), "the [MASK] of a list", "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[MASK]:" and len(lines) == 4
    probs = [float(l.split()[0]) for l in lines[1:]]
    assert probs == sorted(probs, reverse=True) and all(0 < p <= 1 for p in probs)
    assert main(["fill-mask", str(run_dir / "checkpoint"), "a [MASK] b [MASK]", "--top-k", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert len(res) == 2 and all(len(r) == 2 for r in res)
    assert set(res[0][0]) == {"token", "token_id", "score", "sequence"}


def test_finetune_demo_task(run_dir, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(run_dir), "--task", "demo", "--epochs", "1",
                 "--demo-per-class", "24", "--max-length", "32", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "eval_results.json").read_text())
    assert res["label_names"] == ["asyncio", "email", "logging", "xml"]
    assert 0.0 <= res["accuracy"] <= 1.0 and "mcc" in res and "f1" in res
    assert "accuracy" in capsys.readouterr().out


def test_resume_through_the_cli(corpus, tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["pretrain", "--corpus", corpus, "--out", out, *TINY, "--stop-at", "2"]) == 0
    assert main(["pretrain", "--corpus", corpus, "--out", out, *TINY, "--resume"]) == 0
    assert json.loads((tmp_path / "r" / "run.json").read_text())["step"] == 4


@pytest.mark.parametrize("argv,message", [
    (["pretrain", "--preset", "albert-gigantic"], "unknown preset 'albert-gigantic'"),
    (["pretrain", "--batch-size", "100000"], "larger than the data"),
    (["pretrain", "--resume"], "no checkpoint to resume"),
    (["pretrain", "--seed", "5"], "holds run"),
    (["finetune", "--task", "classification"], "needs --train"),
    (["fill-mask", "RUN", "no mask here"], "no [MASK]"),
    (["fill-mask", "NOWHERE", "the [MASK]"], "CHECKPOINT: "),
])
def test_bad_input_is_one_clear_line(argv, message, corpus, run_dir, tmp_path, capsys):
    argv = [str(run_dir) if a == "RUN" else str(tmp_path / "nowhere") if a == "NOWHERE" else a for a in argv]
    if argv[0] == "pretrain":
        out = run_dir if "--seed" in argv else tmp_path / "new"
        argv = [argv[0], *TINY, "--corpus", corpus, "--out", str(out), *argv[1:]]   # ours last: they win
    before = sorted(p.name for p in run_dir.rglob("*"))
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith(f"minialbert {argv[0]}: error:"), err
    assert sorted(p.name for p in run_dir.rglob("*")) == before
    assert not (tmp_path / "new").exists()


def test_unknown_option_is_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--learning-rat", "1"])
    assert e.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_pretrain_from_prebuilt_shards(corpus, tmp_path):
    data = tmp_path / "shards"
    assert main(["data", "build", "--input", corpus, "--output", str(data), "--vocab-size", "400",
                 "--max-seq-length", "32", "--quiet"]) == 0
    out = tmp_path / "r"
    assert main(["pretrain", "--data", str(data), "--out", str(out), *TINY, "--stop-at", "2"]) == 0
    assert main(["pretrain", "--data", str(data), "--out", str(out), *TINY, "--resume"]) == 0
    assert json.loads((out / "run.json").read_text())["step"] == 4
    # the shard loader's position survives the stop: bit-identical to an uninterrupted run
    full = tmp_path / "full"
    assert main(["pretrain", "--data", str(data), "--out", str(full), *TINY]) == 0
    from minialbert.checkpoint import load_checkpoint
    wa = load_checkpoint(full / "checkpoint")["model_state"]
    wb = load_checkpoint(out / "checkpoint")["model_state"]
    assert wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)
    # the shards fix T: another --seq-len is a clear error
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "r2"), *TINY, "--seq-len", "64"]) == 1


@pytest.mark.parametrize("extra", [["--sentence-task", "none", "--sharing", "attention"],
                                   ["--sentence-task", "nsp", "--sharing", "none", "--optimizer", "lamb"],
                                   ["--sharing", "ffn", "--grad-accum", "2", "--dtype", "float64"]])
def test_pretrain_variants_resume(corpus, tmp_path, extra):
    out = str(tmp_path / "r")
    assert main(["pretrain", "--corpus", corpus, "--out", out, *TINY, *extra, "--stop-at", "2"]) == 0
    assert main(["pretrain", "--corpus", corpus, "--out", out, *TINY, *extra, "--resume"]) == 0
    recs = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4]
    if "none" in extra[:2]:
        assert recs[-1]["sop_accuracy"] is None and "sop_loss" not in recs[-1]
    assert main(["fill-mask", out, "the [MASK] of a list", "--top-k", "2"]) == 0


def test_encode_masked_inserts_the_mask_id(run_dir):
    from minialbert.cli.fill_mask import encode_masked
    from minialbert.tokenizer import Tokenizer

    tok = Tokenizer(str(run_dir / "spiece.model"))
    ids, pos = encode_masked(tok, "the [MASK], of [MASK]")
    assert ids[0] == tok.cls_id and ids[-1] == tok.sep_id
    assert [ids[p] for p in pos] == [tok.mask_id, tok.mask_id] and pos[1] == len(ids) - 2
    # the comma glued to the mask follows it directly, as in "the word, of"
    assert tok.id_to_piece(ids[pos[0] + 1]) == ","
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        encode_masked(tok, "nothing to fill")
