"""``minialbert experiment NAME --quick``: every experiment's files and fields, and the
--out rules (never write into a folder holding someone else's files). Seconds each."""
import json

import pytest

from minialbert.cli import main

SENTENCE_EVAL = {"mlm_accuracy", "nsp_accuracy", "sop_accuracy", "nsp_pairs", "sop_pairs"}


def _quick(name, out, capsys=None):
    assert main(["experiment", name, "--out", str(out), "--quick"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == name and res["runs"]
    md = (out / "results.md").read_text()
    assert md.startswith(f"# {name}") and "albert-spec.md" in md
    marker = json.loads((out / "experiment.json").read_text())
    assert marker["finished"] and marker["settings"]["quick"] and marker["plots"]
    for png in marker["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
    for r in res["runs"]:
        assert isinstance(r["name"], str) and isinstance(r["params"], int) and r["params"] > 0
        assert isinstance(r["eval"], dict)
        ck = out / "runs" / r["name"] / "checkpoint"
        assert (ck / "model.safetensors").is_file() and (ck / "config.json").is_file(), r["name"]
    return res


def test_sentence_task_quick(tmp_path):
    res = _quick("sentence-task", tmp_path / "st")
    assert set(res) == {"experiment", "runs"}
    assert [r["sentence_task"] for r in res["runs"]] == ["none", "nsp", "sop"]
    for r in res["runs"]:
        assert set(r["eval"]) == SENTENCE_EVAL
        e = r["eval"]
        assert all(isinstance(e[k], float) and 0 <= e[k] <= 1 for k in ("mlm_accuracy", "nsp_accuracy", "sop_accuracy"))
        assert isinstance(e["nsp_pairs"], int) and e["nsp_pairs"] > 0 and e["sop_pairs"] > 0
    none, nsp, sop = res["runs"]
    # held-out curves recorded during training (pretrain --eval-data, every step here)
    assert (tmp_path / "st" / "curves.png").is_file()
    for r in res["runs"]:
        recs = [json.loads(l) for l in (tmp_path / "st" / "runs" / r["name"] / "metrics.jsonl").read_text().splitlines()]
        assert all("eval_mlm_accuracy" in m for m in recs)
    assert not none["pair_head"] and none["eval"]["nsp_accuracy"] == none["eval"]["sop_accuracy"] == 0.5
    assert nsp["params"] == sop["params"] > none["params"]       # the sentence head and pooler


def test_sharing_quick(tmp_path):
    res = _quick("sharing", tmp_path / "sh")
    runs = {r["sharing"]: r for r in res["runs"]}
    assert list(runs) == ["all", "attention", "ffn", "none"]
    p = {k: r["params"] for k, r in runs.items()}
    assert p["all"] < p["ffn"] < p["attention"] < p["none"]      # an FFN block (2HI) outweighs attention (4H^2)
    for r in runs.values():
        assert r["seconds_per_step"] > 0 and {"mlm_accuracy", "sop_accuracy"} <= set(r["eval"])
        assert r["embedding_size"] == runs["all"]["embedding_size"]
    # --resume: finished runs are reused (their checkpoint untouched), a missing one is trained
    out = tmp_path / "sh"
    kept = (out / "runs" / "all" / "checkpoint" / "model.safetensors").stat().st_mtime_ns
    import shutil
    shutil.rmtree(out / "runs" / "ffn")
    assert main(["experiment", "sharing", "--out", str(out), "--quick"]) == 1      # neither flag: refused
    assert main(["experiment", "sharing", "--out", str(out), "--quick", "--resume"]) == 0
    assert (out / "runs" / "ffn" / "checkpoint" / "model.safetensors").is_file()
    assert (out / "runs" / "all" / "checkpoint" / "model.safetensors").stat().st_mtime_ns == kept
    assert main(["experiment", "smoothness", "--out", str(out), "--quick", "--resume"]) == 1  # another one


def test_embedding_quick(tmp_path):
    from minialbert.train import PretrainConfig
    if "embedding_size" not in PretrainConfig.__dataclass_fields__:
        pytest.skip("pretrain has no embedding_size option yet (added with the loop redesign)")
    res = _quick("embedding", tmp_path / "em")
    Es = sorted({r["embedding_size"] for r in res["runs"]})
    assert len(Es) >= 2 and {r["sharing"] for r in res["runs"]} == {"all", "none"}
    by = {(r["sharing"], r["embedding_size"]): r for r in res["runs"]}
    for s in ("all", "none"):
        assert by[(s, Es[0])]["params"] < by[(s, Es[1])]["params"]
        assert "mlm_accuracy" in by[(s, Es[0])]["eval"]
    cfg = json.loads((tmp_path / "em" / "runs" / res["runs"][0]["name"] / "checkpoint" / "config.json").read_text())
    assert cfg["embedding_size"] == res["runs"][0]["embedding_size"]


def test_smoothness_quick(tmp_path):
    res = _quick("smoothness", tmp_path / "sm")
    assert [r["sharing"] for r in res["runs"]] == ["all", "none"]
    for r in res["runs"]:
        L = len(r["l2_distance"])
        assert L == len(r["cosine_similarity"]) >= 2
        assert all(d > 0 for d in r["l2_distance"]) and all(-1 <= c <= 1 for c in r["cosine_similarity"])


def test_layer_transitions_by_hand():
    """The Figure 1 measure on one example, against the definition computed directly."""
    import numpy as np

    from minialbert.config import AlbertConfig
    from minialbert.experiments import layer_transitions
    from minialbert.heads import AlbertForMaskedLM

    model = AlbertForMaskedLM(AlbertConfig.from_preset("tiny", vocab_size=50, num_hidden_layers=3), seed=0)
    ids = np.array([[2, 7, 9, 11, 3, 0]])
    mask = np.array([[1, 1, 1, 1, 1, 0]])
    b = {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": mask}
    got = layer_transitions(model, [b])
    hs = model.forward(ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for layer in range(3):
        x, y = np.asarray(hs[layer][0, :5], np.float64), np.asarray(hs[layer + 1][0, :5], np.float64)
        l2 = np.mean([np.linalg.norm(y[t] - x[t]) for t in range(5)])
        cos = np.mean([x[t] @ y[t] / np.linalg.norm(x[t]) / np.linalg.norm(y[t]) for t in range(5)])
        assert got["l2_distance"][layer] == pytest.approx(l2, rel=1e-6)
        assert got["cosine_similarity"][layer] == pytest.approx(cos, rel=1e-6)
    assert got["tokens"] == 5


def test_out_rules(tmp_path, capsys):
    from minialbert.experiments import FORMAT, MARKER, claim_out

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    assert main(["experiment", "sharing", "--out", str(foreign), "--quick"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["thesis.tex"]
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / MARKER).write_text(json.dumps({"format": FORMAT}))
    (ours / "results.json").write_text("{}")
    with pytest.raises(ValueError, match="--overwrite"):
        claim_out(ours, overwrite=False)
    claim_out(ours, overwrite=True)                      # ours only: allowed
    (ours / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        claim_out(ours, overwrite=True)                  # a file of the user's beside ours: refused
    for bad, msg in ((["--steps", "0"], "--steps"), (["--preset", "huge"], "--preset")):
        assert main(["experiment", "sharing", "--out", str(tmp_path / "new"), *bad]) == 1
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "new").exists()
