"""Bad input and faults (issue 9): every one ends in a clear error naming the file,
argument or value and what was expected, and no user file is lost.

benchmarks/bad_inputs.py runs a larger catalogue of such cases and counts the outcomes.
"""
import json
import os

import numpy as np
import pytest

from minialbert import Tokenizer
from minialbert.cli import main as cli_main
from minialbert.data import build_shards, load_default_corpus, read_manifest


@pytest.fixture(scope="module")
def corpus():
    return load_default_corpus(include_numpy=False)[:120]


@pytest.fixture(scope="module")
def tok(corpus):
    return Tokenizer.train(corpus, 300)


# -- data build replaces only what it wrote -----------------------------------------------
def test_build_keeps_the_users_files(tok, corpus, tmp_path):
    d = tmp_path / "D"
    d.mkdir()
    (d / "draft.tmp.md").write_text("my notes")
    (d / "shard-mine.npz").write_bytes(b"mine")
    m = build_shards(corpus, tok, d, max_seq_length=32, docs_per_shard=50, num_workers=1)
    assert (d / "draft.tmp.md").read_text() == "my notes" and (d / "shard-mine.npz").read_bytes() == b"mine"
    n = len(m["shards"])
    # --overwrite with fewer shards: the build's own extra shards go, the user's files stay
    build_shards(corpus[:60], tok, d, max_seq_length=32, docs_per_shard=50, num_workers=1, overwrite=True)
    assert n == 3 and sorted(os.listdir(d)) == ["draft.tmp.md", "manifest.json", "shard-00000.npz",
                                                "shard-00001.npz", "shard-mine.npz"]


def test_build_refuses_to_replace_a_file_it_did_not_write(tok, corpus, tmp_path):
    d = tmp_path / "D"
    d.mkdir()
    (d / "shard-00001.npz").write_bytes(b"the user's")
    with pytest.raises(FileExistsError, match=r"shard-00001\.npz, which minialbert did not write"):
        build_shards(corpus, tok, d, max_seq_length=32, docs_per_shard=50, num_workers=1, overwrite=True)
    assert os.listdir(d) == ["shard-00001.npz"] and (d / "shard-00001.npz").read_bytes() == b"the user's"


def test_cli_build_keeps_a_users_spiece_model(corpus, tmp_path, capsys):
    src = tmp_path / "t.txt"
    src.write_text("\n\n".join("\n".join(d) for d in corpus[:60]), encoding="utf-8")
    d = tmp_path / "D"
    d.mkdir()
    (d / "spiece.model").write_bytes(b"the user's own model")
    args = ["data", "build", "-i", str(src), "-o", str(d), "--vocab-size", "200", "-q", "-j", "1"]
    assert cli_main(args) == 1
    assert "spiece.model, which minialbert did not write" in capsys.readouterr().err
    assert (d / "spiece.model").read_bytes() == b"the user's own model"
    (d / "spiece.model").unlink()
    assert cli_main(args) == 0 and read_manifest(d)["files"] == ["spiece.model"]
    assert cli_main(args + ["--overwrite"]) == 0                   # its own spiece.model: replaced
    assert sorted(os.listdir(d)) == ["manifest.json", "shard-00000.npz", "spiece.model"]


# -- config values ----------------------------------------------------------------------
from minialbert import AlbertConfig  # noqa: E402


@pytest.mark.parametrize("bad, msg", [
    ("hidden_size=128", r"from_dict: expected a dict of config fields .*got str 'hidden_size=128'"),
    (None, r"from_dict: expected a dict .*got NoneType"),
    ([1, 2], r"from_dict: expected a dict .*got list \[1, 2\]"),
    ({"id2label": ["a", "b"]}, r"id2label must be a mapping .*got list"),
    ({"id2label": {"0": "a", "1": "b"}, "num_labels": 3}, r"num_labels=3 disagrees with id2label, which names 2"),
    ({"id2label": {"0": "a", "5": "b"}}, r"id2label keys must be label ids 0..1"),
])
def test_from_dict_bad_values(bad, msg):
    with pytest.raises(ValueError, match=msg):
        AlbertConfig.from_dict(bad)


def test_from_dict_num_labels_override_wins_over_id2label():
    c = AlbertConfig.from_dict({"id2label": {"0": "a", "1": "b"}, "num_labels": 2, "vocab_size": 50,
                                "hidden_size": 8, "num_attention_heads": 2}, num_labels=3)
    assert c.num_labels == 3


@pytest.mark.parametrize("kwargs, msg", [
    (dict(max_position_embeddings=10**12), r"max_position_embeddings=1000000000000 is larger than 2147483647"),
    (dict(max_position_embeddings=2**30), r"parameters .* is more than"),
    (dict(initializer_range=float("inf")), r"initializer_range must be a positive number, got inf; it must be finite"),
    (dict(initializer_range=float("nan")), r"initializer_range must be a positive number, got nan"),
    (dict(layer_norm_eps=float("inf")), r"layer_norm_eps .* finite"),
    (dict(hidden_size=8, num_attention_heads=2, embedding_size=4, vocab_size=10, hidden_act="gelu_new",
          num_hidden_layers=1, intermediate_size=8, max_position_embeddings=8, type_vocab_size=2,
          initializer_range=0.02, layer_norm_eps=1e-12, num_labels=2, pad_token_id=0, sharing="all",
          hiden_dropout=0.1), r"'hiden_dropout'"),
])
def test_config_sizes_and_finite_values(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        AlbertConfig(**kwargs)


def test_config_field_given_twice_is_a_value_error():
    with pytest.raises(ValueError, match="vocab_size given both by position and by name"):
        AlbertConfig(100, vocab_size=100)


@pytest.mark.parametrize("content, msg", [
    (b"[1, 2]", r"config\.json: expected a JSON object \{\.\.\.\} of config fields, got a list \[1, 2\]"),
    (b"{\"hidden_size\": 8,", r"config\.json: not a config file \(invalid JSON at line 1 column 19"),
    (b"\xff\xfe garbage", r"config\.json: not a config file \(not UTF-8 text"),
    (b"{\"hidden_size\": 8, \"num_attention_heads\": 3}", r"config\.json: AlbertConfig\.hidden_size=8 is not divisible"),
])
def test_from_json_file_names_the_file(tmp_path, content, msg):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(ValueError, match=msg):
        AlbertConfig.from_json_file(tmp_path)


# -- unreadable or corrupt model files ----------------------------------------------------
from minialbert import AlbertForMaskedLM, from_pretrained  # noqa: E402
from minialbert.checkpoint import save_checkpoint  # noqa: E402
from minialbert.cli.fill_mask import fill_mask  # noqa: E402


@pytest.fixture
def ckpt(tok, tmp_path):
    """A pretraining-style run directory: OUT/checkpoint with a manifest, spiece.model inside."""
    cfg = AlbertConfig(vocab_size=tok.vocab_size, embedding_size=8, hidden_size=8, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
    d = save_checkpoint(tmp_path / "run" / "checkpoint", AlbertForMaskedLM(cfg, seed=0), None, step=1,
                        files={"spiece.model": tok.model_proto})
    return d


def _both_loaders(d):
    """from_pretrained and fill-mask on the same directory: both must raise."""
    return [lambda: from_pretrained(d), lambda: fill_mask(d.parent, "a [MASK] b")]


def test_flipped_weight_byte_is_caught_by_every_loader(ckpt):
    f = ckpt / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-5] ^= 0x01                                            # one bit of the last weight
    f.write_bytes(bytes(raw))
    for load in _both_loaders(ckpt):
        with pytest.raises(ValueError, match=r"model\.safetensors: corrupt \(sha256 differs"):
            load()


@pytest.mark.parametrize("damage", ["truncated", "random"])
def test_unreadable_safetensors_names_the_file(ckpt, damage):
    (ckpt / "manifest.json").unlink()                          # a plain HF directory now
    f = ckpt / "model.safetensors"
    raw = f.read_bytes()
    f.write_bytes(raw[:len(raw) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(len(raw)))
    for load in _both_loaders(ckpt):
        with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors file"):
            load()


@pytest.mark.parametrize("name, content, msg", [
    ("config.json", b"{not json", r"config\.json: not a config file \(invalid JSON at line 1 column 2"),
    ("config.json", b"[1, 2]", r"config\.json: expected a JSON object"),
    ("manifest.json", b"{not json", r"manifest\.json: unreadable or truncated"),
    ("spiece.model", b"garbage bytes", r"spiece\.model: not a SentencePiece model"),
])
def test_non_json_or_garbage_files_name_the_file(ckpt, name, content, msg):
    if name != "manifest.json":
        (ckpt / "manifest.json").unlink()
    (ckpt / name).write_bytes(content)
    loaders = _both_loaders(ckpt) if name != "spiece.model" else _both_loaders(ckpt)[1:]
    for load in loaders:
        with pytest.raises(ValueError, match=msg):
            load()


def _resave(d, change):
    from safetensors.numpy import load_file, save_file
    (d / "manifest.json").unlink()
    state = load_file(d / "model.safetensors")
    change(state)
    save_file(state, d / "model.safetensors")


def test_integer_weights_are_refused(ckpt):
    _resave(ckpt, lambda s: s.__setitem__("predictions.bias", s["predictions.bias"].astype(np.int64)))
    with pytest.raises(ValueError, match=r"tensor 'predictions\.bias' is stored as int64, expected a floating"):
        from_pretrained(ckpt)


def test_unknown_extra_tensors_warn(ckpt):
    import warnings
    with warnings.catch_warnings(record=True) as seen:   # the MLM head, unused by AlbertModel: known
        warnings.simplefilter("always")
        from_pretrained(ckpt, model_class=__import__("minialbert").AlbertModel)
    assert not [w for w in seen if "no ALBERT model has" in str(w.message)]
    _resave(ckpt, lambda s: s.__setitem__("my_probe.weight", np.zeros(3, np.float32)))
    with pytest.warns(UserWarning, match=r"ignoring 1 tensor\(s\) that no ALBERT model has: \['my_probe\.weight'\]"):
        from_pretrained(ckpt)


# -- shards ---------------------------------------------------------------------------------
from minialbert.data import ShardLoader  # noqa: E402


@pytest.fixture
def shards_dir(tok, corpus, tmp_path):
    d = tmp_path / "shards"
    build_shards(corpus, tok, d, max_seq_length=32, docs_per_shard=50, num_workers=1)
    return d


@pytest.mark.parametrize("delta", [+3, -3])
def test_manifest_that_misstates_a_shard_size(shards_dir, delta):
    # over-stated: an IndexError deep in the loader; under-stated: examples silently dropped
    m = json.loads((shards_dir / "manifest.json").read_text())
    m["shards"][1]["num_examples"] += delta
    m["num_examples"] += delta
    (shards_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"shard-00001\.npz holds input_ids of shape \(\d+, 32\), the manifest says"):
        ShardLoader(shards_dir, batch_size=4)


def test_manifest_total_that_disagrees_with_its_shards(shards_dir):
    m = json.loads((shards_dir / "manifest.json").read_text())
    m["num_examples"] += 1
    (shards_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match=r"manifest\.json says num_examples=\d+ but its shards hold"):
        ShardLoader(shards_dir, batch_size=4)


@pytest.mark.parametrize("content, msg", [
    (b"{not json", r"manifest\.json: not a shard manifest file \(invalid JSON at line 1"),
    (b'{"format": "minialbert-pretraining-shards", "shards": 3}', r"manifest\.json is damaged"),
])
def test_non_json_or_damaged_shard_manifest(shards_dir, content, msg):
    (shards_dir / "manifest.json").write_bytes(content)
    with pytest.raises(ValueError, match=msg):
        ShardLoader(shards_dir, batch_size=4)


# -- one enormous line ----------------------------------------------------------------------
def _one_long_line(n_words=400_000):
    rng = np.random.default_rng(0)
    words = np.array(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"])
    return " ".join(words[rng.integers(0, 8, n_words)])                        # ~2.4 MB, no breaks


def test_tokenizer_train_on_one_enormous_line(tmp_path, capsys):
    f = tmp_path / "one.txt"
    f.write_text(_one_long_line() + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"1 of 1 lines is longer than max_sentence_length=16384 bytes"):
        Tokenizer.train([f.read_text(encoding="utf-8")], 50)
    assert cli_main(["tokenizer", "train", "-i", str(f), "-V", "50", "-o", str(tmp_path / "sp"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "minialbert tokenizer: error: texts: 1 of 1 lines is longer" in err and "Traceback" not in err
    with pytest.warns(UserWarning, match=r"1 of \d+ lines is longer .* SentencePiece skips them"):
        Tokenizer.train(load_default_corpus(include_numpy=False)[:40] + [[_one_long_line(5000)]], 200)


def test_data_build_warns_about_one_enormous_line(tok, tmp_path):
    with pytest.warns(UserWarning, match=r"1 sentence\(s\) longer than 4,096 characters \(the longest: [\d,]+ "
                                         r"characters, in document 0\); an example holds max_seq_length=128"):
        m = build_shards([[_one_long_line(100_000)]], tok, tmp_path / "D", num_workers=1)
    assert m["num_examples"] == 1


# -- writes that fail -----------------------------------------------------------------------
import errno  # noqa: E402


def test_full_disk_is_one_line_naming_the_output(tok, corpus, tmp_path, monkeypatch, capsys):
    from minialbert.data import shards as shards_mod
    d = tmp_path / "D"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    tok.save(tmp_path / "sp.model")
    src = tmp_path / "t.txt"
    src.write_text("\n\n".join("\n".join(doc) for doc in corpus[:50]), encoding="utf-8")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(shards_mod.np, "savez", full)
    rc = cli_main(["data", "build", "-i", str(src), "-t", str(tmp_path / "sp.model"), "-o", str(d), "-q", "-j", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip().splitlines()[-1] == f"minialbert data: error: cannot write {d / 'shard-00000.npz'}: No space left on device"
    assert "Traceback" not in err and (d / "notes.txt").read_text() == "keep me"
    assert not (d / "manifest.json").exists() and not [f for f in os.listdir(d) if ".tmp" in f]


def test_read_only_output_is_one_line_naming_the_path(tok, corpus, tmp_path, monkeypatch, capsys):
    import pathlib
    tok.save(tmp_path / "sp.model")
    src = tmp_path / "t.txt"
    src.write_text("\n\n".join("\n".join(doc) for doc in corpus[:50]), encoding="utf-8")
    d = tmp_path / "ro" / "D"

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))
    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)
    rc = cli_main(["data", "build", "-i", str(src), "-t", str(tmp_path / "sp.model"), "-o", str(d), "-q", "-j", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and err.strip().splitlines()[-1] == f"minialbert data: error: cannot write {d}: Read-only file system"


# -- fine-tuning files that are not UTF-8 -------------------------------------------------
from minialbert import tasks as T  # noqa: E402


def test_non_utf8_csv_names_file_and_line_and_encoding_reads_it(tmp_path):
    f = tmp_path / "train.csv"
    rows = ["sentence,label"] + [f"row number {i},{i % 2}" for i in range(6)] + ["Привет мир,1"]
    f.write_bytes("\n".join(rows).encode("cp1251"))                     # 0xcf... not UTF-8
    with pytest.raises(ValueError, match=r"train\.csv:8: not valid utf-8 text \(byte 0xcf at line 8, byte 1 "
                                         r"of the line.*pass --encoding"):
        T.load_sequence_task(f)
    task = T.load_sequence_task(f, encoding="cp1251")
    assert any(r["text_a"] == "Привет мир" for r in task.train + task.eval)
    with pytest.raises(ValueError, match=r"--encoding: unknown text encoding 'klingon'"):
        T.load_sequence_task(f, encoding="klingon")


def test_finetune_encoding_flag(tmp_path, capsys):
    from minialbert.finetune import FinetuneConfig
    assert FinetuneConfig().encoding == "utf-8"
    with pytest.raises(ValueError, match="--encoding: unknown text encoding"):
        FinetuneConfig(task="classification", train="x.csv", encoding="klingon").validate()
    f = tmp_path / "train.csv"
    f.write_bytes("sentence,label\ncaf\xe9,1\nthe,0\n".encode("latin-1"))
    rc = cli_main(["finetune", "--task", "classification", "--train", str(f), "--model", str(tmp_path / "none"),
                   "--out", str(tmp_path / "o"), "--encoding", "latin-1"])       # the flag parses
    assert rc == 1 and "holds no model" in capsys.readouterr().err


# -- model inputs at the public boundary -----------------------------------------------------
import minialbert as ma  # noqa: E402


def _tiny(cls=ma.AlbertForSequenceClassification, **kw):
    c = AlbertConfig(vocab_size=30, embedding_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=8, max_position_embeddings=16, **kw)
    return cls(c, seed=0, dtype="float64")


def test_ragged_input_ids_name_the_argument():
    m = _tiny(ma.AlbertModel)
    with pytest.raises(ValueError, match=r"input_ids: rows of different lengths \[2, 3\] \(a ragged list\): pad"):
        m.forward([[5, 6, 7], [5, 6]])
    with pytest.raises(ValueError, match=r"attention_mask: rows of different lengths"):
        m.forward([[5, 6, 7], [5, 6, 8]], attention_mask=[[1, 1, 1], [1, 1]])


def test_grad_outputs_of_the_wrong_shape():
    m = _tiny(ma.AlbertModel)
    m.forward(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"grad_outputs\['last_hidden_state'\] must have the shape of the "
                                         r"forward's last_hidden_state, \(2, 3, 8\), got \(2, 8\)"):
        m.backward({"last_hidden_state": np.ones((2, 8))})


@pytest.mark.parametrize("problem, labels", [
    ("regression", [0.5, float("nan")]),
    ("multi_label_classification", [[0.0, float("nan")], [1.0, 0.0]]),
    ("regression", [0.5, float("inf")]),
])
def test_nan_labels_are_refused(problem, labels):
    m = _tiny(num_labels=1 if problem == "regression" else 2, problem_type=problem)
    with pytest.raises(ValueError, match=r"labels hold 1 NaN or infinite value\(s\)"):
        m.forward(np.ones((2, 3), dtype=np.int64), labels=np.asarray(labels))


# -- where HF's answer stays (documented in docs/model/heads.md) --------------------------
def test_every_label_ignored_gives_nan_as_hf():
    # HF's CrossEntropyLoss(ignore_index=-100) averages over zero labels: 0/0 = NaN. We keep it
    # (a NaN the training loop reports) rather than invent a 0 that would look like a perfect fit.
    m = _tiny(ma.AlbertForMaskedLM)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = m.forward(np.ones((2, 3), dtype=np.int64), labels=np.full((2, 3), -100))
    assert np.isnan(float(out.loss))
    tc = _tiny(ma.AlbertForTokenClassification)
    with np.errstate(invalid="ignore", divide="ignore"):
        assert np.isnan(float(tc.forward(np.ones((2, 3), dtype=np.int64), labels=np.full((2, 3), -100)).loss))


def test_qa_positions_are_clamped_or_ignored_as_hf():
    # HF clamps start/end positions to [0, T] and ignores T: a position past the end does not
    # count, a negative one counts as position 0
    m = _tiny(ma.AlbertForQuestionAnswering)
    ids = np.ones((2, 4), dtype=np.int64)
    base = m.forward(ids, start_positions=[1, 2], end_positions=[2, 3])
    past = m.forward(ids, start_positions=[1, 99], end_positions=[2, 99])      # row 1 ignored
    only0 = m.forward(ids[:1], start_positions=[1], end_positions=[2])
    assert np.isclose(float(past.loss), float(only0.loss))
    neg = m.forward(ids, start_positions=[-5, 2], end_positions=[2, 3])
    zero = m.forward(ids, start_positions=[0, 2], end_positions=[2, 3])
    assert float(neg.loss) == float(zero.loss) and float(base.loss) != float(zero.loss)


@pytest.mark.slow
def test_the_bad_input_catalogue_never_crashes():
    # benchmarks/bad_inputs.py: every case classified; a crash (a traceback) fails this
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).parents[1] / "benchmarks" / "bad_inputs.py"
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and " 0 crash" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]


def test_tokenizer_save_on_a_full_disk_names_the_model_file(tok, tmp_path, monkeypatch, capsys):
    from conftest import break_atomic_writes
    break_atomic_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError, match="No space left") as e:
        tok.save(tmp_path / "sp")
    assert e.value.filename == str(tmp_path / "sp.model") and os.listdir(tmp_path) == []
