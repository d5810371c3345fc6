"""Checkpoints (minialbert/checkpoint.py): exact round trips, corruption detected and named,
interrupted saves leave the previous checkpoint intact."""
import json
import os

import numpy as np
import pytest

from minialbert import checkpoint as ck
from minialbert.backend import Random
from minialbert.checkpoint import (CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint,
                                   write_checkpoint)
from minialbert.optim import LAMB, AdamW


def tiny_config(**kw):
    from minialbert.config import AlbertConfig
    return AlbertConfig.from_preset("tiny", vocab_size=300, **kw)


def state_dict_checkpoint(step=3, seed=0):
    """(model_state, config_dict, optimizer_state, extra_state) with awkward values."""
    rng = np.random.default_rng(seed)
    model_state = {
        "albert.embeddings.word_embeddings.weight": rng.standard_normal((7, 3)).astype(np.float32),
        "albert.pooler.bias": rng.standard_normal(3),                     # float64
        "scalar": np.array(np.float32(1 / 3)),                            # 0-d
        "ids": np.arange(5, dtype=np.int64),
        "denormal": np.array([np.finfo(np.float32).tiny / 8, -0.0, np.inf], dtype=np.float32),
    }
    params = {"a.weight": rng.standard_normal((4, 4)), "a.bias": rng.standard_normal(4)}
    opt = LAMB(params)
    for _ in range(step):
        opt.step({k: rng.standard_normal(v.shape) for k, v in params.items()}, 1e-2)
    gen = np.random.default_rng(42)
    gen.standard_normal(3)                                                # advance it
    extra = {"step": step, "run_id": "abc123", "metrics": {"loss": 0.1 + 0.2, "acc": np.float32(0.5)},
             "numpy_rng": gen.bit_generator.state, "data_position": np.int64(2 ** 40 + 1),
             "order": np.array([3, 1, 2], dtype=np.int32), "weights": rng.standard_normal(3).astype(np.float32),
             "nested": [1, [2.5, None], True]}
    return model_state, {"model_type": "albert", "hidden_size": 3}, opt.state_dict(), extra, gen


def assert_tree_equal(a, b, path="top"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), path
        for k in a:
            assert_tree_equal(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
        assert a.tobytes() == b.tobytes(), path                            # -0.0, bit for bit
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_tree_equal(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


# ----------------------------------------------------------------------------------------
# round trips
# ----------------------------------------------------------------------------------------

def test_state_dict_round_trip_is_exact(tmp_path):
    model_state, config, opt_state, extra, gen = state_dict_checkpoint()
    d = write_checkpoint(tmp_path / "checkpoint", model_state, config, opt_state, extra,
                        files={"spiece.model": b"\x00\x01binary"})
    assert sorted(os.listdir(d)) == sorted([ck.CONFIG_FILE, ck.MODEL_FILE, ck.OPTIMIZER_FILE,
                                            ck.TRAINER_STATE_FILE, ck.MANIFEST, "spiece.model"])
    out = load_checkpoint(d)
    assert_tree_equal(model_state, out["model_state"])
    assert out["config"] == config
    assert_tree_equal(opt_state, out["optimizer_state"])
    assert out["step"] == 3 and out["files"] == {"spiece.model": b"\x00\x01binary"}
    ts = out["trainer_state"]
    assert ts["metrics"]["loss"] == 0.1 + 0.2 and ts["data_position"] == 2 ** 40 + 1
    assert_tree_equal({k: v for k, v in extra.items() if k != "metrics"},
                      {k: v for k, v in ts.items() if k != "metrics"})
    # the restored generator continues the same stream
    gen2 = np.random.default_rng(0)
    gen2.bit_generator.state = ts["numpy_rng"]
    np.testing.assert_array_equal(gen2.standard_normal(5), gen.standard_normal(5))


def test_trainer_state_shortcuts_and_rng_restore(tmp_path):
    r = Random(7)
    r.permutation(10)
    from minialbert import AlbertModel
    d = save_checkpoint(tmp_path / "c", AlbertModel(tiny_config()), step=5, rng=r,
                        extra={"data_state": {"epoch": 1, "i": 4}})
    r2 = Random(99)
    out = load_checkpoint(d, rng=r2)
    assert out["step"] == 5 and out["extra"] == {"data_state": {"epoch": 1, "i": 4}}
    assert out["optimizer_state"] is None
    np.testing.assert_array_equal(r2.permutation(50), r.permutation(50))


@pytest.mark.parametrize("sharing", ["all", "attention"])    # HF names / minialbert's own names
def test_model_and_optimizer_resume_bit_for_bit(tmp_path, sharing):
    from minialbert import AlbertForPreTraining
    c = tiny_config(sharing=sharing)
    rng = np.random.default_rng(0)

    def grads_for(model):
        return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in model.params.items()}

    m1 = AlbertForPreTraining(c, seed=1)
    o1 = LAMB(m1)
    for _ in range(2):
        o1.step(grads_for(m1), 1e-3)
    d = save_checkpoint(tmp_path / "checkpoint", m1, o1, step=2)
    m2 = AlbertForPreTraining(c, seed=2)                  # different init: must be overwritten
    o2 = LAMB(m2)
    out = load_checkpoint(d, model=m2, optimizer=o2)
    assert out["step"] == 2 and out["config"]["architectures"] == ["AlbertForPreTraining"]
    for k in m1.params:
        assert m2.params[k].dtype == m1.params[k].dtype
        np.testing.assert_array_equal(m2.params[k], m1.params[k], err_msg=k)
    for _ in range(2):                                    # and training continues identically
        g = grads_for(m1)
        o1.step(g, 1e-3)
        o2.step({k: v.copy() for k, v in g.items()}, 1e-3)
    for k in m1.params:
        assert m1.params[k].tobytes() == m2.params[k].tobytes(), k
    # the directory is an ordinary model directory too
    from minialbert.hf import from_pretrained
    m3 = from_pretrained(d, dtype="float32")
    np.testing.assert_array_equal(m3.params["predictions.bias"], out["model_state"][
        "minialbert.predictions.bias" if sharing == "attention" else "predictions.bias"])


def test_load_into_wrong_model_is_a_clear_error(tmp_path):
    from minialbert import AlbertForPreTraining
    m = AlbertForPreTraining(tiny_config())
    d = save_checkpoint(tmp_path / "c", m, step=0)
    with pytest.raises(ValueError, match="another config.*hidden_size"):
        load_checkpoint(d, model=AlbertForPreTraining(tiny_config(hidden_size=64, intermediate_size=256)))
    with pytest.raises(ValueError, match="float64"):
        load_checkpoint(d, model=AlbertForPreTraining(tiny_config(), dtype="float64"))
    with pytest.raises(ValueError, match="no optimizer state"):
        load_checkpoint(d, optimizer=AdamW(m))
    with pytest.raises(ValueError, match="optimizer=.adamw"):
        o = LAMB(m)
        save_checkpoint(d, m, o, step=0)
        load_checkpoint(d, optimizer=AdamW(m))


# ----------------------------------------------------------------------------------------
# damaged checkpoints
# ----------------------------------------------------------------------------------------

def _saved(tmp_path):
    model_state, config, opt_state, extra, _ = state_dict_checkpoint()
    return write_checkpoint(tmp_path / "checkpoint", model_state, config, opt_state, extra,
                           files={"spiece.model": b"tokenizer bytes"})


FILES = [ck.MODEL_FILE, ck.OPTIMIZER_FILE, ck.TRAINER_STATE_FILE, ck.CONFIG_FILE, "spiece.model"]


@pytest.mark.parametrize("name", FILES)
def test_truncated_file_is_named(tmp_path, name):
    d = _saved(tmp_path)
    f = d / name
    f.write_bytes(f.read_bytes()[:-3])
    with pytest.raises(CheckpointError, match=f"{name}: truncated"):
        load_checkpoint(d)


@pytest.mark.parametrize("name", FILES)
def test_flipped_byte_is_named(tmp_path, name):
    d = _saved(tmp_path)
    f = d / name
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    f.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match=f"{name}: corrupt"):
        load_checkpoint(d)


@pytest.mark.parametrize("name", FILES)
def test_missing_file_is_named(tmp_path, name):
    d = _saved(tmp_path)
    (d / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name}: missing"):
        load_checkpoint(d)


def test_bad_manifest_is_named(tmp_path):
    d = _saved(tmp_path)
    m = d / ck.MANIFEST
    m.write_bytes(m.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="manifest.json: unreadable or truncated"):
        load_checkpoint(d)
    m.unlink()
    with pytest.raises(CheckpointError, match="manifest.json: missing"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    assert isinstance(CheckpointError("x"), ValueError)


def test_consistent_but_invalid_content_is_named(tmp_path):
    # a file whose manifest entry matches but which is not what it claims to be
    d = _saved(tmp_path)
    bad = b"not safetensors"
    (d / ck.MODEL_FILE).write_bytes(bad)
    man = json.loads((d / ck.MANIFEST).read_text())
    import hashlib
    man["files"][ck.MODEL_FILE] = {"sha256": hashlib.sha256(bad).hexdigest(), "bytes": len(bad)}
    (d / ck.MANIFEST).write_text(json.dumps(man))
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors"):
        load_checkpoint(d)


# ----------------------------------------------------------------------------------------
# interrupted saves
# ----------------------------------------------------------------------------------------

def _assert_is_old(d, step=3):
    out = load_checkpoint(d)
    assert out["step"] == step
    return out


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_exception_mid_write_leaves_previous_checkpoint(tmp_path, monkeypatch, exc):
    d = _saved(tmp_path)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    real_write = ck._write
    calls = []

    def failing_write(path, data):
        calls.append(path.name)
        if len(calls) == 3:                       # after two files of the new checkpoint
            real_write(path, data[: len(data) // 2])
            raise exc
        return real_write(path, data)

    monkeypatch.setattr(ck, "_write", failing_write)
    model_state, config, opt_state, extra, _ = state_dict_checkpoint(step=9, seed=1)
    with pytest.raises(type(exc)):
        write_checkpoint(d, model_state, config, opt_state, extra)
    monkeypatch.setattr(ck, "_write", real_write)
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]   # no temporaries left
    _assert_is_old(d)
    write_checkpoint(d, model_state, config, opt_state, extra)             # and the next save works
    _assert_is_old(d, step=9)


def test_crash_inside_the_swap_falls_back_to_prev(tmp_path, monkeypatch):
    d = _saved(tmp_path)
    real_rename = os.rename
    renames = []

    def crash_on_second_rename(src, dst):
        renames.append((src, dst))
        if len(renames) == 2:                      # checkpoint -> .prev done, tmp -> checkpoint not
            raise OSError("power cut")
        return real_rename(src, dst)

    monkeypatch.setattr(ck.os, "rename", crash_on_second_rename)
    model_state, config, opt_state, extra, _ = state_dict_checkpoint(step=9, seed=1)
    with pytest.raises(OSError, match="power cut"):
        write_checkpoint(d, model_state, config, opt_state, extra)
    monkeypatch.setattr(ck.os, "rename", real_rename)
    assert not d.exists() and find_checkpoint(d) == tmp_path / "checkpoint.prev"
    with pytest.warns(UserWarning, match="previous checkpoint"):
        _assert_is_old(d)
    write_checkpoint(d, model_state, config, opt_state, extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    _assert_is_old(d, step=9)


def test_stale_prev_and_temporaries_are_cleaned(tmp_path):
    d = _saved(tmp_path)
    (tmp_path / ".checkpoint.tmp-dead").mkdir()
    (tmp_path / "checkpoint.prev").mkdir()        # a swap that crashed after its second rename
    model_state, config, opt_state, extra, _ = state_dict_checkpoint(step=4)
    write_checkpoint(d, model_state, config, opt_state, extra)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    _assert_is_old(d, step=4)


def test_save_bad_input(tmp_path):
    other = tmp_path / "someone_elses"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a minialbert checkpoint"):
        write_checkpoint(other, {"w": np.ones(1)}, {})
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="config_dict"):
        write_checkpoint(tmp_path / "c", {"w": np.ones(1)}, None)
    with pytest.raises(ValueError, match="files"):
        write_checkpoint(tmp_path / "c", {"w": np.ones(1)}, {}, files={"config.json": b"x"})
    with pytest.raises(ValueError, match="files"):
        write_checkpoint(tmp_path / "c", {"w": np.ones(1)}, {}, files={"../x": b"x"})
    with pytest.raises(ValueError, match="cannot be stored"):
        write_checkpoint(tmp_path / "c", {"w": np.ones(1)}, {}, trainer_state={"f": object()})
    from minialbert import AlbertModel
    with pytest.raises(ValueError, match="rng"):
        save_checkpoint(tmp_path / "c", AlbertModel(tiny_config()), rng="seed")
    with pytest.raises(ValueError, match="model"):
        save_checkpoint(tmp_path / "c", {"w": np.ones(1)})
    with pytest.raises(ValueError, match="optimizer"):
        save_checkpoint(tmp_path / "c", AlbertModel(tiny_config()), {"step": 0})
    assert not (tmp_path / "c").exists()
