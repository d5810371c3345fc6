"""``minialbert eval`` against a hand computation, its errors, and the held-out split of
``data build --heldout-fraction`` (document-disjoint). Tiny data, seconds."""
import json
import re

import numpy as np
import pytest

from minialbert.cli import main

WORDS_PER_DOC = 6


def _lexicon(k: int, rng) -> list[str]:
    """Words of document k: random 9-letter strings, so any whole word names its document."""
    return ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 9)) for _ in range(WORDS_PER_DOC)]


@pytest.fixture(scope="module")
def marked_corpus(tmp_path_factory):
    """40 documents; document k's sentences use only document k's words."""
    rng = np.random.default_rng(0)
    docs, owner = [], {}
    for k in range(40):
        lex = _lexicon(k, rng)
        owner.update({w: k for w in lex})
        docs.append([" ".join(rng.choice(lex, 7)) + "." for _ in range(5)])
    path = tmp_path_factory.mktemp("marked") / "corpus.txt"
    path.write_text("\n\n".join("\n".join(d) for d in docs) + "\n", encoding="utf-8")
    return path, owner


@pytest.fixture(scope="module")
def built(marked_corpus, tmp_path_factory):
    path, owner = marked_corpus
    out = tmp_path_factory.mktemp("shards") / "nsp"
    assert main(["data", "build", "-i", str(path), "-o", str(out), "--vocab-size", "120",
                 "--max-seq-length", "48", "--sentence-task", "nsp", "--heldout-fraction", "0.3",
                 "--docs-per-shard", "7", "--workers", "1", "--quiet"]) == 0
    return out, owner


def _docs_in(data_dir, tok, owner) -> set:
    """The documents whose (whole) words appear in the examples of a shard folder, read from
    the unmasked token ids."""
    from minialbert.data.shards import iterate_shards

    found = set()
    for arr in iterate_shards(data_dir):
        for r in range(len(arr["input_ids"])):
            ids = arr["input_ids"][r, :arr["lengths"][r]].copy()
            k = arr["masked_lm_counts"][r]
            ids[arr["masked_lm_positions"][r, :k]] = arr["masked_lm_ids"][r, :k]   # undo the masking
            for w in re.findall(r"[a-z]+", tok.decode(ids.tolist())):
                if w in owner:
                    found.add(owner[w])
    return found


def test_heldout_split_is_document_disjoint(built):
    from minialbert.data.heldout import heldout_dir
    from minialbert.data.shards import read_manifest
    from minialbert.tokenizer import Tokenizer

    out, owner = built
    tok = Tokenizer(out / "spiece.model")
    held = heldout_dir(out)
    train_docs, held_docs = _docs_in(out, tok, owner), _docs_in(held, tok, owner)
    assert held_docs and train_docs
    assert not train_docs & held_docs            # NSP's random B included: no document on both sides
    assert len(held_docs) == 12 and len(train_docs) == 28     # 30% of 40 documents, every one used
    m, hm = read_manifest(out), read_manifest(held)
    assert m["split"] == "train" and hm["split"] == "heldout" and m["heldout"]["fraction"] == 0.3
    assert hm["tokenizer"]["hash"] == m["tokenizer"]["hash"] == tok.content_hash


def test_split_documents_properties():
    from minialbert.data.heldout import split_documents

    docs = [[f"sentence {i}"] for i in range(50)]
    train, held = split_documents(docs, 0.2, seed=3)
    assert len(held) == 10 and len(train) == 40
    assert sorted(map(str, train + held)) == sorted(map(str, docs))
    assert split_documents(docs, 0.2, seed=3) == (train, held)          # deterministic
    assert split_documents(docs, 0.2, seed=4)[1] != held
    for bad in (0, 1, -0.5, 1.5):
        with pytest.raises(ValueError, match="--heldout-fraction"):
            split_documents(docs, bad)


def test_data_build_rejects_a_bad_heldout_fraction(marked_corpus, tmp_path, capsys):
    path, _ = marked_corpus
    assert main(["data", "build", "-i", str(path), "-o", str(tmp_path / "x"), "--heldout-fraction", "1.5",
                 "--quiet"]) == 1
    assert "--heldout-fraction" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


# -- minialbert eval ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoint(built, tmp_path_factory):
    """A tiny AlbertForPreTraining with random weights, made to predict unevenly: a decoder
    bias that favours a few pieces, a SOP head with large weights."""
    from minialbert.config import AlbertConfig
    from minialbert.heads import AlbertForPreTraining
    from minialbert.hf import save_pretrained
    from minialbert.tokenizer import Tokenizer

    out, _ = built
    tok = Tokenizer(out / "spiece.model")
    cfg = AlbertConfig.from_preset("tiny", vocab_size=tok.vocab_size, num_hidden_layers=2,
                                   max_position_embeddings=64)
    model = AlbertForPreTraining(cfg, seed=1)
    rng = np.random.default_rng(2)
    from minialbert.data.shards import iterate_shards
    counts = np.zeros(tok.vocab_size)
    for arr in iterate_shards(out):
        for r in range(len(arr["input_ids"])):
            np.add.at(counts, arr["masked_lm_ids"][r, :arr["masked_lm_counts"][r]], 1)
    # frequent masked pieces get a head start: some predictions right, most wrong
    model.params["predictions.bias"][:] = (np.log1p(counts) + rng.normal(0, 1.0, tok.vocab_size)).astype(np.float32)
    model.params["sop_classifier.weight"][:] = rng.normal(0, 5.0, model.params["sop_classifier.weight"].shape)
    d = tmp_path_factory.mktemp("ckpt") / "model"
    save_pretrained(model, d)
    tok.save(d / "spiece.model")
    return d, model


def _by_hand(model, data_dir):
    """One example at a time, every position decoded, counted in plain Python."""
    from minialbert.data.shards import iterate_shards

    mc = mn = pc = pn = 0
    for arr in iterate_shards(data_dir):
        for r in range(len(arr["input_ids"])):
            n = int(arr["lengths"][r])
            ids = arr["input_ids"][r:r + 1, :n].astype(np.int64)
            out = model.forward(ids, token_type_ids=arr["token_type_ids"][r:r + 1, :n].astype(np.int64),
                                full_logits=True)
            logits = np.asarray(out.prediction_logits[0])                      # (n, V)
            for j in range(int(arr["masked_lm_counts"][r])):
                p, gold = int(arr["masked_lm_positions"][r, j]), int(arr["masked_lm_ids"][r, j])
                mc += int(np.argmax(logits[p]) == gold)
                mn += 1
            pc += int(np.argmax(np.asarray(out.sop_logits[0])) == int(arr["sentence_order_label"][r]))
            pn += 1
    return mc, mn, pc, pn


def test_eval_matches_a_hand_computation(built, checkpoint, tmp_path, capsys):
    from minialbert.data.heldout import heldout_dir

    out, _ = built
    d, model = checkpoint
    model.eval()
    report = tmp_path / "eval.json"
    assert main(["eval", str(d), "--data", str(heldout_dir(out)), "--data", str(out),
                 "--json", str(report), "--batch-size", "5"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(report.read_text())
    assert res["model"]["sentence_head"] and len(res["results"]) == 2
    for r, data_dir in zip(res["results"], (heldout_dir(out), out)):
        mc, mn, pc, pn = _by_hand(model, data_dir)
        assert 0 < mc < mn and 0 < pc < pn          # the check can tell right from wrong
        assert r["mlm_predictions"] == mn and r["pairs"] == pn and r["task"] == "nsp"
        assert r["mlm_accuracy"] == pytest.approx(mc / mn, abs=0) and r["pair_accuracy"] == pc / pn
        assert r["pair_accuracy_stderr"] == pytest.approx(np.sqrt(pc / pn * (1 - pc / pn) / pn))
        assert f"{mc / mn:.4f}" in printed and f"{pc / pn:.4f}" in printed


@pytest.mark.parametrize("case", ["no-checkpoint", "no-data", "not-shards", "other-tokenizer", "json-foreign"])
def test_eval_errors_name_the_argument(case, built, checkpoint, tmp_path, capsys):
    out, _ = built
    d, _ = checkpoint
    args = ["eval", str(d), "--data", str(out)]
    want = {"no-checkpoint": "CHECKPOINT", "no-data": "--data", "not-shards": "--data",
            "other-tokenizer": "another tokenizer", "json-foreign": "--json"}[case]
    if case == "no-checkpoint":
        args[1] = str(tmp_path / "missing")
    elif case == "no-data":
        args[3] = str(tmp_path / "missing")
    elif case == "not-shards":
        (tmp_path / "empty").mkdir()
        args[3] = str(tmp_path / "empty")
    elif case == "other-tokenizer":
        import shutil

        from minialbert.tokenizer import Tokenizer
        other = tmp_path / "other"
        shutil.copytree(d, other)
        Tokenizer.train([["some other text to learn from", "and one more line of it"]] * 20,
                        vocab_size=30).save(other / "spiece.model")
        args[1] = str(other)
    elif case == "json-foreign":
        f = tmp_path / "notes.json"
        f.write_text('{"mine": 1}')
        args += ["--json", str(f)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert want in err and "Traceback" not in err
    if case == "json-foreign":
        assert (tmp_path / "notes.json").read_text() == '{"mine": 1}'


def test_plots_draw_the_held_out_curves(tmp_path, monkeypatch):
    """pretrain's accuracy and loss plots carry the eval_* records (held-out curves)."""
    import matplotlib.axes

    from minialbert import metrics

    drawn = []
    orig = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda self, *a, **k: (drawn.append(k.get("label")), orig(self, *a, **k))[1])
    recs = [{"step": s, "loss": 5.0, "mlm_accuracy": 0.1, "sop_accuracy": 0.6} for s in (10, 20)]
    recs[1].update(eval_mlm_loss=5.5, eval_mlm_accuracy=0.09, eval_sop_accuracy=0.58)
    recs[0].update(eval_mlm_loss=6.0, eval_mlm_accuracy=0.05, eval_sop_accuracy=0.52)
    metrics.plot_metrics(recs, tmp_path)
    assert {"held-out mlm_accuracy", "held-out sop_accuracy", "held-out mlm_loss"} <= set(drawn)


# -- held-out evaluation during pretraining on shards --------------------------------------

@pytest.fixture(scope="module")
def sop_shards(marked_corpus, tmp_path_factory):
    path, _ = marked_corpus
    out = tmp_path_factory.mktemp("sop") / "sop"
    assert main(["data", "build", "-i", str(path), "-o", str(out), "--vocab-size", "120",
                 "--max-seq-length", "32", "--heldout-fraction", "0.3", "--docs-per-shard", "7",
                 "--workers", "1", "--quiet"]) == 0
    return out


def _needs_eval_data():
    from minialbert.train import PretrainConfig
    if "eval_data" not in PretrainConfig.__dataclass_fields__:
        pytest.skip("pretrain has no --eval-data yet (wired in after the loop redesign)")


PRETRAIN = ["--seq-len", "32", "--batch-size", "8", "--steps", "4", "--warmup", "1", "--log-every", "2",
            "--checkpoint-every", "4", "--peak-tflops", "0.1", "--no-progress", "--no-plots"]


def test_pretrain_on_shards_evaluates_the_heldout_split(sop_shards, tmp_path, capsys):
    """--eval-every works for a --data run: DIR/heldout is found, evaluated every N steps and at
    the end, and the last record equals `minialbert eval` of the final checkpoint."""
    _needs_eval_data()
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(sop_shards), "--out", str(run), "--eval-every", "2",
                 "--eval-size", "1000", *PRETRAIN]) == 0
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [2, 4]
    assert all("eval_mlm_accuracy" in r and "eval_sop_accuracy" in r for r in recs)
    report = tmp_path / "eval.json"
    assert main(["eval", str(run), "--data", str(sop_shards / "heldout"), "--json", str(report)]) == 0
    ev = json.loads(report.read_text())["results"][0]
    assert recs[-1]["eval_mlm_accuracy"] == pytest.approx(ev["mlm_accuracy"], abs=1e-12)
    assert recs[-1]["eval_sop_accuracy"] == pytest.approx(ev["pair_accuracy"], abs=1e-12)
    # an explicit --eval-data, and a model with another E
    run2 = tmp_path / "run2"
    assert main(["pretrain", "--data", str(sop_shards), "--eval-data", str(sop_shards / "heldout"),
                 "--embedding-size", "16", "--out", str(run2), *PRETRAIN]) == 0
    assert json.loads((run2 / "checkpoint" / "config.json").read_text())["embedding_size"] == 16
    assert "eval_sop_accuracy" in json.loads((run2 / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.mark.parametrize("case", ["no-heldout", "missing", "corpus"])
def test_pretrain_eval_data_errors(case, built, sop_shards, marked_corpus, tmp_path, capsys):
    """--eval-every on shards without a held-out split, a missing --eval-data, --eval-data
    with --corpus: one line naming the flag, nothing written."""
    _needs_eval_data()
    import shutil

    data = tmp_path / "plain"
    shutil.copytree(sop_shards, data, ignore=shutil.ignore_patterns("heldout"))
    args = {"no-heldout": ["--data", str(data), "--eval-every", "2"],
            "missing": ["--data", str(sop_shards), "--eval-data", str(tmp_path / "nowhere")],
            "corpus": ["--corpus", str(marked_corpus[0]), "--eval-data", str(sop_shards / "heldout")]}[case]
    out = tmp_path / "run"
    assert main(["pretrain", *args, "--out", str(out), *PRETRAIN]) == 1
    err = capsys.readouterr().err
    assert ("--eval-every" if case == "no-heldout" else "--eval-data") in err
    assert not out.exists() or not any(out.iterdir())
