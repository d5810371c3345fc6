"""count_parameters: closed form == built model, and the paper's Tables 1, 3 and 4.

The paper (Lan et al., 2019) rounds to whole millions, and its counting convention is not
consistent (spec §4, docs/model/parameter-counts.md): the rows with any sharing match the
count *with* the pooler, the not-shared (BERT-like) rows the count *without* it, and the
E = H = 768 rows have no E->H projection (the TF code creates it only when E != H). Heads
(MLM, SOP) are never included. With that convention every row reproduces except two
(ALBERT xlarge and xxlarge in Table 1, see test_table1_rows_that_do_not_reproduce).
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minialbert as ma
from minialbert import AlbertConfig, count_parameters
from minialbert.config import HEADS


def millions(n):
    """The paper's rounding: whole millions."""
    return int(round(n / 1e6))


def paper_count(config, shared: bool):
    """The paper's convention: shared rows with the pooler, not-shared rows without it; no
    projection when E == H (TF)."""
    projection = config.embedding_size != config.hidden_size
    return count_parameters(config, head="model", pooler=shared, projection=projection)


# exact counts measured with HF transformers (spec §4.2, [run]): encoder only / AlbertModel /
# AlbertForPreTraining (unique parameters)
EXACT = {
    "albert-base-v2": (11_092_992, 11_683_584, 11_813_810),
    "albert-large-v2": (16_634_368, 17_683_968, 17_847_474),
    "albert-xlarge-v2": (54_528_512, 58_724_864, 59_021_490),
    "albert-xxlarge-v2": (205_814_272, 222_595_584, 223_158_450),
}


@pytest.mark.parametrize("name", list(EXACT))
def test_exact_counts_of_the_released_shapes(name):
    c = AlbertConfig.from_preset(name)
    enc, model, pre = EXACT[name]
    assert count_parameters(c, head="encoder") == enc
    assert count_parameters(c, head="model") == model
    assert count_parameters(c, head="pretraining") == pre


def test_bert_exact_counts_without_projection():
    # spec §4.2: BERT (V = 30000), no pooler / with pooler / with MLM + NSP heads
    base, large = AlbertConfig.from_preset("bert-base"), AlbertConfig.from_preset("bert-large")
    assert count_parameters(base, head="encoder", projection=False) == 108_490_752
    assert count_parameters(base, head="model", projection=False) == 109_081_344
    assert count_parameters(base, head="pretraining", projection=False) == 109_705_010
    assert count_parameters(large, head="encoder", projection=False) == 333_557_760
    assert count_parameters(large, head="model", projection=False) == 334_607_360
    # HF's layout keeps a 768x768 projection even when E = H (spec §4.3: 109,671,936)
    assert count_parameters(base, head="model") == 109_081_344 + 768 * 768 + 768


def test_table1():
    """Table 1: BERT base 108M, large 334M; ALBERT base 12M, large 18M."""
    assert millions(paper_count(AlbertConfig.from_preset("bert-base"), shared=False)) == 108
    assert millions(paper_count(AlbertConfig.from_preset("bert-large"), shared=False)) == 334
    assert millions(paper_count(AlbertConfig.from_preset("albert-base-v1"), shared=True)) == 12
    assert millions(paper_count(AlbertConfig.from_preset("albert-large-v1"), shared=True)) == 18


def test_table1_rows_that_do_not_reproduce():
    """The paper prints ALBERT xlarge 60M and xxlarge 235M. The released architectures have
    58.7M and 222.6M (AlbertModel; 59.0M / 223.2M with the MLM and SOP heads), HF's model cards
    say 58M / 223M, and no choice of pooler / heads / untied decoder closes the gap (an untied
    decoder adds only V·E = 3.84M). We pin what the architecture gives, not the printed number."""
    xl, xxl = AlbertConfig.from_preset("albert-xlarge-v1"), AlbertConfig.from_preset("albert-xxlarge-v1")
    assert paper_count(xl, shared=True) == 58_724_864 and millions(paper_count(xl, shared=True)) != 60
    assert paper_count(xxl, shared=True) == 222_595_584 and millions(paper_count(xxl, shared=True)) != 235
    for head in ("model", "pretraining"):
        assert 58e6 < count_parameters(xl, head=head) < 59.5e6
        assert 222e6 < count_parameters(xxl, head=head) < 224e6
    untied = count_parameters(xxl, head="pretraining") + xxl.vocab_size * xxl.embedding_size
    assert millions(untied) != 235


# Table 3: ALBERT-base shapes (H = 768, L = 12) with E in {64, 128, 256, 768}
TABLE3 = {  # E: (not-shared, all-shared) in millions as printed
    64: (87, 10), 128: (89, 12), 256: (93, 16), 768: (108, 31)}


@pytest.mark.parametrize("E", list(TABLE3))
def test_table3_embedding_size_sweep(E):
    not_shared, all_shared = TABLE3[E]
    cfg = AlbertConfig.from_preset("albert-base-v1", embedding_size=E)
    assert millions(paper_count(cfg.replace(sharing="none"), shared=False)) == not_shared
    assert millions(paper_count(cfg, shared=True)) == all_shared


# Table 4: sharing strategies at E = 768 and E = 128
TABLE4 = {  # (E, sharing): millions as printed
    (768, "all"): 31, (768, "attention"): 83, (768, "ffn"): 57, (768, "none"): 108,
    (128, "all"): 12, (128, "attention"): 64, (128, "ffn"): 38, (128, "none"): 89}


@pytest.mark.parametrize("E, sharing", list(TABLE4))
def test_table4_sharing_strategies(E, sharing):
    cfg = AlbertConfig.from_preset("albert-base-v1", embedding_size=E, sharing=sharing)
    assert millions(paper_count(cfg, shared=sharing != "none")) == TABLE4[(E, sharing)]


def test_table4_exact_values():
    # spec §4.3 (with pooler): shared-attention 83.08M / 63.65M, shared-FFN 57.12M / 37.69M
    base = AlbertConfig.from_preset("albert-base-v1")
    H, I = 768, 3072
    attn, ffn = 4 * (H * H + H) + 2 * H, 2 * H * I + I + H + 2 * H
    for E, proj in ((768, False), (128, True)):
        c_all = base.replace(embedding_size=E)
        common = count_parameters(c_all, head="model", projection=proj) - attn - ffn
        assert count_parameters(c_all.replace(sharing="attention"), projection=proj) == common + attn + 12 * ffn
        assert count_parameters(c_all.replace(sharing="ffn"), projection=proj) == common + 12 * attn + ffn
    assert round(count_parameters(base.replace(embedding_size=768, sharing="attention"), projection=False) / 1e4) \
        == 8308


CLASSES = {"model": ma.AlbertModel, "pretraining": ma.AlbertForPreTraining, "masked_lm": ma.AlbertForMaskedLM,
           "sequence_classification": ma.AlbertForSequenceClassification,
           "token_classification": ma.AlbertForTokenClassification,
           "question_answering": ma.AlbertForQuestionAnswering, "multiple_choice": ma.AlbertForMultipleChoice}


@given(L=st.integers(1, 4), G=st.integers(1, 4), inner=st.integers(1, 3), NH=st.integers(1, 3),
       HS=st.integers(1, 4), E=st.integers(1, 6), V=st.integers(2, 30), C=st.integers(1, 4),
       sharing=st.sampled_from(["all", "attention", "ffn", "none"]),
       head=st.sampled_from([h for h in HEADS if h != "encoder"]))
def test_closed_form_equals_built_model(L, G, inner, NH, HS, E, V, C, sharing, head):
    cfg = AlbertConfig(vocab_size=V, embedding_size=E, hidden_size=NH * HS, num_attention_heads=NH,
                       intermediate_size=3, num_hidden_layers=L, num_hidden_groups=min(G, L),
                       inner_group_num=inner, max_position_embeddings=7, sharing=sharing,
                       num_labels=2 if head == "question_answering" else C)
    model = CLASSES[head](cfg)
    assert model.num_parameters() == count_parameters(cfg, head=head)
    if head == "model":
        no_pool = sum(v.size for k, v in model.params.items() if not k.startswith("pooler."))
        assert no_pool == count_parameters(cfg, head="encoder")


def test_closed_form_equals_transformers():
    transformers = pytest.importorskip("transformers")
    kw = dict(vocab_size=300, embedding_size=16, hidden_size=24, num_attention_heads=4, intermediate_size=40,
              num_hidden_layers=6, num_hidden_groups=4, inner_group_num=2, max_position_embeddings=64, num_labels=3)
    ours = AlbertConfig(**kw)
    for head, arch in (("model", "AlbertModel"), ("pretraining", "AlbertForPreTraining"),
                       ("masked_lm", "AlbertForMaskedLM"), ("sequence_classification", "AlbertForSequenceClassification"),
                       ("token_classification", "AlbertForTokenClassification"),
                       ("multiple_choice", "AlbertForMultipleChoice")):
        hf = getattr(transformers, arch)(transformers.AlbertConfig(**kw))
        assert sum(p.numel() for p in hf.parameters()) == count_parameters(ours, head=head), head
    hf = transformers.AlbertForQuestionAnswering(transformers.AlbertConfig(**{**kw, "num_labels": 2}))
    assert sum(p.numel() for p in hf.parameters()) == count_parameters(ours.replace(num_labels=2),
                                                                        head="question_answering")


def test_count_parameters_bad_arguments():
    c = AlbertConfig.from_preset("tiny", embedding_size=64)      # E != H: the projection is needed
    with pytest.raises(ValueError, match="head"):
        count_parameters(c, head="pretrain")
    with pytest.raises(ValueError, match="E == H"):
        count_parameters(c, projection=False)
    assert np.isclose(count_parameters(c, pooler=False), count_parameters(c, head="encoder"))
