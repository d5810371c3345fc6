"""AlbertConfig: presets, validation, HF config.json round trips."""
import json

import pytest

from minialbert import AlbertConfig, count_parameters
from minialbert.config import PRESETS

RELEASED = [f"albert-{s}-v{v}" for s in ("base", "large", "xlarge", "xxlarge") for v in (1, 2)]


def test_released_presets_match_the_hub_configs():
    # spec §1.2: (L, H, NH, I) per size; v1 erf GELU + dropout 0.1 (xxlarge-v1: 0), v2 tanh GELU + 0
    shapes = {"base": (12, 768, 12), "large": (24, 1024, 16), "xlarge": (24, 2048, 16),
              "xxlarge": (12, 4096, 64)}
    for name in RELEASED:
        c = AlbertConfig.from_preset(name)
        size, v = name.split("-")[1], name[-1]
        L, H, NH = shapes[size]
        assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads) == (L, H, NH)
        assert c.intermediate_size == 4 * H and c.embedding_size == 128 and c.vocab_size == 30000
        assert c.num_hidden_groups == 1 and c.inner_group_num == 1 and c.sharing == "all"
        assert c.hidden_act == ("gelu" if v == "1" else "gelu_new")
        drop = 0.1 if v == "1" and size != "xxlarge" else 0.0
        assert c.hidden_dropout_prob == drop and c.attention_probs_dropout_prob == drop


def test_bert_presets_are_unshared_with_e_equal_h():
    for name, (L, H) in {"bert-base": (12, 768), "bert-large": (24, 1024)}.items():
        c = AlbertConfig.from_preset(name)
        assert c.embedding_size == c.hidden_size == H and c.num_hidden_layers == L
        assert c.sharing == "none" and c.num_attention_blocks == L and c.num_ffn_blocks == L


def test_tiny_preset_has_a_few_hundred_thousand_parameters():
    n = count_parameters(AlbertConfig.from_preset("tiny"), head="pretraining")
    assert 100_000 < n < 1_000_000


def test_preset_overrides_and_unknown_names():
    c = AlbertConfig.from_preset("tiny", vocab_size=123, num_labels=3)
    assert c.vocab_size == 123 and c.num_labels == 3
    with pytest.raises(ValueError, match="unknown preset"):
        AlbertConfig.from_preset("albert-huge")
    with pytest.raises(ValueError, match="vocab_sise"):
        AlbertConfig.from_preset("tiny", vocab_sise=10)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(hidden_size=100, num_attention_heads=3), "not divisible"),
    (dict(sharing="atention"), "sharing"),
    (dict(hidden_act="relu6"), "hidden_act"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(num_hidden_groups=5, num_hidden_layers=4), "num_hidden_groups"),
    (dict(hidden_dropout_prob=1.0), "hidden_dropout_prob"),
    (dict(pad_token_id=50, vocab_size=50), "pad_token_id"),
])
def test_bad_configs_raise_clear_errors(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        AlbertConfig(**kwargs)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(layer_norm_eps="1e-12"), r"layer_norm_eps must be a positive number, got '1e-12'"),
    (dict(initializer_range=None), r"initializer_range must be a positive number, got None"),
    (dict(layer_norm_eps=0.0), r"layer_norm_eps must be a positive number"),
    (dict(pad_token_id="0"), r"pad_token_id must be an integer, got '0'"),
    (dict(hidden_act=["gelu"]), r"hidden_act \['gelu'\] is not one of"),
    (dict(hidden_dropout_prob=True), r"hidden_dropout_prob must be in \[0, 1\), got True"),
])
def test_wrongly_typed_fields_raise_value_error_not_type_error(kwargs, msg):
    # without the type checks these reach a comparison and fail with a bare TypeError
    with pytest.raises(ValueError, match=msg):
        AlbertConfig(**kwargs)


def test_unknown_field_in_direct_construction_is_a_value_error_naming_it():
    with pytest.raises(ValueError, match=r"unknown AlbertConfig field.*'unknown_field'"):
        AlbertConfig(unknown_field=1)
    with pytest.raises(ValueError, match=r"'hiden_size' \(did you mean 'hidden_size'\?\)"):
        AlbertConfig(hidden_size=8, num_attention_heads=2, hiden_size=16)
    with pytest.raises(ValueError, match=r"'vocab_sise' \(did you mean 'vocab_size'\?\)"):
        AlbertConfig.from_preset("tiny").replace(vocab_sise=10)          # dataclasses.replace too
    with pytest.raises(ValueError, match=r"at most 20 positional arguments.*got 21"):
        AlbertConfig(*range(1, 22))
    # known fields keep the dataclass semantics: by name or position, defaults, validation
    c = AlbertConfig(100, 16, hidden_size=8, num_attention_heads=2)
    assert (c.vocab_size, c.embedding_size, c.hidden_size, c.num_hidden_layers) == (100, 16, 8, 12)
    assert c == AlbertConfig(vocab_size=100, embedding_size=16, hidden_size=8, num_attention_heads=2)
    assert c.replace(num_labels=5).num_labels == 5 and c.num_labels == 2
    with pytest.raises(ValueError, match="not divisible"):
        c.replace(num_attention_heads=3)


def test_group_rule_is_hfs_float_division():
    # HF: int(i / (L / G)); TF's int(i / L * G) differs e.g. at L=22, G=22, i=15 (spec §2.3)
    c = AlbertConfig(num_hidden_layers=22, num_hidden_groups=22, hidden_size=8, num_attention_heads=2)
    assert c.group_of(15) == int(15 / (22 / 22)) == 15
    c = AlbertConfig(num_hidden_layers=5, num_hidden_groups=3, hidden_size=8, num_attention_heads=2)
    assert [c.group_of(i) for i in range(5)] == [0, 0, 1, 1, 2]   # uneven groups


@pytest.mark.parametrize("sharing, n_attn, n_ffn", [("all", 2 * 3, 2 * 3), ("attention", 2 * 3, 6 * 3),
                                                    ("ffn", 6 * 3, 2 * 3), ("none", 6 * 3, 6 * 3)])
def test_block_counts_per_sharing_mode(sharing, n_attn, n_ffn):
    c = AlbertConfig(num_hidden_layers=6, num_hidden_groups=2, inner_group_num=3, hidden_size=8,
                     num_attention_heads=2, sharing=sharing)
    assert (c.num_attention_blocks, c.num_ffn_blocks) == (n_attn, n_ffn)
    used_a = {c.attention_block_of(i, j) for i in range(6) for j in range(3)}
    used_f = {c.ffn_block_of(i, j) for i in range(6) for j in range(3)}
    assert used_a == set(range(n_attn)) and used_f == set(range(n_ffn))   # every block is used


def test_json_round_trip(tmp_path):
    c = AlbertConfig.from_preset("mini", num_labels=5, problem_type="regression")
    path = c.save(tmp_path)
    d = json.load(open(path))
    assert "architectures" not in d          # a bare config names no class
    assert d["id2label"]["4"] == "LABEL_4" and d["model_type"] == "albert"
    assert AlbertConfig.from_json_file(tmp_path) == c
    assert AlbertConfig.from_dict(c.to_dict()) == c


def test_sharing_none_is_written_as_hf_groups():
    c = AlbertConfig.from_preset("tiny", sharing="none")
    d = c.to_dict()
    assert d["num_hidden_groups"] == c.num_hidden_layers and "sharing" not in d
    c2 = AlbertConfig.from_preset("tiny", sharing="ffn")
    assert c2.to_dict()["sharing"] == "ffn" and AlbertConfig.from_dict(c2.to_dict()) == c2


def test_hf_inert_keys_are_accepted_unknown_keys_are_not():
    hub = {"architectures": ["AlbertForMaskedLM"], "attention_probs_dropout_prob": 0, "bos_token_id": 2,
           "classifier_dropout_prob": 0.1, "down_scale_factor": 1, "embedding_size": 128, "eos_token_id": 3,
           "gap_size": 0, "hidden_act": "gelu_new", "hidden_dropout_prob": 0, "hidden_size": 768,
           "initializer_range": 0.02, "inner_group_num": 1, "intermediate_size": 3072, "layer_norm_eps": 1e-12,
           "layers_to_keep": [], "max_position_embeddings": 512, "model_type": "albert", "net_structure_type": 0,
           "num_attention_heads": 12, "num_hidden_groups": 1, "num_hidden_layers": 12, "num_memory_blocks": 0,
           "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30000}   # albert-base-v2's config.json
    c = AlbertConfig.from_dict(hub)
    assert c == AlbertConfig.from_preset("albert-base-v2")
    with pytest.raises(ValueError, match="hidden_szie"):
        AlbertConfig.from_dict({**hub, "hidden_szie": 3})
    with pytest.raises(ValueError, match="model_type"):
        AlbertConfig.from_dict({**hub, "model_type": "bert"})
    assert AlbertConfig.from_dict({"id2label": {"0": "a", "1": "b", "2": "c"}}).num_labels == 3


def test_presets_all_build_valid_configs():
    for name in PRESETS:
        AlbertConfig.from_preset(name).validate()
