"""The house rules of issue 12, as tests: inputs checked once at the boundary, one home per
name, one save_checkpoint signature, exception classes instead of message matching, no dead
code (the import graph has its own file, tests/test_imports.py)."""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest

import minialbert as ma
from minialbert import checkpoint, optim, tasks
from minialbert.data import pretraining, shards
from minialbert.layers import _check

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "minialbert"
LAYER_MODULES = [m for m in vars(ma.layers).values()
                 if inspect.ismodule(m) and m.__name__.startswith("minialbert.layers.")]


def small_config(**kw):
    return ma.AlbertConfig(vocab_size=13, embedding_size=4, hidden_size=6, num_hidden_layers=3,
                           num_attention_heads=2, intermediate_size=8, max_position_embeddings=8,
                           hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **kw)


def pretraining_batch(c, B=2, T=5, seed=0):
    r = np.random.default_rng(seed)
    labels = np.full((B, T), -100)
    labels[:, 1] = r.integers(0, c.vocab_size, B)
    return dict(input_ids=r.integers(0, c.vocab_size, (B, T)), token_type_ids=np.zeros((B, T), np.int64),
                attention_mask=np.ones((B, T), np.int64), labels=labels,
                sentence_order_label=r.integers(0, 2, B))


# ----------------------------------------------------------------------------------------
# check once, at the boundary
# ----------------------------------------------------------------------------------------

@pytest.fixture
def layer_checks(monkeypatch):
    """Counts every call of a layers/_check.py function made from inside the layers."""
    calls = []
    for module in LAYER_MODULES + [_check]:
        for name in dir(module):
            f = getattr(module, name)
            if name.startswith("check_") and callable(f):
                def counted(*a, _f=f, _name=name, **k):
                    calls.append(_name)
                    return _f(*a, **k)
                monkeypatch.setattr(module, name, counted)
    return calls


def test_a_model_forward_and_backward_run_no_layer_checks(layer_checks):
    """The model validates ids, masks, labels and parameters once, in forward(); the L layer
    applications and the losses check nothing again (the old code ran ~25 checks per
    layer application, and the ids and labels range checks twice, each a device sync)."""
    c = small_config()
    m = ma.AlbertForPreTraining(c)
    out = m.forward(**pretraining_batch(c))
    m.backward()
    assert np.isfinite(float(out.loss))
    assert layer_checks == []


def test_layers_called_directly_still_check_their_arguments(layer_checks):
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match=r"x last dimension must be 5"):
        ma.layers.linear_forward(x, np.zeros((2, 5)))
    assert layer_checks                       # and check=False is the model's way around them
    y, _ = ma.layers.linear_forward(x, np.zeros((2, 4)), check=False)
    assert y.shape == (2, 3, 2)


def test_parameters_are_checked_at_the_boundary():
    c = small_config()
    m = ma.AlbertModel(c)
    ids = np.ones((1, 3), np.int64)
    m.params["encoder.attention.0.query.weight"] = m.params["encoder.attention.0.query.weight"].astype(np.float64)
    with pytest.raises(ValueError, match=r"model.params\['encoder.attention.0.query.weight'\] must be float32"):
        m.forward(ids)
    m.params["encoder.attention.0.query.weight"] = np.zeros((6, 5), np.float32)
    with pytest.raises(ValueError, match=r"must be float32\(6, 6\), got float32\(6, 5\)"):
        m.forward(ids)


def test_one_host_sync_checks_ids_types_and_mask_together():
    c = small_config()
    m = ma.AlbertModel(c)
    ids = np.ones((2, 3), np.int64)
    with pytest.raises(ValueError, match=r"token_type_ids must lie in \[0, 2\), got values in \[0, 5\]"):
        m.forward(ids, token_type_ids=np.array([[0, 0, 5], [0, 0, 0]]))
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 13\), got values in \[1, 13\]"):
        m.forward(np.array([[1, 13, 2]]))


def test_lr_schedule_checks_its_settings_once():
    s = optim.LRSchedule(1e-3, 10, 100)
    assert [s(t) for t in (0, 5, 10, 100)] == [optim.lr_at(t, 1e-3, 10, 100) for t in (0, 5, 10, 100)]
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.LRSchedule(1e-3, 200, 100)
    # the per-step call is the formula alone: no isinstance checks to run
    src = inspect.getsource(optim.LRSchedule.__call__)
    assert "raise" not in src and "isinstance" not in src


# ----------------------------------------------------------------------------------------
# one source of truth
# ----------------------------------------------------------------------------------------

def _literals():
    """Every module-level ``NAME = <literal>`` in the package: [(file, name, value)]."""
    found = []
    for f in sorted(PKG.rglob("*.py")):
        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    continue
                found.append((f.relative_to(ROOT).as_posix(), node.targets[0].id, value))
    return found


def _homes(value=None, name=None):
    return sorted(f for f, n, v in _literals() if (name is None or n == name) and (value is None or v == value))


def test_ignore_index_has_one_home():
    assert _homes(name="IGNORE_INDEX") == ["minialbert/layers/losses.py"]
    assert pretraining.IGNORE_INDEX == tasks.IGNORE_INDEX == ma.layers.IGNORE_INDEX == -100


def test_sharing_modes_and_sentence_tasks_have_one_home():
    assert _homes(value=("all", "attention", "ffn", "none")) == ["minialbert/config.py"]
    assert _homes(value=("sop", "nsp", "none")) == ["minialbert/data/pretraining.py"]


# ----------------------------------------------------------------------------------------
# no magic, no dead code
# ----------------------------------------------------------------------------------------

def test_save_checkpoint_has_one_signature(tmp_path):
    params = list(inspect.signature(checkpoint.save_checkpoint).parameters)
    assert params == ["directory", "model", "optimizer", "step", "rng", "extra", "files"]
    with pytest.raises(ValueError, match="model must be a minialbert model"):
        checkpoint.save_checkpoint(tmp_path / "c", {"w": np.ones(1)}, {"hidden_size": 1})
    assert not (tmp_path / "c").exists()


def test_an_empty_corpus_is_its_own_exception_class():
    with pytest.raises(pretraining.EmptyCorpusError, match="corpus is empty"):
        pretraining.create_pretraining_examples([], tokenizer=None)
    assert issubclass(pretraining.EmptyCorpusError, ValueError)
    assert "in str(e)" not in inspect.getsource(shards)       # no control flow on message text


def test_dead_code_is_gone():
    # (iterate_shards, unused when issue 12 was filed, is used by tests/test_eval.py now: kept)
    assert not hasattr(ma.AlbertConfig, "head_size")
    assert not hasattr(ma.AlbertModel, "expected_num_parameters")
