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
