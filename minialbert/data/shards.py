r"""Pretraining examples on disk: padded shards, a manifest, and a resumable loader.

**Layout** of a built directory::

    DIR/shard-00000.npz ... shard-NNNNN.npz   padded arrays, one file per chunk of documents
    DIR/manifest.json                          written LAST: its presence means "complete"

Each shard is an uncompressed ``.npz`` with N examples: ``input_ids`` (N, T) int32,
``token_type_ids`` (N, T) int8, ``lengths`` (N,) int32 (real tokens; the attention mask
is ``arange(T) < length``), ``masked_lm_positions`` / ``masked_lm_ids`` (N, MP) int32
(padded with 0), ``masked_lm_counts`` (N,) int32, ``sentence_order_label`` (N,) int32.

**Atomic writes.** Every file is written to a temporary name and moved into place with
``os.replace``; the manifest comes after all shards, so an interrupted build leaves a
directory with no ``manifest.json``, which :class:`ShardLoader` refuses to read.

**Determinism.** Documents are shuffled with ``default_rng([seed, 0])`` and cut into
chunks of ``docs_per_shard``; chunk k draws everything from ``default_rng([seed, 1, k])``.
So the shards depend on the seed and the chunk size, never on the number of workers.
(The random "other document" of NSP / the one-sentence quirk is drawn within the chunk.)
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import time
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..config import read_json_object
from .corpus import corpus_hash
from .pretraining import IGNORE_INDEX, EmptyCorpusError, check_data_args, create_pretraining_examples

FORMAT = "minialbert-pretraining-shards"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
JOURNAL = ".minialbert-build.json"     # what a build in progress is writing (removed when it completes)
TOKENIZER_FILE = "spiece.model"        # written by a build that trained its own tokenizer
# the temporaries of _atomic_* above: ".<name>.tmp<pid>" for the names a build writes
_OWN_TEMP = re.compile(r"\.(shard-\d{5}\.npz|manifest\.json|spiece\.model|\.minialbert-build\.json)\.tmp\d+")
ARRAY_KEYS = ("input_ids", "token_type_ids", "lengths", "masked_lm_positions", "masked_lm_ids",
              "masked_lm_counts", "sentence_order_label")


def examples_to_arrays(examples: Sequence[dict], max_seq_length: int, max_predictions_per_seq: int) -> dict:
    """Pack examples into the padded shard arrays (see module docstring), N = len(examples)."""
    N, T, MP = len(examples), int(max_seq_length), int(max_predictions_per_seq)
    arr = {
        "input_ids": np.zeros((N, T), dtype=np.int32),
        "token_type_ids": np.zeros((N, T), dtype=np.int8),
        "lengths": np.zeros(N, dtype=np.int32),
        "masked_lm_positions": np.zeros((N, MP), dtype=np.int32),
        "masked_lm_ids": np.zeros((N, MP), dtype=np.int32),
        "masked_lm_counts": np.zeros(N, dtype=np.int32),
        "sentence_order_label": np.zeros(N, dtype=np.int32),
    }
    for r, e in enumerate(examples):
        n, k = len(e["input_ids"]), len(e["masked_lm_positions"])
        if n > T or k > MP:
            raise ValueError(f"example {r} has {n} tokens / {k} predictions, more than T={T} / MP={MP}")
        arr["input_ids"][r, :n] = e["input_ids"]
        arr["token_type_ids"][r, :n] = e["token_type_ids"]
        arr["lengths"][r] = n
        arr["masked_lm_positions"][r, :k] = e["masked_lm_positions"]
        arr["masked_lm_ids"][r, :k] = e["masked_lm_labels"]
        arr["masked_lm_counts"][r] = k
        arr["sentence_order_label"][r] = e["sentence_order_label"]
    return arr


def arrays_to_batch(arr: dict, idx: np.ndarray, pad_id: int = 0) -> dict:
    """Gather rows ``idx`` of shard arrays into a model batch (same keys as ``collate``).

    Returns: ``input_ids, token_type_ids, attention_mask, labels`` (B, T) int64 (labels:
    original ids at masked positions, -100 elsewhere), ``masked_lm_positions,
    masked_lm_ids`` (B, MP) int64, ``masked_lm_weights`` (B, MP) float32,
    ``sentence_order_label`` (B,) int64.
    """
    ids = arr["input_ids"][idx].astype(np.int64)                     # (B, T)
    B, T = ids.shape
    MP = arr["masked_lm_positions"].shape[1]
    mask = (np.arange(T)[None, :] < arr["lengths"][idx][:, None]).astype(np.int64)
    if pad_id != 0:
        ids[mask == 0] = pad_id
    pos = arr["masked_lm_positions"][idx].astype(np.int64)           # (B, MP)
    mids = arr["masked_lm_ids"][idx].astype(np.int64)
    weights = (np.arange(MP)[None, :] < arr["masked_lm_counts"][idx][:, None])
    labels = np.full((B, T), IGNORE_INDEX, dtype=np.int64)
    rows = np.nonzero(weights)[0]
    labels[rows, pos[weights]] = mids[weights]
    return {
        "input_ids": ids,
        "token_type_ids": arr["token_type_ids"][idx].astype(np.int64),
        "attention_mask": mask,
        "labels": labels,
        "masked_lm_positions": pos,
        "masked_lm_ids": mids,
        "masked_lm_weights": weights.astype(np.float32),
        "sentence_order_label": arr["sentence_order_label"][idx].astype(np.int64),
    }


def _atomic_write(path: Path, write, mode: str = "wb") -> None:
    """Write through ``write(f)`` into a temporary beside ``path``, fsync, rename into place.
    On failure (a full disk) the temporary is removed and the OSError names ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def _atomic_savez(path: Path, arrays: dict) -> None:
    _atomic_write(path, lambda f: np.savez(f, **arrays))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda f: f.write(text), "w")


# -- building -------------------------------------------------------------------------
_WORKER_TOKENIZER = None


def _init_worker(tokenizer_cls, model_proto: bytes, lowercase: bool) -> None:
    # the class arrives from the caller: data/ never imports the tokenizer module (which
    # reads its training text through data.corpus), so the two cannot import each other
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = tokenizer_cls(model_proto, lowercase=lowercase)


def _build_one(task) -> dict:
    k, docs, out_dir, seed, recipe = task
    rng = np.random.default_rng([seed, 1, k])
    examples = _create_quiet(docs, _WORKER_TOKENIZER, rng, **recipe)
    arrays = examples_to_arrays(examples, recipe["max_seq_length"], recipe["max_predictions_per_seq"])
    name = f"shard-{k:05d}.npz"
    _atomic_savez(Path(out_dir) / name, arrays)
    return {"file": name, "bytes": (Path(out_dir) / name).stat().st_size, "num_examples": len(examples), "num_tokens": int(arrays["lengths"].sum()),
            "num_predictions": int(arrays["masked_lm_counts"].sum())}


def _create_quiet(docs, tokenizer, rng, **recipe):
    try:
        return create_pretraining_examples(docs, tokenizer, rng=rng, **recipe)
    except EmptyCorpusError:  # a chunk whose documents all tokenize to nothing
        return []


def build_shards(documents, tokenizer, out_dir, max_seq_length: int = 128, seed: int = 0,
                 sentence_task: str = "sop", masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20,
                 max_ngram: int = 3, short_seq_prob: float = 0.1, dupe_factor: int = 1,
                 one_sentence_random_b: bool = False, max_position_embeddings: int | None = None,
                 docs_per_shard: int = 500, num_workers: int | None = None, overwrite: bool = False,
                 progress: bool = False, extra_manifest: dict | None = None, save_tokenizer: bool = False) -> dict:
    """Create pretraining examples from documents and write them as shards + manifest.

    Inputs: documents (list of lists of sentence strs); tokenizer; out_dir; the recipe
    arguments of :func:`create_pretraining_examples`; docs_per_shard: documents per
    chunk (one shard each); num_workers: processes (None: all cores, 1: in this process);
    overwrite: replace an existing complete build; progress: a tqdm bar; save_tokenizer:
    also write the tokenizer as ``out_dir/spiece.model`` (recorded in the manifest).

    Only files that minialbert wrote in ``out_dir`` (listed in the previous manifest or
    build record) are replaced or removed; a file of this build's names that it did not
    write is a ``FileExistsError`` naming it, before anything is written.

    Returns: the manifest dict (also written to ``out_dir/manifest.json``).
    """
    check_data_args(max_seq_length, sentence_task, masked_lm_prob, max_predictions_per_seq, max_ngram,
                    short_seq_prob, dupe_factor, max_position_embeddings)
    if docs_per_shard < 1:
        raise ValueError(f"docs_per_shard={docs_per_shard}: must be >= 1")
    documents = [list(d) for d in documents]
    documents = [d for d in documents if any(s.strip() for s in d)]
    if not documents:
        raise ValueError("documents: the corpus is empty (no document with a non-blank sentence)")
    _warn_long_sentences(documents, int(max_seq_length))
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir: {out} exists and is not a folder")
    if (out / MANIFEST).exists() and not overwrite:
        raise FileExistsError(f"out_dir: {out} already holds a complete build; pass overwrite=True "
                              f"(--overwrite) to replace it")
    t0 = time.time()
    order = np.random.default_rng([seed, 0]).permutation(len(documents))
    documents = [documents[i] for i in order]
    chunks = [documents[s:s + docs_per_shard] for s in range(0, len(documents), docs_per_shard)]
    # only files this build writes are replaced, and only if minialbert wrote them before
    planned = [f"shard-{k:05d}.npz" for k in range(len(chunks))] + [MANIFEST, JOURNAL]
    if save_tokenizer:
        planned.append(TOKENIZER_FILE)
    owned = _files_written_before(out)
    foreign = [f for f in planned if (out / f).exists() and f not in owned]
    if foreign:
        raise FileExistsError(
            f"out_dir: {out} holds {', '.join(foreign)}, which minialbert did not write (no manifest or build "
            f"record of {out} lists {'it' if len(foreign) == 1 else 'them'}); a build would replace "
            f"{'it' if len(foreign) == 1 else 'them'}: move {'it' if len(foreign) == 1 else 'them'} away or "
            f"choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    # record what this build is about to write (so a rerun after a kill may replace it), then
    # invalidate (manifest gone = incomplete), then remove the previous build's other shards
    # and this module's own temporaries; nothing else in out is touched
    _atomic_write_text(out / JOURNAL, json.dumps({"format": FORMAT, "files": sorted(set(planned) | owned)}))
    (out / MANIFEST).unlink(missing_ok=True)
    for f in sorted(owned - set(planned) - {TOKENIZER_FILE}):
        if f.startswith("shard-") and f.endswith(".npz"):
            (out / f).unlink(missing_ok=True)
    for f in out.iterdir():
        if _OWN_TEMP.fullmatch(f.name):
            f.unlink()
    recipe = dict(max_seq_length=int(max_seq_length), sentence_task=sentence_task,
                  masked_lm_prob=float(masked_lm_prob), max_predictions_per_seq=int(max_predictions_per_seq),
                  max_ngram=int(max_ngram), short_seq_prob=float(short_seq_prob), dupe_factor=int(dupe_factor),
                  one_sentence_random_b=bool(one_sentence_random_b))
    tasks = [(k, c, str(out), int(seed), recipe) for k, c in enumerate(chunks)]
    workers = num_workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(tasks)))
    bar = None
    if progress:
        bar = tqdm(total=len(tasks), unit="shard", desc="building shards")
    results = []
    if workers == 1:
        global _WORKER_TOKENIZER
        prev, _WORKER_TOKENIZER = _WORKER_TOKENIZER, tokenizer
        try:
            for t in tasks:
                results.append(_build_one(t))
                if bar:
                    bar.update(1)
        finally:
            _WORKER_TOKENIZER = prev
    else:
        ctx = mp.get_context("spawn" if os.name == "nt" else "fork")
        # a ProcessPoolExecutor, not a multiprocessing.Pool: a worker that dies (say, killed
        # for memory) raises BrokenProcessPool here instead of hanging the build forever, and
        # it feeds workers a few chunks at a time rather than queueing the whole corpus
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(type(tokenizer), tokenizer.model_proto, tokenizer.lowercase))
        try:
            for r in pool.map(_build_one, tasks):         # map keeps chunk order
                results.append(r)
                if bar:
                    bar.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # stop: no more shards after an error
            raise
        pool.shutdown(wait=True)
    if bar:
        bar.close()
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION,
        "config": {**recipe, "max_position_embeddings": max_position_embeddings,
                   "docs_per_shard": int(docs_per_shard)},
        "seed": int(seed),
        "tokenizer": {"hash": tokenizer.content_hash, "vocab_size": tokenizer.vocab_size,
                      "lowercase": tokenizer.lowercase, "pad_id": tokenizer.pad_id},
        "corpus": {"hash": corpus_hash(documents), "documents": len(documents),
                   "sentences": sum(len(d) for d in documents)},
        "num_examples": sum(r["num_examples"] for r in results),
        "num_tokens": sum(r["num_tokens"] for r in results),
        "num_predictions": sum(r["num_predictions"] for r in results),
        "shards": results,
        "build_seconds": round(time.time() - t0, 3),
        **(extra_manifest or {}),
    }
    if manifest["num_examples"] == 0:
        raise ValueError("documents: no example could be made (every document tokenized to nothing)")
    if save_tokenizer:
        _atomic_write_bytes(out / TOKENIZER_FILE, tokenizer.model_proto)
        manifest["files"] = [TOKENIZER_FILE]
    _atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    (out / JOURNAL).unlink(missing_ok=True)          # the manifest now records everything
    return manifest


# A sentence of more characters than this many per token of an example cannot fit in one:
# SentencePiece pieces average a few characters, so it holds far more than T tokens.
LONG_SENTENCE_CHARS_PER_TOKEN = 32


def _warn_long_sentences(documents, max_seq_length: int) -> None:
    """Warn about sentences far longer than an example: all but their start is dropped (a
    10 MB line with no sentence breaks makes one example)."""
    limit = LONG_SENTENCE_CHARS_PER_TOKEN * max_seq_length
    long = [(len(s), i) for i, d in enumerate(documents) for s in d if len(s) > limit]
    if long:
        n, i = max(long)
        warnings.warn(f"documents: {len(long)} sentence(s) longer than {limit:,} characters (the longest: "
                      f"{n:,} characters, in document {i}); an example holds max_seq_length={max_seq_length} "
                      f"tokens, so only the start of each is used. Split long lines into sentences "
                      f"(--split sentences)", stacklevel=3)


def _files_written_before(out: Path) -> set:
    """Names in ``out`` that an earlier build wrote: its manifest's shards and files, the
    build record of an interrupted build. A file not named there is the user's."""
    owned = set()
    for name in (MANIFEST, JOURNAL):
        f = out / name
        if not f.is_file():
            continue
        try:
            rec = json.loads(f.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue                                 # unreadable: not proof that we wrote anything
        if not isinstance(rec, dict) or rec.get("format") != FORMAT:
            continue
        owned.add(name)
        owned.update(s["file"] for s in rec.get("shards", []) if isinstance(s, dict) and "file" in s)
        owned.update(x for x in rec.get("files", []) if isinstance(x, str))
    return {n for n in owned if "/" not in n and "\\" not in n and n not in ("", ".", "..")}


def read_manifest(data_dir) -> dict:
    """The manifest of a complete build; ValueError if the build is missing or incomplete."""
    d = Path(data_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"data_dir: no folder {d}")
    m = d / MANIFEST
    if not m.is_file():
        raise ValueError(f"data_dir: {d} has no {MANIFEST}: the build is incomplete or was interrupted; "
                         f"run `minialbert data build` again")
    manifest = read_json_object(m, "shard manifest")
    if manifest.get("format") != FORMAT:
        raise ValueError(f"data_dir: {m} is not a minialbert shard manifest")
    try:
        shards = manifest["shards"]
        T, MP = int(manifest["config"]["max_seq_length"]), int(manifest["config"]["max_predictions_per_seq"])
        for s in shards:
            s["file"], s["num_examples"] = str(s["file"]), int(s["num_examples"])
        manifest["num_examples"], manifest["tokenizer"]["hash"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"data_dir: {m} is damaged (bad or missing entry {e}); rebuild with --overwrite") from None
    for s in shards:
        f = d / s["file"]
        if os.path.basename(s["file"]) != s["file"] or not f.is_file():
            raise ValueError(f"data_dir: shard {s['file']} listed in the manifest is missing")
        # a cheap integrity check: a shard cut short or replaced after the build has another size
        if "bytes" in s and f.stat().st_size != s["bytes"]:
            raise ValueError(f"data_dir: shard {f} is {f.stat().st_size} bytes, the manifest says {s['bytes']}: "
                             f"it was damaged or replaced after the build; rebuild with --overwrite")
        # the row counts the loader plans with must be the shard's own (reads headers only)
        have = _npz_shapes(f)
        if have is not None:
            _check_shard_shapes(f, have, s["num_examples"], T, MP)
    if sum(s["num_examples"] for s in shards) != manifest["num_examples"]:
        raise ValueError(f"data_dir: {m} says num_examples={manifest['num_examples']} but its shards hold "
                         f"{sum(s['num_examples'] for s in shards)}; rebuild with --overwrite")
    return manifest


def _check_shard_shapes(f, have: dict, n: int, T: int, MP: int) -> None:
    want = {"input_ids": (n, T), "token_type_ids": (n, T), "masked_lm_positions": (n, MP),
            "masked_lm_ids": (n, MP), "lengths": (n,), "masked_lm_counts": (n,), "sentence_order_label": (n,)}
    for key, shape in want.items():
        if have.get(key) != shape:
            raise ValueError(f"data_dir: shard {f} holds {key} of shape {have.get(key)}, the manifest says "
                             f"{shape} ({n} examples, T={T}, MP={MP}): the manifest and the shard do not "
                             f"belong together; rebuild with --overwrite")


def _npz_shapes(f: Path):
    """{array name: shape} of an uncompressed .npz, from the .npy headers alone."""
    shapes = {}
    try:
        with zipfile.ZipFile(f) as z:
            for name in z.namelist():
                with z.open(name) as fh:
                    version = np.lib.format.read_magic(fh)
                    shape, _, _ = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0(fh))
                shapes[name[:-4] if name.endswith(".npy") else name] = tuple(shape)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None                       # unreadable: the loader says so when it reaches the shard
    return shapes


# -- loading --------------------------------------------------------------------------
class _BatchStream:
    """Batches from a list of array "shards", shard by shard, with an exact saved position.

    The example stream of epoch e visits shards in ``default_rng([seed, e]).permutation``
    order and each shard's rows in ``default_rng([seed, e, s]).permutation`` order. A
    batch takes the next B examples of that stream (crossing shard boundaries, so every
    batch but the very last is full). ``state_dict()`` is the position of the next
    example, so ``load_state_dict`` resumes on exactly the next batch.
    """

    def __init__(self, sizes: list[int], batch_size: int, seed: int, shuffle: bool, epochs, drop_last: bool,
                 pad_id: int):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be >= 1")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs={epochs}: must be >= 1 or None (forever)")
        self.sizes = list(sizes)
        self.num_examples = int(sum(self.sizes))
        if self.num_examples == 0:
            raise ValueError("no examples to load")
        self.batch_size, self.seed, self.shuffle = int(batch_size), int(seed), bool(shuffle)
        self.epochs, self.drop_last, self.pad_id = epochs, bool(drop_last), int(pad_id)
        self.epoch, self.shard_pos, self.offset, self.batches_yielded = 0, 0, 0, 0
        self._cache_key, self._cache = None, None

    # subclasses provide the arrays of shard s
    def _load(self, s: int) -> dict:  # pragma: no cover
        raise NotImplementedError

    def _shard_order(self, epoch: int) -> np.ndarray:
        n = len(self.sizes)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def _row_order(self, epoch: int, s: int) -> np.ndarray:
        n = self.sizes[s]
        return np.random.default_rng([self.seed, epoch, s]).permutation(n) if self.shuffle else np.arange(n)

    def _shard(self, s: int) -> dict:
        if self._cache_key != s:  # only one shard in memory at a time
            self._cache, self._cache_key = None, None
            self._cache, self._cache_key = self._load(s), s
        return self._cache

    def __len__(self) -> int:
        """Batches per epoch."""
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        parts, need = [], self.batch_size
        finite = self.epochs is not None
        while need:
            if finite and self.epoch >= self.epochs:
                break
            order = self._shard_order(self.epoch)
            if self.shard_pos >= len(order):
                self.epoch, self.shard_pos, self.offset = self.epoch + 1, 0, 0
                if finite and parts:
                    if not self.drop_last:
                        break  # a finite run's last, short batch of an epoch
                    parts, need = [], self.batch_size
                continue
            s = int(order[self.shard_pos])
            rows = self._row_order(self.epoch, s)
            take = rows[self.offset:self.offset + need]
            if len(take):
                parts.append(arrays_to_batch(self._shard(s), take, self.pad_id))
                need -= len(take)
                self.offset += len(take)
            if self.offset >= len(rows):
                self.shard_pos, self.offset = self.shard_pos + 1, 0
        if not parts or (need and self.drop_last):
            raise StopIteration
        self.batches_yielded += 1
        if len(parts) == 1:
            return parts[0]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def state_dict(self) -> dict:
        """Where the next batch starts: plain ints, JSON-safe."""
        return {"seed": self.seed, "epoch": self.epoch, "shard_pos": self.shard_pos, "offset": self.offset,
                "batch_size": self.batch_size, "batches_yielded": self.batches_yielded,
                "num_examples": self.num_examples}

    def load_state_dict(self, state: dict) -> None:
        """Resume at a position saved by :meth:`state_dict` (same data, seed and batch size)."""
        if state.get("num_examples", self.num_examples) != self.num_examples:
            raise ValueError(f"state: saved for {state['num_examples']} examples, this data has "
                             f"{self.num_examples}")
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"state: saved with seed={state['seed']}, this loader has seed={self.seed}")
        self.epoch, self.shard_pos, self.offset = int(state["epoch"]), int(state["shard_pos"]), int(state["offset"])
        self.batches_yielded = int(state.get("batches_yielded", 0))


class ShardLoader(_BatchStream):
    """Stream shuffled batches from a built shard directory, one shard in memory at a time.

    Inputs:
    - data_dir: a folder written by :func:`build_shards` / ``minialbert data build``.
    - batch_size: B; seed: shuffles (epoch e: shard order and row order from ``[seed, e, ...]``).
    - shuffle: False reads shards and rows in order; epochs: passes (None: forever);
      drop_last: skip a final short batch (finite epochs only).
    - tokenizer: if given, its ``content_hash`` must match the manifest's.

    Iterating yields dicts of NumPy arrays (see :func:`arrays_to_batch`): ``input_ids,
    token_type_ids, attention_mask, labels`` (B, T), ``masked_lm_positions, masked_lm_ids,
    masked_lm_weights`` (B, MP), ``sentence_order_label`` (B,). ``state_dict()`` /
    ``load_state_dict()`` save and restore the position exactly.
    """

    def __init__(self, data_dir, batch_size: int, seed: int = 0, shuffle: bool = True, epochs: int | None = None,
                 drop_last: bool = False, tokenizer=None):
        self.data_dir = Path(data_dir)
        self.manifest = read_manifest(self.data_dir)
        if tokenizer is not None and tokenizer.content_hash != self.manifest["tokenizer"]["hash"]:
            raise ValueError(f"tokenizer: its hash {tokenizer.content_hash[:12]} differs from the one the shards "
                             f"were built with ({self.manifest['tokenizer']['hash'][:12]})")
        self.files = [s["file"] for s in self.manifest["shards"]]
        self.max_seq_length = self.manifest["config"]["max_seq_length"]
        self.max_predictions_per_seq = self.manifest["config"]["max_predictions_per_seq"]
        super().__init__([s["num_examples"] for s in self.manifest["shards"]], batch_size, seed, shuffle,
                         epochs, drop_last, self.manifest["tokenizer"].get("pad_id", 0))

    def _load(self, s: int) -> dict:
        f = self.data_dir / self.files[s]
        try:
            with np.load(f) as z:
                arrays = {k: z[k] for k in ARRAY_KEYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"data_dir: shard {f} cannot be read ({type(e).__name__}: {e}); "
                             f"rebuild with --overwrite") from None
        _check_shard_shapes(f, {k: a.shape for k, a in arrays.items()}, self.sizes[s],
                            self.max_seq_length, self.max_predictions_per_seq)
        return arrays


class ExampleLoader(_BatchStream):
    """The same resumable batch stream over examples held in memory (one "shard").

    Inputs: examples from ``create_pretraining_examples``; batch_size; seed; shuffle;
    epochs; drop_last; max_seq_length / max_predictions_per_seq: T / MP to pad to
    (None: the longest in the examples); pad_id.
    """

    def __init__(self, examples: Sequence[dict], batch_size: int, seed: int = 0, shuffle: bool = True,
                 epochs: int | None = None, drop_last: bool = False, max_seq_length: int | None = None,
                 max_predictions_per_seq: int | None = None, pad_id: int = 0):
        if len(examples) == 0:
            raise ValueError("examples: no examples to load")
        T = max_seq_length or max(len(e["input_ids"]) for e in examples)
        MP = max_predictions_per_seq or max(1, max(len(e["masked_lm_positions"]) for e in examples))
        self.max_seq_length, self.max_predictions_per_seq = T, MP
        self._arrays = examples_to_arrays(examples, T, MP)
        super().__init__([len(examples)], batch_size, seed, shuffle, epochs, drop_last, pad_id)

    def _load(self, s: int) -> dict:
        return self._arrays


def iterate_shards(data_dir) -> Iterator[dict]:
    """Every shard's arrays in file order (for inspection and tests)."""
    d = Path(data_dir)
    for s in read_manifest(d)["shards"]:
        with np.load(d / s["file"]) as z:
            yield {k: z[k] for k in ARRAY_KEYS}
