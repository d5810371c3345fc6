"""A catalogue of bad inputs and faults, each run and classified (issue 9).

    python benchmarks/bad_inputs.py            # every case, a table, then the counts
    python benchmarks/bad_inputs.py -k shard   # the cases whose name contains "shard"
    python benchmarks/bad_inputs.py --json     # one JSON record per case

Each case runs the Python API or the ``minialbert`` command (in this process, stderr
captured, in a temporary directory) and is classified as one of:

* ``clear error``: it failed, and the message names what the case says it must (the file,
  the argument or the value, and what was expected), with no traceback;
* ``correct answer``: it succeeded and the result passed the case's check (inputs that are
  odd but valid: a Fortran-order array, a fully padded row, an answer HF gives too);
* ``unclear error``: it failed, but the message lacks those names (or a case that should
  succeed failed);
* ``silent failure``: it succeeded where it should have failed, or its result is wrong;
* ``crash``: an uncaught exception escaped the command (a traceback), MemoryError, or a hang.

Needs the dev extra only (no torch). About a minute on two CPU cores.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import io
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

OUTCOMES = ("clear error", "correct answer", "unclear error", "silent failure", "crash")


@dataclass
class Case:
    name: str
    run: Callable                    # () -> result; raises on failure
    needles: tuple = ()              # strings a clear error message must contain (case-insensitive)
    check: Callable | None = None    # result -> bool; present: the case expects an answer
    outcome: str = ""
    detail: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class CommandFailed(Exception):
    """``minialbert ...`` exited non-zero; the message is what it printed on stderr."""


def cli(*args, env_patch=None):
    """Run ``minialbert ARGS`` in this process; returns stdout. Non-zero exit -> CommandFailed(stderr).
    An exception escaping main() is a crash (it would print a traceback)."""
    from minialbert.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("always")
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:          # argparse errors: exit 2 with a usage line
            rc = e.code
    if rc:
        raise CommandFailed(err.getvalue().strip())
    return out.getvalue() + err.getvalue()


def classify(case: Case) -> None:
    t = time.perf_counter()
    try:
        with warnings.catch_warnings(record=True) as seen, np.errstate(all="ignore"):
            warnings.simplefilter("always")
            result = case.run()
        case.extra["warnings"] = [str(w.message)[:200] for w in seen]
    except (MemoryError, RecursionError, SystemError) as e:
        case.outcome, case.detail = "crash", f"{type(e).__name__}: {e}"[:300]
    except Exception as e:  # noqa: BLE001  (every failure is classified)
        msg = str(e)
        if isinstance(e, CommandFailed) and "Traceback" in msg:
            case.outcome = "crash"
        elif case.check is None and all(n.lower() in msg.lower() for n in case.needles):
            case.outcome = "clear error"
        else:
            case.outcome = "unclear error"
        case.detail = (f"{type(e).__name__}: " if not isinstance(e, CommandFailed) else "") + msg.splitlines()[-1][:300] \
            if msg else type(e).__name__ + " (no message)"
        if case.outcome == "unclear error" and not isinstance(e, (ValueError, CommandFailed, OSError)):
            case.detail += " | " + traceback.format_exc().splitlines()[-3][:200]
    else:
        if case.check is None:
            case.outcome, case.detail = "silent failure", f"no error; returned {str(result)[:200]}"
        else:
            try:
                ok = bool(case.check(result))
            except Exception as e:  # noqa: BLE001
                ok, case.detail = False, f"check raised {type(e).__name__}: {e}"
            case.outcome = "correct answer" if ok else "silent failure"
            case.detail = case.detail or str(result)[:200]
    case.seconds = time.perf_counter() - t


# -- shared material ----------------------------------------------------------------------
class World:
    """Temporary files the cases damage copies of: a corpus file, a tokenizer, a checkpoint
    (pretraining run directory), a shard build, a fine-tuning CSV."""

    def __init__(self, root: Path):
        from minialbert import AlbertConfig, AlbertForPreTraining, Tokenizer
        from minialbert.checkpoint import save_checkpoint
        from minialbert.data import build_shards, load_default_corpus
        self.root = root
        self.docs = load_default_corpus(include_numpy=False)[:150]
        self.corpus = root / "corpus.txt"
        self.corpus.write_text("\n\n".join("\n".join(d) for d in self.docs), encoding="utf-8")
        self.tok = Tokenizer.train(self.docs, 300)
        self.spm = self.tok.save(root / "sp.model")
        self.config = AlbertConfig(vocab_size=300, embedding_size=8, hidden_size=8, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
        self.run_dir = root / "run"
        save_checkpoint(self.run_dir / "checkpoint", AlbertForPreTraining(self.config, seed=0), None, step=1,
                        files={"spiece.model": self.tok.model_proto})
        self.shards = root / "shards"
        build_shards(self.docs, self.tok, self.shards, max_seq_length=32, docs_per_shard=50, num_workers=1)
        self.n = 0

    def fresh(self, name: str) -> Path:
        self.n += 1
        d = self.root / f"{self.n:03d}-{name}"
        d.mkdir()
        return d

    def copy(self, src: Path, name: str) -> Path:
        import shutil
        d = self.fresh(name) / src.name
        shutil.copytree(src, d)
        return d

    def checkpoint_copy(self, name):
        run = self.copy(self.run_dir, name)
        return run, run / "checkpoint"


def _mutate_file(path: Path, fn):
    path.write_bytes(fn(path.read_bytes()))


def _flip(b: bytes) -> bytes:
    b = bytearray(b)
    b[-5] ^= 1
    return bytes(b)


def _resave_tensors(ck: Path, change):
    from safetensors.numpy import load_file, save_file
    (ck / "manifest.json").unlink()
    s = load_file(ck / "model.safetensors")
    change(s)
    save_file(s, ck / "model.safetensors")


def _manifest_edit(d: Path, fn):
    m = json.loads((d / "manifest.json").read_text())
    fn(m)
    (d / "manifest.json").write_text(json.dumps(m))


def cases(w: World) -> list[Case]:
    import minialbert as ma
    from minialbert import AlbertConfig, Tokenizer, from_pretrained
    from minialbert.data import ShardLoader, build_shards
    from minialbert.tasks import load_sequence_task
    C = []

    def case(name, needles=(), check=None):
        def deco(fn):
            C.append(Case(name, fn, tuple(needles), check))
            return fn
        return deco

    tiny = dict(vocab_size=30, embedding_size=4, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=8, max_position_embeddings=16)

    def model(cls=ma.AlbertModel, **kw):
        return cls(AlbertConfig(**{**tiny, **kw}), seed=0, dtype="float64")

    ids = np.ones((2, 3), dtype=np.int64)

    # ---- tokenizer ----
    @case("tokenizer: garbage spiece.model", ["garbage.model", "not a SentencePiece model"])
    def _():
        p = w.fresh("garbage") / "garbage.model"
        p.write_bytes(os.urandom(300))
        Tokenizer(p)

    @case("tokenizer: missing model file", ["nope.model"])
    def _():
        Tokenizer(w.root / "nope.model")

    @case("tokenizer train: one 2.4 MB line", ["longer than max_sentence_length"])
    def _():
        Tokenizer.train([" ".join(["alpha beta gamma"] * 160_000)], 50)

    @case("tokenizer: encode(bytes)", ["text", "bytes"])
    def _():
        w.tok.encode(b"hello")

    @case("tokenizer: lone surrogate", ["surrogate"])
    def _():
        w.tok.encode("a\udcff")

    @case("tokenizer: padding='sideways'", ["padding", "sideways"])
    def _():
        w.tok("x", padding="sideways")

    @case("tokenizer: text_b shorter than text_a", ["text_b"])
    def _():
        w.tok(["a", "b"], ["c"])

    @case("tokenizer: U+1A61 (Mc, class 0) as the reference", check=lambda r: r == [w.tok.piece_to_id("\u2581"), 1])
    def _():
        return w.tok.encode("\u1a61")

    @case("tokenizer train CLI: -V 5", ["vocab_size=5"])
    def _():
        cli("tokenizer", "train", "-i", w.corpus, "-V", 5, "-o", w.fresh("v5") / "sp", "-q")

    @case("tokenizer train CLI: -V 100000 on a small corpus", ["vocab_size=100000", "too large"])
    def _():
        cli("tokenizer", "train", "-i", w.corpus, "-V", 100000, "-o", w.fresh("vbig") / "sp", "-q")

    @case("tokenizer train CLI: --input missing", ["nope"])
    def _():
        cli("tokenizer", "train", "-i", w.root / "nope", "-o", w.fresh("nope") / "sp", "-q")

    # ---- config ----
    @case("config: from_dict('hidden_size=128')", ["from_dict", "expected a dict", "str"])
    def _():
        AlbertConfig.from_dict("hidden_size=128")

    @case("config: from_dict(None)", ["from_dict", "NoneType"])
    def _():
        AlbertConfig.from_dict(None)

    @case("config: from_json_file on [1, 2]", ["config.json", "JSON object", "list"])
    def _():
        d = w.fresh("cfglist")
        (d / "config.json").write_text("[1, 2]")
        AlbertConfig.from_json_file(d)

    @case("config: max_position_embeddings=10**12", ["max_position_embeddings"])
    def _():
        AlbertConfig(max_position_embeddings=10**12)

    @case("config: max_position_embeddings=2**30 (parameter count)", ["parameters", "max_position_embeddings"])
    def _():
        AlbertConfig(max_position_embeddings=2**30)

    @case("config: initializer_range=inf", ["initializer_range", "finite"])
    def _():
        AlbertConfig(initializer_range=float("inf"))

    @case("config: id2label a list", ["id2label", "mapping"])
    def _():
        AlbertConfig.from_dict({"id2label": ["a", "b"]})

    @case("config: id2label vs num_labels", ["num_labels=3", "id2label"])
    def _():
        AlbertConfig.from_dict({"id2label": {"0": "a", "1": "b"}, "num_labels": 3})

    @case("config: hidden_size not divisible by heads", ["hidden_size", "num_attention_heads"])
    def _():
        AlbertConfig(hidden_size=10, num_attention_heads=3)

    @case("config: misspelt field", ["hiden_size", "hidden_size"])
    def _():
        AlbertConfig(hiden_size=8)

    @case("config: dropout 1.5", ["hidden_dropout_prob", "[0, 1)"])
    def _():
        AlbertConfig(hidden_dropout_prob=1.5)

    # ---- model files: from_pretrained / fill-mask ----
    @case("from_pretrained: truncated model.safetensors", ["model.safetensors", "not a readable safetensors"])
    def _():
        run, ck = w.checkpoint_copy("trunc")
        (ck / "manifest.json").unlink()
        _mutate_file(ck / "model.safetensors", lambda b: b[:len(b) // 2])
        from_pretrained(ck)

    @case("fill-mask CLI: random-bytes model.safetensors", ["model.safetensors", "not a readable safetensors"])
    def _():
        run, ck = w.checkpoint_copy("rand")
        (ck / "manifest.json").unlink()
        _mutate_file(ck / "model.safetensors", lambda b: os.urandom(len(b)))
        cli("fill-mask", run, "a [MASK] b")

    @case("from_pretrained: one flipped weight bit (sha256 manifest)", ["model.safetensors", "sha256"])
    def _():
        run, ck = w.checkpoint_copy("flip")
        _mutate_file(ck / "model.safetensors", _flip)
        from_pretrained(ck)

    @case("fill-mask CLI: one flipped weight bit (sha256 manifest)", ["model.safetensors", "sha256"])
    def _():
        run, ck = w.checkpoint_copy("flip2")
        _mutate_file(ck / "model.safetensors", _flip)
        cli("fill-mask", run, "a [MASK] b")

    @case("from_pretrained: non-JSON config.json", ["config.json", "invalid JSON", "line 1"])
    def _():
        run, ck = w.checkpoint_copy("cfgjson")
        (ck / "manifest.json").unlink()
        (ck / "config.json").write_text("{oops")
        from_pretrained(ck)

    @case("from_pretrained: non-JSON manifest.json", ["manifest.json", "unreadable"])
    def _():
        run, ck = w.checkpoint_copy("manjson")
        (ck / "manifest.json").write_text("{oops")
        from_pretrained(ck)

    @case("fill-mask CLI: garbage spiece.model", ["spiece.model", "not a SentencePiece model"])
    def _():
        run, ck = w.checkpoint_copy("spm")
        (ck / "manifest.json").unlink()
        (ck / "spiece.model").write_bytes(b"garbage")
        cli("fill-mask", run, "a [MASK] b")

    @case("from_pretrained: integer weights", ["predictions.bias", "int64", "floating"])
    def _():
        run, ck = w.checkpoint_copy("intw")
        _resave_tensors(ck, lambda s: s.__setitem__("predictions.bias", s["predictions.bias"].astype(np.int64)))
        from_pretrained(ck)

    @case("from_pretrained: unknown extra tensor (warns, loads)",
          check=lambda r: r is not None and r.config.vocab_size == 300)
    def _():
        run, ck = w.checkpoint_copy("extra")
        _resave_tensors(ck, lambda s: s.__setitem__("probe.weight", np.zeros(3, np.float32)))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            m = from_pretrained(ck)
        return m if any("no ALBERT model has" in str(x.message) for x in seen) else None

    @case("fill-mask CLI: no such model", ["CHECKPOINT", "nothere"])
    def _():
        cli("fill-mask", w.root / "nothere", "a [MASK] b")

    @case("fill-mask CLI: text without [MASK]", ["[MASK]"])
    def _():
        cli("fill-mask", w.run_dir, "no mask here")

    @case("fill-mask CLI: --top-k 0", ["--top-k"])
    def _():
        cli("fill-mask", w.run_dir, "a [MASK] b", "--top-k", 0)

    @case("fill-mask CLI: a good checkpoint", check=lambda out: "[MASK]" in out)
    def _():
        return cli("fill-mask", w.run_dir, "a [MASK] b")

    # ---- model inputs ----
    @case("model: ragged input_ids", ["input_ids", "different lengths"])
    def _():
        model().forward([[1, 2, 3], [1, 2]])

    @case("model: float input_ids", ["input_ids", "integer"])
    def _():
        model().forward(np.ones((2, 3)))

    @case("model: 3-d input_ids", ["input_ids", "2-d"])
    def _():
        model().forward(np.ones((2, 3, 1), dtype=np.int64))

    @case("model: T > max_position_embeddings", ["max_position_embeddings"])
    def _():
        model().forward(np.ones((1, 17), dtype=np.int64))

    @case("model: attention_mask holding 2", ["attention_mask", "1 (attend) and 0"])
    def _():
        model().forward(ids, attention_mask=np.full((2, 3), 2))

    @case("model: token_type_ids of another shape", ["token_type_ids", "shape"])
    def _():
        model().forward(ids, token_type_ids=np.zeros((2, 4), dtype=np.int64))

    @case("model: input id >= vocab_size", ["input_ids", "30"])
    def _():
        model().forward(np.full((1, 3), 30))

    @case("model: grad_outputs of the wrong shape", ["grad_outputs", "last_hidden_state", "(2, 3, 8)"])
    def _():
        m = model()
        m.forward(ids)
        m.backward({"last_hidden_state": np.ones((2, 8))})

    @case("model: backward() without forward", ["forward"])
    def _():
        model().backward()

    @case("model: NaN regression label", ["labels", "NaN"])
    def _():
        model(ma.AlbertForSequenceClassification, num_labels=1).forward(ids, labels=np.array([0.5, np.nan]))

    @case("model: NaN multi-label label", ["labels", "NaN"])
    def _():
        m = model(ma.AlbertForSequenceClassification, num_labels=2, problem_type="multi_label_classification")
        m.forward(ids, labels=np.array([[0.0, np.nan], [1.0, 0.0]]))

    @case("model: class label out of range", ["labels", "[0, 2)"])
    def _():
        model(ma.AlbertForSequenceClassification).forward(ids, labels=[0, 5])

    @case("model: every label ignored gives NaN (as HF)", check=lambda r: np.isnan(r))
    def _():
        return float(model(ma.AlbertForMaskedLM).forward(ids, labels=np.full((2, 3), -100)).loss)

    @case("model: QA positions past the end are ignored (as HF)", check=lambda r: np.isclose(r[0], r[1]))
    def _():
        m = model(ma.AlbertForQuestionAnswering)
        a = float(m.forward(ids, start_positions=[1, 99], end_positions=[2, 99]).loss)
        return a, float(m.forward(ids[:1], start_positions=[1], end_positions=[2]).loss)

    @case("model: Fortran-order input_ids", check=lambda r: np.allclose(r[0], r[1]))
    def _():
        m = model()
        a = np.asfortranarray(np.arange(6).reshape(2, 3) % 30)
        return m.forward(a).last_hidden_state, m.forward(np.ascontiguousarray(a)).last_hidden_state

    @case("model: a fully padded row", check=lambda r: np.isfinite(r).all())
    def _():
        return model().forward(ids, attention_mask=np.array([[1, 1, 1], [0, 0, 0]])).last_hidden_state

    # ---- data build and shards ----
    @case("data build: a user's shard-00000.npz in --output", ["shard-00000.npz", "did not write"])
    def _():
        d = w.fresh("foreign")
        (d / "shard-00000.npz").write_bytes(b"mine")
        try:
            cli("data", "build", "-i", w.corpus, "-t", w.spm, "-o", d, "-q", "-j", 1)
        finally:
            if (d / "shard-00000.npz").read_bytes() != b"mine":
                raise AssertionError("the user's file was replaced")  # noqa: B012

    @case("data build: keeps draft.tmp.md and shard-mine.npz", check=lambda d: sorted(os.listdir(d))[:2] ==
          ["draft.tmp.md", "manifest.json"] and (d / "shard-mine.npz").read_bytes() == b"mine")
    def _():
        d = w.fresh("keep")
        (d / "draft.tmp.md").write_text("notes")
        (d / "shard-mine.npz").write_bytes(b"mine")
        cli("data", "build", "-i", w.corpus, "-t", w.spm, "-o", d, "-q", "-j", 1)
        return d

    @case("data build: existing build without --overwrite", ["--overwrite"])
    def _():
        cli("data", "build", "-i", w.corpus, "-t", w.spm, "-o", w.shards, "-q", "-j", 1)

    @case("data build: one 2.4 MB line (warns)", check=lambda seen: any("longer than" in m for m in seen))
    def _():
        d = w.fresh("longline")
        f = d / "one.txt"
        f.write_text(" ".join(["alpha beta gamma"] * 160_000) + "\n")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            cli("data", "build", "-i", f, "-t", w.spm, "-o", d / "D", "-q", "-j", 1)
        return [str(x.message) for x in seen]

    @case("data build: --max-seq-length 4", ["max_seq_length"])
    def _():
        cli("data", "build", "-i", w.corpus, "-t", w.spm, "-o", w.fresh("msl") / "D", "--max-seq-length", 4, "-q")

    @case("data build: --tokenizer garbage", ["not a SentencePiece model"])
    def _():
        d = w.fresh("badtok")
        (d / "x.model").write_bytes(b"garbage")
        cli("data", "build", "-i", w.corpus, "-t", d / "x.model", "-o", d / "D", "-q", "-j", 1)

    @case("shards: manifest over-states a shard", ["shard-00001.npz", "the manifest says"])
    def _():
        d = w.copy(w.shards, "over")
        _manifest_edit(d, lambda m: (m["shards"][1].__setitem__("num_examples", m["shards"][1]["num_examples"] + 3),
                                     m.__setitem__("num_examples", m["num_examples"] + 3)))
        list(ShardLoader(d, batch_size=8, epochs=1))

    @case("shards: manifest under-states a shard", ["shard-00001.npz", "the manifest says"])
    def _():
        d = w.copy(w.shards, "under")
        _manifest_edit(d, lambda m: (m["shards"][1].__setitem__("num_examples", m["shards"][1]["num_examples"] - 3),
                                     m.__setitem__("num_examples", m["num_examples"] - 3)))
        list(ShardLoader(d, batch_size=8, epochs=1))

    @case("shards: non-JSON manifest.json", ["manifest.json", "invalid JSON"])
    def _():
        d = w.copy(w.shards, "manjson")
        (d / "manifest.json").write_text("{oops")
        ShardLoader(d, batch_size=8)

    @case("shards: truncated shard", ["shard-00000.npz"])
    def _():
        d = w.copy(w.shards, "trunc")
        _mutate_file(d / "shard-00000.npz", lambda b: b[:len(b) // 2])
        ShardLoader(d, batch_size=8)

    @case("shards: missing shard", ["shard-00002.npz", "missing"])
    def _():
        d = w.copy(w.shards, "missing")
        (d / "shard-00002.npz").unlink()
        ShardLoader(d, batch_size=8)

    @case("shards: interrupted build (no manifest)", ["manifest.json", "incomplete"])
    def _():
        d = w.copy(w.shards, "nomanifest")
        (d / "manifest.json").unlink()
        ShardLoader(d, batch_size=8)

    @case("shards: tokenizer of another build", ["tokenizer", "hash"])
    def _():
        ShardLoader(w.shards, batch_size=8, tokenizer=Tokenizer.train(w.docs[:60], 200))

    @case("data inspect: no such folder", ["nothere"])
    def _():
        cli("data", "inspect", w.root / "nothere")

    # ---- fine-tuning data ----
    @case("finetune: non-UTF-8 CSV", ["train.csv:3", "utf-8", "--encoding"])
    def _():
        f = w.fresh("cp1251") / "train.csv"
        f.write_bytes("sentence,label\nhello,0\nПривет,1\n".encode("cp1251"))
        load_sequence_task(f)

    @case("finetune: --encoding cp1251 reads it", check=lambda t: len(t.train) + len(t.eval) == 20)
    def _():
        f = w.fresh("cp1251ok") / "train.csv"
        f.write_bytes(("sentence,label\n" + "Привет,1\nhello,0\n" * 10).encode("cp1251"))
        return load_sequence_task(f, encoding="cp1251")

    @case("finetune CLI: --encoding klingon", ["--encoding", "klingon"])
    def _():
        f = w.fresh("kl") / "train.csv"
        f.write_text("sentence,label\na,0\nb,1\n")
        cli("finetune", "--task", "classification", "--train", f, "--model", w.run_dir, "--encoding", "klingon",
            "--out", w.fresh("klout") / "o")

    @case("finetune: CSV row with an extra field", ["train.csv:3", "number of fields"])
    def _():
        f = w.fresh("ragcsv") / "train.csv"
        f.write_text("sentence,label\na,0\nb,1,extra\n")
        load_sequence_task(f)

    @case("finetune: no label column", ["label column", "--label-column"])
    def _():
        f = w.fresh("nolabel") / "train.csv"
        f.write_text("sentence,other\na,0\nb,1\n")
        load_sequence_task(f)

    @case("finetune CLI: --task classification without --train", ["--train"])
    def _():
        cli("finetune", "--task", "classification", "--model", w.run_dir, "--out", w.fresh("notrain") / "o")

    # ---- writes that fail ----
    @case("data build: disk full while writing a shard", ["cannot write", "shard-00000.npz", "No space left"])
    def _():
        from minialbert.data import shards as S
        real = S.np.savez

        def full(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")
        S.np.savez = full
        try:
            cli("data", "build", "-i", w.corpus, "-t", w.spm, "-o", w.fresh("full") / "D", "-q", "-j", 1)
        finally:
            S.np.savez = real

    @case("data build: read-only --output", ["cannot write", "ro-out"])
    def _():
        import pathlib
        real = pathlib.Path.mkdir

        def read_only(self, *a, **k):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        pathlib.Path.mkdir = read_only
        try:
            cli("data", "build", "-i", w.corpus, "-t", w.spm, "-o", w.root / "ro-out", "-q", "-j", 1)
        finally:
            pathlib.Path.mkdir = real

    # ---- run flags (pretrain) ----
    @case("pretrain CLI: --clip-norm -1", ["clip"])
    def _():
        cli("pretrain", "--clip-norm", -1, "--steps", 1, "--warmup", 0, "--out", w.fresh("clip") / "o", "--data", w.shards,
            "--tokenizer", w.spm, "--seq-len", 32)

    @case("pretrain CLI: --steps 0", ["--steps"])
    def _():
        cli("pretrain", "--steps", 0, "--out", w.fresh("steps0") / "o", "--data", w.shards)

    @case("pretrain CLI: --data with no shards", ["nothere"])
    def _():
        cli("pretrain", "--steps", 1, "--warmup", 0, "--out", w.fresh("nodata") / "o", "--data", w.root / "nothere")

    @case("pretrain CLI: --data holding a corrupt manifest", ["manifest.json"])
    def _():
        d = w.copy(w.shards, "pmanifest")
        (d / "manifest.json").write_text("{oops")
        cli("pretrain", "--steps", 1, "--warmup", 0, "--out", w.fresh("pm") / "o", "--data", d)

    def pretrained_run(name):
        out = w.fresh(name) / "O"
        cli("pretrain", "--data", w.shards, "--tokenizer", w.spm, "--seq-len", 32, "--steps", 2, "--warmup", 0,
            "--batch-size", 4, "--out", out, "--no-plots", "--no-progress")
        return out

    @case("pretrain CLI: --resume from a truncated model.safetensors", ["model.safetensors", "truncated"])
    def _():
        out = pretrained_run("resumetrunc")
        _mutate_file(out / "checkpoint" / "model.safetensors", lambda b: b[:len(b) // 2])
        cli("pretrain", "--data", w.shards, "--tokenizer", w.spm, "--seq-len", 32, "--steps", 3, "--warmup", 0,
            "--batch-size", 4, "--out", out, "--resume", "--no-plots", "--no-progress")

    @case("pretrain CLI: --data pointing at a checkpoint", ["manifest.json", "not a minialbert shard manifest"])
    def _():
        cli("pretrain", "--data", w.run_dir / "checkpoint", "--tokenizer", w.spm, "--seq-len", 32, "--steps", 1,
            "--warmup", 0, "--out", w.fresh("datackpt") / "O")

    @case("pretrain CLI: --lr nan", ["--lr"])
    def _():
        cli("pretrain", "--lr", "nan", "--steps", 1, "--warmup", 0, "--out", w.fresh("lrnan") / "o", "--data", w.shards,
            "--tokenizer", w.spm, "--seq-len", 32)

    return C


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", default="", help="run only cases whose name contains this")
    ap.add_argument("--json", action="store_true", help="one JSON record per case")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="minialbert-bad-inputs-") as tmp:
        t0 = time.perf_counter()
        world = World(Path(tmp))
        todo = [c for c in cases(world) if args.k.lower() in c.name.lower()]
        for c in todo:
            classify(c)
            if args.json:
                print(json.dumps({"name": c.name, "outcome": c.outcome, "detail": c.detail,
                                  "seconds": round(c.seconds, 2)}))
            else:
                print(f"{c.outcome:15s} {c.name:58s} {c.detail[:150]}")
        counts = {o: sum(c.outcome == o for c in todo) for o in OUTCOMES}
        print(f"\n{len(todo)} cases in {time.perf_counter() - t0:.0f} s: "
              + ", ".join(f"{n} {o}" for o, n in counts.items()))
    return 0 if counts["crash"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
