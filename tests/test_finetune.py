"""Fine-tuning: readers, features, QA windows, GLUE/SQuAD metrics, and short runs of each
task kind on a tiny randomly initialised model (no pretraining needed for the plumbing)."""
import csv
import json
import shutil

import numpy as np
import pytest
import scipy.stats

from minialbert import metrics as M
from minialbert import tasks as T
from minialbert.config import AlbertConfig
from minialbert.finetune import FinetuneConfig, demo_task, finetune
from minialbert.heads import AlbertForPreTraining
from minialbert.tokenizer import Tokenizer

WORDS = ("alpha beta gamma delta river stone cloud paper music light green table window "
         "seven happy quickly north garden yellow simple").split()


def _sentences(n, rng):
    return [" ".join(rng.choice(WORDS, size=rng.integers(4, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny AlbertForPreTraining (random init) + its tokenizer, saved as a HF directory."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("model")
    tok = Tokenizer.train(_sentences(400, rng) + ["good bad the is of what where when"], vocab_size=60)
    cfg = AlbertConfig.from_preset("tiny", vocab_size=tok.vocab_size, num_hidden_layers=2,
                                   hidden_size=64, intermediate_size=128, embedding_size=32,
                                   num_attention_heads=2)
    AlbertForPreTraining(cfg, seed=0).save_pretrained(d)
    tok.save(d / "spiece.model")
    return d


def _ft(model_dir, out, **kw):
    base = dict(model=str(model_dir), out=str(out), progress=False, epochs=3, batch_size=8,
                lr=2e-3, max_length=32)
    base.update(kw)
    return FinetuneConfig(**base)


def _quiet(*a, **k):
    pass


def test_sequence_classification_learns_an_easy_task(model_dir, tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(160):
        s = _sentences(1, rng)[0].split()
        lab = i % 2
        s.insert(int(rng.integers(0, len(s))), "good" if lab else "bad")
        rows.append({"sentence": " ".join(s), "label": ["neg", "pos"][lab]})
    train = tmp_path / "train.tsv"
    with open(train, "w", newline="") as f:
        w = csv.DictWriter(f, ["sentence", "label"], delimiter="\t")
        w.writeheader()
        w.writerows(rows)
    res = finetune(_ft(model_dir, tmp_path / "out", train=str(train), task="classification", epochs=4), log=_quiet)
    assert res["kind"] == "sequence_classification" and res["label_names"] == ["neg", "pos"]
    assert res["accuracy"] >= 0.9, res                     # chance is 0.5
    saved = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert saved["accuracy"] == res["accuracy"]
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "spiece.model").exists()
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architectures"] == ["AlbertForSequenceClassification"] and cfg["num_labels"] == 2


def test_pair_regression_and_layerwise_decay(model_dir, tmp_path):
    rng = np.random.default_rng(2)
    rows = [{"sentence1": a, "sentence2": b, "score": float(len(a.split()) - len(b.split())) / 2 + 0.25}
            for a, b in zip(_sentences(64, rng), _sentences(64, rng))]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = finetune(_ft(model_dir, tmp_path / "out", train=str(train), task="regression", epochs=1,
                       layerwise_lr_decay=0.8), log=_quiet)
    assert res["kind"] == "regression"
    for k in ("pearson", "spearman", "mse"):
        assert np.isfinite(res[k]), k


def test_token_classification_runs(model_dir, tmp_path):
    rng = np.random.default_rng(3)
    lines = []
    for s in _sentences(60, rng):
        for w in s.split():
            lines.append(f"{w} {'B-COL' if w in ('green', 'yellow') else 'O'}")
        lines.append("")
    train = tmp_path / "train.conll"
    train.write_text("\n".join(lines))
    res = finetune(_ft(model_dir, tmp_path / "out", train=str(train), task="token", epochs=1), log=_quiet)
    assert res["kind"] == "token_classification" and res["label_names"] == ["B-COL", "O"]
    assert 0.0 <= res["accuracy"] <= 1.0


def _squad(n, rng):
    data = []
    for i in range(n):
        ctx_words = _sentences(1, rng)[0].split() * 3          # long enough for several windows
        j = int(rng.integers(0, len(ctx_words)))
        ctx = " ".join(ctx_words)
        start = len(" ".join(ctx_words[:j])) + (1 if j else 0)
        ans = ctx_words[j]
        data.append({"title": "t", "paragraphs": [{"context": ctx, "qas": [
            {"id": f"q{i}", "question": f"what is {ans}",
             "answers": [{"text": ans, "answer_start": start}]}]}]})
    return {"version": "1.1", "data": data}


def test_qa_windows_map_gold_spans_back_to_the_answer(model_dir):
    rng = np.random.default_rng(4)
    tok = Tokenizer(str(model_dir / "spiece.model"))
    path_examples = []
    for art in _squad(30, rng)["data"]:
        for p in art["paragraphs"]:
            for qa in p["qas"]:
                path_examples.append({"id": qa["id"], "question": qa["question"], "context": p["context"],
                                      "answers": qa["answers"]})
    f = T.qa_features(path_examples, tok, max_length=24, doc_stride=6, max_query_length=8)
    assert len(f["example_index"]) > len(path_examples)         # contexts were split into windows
    # logits that point exactly at the gold span of every window holding it: EM must be 100
    N, L = f["input_ids"].shape
    st = np.full((N, L), -10.0)
    en = np.full((N, L), -10.0)
    has = f["start_positions"] > 0
    st[has, f["start_positions"][has]] = 10.0
    en[has, f["end_positions"][has]] = 10.0
    preds = T.qa_predictions(path_examples, f, st, en)
    golds = {e["id"]: [a["text"] for a in e["answers"]] for e in path_examples}
    assert M.squad_metrics(preds, golds) == {"exact_match": 100.0, "f1": 100.0}


def test_qa_finetune_runs(model_dir, tmp_path):
    rng = np.random.default_rng(5)
    train = tmp_path / "train.json"
    train.write_text(json.dumps(_squad(40, rng)))
    res = finetune(_ft(model_dir, tmp_path / "out", train=str(train), task="qa", epochs=1,
                       max_length=32, doc_stride=8), log=_quiet)
    assert 0.0 <= res["exact_match"] <= 100.0 and 0.0 <= res["f1"] <= 100.0
    assert json.loads((tmp_path / "out" / "predictions.json").read_text())


def test_bad_input(model_dir, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"alpha {i}", "label": i % 3}) + "\n" for i in range(30)))
    ev = tmp_path / "eval.jsonl"
    ev.write_text(json.dumps({"text": "beta", "label": 7}) + "\n")
    with pytest.raises(ValueError, match="label 7 is outside"):
        T.load_sequence_task(train, ev, num_labels=3)
    with pytest.raises(ValueError, match="larger than the data"):
        finetune(_ft(model_dir, tmp_path / "o1", train=str(train), task="classification", batch_size=1000), log=_quiet)
    with pytest.raises(FileNotFoundError, match="holds no model"):
        finetune(_ft(tmp_path, tmp_path / "o2", train=str(train), task="classification"), log=_quiet)
    with pytest.raises(ValueError, match="needs --train"):
        finetune(_ft(model_dir, tmp_path / "o3", task="classification"), log=_quiet)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    with pytest.raises(ValueError, match="not empty"):
        finetune(_ft(model_dir, busy, train=str(train), task="classification"), log=_quiet)
    assert (busy / "x").read_text() == "keep"
    # a model fine-tuned for 2 labels cannot silently start a 3-label task
    from minialbert.heads import AlbertForSequenceClassification
    two = tmp_path / "two"
    mc = AlbertConfig.from_json_file(model_dir, num_labels=2)
    AlbertForSequenceClassification(mc, seed=0).save_pretrained(two)
    shutil.copy(model_dir / "spiece.model", two / "spiece.model")
    with pytest.raises(ValueError, match=r"another size than this task's 3 label"):
        finetune(_ft(two, tmp_path / "o4", train=str(train), task="classification"), log=_quiet)
    assert not (tmp_path / "o4").exists()
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\nok\t1\ntoo\tmany\tfields\n")
    with pytest.raises(ValueError, match="number of fields"):
        T.load_sequence_task(bad)


def test_demo_task_is_embedded_and_balanced():
    task = demo_task(per_class=50, seed=0)
    assert task.label_names == ["asyncio", "email", "logging", "xml"]
    labels = [r["label"] for r in task.train + task.eval]
    assert np.bincount(labels).tolist() == [50, 50, 50, 50]
    assert len(task.eval) == 40 and all(r["text_a"] for r in task.train)


# -- metrics -------------------------------------------------------------------------------

def test_glue_metrics_against_references():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.where(rng.random(200) < 0.8, y, 1 - y)
    tp = ((p == 1) & (y == 1)).sum(); tn = ((p == 0) & (y == 0)).sum()
    fp = ((p == 1) & (y == 0)).sum(); fn = ((p == 0) & (y == 1)).sum()
    mcc = (tp * tn - fp * fn) / np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    assert M.matthews_corrcoef(p, y) == pytest.approx(mcc, rel=1e-12)
    assert M.f1_binary(p, y) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert M.accuracy(p, y) == pytest.approx((p == y).mean())
    assert M.matthews_corrcoef(np.zeros(5), np.ones(5)) == 0.0       # undefined -> 0, as sklearn
    x = rng.integers(0, 5, 100).astype(float)                         # many ties
    z = x + rng.normal(size=100)
    assert M.pearsonr(x, z) == pytest.approx(scipy.stats.pearsonr(x, z)[0], rel=1e-12)
    assert M.spearmanr(x, z) == pytest.approx(scipy.stats.spearmanr(x, z)[0], rel=1e-12)


def test_squad_metrics():
    assert M.normalize_answer("The  Cat, sat!") == "cat sat"
    assert M.squad_f1("the big cat", "a cat") == pytest.approx(2 * 0.5 * 1 / 1.5)
    res = M.squad_metrics({"a": "Paris.", "b": "in London"}, {"a": ["paris"], "b": ["London", "UK"]})
    assert res["exact_match"] == pytest.approx(50.0)
    assert res["f1"] == pytest.approx(100 * (1 + 2 * 0.5 * 1 / 1.5) / 2)


def test_finetune_from_a_transformers_directory(model_dir, tmp_path):
    """A directory written by transformers itself (not by minialbert) fine-tunes too."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = json.loads((model_dir / "config.json").read_text())
    keep = {k: cfg[k] for k in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                                "num_attention_heads", "intermediate_size", "max_position_embeddings")}
    torch.manual_seed(0)
    hf = transformers.AlbertForMaskedLM(transformers.AlbertConfig(**keep))
    hf_dir = tmp_path / "hf"
    hf.save_pretrained(hf_dir, safe_serialization=True)
    (hf_dir / "spiece.model").write_bytes((model_dir / "spiece.model").read_bytes())
    rng = np.random.default_rng(6)
    train = tmp_path / "train.csv"
    with open(train, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, s in enumerate(_sentences(48, rng)):
            w.writerow([s, i % 2])
    res = finetune(_ft(hf_dir, tmp_path / "out", train=str(train), task="classification", epochs=1), log=_quiet)
    assert res["num_train"] + res["num_eval"] == 48 and 0.0 <= res["accuracy"] <= 1.0


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_overwrite_never_deletes_user_files_or_the_input(model_dir, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"alpha beta {i}", "label": i % 2}) + "\n" for i in range(40)))
    kw = dict(train=str(train), task="classification", epochs=1, overwrite=True)
    # the user's thesis in --out: --overwrite refuses, naming it, and deletes nothing
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("\\documentclass{article}")
    with pytest.raises(ValueError, match=r"did not write \(thesis\.tex\)"):
        finetune(_ft(model_dir, out, **kw), log=_quiet)
    assert _snapshot(out) == {"thesis.tex": b"\\documentclass{article}"}
    # --out = the --model directory: refused, the model it reads is kept
    src = tmp_path / "pretrained"
    shutil.copytree(model_dir, src)
    before = _snapshot(src)
    with pytest.raises(ValueError, match=r"an input of this run"):
        finetune(_ft(src, src, **kw), log=_quiet)
    assert _snapshot(src) == before
    # a fine-tuning run of ours is replaced by --overwrite; run.json lists what it wrote
    (out / "thesis.tex").unlink()
    finetune(_ft(model_dir, out, **kw), log=_quiet)
    files = json.loads((out / "run.json").read_text())["files"]
    assert {"config.json", "model.safetensors", "eval_results.json"} <= set(files)
    res = finetune(_ft(model_dir, out, **kw, seed=1), log=_quiet)
    assert json.loads((out / "eval_results.json").read_text())["steps"] == res["steps"]
    assert json.loads((out / "finetune_config.json").read_text())["seed"] == 1
    # a bad flag: nothing written
    with pytest.raises(ValueError, match=r"--clip-norm must be a positive number, got -1"):
        finetune(_ft(model_dir, tmp_path / "o5", **dict(kw, clip_norm=-1.0)), log=_quiet)
    assert not (tmp_path / "o5").exists()
