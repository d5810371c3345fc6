"""ALBERT configuration (HuggingFace field names), presets, and the closed-form parameter count.

Letters used across minialbert: B batch, T sequence, V vocabulary, E embedding size,
H hidden size, NH heads, HS = H // NH head size, I intermediate (FFN) size, L depth
(number of layer applications), G parameter groups.

The defaults are HF's ``AlbertConfig`` defaults (the xxlarge-v2 shape), so a config.json
written by ``transformers`` reads back with the same meaning. Derivation of the counts:
[docs/model/parameter-counts.md](../model/parameter-counts.md)
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass
from typing import Mapping, Optional

from .atomic import atomic_write
from .layers.activations import ACTIVATIONS

SHARING_MODES = ("all", "attention", "ffn", "none")
MAX_SIZE = 2**31 - 1            # any one size: ids and positions are int32 in shards and batches
MAX_PARAMETERS = 2**34          # 17.2e9: 64 GiB of float32 weights, 80x albert-xxlarge (223M)

# Keys that HF or the hub write into config.json but that change nothing in the model
# (bookkeeping, generation, the TF-era structure knobs of the hub configs). Reading them is
# not an error; everything else we do not know is, so a misspelt field never goes unnoticed.
HF_INERT_KEYS = frozenset({
    "architectures", "model_type", "transformers_version", "dtype", "torch_dtype",
    "_name_or_path", "name_or_path", "tie_word_embeddings", "position_embedding_type",
    "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "mask_token_id",
    "unk_token_id", "id2label", "label2id", "output_attentions", "output_hidden_states",
    "return_dict", "use_return_dict", "torchscript", "is_decoder", "add_cross_attention",
    "tie_encoder_decoder", "chunk_size_feed_forward", "finetuning_task", "tokenizer_class",
    "prefix", "task_specific_params", "pruned_heads", "gradient_checkpointing",
    "use_cache", "attn_implementation", "_attn_implementation", "layerdrop",
    "net_structure_type", "gap_size", "num_memory_blocks", "layers_to_keep",
    "down_scale_factor", "output_past",
})


@dataclass(init=False)
class AlbertConfig:
    """Every hyper-parameter of an ALBERT model, with HF's names.

    ``sharing`` is ours (the paper's Table 4 ablation, which HF cannot express):
    ``"all"`` HF's rule: G = num_hidden_groups groups of inner_group_num layers, layer
    application i uses group ``int(i / (L / G))``; ``"attention"``: attention blocks
    follow that rule, each application gets its own FFN; ``"ffn"``: the reverse;
    ``"none"``: every application has its own layer (== HF with num_hidden_groups = L).
    """
    vocab_size: int = 30000                  # V; the tokenizer's size normally overrides it
    embedding_size: int = 128                # E: the factorised embedding width
    hidden_size: int = 4096                  # H (xxlarge)
    num_hidden_layers: int = 12              # L: number of layer applications (depth)
    num_hidden_groups: int = 1               # G: distinct parameter groups (1 = all layers share)
    inner_group_num: int = 1                 # distinct layers inside a group, applied in sequence
    num_attention_heads: int = 64            # NH; head size HS = H // NH
    intermediate_size: int = 16384           # I = 4H in every released config
    hidden_act: str = "gelu_new"             # tanh-form GELU (v2 and TF); v1 hub configs say "gelu" (erf)
    hidden_dropout_prob: float = 0.0         # embeddings + attention-output dropout (0 in v2)
    attention_probs_dropout_prob: float = 0.0  # dropout on attention probabilities (0 in v2)
    max_position_embeddings: int = 512       # longest sequence T
    type_vocab_size: int = 2                 # segment A / segment B
    initializer_range: float = 0.02          # std of the N(0, std) weight init
    layer_norm_eps: float = 1e-12            # every LayerNorm
    classifier_dropout_prob: Optional[float] = 0.1  # before SOP / classifier heads (None: token cls uses hidden_dropout_prob)
    num_labels: int = 2                      # classifier outputs; also sizes the SOP head, as in HF
    pad_token_id: int = 0                    # <pad>: the word-embedding row that gets no lookup gradient
    problem_type: Optional[str] = None       # sequence classification loss: "regression" / "single_label_classification" /
    #                                          "multi_label_classification"; None: inferred per call, as HF does
    sharing: str = "all"                     # ours: "all" | "attention" | "ffn" | "none" (paper Table 4)

    def __init__(self, *args, **kwargs):
        # Written out rather than generated, so that a misspelt or extra keyword is a
        # ValueError naming it (with the closest field), not the generated __init__'s bare
        # TypeError. Fields by name or in declaration order; defaults as declared above.
        fields = dataclasses.fields(self)
        if len(args) > len(fields):
            raise ValueError(f"AlbertConfig takes at most {len(fields)} positional arguments "
                             f"({', '.join(f.name for f in fields)}), got {len(args)}; pass fields by name")
        _check_field_names(kwargs, "AlbertConfig(...)")
        given = dict(zip((f.name for f in fields), args))
        twice = sorted(set(given) & set(kwargs))
        if twice:
            raise ValueError(f"AlbertConfig: {', '.join(twice)} given both by position and by name")
        given.update(kwargs)
        for f in fields:
            setattr(self, f.name, given.get(f.name, f.default))
        self.validate()

    # -- validation -------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        ints = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "num_hidden_groups",
                "inner_group_num", "num_attention_heads", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "num_labels")
        for name in ints:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AlbertConfig.{name} must be a positive integer, got {v!r}")
            if v > MAX_SIZE:
                raise ValueError(f"AlbertConfig.{name}={v} is larger than {MAX_SIZE} (token ids and "
                                 f"positions are stored as int32)")
        if self.sharing not in SHARING_MODES:
            raise ValueError(f"AlbertConfig.sharing must be one of {SHARING_MODES}, got {self.sharing!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"AlbertConfig.hidden_size={self.hidden_size} is not divisible by "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.num_hidden_groups > self.num_hidden_layers:
            raise ValueError(f"AlbertConfig.num_hidden_groups={self.num_hidden_groups} exceeds "
                             f"num_hidden_layers={self.num_hidden_layers}: some groups would never be used")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob"):
            v = getattr(self, name)
            if v is None and name == "classifier_dropout_prob":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
                raise ValueError(f"AlbertConfig.{name} must be in [0, 1), got {v!r}")
        if not isinstance(self.hidden_act, str) or self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"AlbertConfig.hidden_act {self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        if isinstance(self.pad_token_id, bool) or not isinstance(self.pad_token_id, int):
            raise ValueError(f"AlbertConfig.pad_token_id must be an integer, got {self.pad_token_id!r}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"AlbertConfig.pad_token_id={self.pad_token_id} is outside the vocabulary "
                             f"[0, {self.vocab_size})")
        if self.problem_type not in (None, "regression", "single_label_classification",
                                     "multi_label_classification"):
            raise ValueError(f"AlbertConfig.problem_type {self.problem_type!r} is not one of HF's three")
        for name in ("initializer_range", "layer_norm_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"AlbertConfig.{name} must be a positive number, got {v!r}"
                                 + ("; it must be finite" if isinstance(v, float) and v > 0 else ""))
        n = count_parameters(self, "pretraining")
        if n > MAX_PARAMETERS:
            raise ValueError(f"AlbertConfig: {n:,} parameters ({n * 4 / 2**30:,.0f} GiB in float32) is more "
                             f"than {MAX_PARAMETERS:,}; check vocab_size={self.vocab_size}, hidden_size="
                             f"{self.hidden_size}, intermediate_size={self.intermediate_size}, "
                             f"max_position_embeddings={self.max_position_embeddings}")

    # -- derived sizes ----------------------------------------------------------------
    @property
    def effective_groups(self) -> int:
        """G as used by the encoder: num_hidden_groups, or L for sharing="none"."""
        return self.num_hidden_layers if self.sharing == "none" else self.num_hidden_groups

    def group_of(self, i: int) -> int:
        """HF's rule for the group used by layer application i (float division, then
        truncation; TF's ``int(i / L * G)`` rounds differently for some (L, G))."""
        L, G = self.num_hidden_layers, self.effective_groups
        return int(i / (L / G))

    def attention_block_of(self, i: int, j: int) -> int:
        """Index of the attention block used by application i, inner layer j."""
        if self.sharing in ("all", "attention"):
            return self.group_of(i) * self.inner_group_num + j
        return i * self.inner_group_num + j

    def ffn_block_of(self, i: int, j: int) -> int:
        """Index of the FFN block used by application i, inner layer j."""
        if self.sharing in ("all", "ffn"):
            return self.group_of(i) * self.inner_group_num + j
        return i * self.inner_group_num + j

    @property
    def num_attention_blocks(self) -> int:
        """Distinct attention blocks (q, k, v, dense, attention.LayerNorm)."""
        per = self.effective_groups if self.sharing in ("all", "attention") else self.num_hidden_layers
        return per * self.inner_group_num

    @property
    def num_ffn_blocks(self) -> int:
        """Distinct FFN blocks (ffn, ffn_output, full_layer_layer_norm)."""
        per = self.effective_groups if self.sharing in ("all", "ffn") else self.num_hidden_layers
        return per * self.inner_group_num

    # -- presets ----------------------------------------------------------------------
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "AlbertConfig":
        """A named configuration, with fields overridden by keyword (e.g. ``vocab_size=``).
        Names: albert-{base,large,xlarge,xxlarge}-v{1,2}, bert-{base,large}, tiny, mini, small."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}: expected one of {sorted(PRESETS)}")
        kw = dict(PRESETS[name])
        _check_field_names(overrides, f"from_preset({name!r}) overrides")
        kw.update(overrides)
        return cls(**kw)

    # -- HF config.json ---------------------------------------------------------------
    def to_dict(self, architectures=None) -> dict:
        """A dict that ``transformers.AlbertConfig.from_dict`` reads with the same meaning.
        ``sharing`` is written only when HF cannot express it ("attention"/"ffn"); "none" is
        written as num_hidden_groups = L, which is what it means in HF."""
        d = dataclasses.asdict(self)
        sharing = d.pop("sharing")
        if sharing == "none":
            d["num_hidden_groups"] = self.num_hidden_layers
        elif sharing != "all":
            d["sharing"] = sharing
        if d["problem_type"] is None:
            d.pop("problem_type")
        # HF stores the number of labels as id2label; it reads num_labels too, but writes only this.
        d["id2label"] = {str(i): f"LABEL_{i}" for i in range(self.num_labels)}
        d["label2id"] = {f"LABEL_{i}": i for i in range(self.num_labels)}
        d["model_type"] = "albert"
        d["tie_word_embeddings"] = True
        d["bos_token_id"], d["eos_token_id"] = 2, 3
        if architectures:
            d["architectures"] = list(architectures)
        return dict(sorted(d.items()))

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "AlbertConfig":
        """Read an HF config dict: HF's inert keys are accepted and dropped, unknown keys are
        a ValueError. ``num_labels`` comes from ``id2label`` when only that is present; when
        both are, they must agree."""
        if not isinstance(d, Mapping):
            raise ValueError(f"AlbertConfig.from_dict: expected a dict of config fields (e.g. a parsed "
                             f"config.json), got {type(d).__name__} {_short(d)}")
        d = dict(d)
        d.update(overrides)
        bad_keys = [k for k in d if not isinstance(k, str)]
        if bad_keys:
            raise ValueError(f"AlbertConfig.from_dict: keys must be field names (str), got {bad_keys[:3]}")
        unknown = set(d) - _FIELD_NAMES - HF_INERT_KEYS
        if unknown:
            raise ValueError(f"unknown config key(s) {sorted(unknown)}: not an AlbertConfig field "
                             "(misspelt?) nor a known inert HF key")
        if d.get("model_type", "albert") != "albert":
            raise ValueError(f"config model_type is {d['model_type']!r}, expected 'albert'")
        if d.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type={d['position_embedding_type']!r} is not supported "
                             "(only 'absolute', as in every released ALBERT)")
        for key in ("id2label", "label2id"):
            if d.get(key) is not None and not isinstance(d[key], Mapping):
                raise ValueError(f"config {key} must be a mapping (label id -> name), got "
                                 f"{type(d[key]).__name__} {_short(d[key])}")
        if d.get("id2label"):
            try:
                ids = sorted(int(i) for i in d["id2label"])
            except (TypeError, ValueError):
                raise ValueError(f"config id2label keys must be label ids 0..n-1, got {_short(list(d['id2label']))}") from None
            if ids != list(range(len(ids))):
                raise ValueError(f"config id2label keys must be label ids 0..{len(ids) - 1}, got {_short(ids)}")
            if "num_labels" not in d:
                d["num_labels"] = len(ids)
            elif d["num_labels"] != len(ids) and "num_labels" not in overrides:   # an override wins, as in HF
                raise ValueError(f"config num_labels={d['num_labels']!r} disagrees with id2label, which names "
                                 f"{len(ids)} labels")
        return cls(**{k: v for k, v in d.items() if k in _FIELD_NAMES})

    @classmethod
    def from_json_file(cls, path, **overrides) -> "AlbertConfig":
        """Read a config.json (or a directory holding one)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "config.json")
        d = read_json_object(path, "config")
        try:
            return cls.from_dict(d, **overrides)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def to_json_string(self, architectures=None) -> str:
        return json.dumps(self.to_dict(architectures), indent=2) + "\n"

    def save(self, path, architectures=None) -> str:
        """Write config.json (``path`` is a directory or a file name), atomically. Returns the file."""
        path = os.fspath(path)
        if os.path.isdir(path) or not path.endswith(".json"):
            os.makedirs(path, exist_ok=True)
            path = os.path.join(path, "config.json")
        atomic_write(path, self.to_json_string(architectures))
        return path

    def replace(self, **changes) -> "AlbertConfig":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


_FIELD_ORDER = tuple(f.name for f in dataclasses.fields(AlbertConfig))
_FIELD_NAMES = frozenset(_FIELD_ORDER)


def _short(x, n: int = 60) -> str:
    r = repr(x)
    return r if len(r) <= n else r[:n] + "..."


def read_json_object(path, what: str = "JSON") -> dict:
    """A JSON file that must hold an object (config.json, manifest.json): ValueError naming
    the file and saying what is wrong (missing, not UTF-8, not JSON and where, not an object)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file (expected a {what} file)")
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a {what} file (not UTF-8 text: byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a {what} file (invalid JSON at line {e.lineno} column {e.colno}: "
                         f"{e.msg})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object {{...}} of {what} fields, got a "
                         f"{type(d).__name__} {_short(d)}")
    return d


def _check_field_names(names, where: str) -> None:
    """ValueError naming every unknown field (with the closest real one), so that a misspelt
    keyword never reaches the dataclass __init__, whose answer is a bare TypeError."""
    unknown = sorted(set(names) - _FIELD_NAMES)
    if unknown:
        hints = []
        for u in unknown:
            close = difflib.get_close_matches(u, _FIELD_ORDER, n=1)
            hints.append(f"{u!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown AlbertConfig field(s) in {where}: {', '.join(hints)}")


def _albert(L, H, NH, version, xxlarge=False):
    v1 = version == 1
    drop = 0.1 if v1 and not xxlarge else 0.0    # xxlarge-v1 was released with dropout 0
    return dict(vocab_size=30000, embedding_size=128, hidden_size=H, num_hidden_layers=L,
                num_attention_heads=NH, intermediate_size=4 * H,
                hidden_act="gelu" if v1 else "gelu_new",
                hidden_dropout_prob=drop, attention_probs_dropout_prob=drop)


def _bert(L, H, NH):
    # E = H, nothing shared; BERT's GELU is the erf form, dropout 0.1. HF's layout still
    # has the E->H projection (TF/BERT has none: count_parameters(..., projection=False)).
    return dict(vocab_size=30000, embedding_size=H, hidden_size=H, num_hidden_layers=L,
                num_hidden_groups=L, num_attention_heads=NH, intermediate_size=4 * H,
                hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                sharing="none")


PRESETS = {
    # released ALBERT shapes (spec §1.2); xlarge has 16 heads of 128, not H/64
    **{f"albert-base-v{v}": _albert(12, 768, 12, v) for v in (1, 2)},
    **{f"albert-large-v{v}": _albert(24, 1024, 16, v) for v in (1, 2)},
    **{f"albert-xlarge-v{v}": _albert(24, 2048, 16, v) for v in (1, 2)},
    **{f"albert-xxlarge-v{v}": _albert(12, 4096, 64, v, xxlarge=True) for v in (1, 2)},
    "bert-base": _bert(12, 768, 12),
    "bert-large": _bert(24, 1024, 16),
    # small shapes for tests and CPU demos (v2 style: tanh GELU, no dropout in the encoder)
    # tiny: the CPU demo's shape (E=128 since issue 10: +0.02 held-out MLM accuracy at equal
    # steps over E=64, docs/training/pretraining.md); 0.50M parameters at V=2000 (0.52M with
    # the pretraining heads)
    "tiny": dict(vocab_size=2000, embedding_size=128, hidden_size=128, num_hidden_layers=4,
                 num_attention_heads=4, intermediate_size=512, max_position_embeddings=128,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    # mini: 1.95M parameters at V=8000 (1.99M with the pretraining heads)
    "mini": dict(vocab_size=8000, embedding_size=128, hidden_size=256, num_hidden_layers=6,
                 num_attention_heads=4, intermediate_size=1024, max_position_embeddings=256,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    # small: 7.39M parameters at V=30000 (7.48M with the pretraining heads; H=512, L=8)
    "small": dict(vocab_size=30000, embedding_size=128, hidden_size=512, num_hidden_layers=8,
                  num_attention_heads=8, intermediate_size=2048, max_position_embeddings=512,
                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
}


# -- parameter counts ------------------------------------------------------------------
HEADS = ("encoder", "model", "pretraining", "masked_lm", "sequence_classification",
         "token_classification", "question_answering", "multiple_choice")
# whether the class has a pooler (HF: add_pooling_layer)
HEAD_HAS_POOLER = {"encoder": False, "model": True, "pretraining": True, "masked_lm": False,
                   "sequence_classification": True, "token_classification": False,
                   "question_answering": False, "multiple_choice": True}


def count_parameters(config: AlbertConfig, head: str = "model", pooler: Optional[bool] = None,
                     projection: bool = True) -> int:
    """Number of distinct trainable scalars, in closed form (spec §4.1).

    Counts: embeddings (word V·E, position Tmax·E, token type TT·E, LayerNorm 2E); the E->H
    projection E·H + H (``projection=False`` leaves it out, which is how TF/BERT count a
    model with E = H: they have no projection); each *distinct* attention block 4(H² + H) + 2H
    and FFN block 2·H·I + I + H + 2H (so sharing divides these, see
    ``num_attention_blocks``/``num_ffn_blocks``); the pooler H² + H when ``pooler`` (default:
    whether the class named by ``head`` has one); and the head: ``"encoder"``/``"model"``
    none, ``"pretraining"`` MLM (H·E + E + 2E + V, decoder weight tied so not counted again)
    + SOP (num_labels·H + num_labels), ``"masked_lm"`` MLM, ``"sequence_classification"``/
    ``"token_classification"`` num_labels·(H + 1), ``"question_answering"`` 2(H + 1),
    ``"multiple_choice"`` H + 1. Buffers (position ids) are not parameters.
    ``count_parameters(cfg, head=h) == Cls(cfg).num_parameters()`` for the class of head h.
    """
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}: expected one of {HEADS}")
    c = config
    V, E, H, I, Tmax, TT = (c.vocab_size, c.embedding_size, c.hidden_size, c.intermediate_size,
                            c.max_position_embeddings, c.type_vocab_size)
    if not projection and E != H:
        raise ValueError(f"projection=False only makes sense when E == H, got E={E}, H={H}")
    if pooler is None:
        pooler = HEAD_HAS_POOLER[head]
    n = V * E + Tmax * E + TT * E + 2 * E                        # embeddings + LayerNorm
    if projection:
        n += E * H + H                                       # embedding_hidden_mapping_in
    n += c.num_attention_blocks * (4 * (H * H + H) + 2 * H)  # q, k, v, dense + LayerNorm
    n += c.num_ffn_blocks * (2 * H * I + I + H + 2 * H)      # ffn, ffn_output + LayerNorm
    if pooler:
        n += H * H + H
    C = c.num_labels
    mlm = H * E + E + 2 * E + V                              # dense, LayerNorm, decoder bias
    n += {"encoder": 0, "model": 0, "pretraining": mlm + C * H + C, "masked_lm": mlm,
          "sequence_classification": C * H + C, "token_classification": C * H + C,
          "question_answering": 2 * H + 2, "multiple_choice": H + 1}[head]
    return n
