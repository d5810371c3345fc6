r"""Pretraining examples: SOP / NSP sentence pairs and whole-word n-gram masking.

The recipe is google-research/albert's ``create_pretraining_data.py`` (spec §5.2-5.3),
with one difference everywhere: **every random choice comes from one seeded NumPy
Generator** (the reference draws the n-gram length from NumPy's unseeded global RNG),
so the same documents, tokenizer and seed give the same examples.

Deviations, each on purpose (see [docs/data/pretraining.md](../data/pretraining.md)):

* ``one_sentence_random_b`` (default False). The reference pairs a chunk of only one
  sentence with a B from a *random other document* and labels it 1 -- an NSP negative
  inside the SOP task. Docstring corpora have many one-sentence documents, so this would
  turn a large share of "swapped" labels into "random document" labels. By default we
  instead split that sentence at a random token boundary into A and B and carry on
  with the task (SOP: swap with p=0.5; a one-token sentence alone is skipped), so every
  SOP pair comes from one document. ``one_sentence_random_b=True`` is the reference.
* A word never continues across ``[SEP]``: the piece after a special token starts a new
  word (the reference would glue a non-▁ piece at the start of B to A's last word).
* ``sentence_task="none"`` examples carry ``sentence_order_label = -100`` (ignored by
  the loss), not 0.
"""
from __future__ import annotations

import string
from typing import Iterator, Sequence

import numpy as np

from ..layers.losses import IGNORE_INDEX
from ..tokenizer import Tokenizer
from .heldout import split_documents
import hashlib
import sentencepiece
from .corpus import corpus_hash
from pathlib import Path

SENTENCE_TASKS = ("sop", "nsp", "none")


class EmptyCorpusError(ValueError):
    """No document has a sentence left after tokenizing: there is nothing to make examples of."""
_PUNCT = set('!"#$%&\'()*+,-./:;?@[\\]^_`{|}~')
_ALLOWED = set(string.ascii_lowercase) | _PUNCT


def is_start_piece(piece: str) -> bool:
    """Does this SentencePiece piece start a new whole word? (reference ``_is_start_piece_sp``)

    True if it starts with "▁" or "<", is a single punctuation character, or contains a
    character outside a-z and ASCII punctuation (a digit, an upper-case or non-English letter).
    """
    return (piece.startswith("\u2581") or piece.startswith("<") or piece in _PUNCT
            or not all(c in _ALLOWED for c in piece))


def word_start_table(tokenizer) -> np.ndarray:
    """Boolean (V,) table: ``table[id]`` = the piece starts a word. Cached on the tokenizer."""
    tab = getattr(tokenizer, "_word_start_table", None)
    if tab is None:
        tab = np.array([is_start_piece(p) for p in tokenizer.id_to_piece(range(tokenizer.vocab_size))], dtype=bool)
        try:
            tokenizer._word_start_table = tab
        except AttributeError:  # pragma: no cover - a tokenizer with __slots__
            pass
    return tab


def ngram_probs(max_ngram: int) -> np.ndarray:
    """p(n) ∝ 1/n for n = 1..max_ngram (3 → 6/11, 3/11, 2/11)."""
    p = 1.0 / np.arange(1, max_ngram + 1)
    return p / p.sum()


def check_data_args(max_seq_length, sentence_task="sop", masked_lm_prob=0.15, max_predictions_per_seq=20,
                    max_ngram=3, short_seq_prob=0.1, dupe_factor=1, max_position_embeddings=None):
    """Validate the recipe's arguments; raise ValueError naming the bad one."""
    if int(max_seq_length) != max_seq_length or max_seq_length < 5:
        raise ValueError(f"max_seq_length={max_seq_length}: need an int >= 5 ([CLS] a [SEP] b [SEP])")
    if max_position_embeddings is not None and max_seq_length > max_position_embeddings:
        raise ValueError(f"max_seq_length={max_seq_length} exceeds max_position_embeddings="
                         f"{max_position_embeddings}: the model has no position embedding past that")
    if sentence_task not in SENTENCE_TASKS:
        raise ValueError(f"sentence_task={sentence_task!r}: expected one of {SENTENCE_TASKS}")
    if not 0.0 <= masked_lm_prob <= 1.0:
        raise ValueError(f"masked_lm_prob={masked_lm_prob}: must be in [0, 1]")
    if int(max_predictions_per_seq) != max_predictions_per_seq or max_predictions_per_seq < 1:
        raise ValueError(f"max_predictions_per_seq={max_predictions_per_seq}: must be an int >= 1")
    if int(max_ngram) != max_ngram or max_ngram < 1:
        raise ValueError(f"max_ngram={max_ngram}: must be an int >= 1")
    if not 0.0 <= short_seq_prob <= 1.0:
        raise ValueError(f"short_seq_prob={short_seq_prob}: must be in [0, 1]")
    if int(dupe_factor) != dupe_factor or dupe_factor < 1:
        raise ValueError(f"dupe_factor={dupe_factor}: must be an int >= 1")


def tokenize_documents(documents, tokenizer, num_threads: int = 1) -> list[list[list[int]]]:
    """Tokenize documents sentence by sentence; drop empty sentences and documents.

    Inputs: documents, a list of lists of sentence strs. Returns: list of documents,
    each a list of sentences as lists of ids (all non-empty).
    """
    flat, lens = [], []
    for d in documents:
        if isinstance(d, str):
            raise ValueError("documents: expected a list of documents (lists of sentences), got a str; "
                             "wrap a single document as [sentences]")
        d = list(d)
        flat.extend(d)
        lens.append(len(d))
    enc = tokenizer.encode_batch(flat, num_threads=num_threads) if flat else []
    out, i = [], 0
    for n in lens:
        doc = [s for s in enc[i:i + n] if s]
        i += n
        if doc:
            out.append(doc)
    return out


# -- masking --------------------------------------------------------------------------
def mask_tokens(ids: np.ndarray, rng: np.random.Generator, start_table: np.ndarray, vocab_size: int,
                mask_id: int, special_ids=(2, 3), masked_lm_prob: float = 0.15,
                max_predictions_per_seq: int = 20, max_ngram: int = 3, return_ngrams: bool = False):
    """Whole-word n-gram masking of one example (spec §5.3).

    Inputs:
    - ids: (T,) int array ``[CLS] A [SEP] (B [SEP])``, unpadded.
    - rng: the example stream's Generator; start_table: (V,) bool, see :func:`word_start_table`.
    - special_ids: ids never masked (``[CLS]``, ``[SEP]``).

    Returns: (masked_ids (T,), positions (MP,) ascending, labels (MP,)) with MP <= budget =
    ``min(max_predictions_per_seq, max(1, round(masked_lm_prob * T)))``; with
    ``return_ngrams`` also a list of (n drawn, n used) per chosen span.
    """
    T = len(ids)
    special = np.isin(ids, special_ids)
    # a piece starts a word if its vocabulary entry says so or it follows a special token
    starts = start_table[ids]
    starts[1:] |= special[:-1]
    starts[0] = True
    cand_pos = np.flatnonzero(~special)                       # positions that may be masked
    wstart = np.flatnonzero(starts[cand_pos])                 # word w = cand_pos[wstart[w]:wend[w]]
    W = len(wstart)
    wend = np.append(wstart[1:], len(cand_pos))
    budget = min(max_predictions_per_seq, max(1, int(round(T * masked_lm_prob))))
    out = ids.copy()
    ngrams = []
    if W == 0 or masked_lm_prob == 0:
        empty = np.zeros(0, dtype=ids.dtype)
        return (out, empty, empty, ngrams) if return_ngrams else (out, empty, empty)
    order = rng.permutation(W)                                # visit n-gram starts in random order
    # n for every start, drawn up front (same law as one draw per visit): p(n) ∝ 1/n
    cum = np.cumsum(ngram_probs(max_ngram))
    drawn = np.minimum(np.searchsorted(cum, rng.random(W), side="right"), max_ngram - 1) + 1
    covered = np.zeros(T, dtype=bool)
    chosen: list[np.ndarray] = []
    count = 0
    wstart_l, wend_l = wstart.tolist(), wend.tolist()
    for idx, n0 in zip(order.tolist(), drawn.tolist()):
        if count >= budget:
            break
        n = n0
        while True:  # fall back to shorter n-grams while the span would overshoot the budget
            last = min(idx + n, W) - 1                        # n-grams stop at the last word
            k = wend_l[last] - wstart_l[idx]
            if count + k <= budget or n == 1:
                break
            n -= 1
        if count + k > budget:
            continue
        pos = cand_pos[wstart_l[idx]:wend_l[last]]
        if covered[pos].any():                                # no overlapping spans
            continue
        covered[pos] = True
        chosen.append(pos)
        count += k
        if return_ngrams:
            ngrams.append((n0, last - idx + 1))
    positions = np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)
    labels = ids[positions]
    N = len(positions)
    # 80% [MASK], 10% kept, 10% a random id from the whole vocabulary (as the reference)
    u_mask, u_keep = rng.random(N), rng.random(N)
    random_ids = rng.integers(0, vocab_size, N)
    out[positions] = np.where(u_mask < 0.8, mask_id, np.where(u_keep < 0.5, labels, random_ids))
    positions = positions.astype(ids.dtype)
    return (out, positions, labels, ngrams) if return_ngrams else (out, positions, labels)


# -- sentence pairs -------------------------------------------------------------------
def _truncate_pair(a: list, b: list, max_num_tokens: int, rng: np.random.Generator):
    """Reference ``truncate_seq_pair``: drop one token at a time from the longer segment
    (B on a tie), from the front or the back with p=0.5 each. Which segment loses each
    token depends on lengths only, so the counts are computed first and the
    front/back coins drawn as one binomial per segment (the same law)."""
    la, lb = len(a), len(b)
    excess = la + lb - max_num_tokens
    if excess <= 0:
        return a, b
    # the longer loses tokens until equal, then they alternate (B first on a tie)
    da = db = 0
    while la - da + lb - db > max_num_tokens:
        if la - da > lb - db:
            da += 1
        else:
            db += 1
    fa = int(rng.binomial(da, 0.5)) if da else 0
    fb = int(rng.binomial(db, 0.5)) if db else 0
    return a[fa:la - (da - fa)], b[fb:lb - (db - fb)]


def _instances_from_document(docs, di, max_seq_length, short_seq_prob, sentence_task,
                             one_sentence_random_b, rng):
    """Reference ``create_instances_from_document``: yields (tokens_a, tokens_b, label)."""
    doc = docs[di]
    single = sentence_task == "none"
    max_num_tokens = max_seq_length - (2 if single else 3)
    target = max_num_tokens
    if rng.random() < short_seq_prob:
        target = int(rng.integers(2, max_num_tokens + 1))
    out = []
    chunk, length, i = [], 0, 0
    while i < len(doc):
        seg = doc[i]
        chunk.append(seg)
        length += len(seg)
        if i == len(doc) - 1 or length >= target:
            if single:
                a = [t for s in chunk for t in s][:max_num_tokens]
                out.append((a, None, IGNORE_INDEX))
                chunk, length = [], 0
                i += 1
                continue
            if len(chunk) >= 2:
                a_end = int(rng.integers(1, len(chunk)))      # randint(1, len-1) inclusive
                a = [t for s in chunk[:a_end] for t in s]
                rest = chunk[a_end:]
            elif one_sentence_random_b:
                a_end, a, rest = 1, list(chunk[0]), []
            elif len(chunk[0]) < 2:
                # a one-token sentence cannot be split: skip it rather than pair it at random
                chunk, length = [], 0
                i += 1
                continue
            else:
                # our default: split the lone sentence at a random token boundary
                cut = int(rng.integers(1, len(chunk[0])))
                a_end, a, rest = 1, chunk[0][:cut], [chunk[0][cut:]]
            label = 0
            use_random = not rest or (sentence_task == "nsp" and rng.random() < 0.5)
            if use_random and len(docs) > 1:
                target_b = max(1, target - len(a))
                for _ in range(10):                           # the reference's 10 tries
                    rdi = int(rng.integers(0, len(docs)))
                    if rdi != di:
                        break
                rdoc = docs[rdi]
                b = []
                for j in range(int(rng.integers(0, len(rdoc))), len(rdoc)):
                    b.extend(rdoc[j])
                    if len(b) >= target_b:
                        break
                label = 1
                i -= len(rest) if rest and len(chunk) >= 2 else 0   # put unused sentences back
            elif rest:
                b = [t for s in rest for t in s]
                if sentence_task == "sop" and rng.random() < 0.5:
                    a, b, label = b, a, 1
            else:
                b = []  # one-token sentence in a one-document corpus: nothing to pair with
            chunk, length = [], 0
            if a and b:
                a, b = _truncate_pair(a, b, max_num_tokens, rng)
                if a and b:
                    out.append((a, b, label))
        i += 1
    return out


def create_pretraining_examples(documents, tokenizer, max_seq_length: int = 128, seed: int = 0,
                                sentence_task: str = "sop", masked_lm_prob: float = 0.15,
                                max_predictions_per_seq: int = 20, max_ngram: int = 3,
                                short_seq_prob: float = 0.1, dupe_factor: int = 1,
                                one_sentence_random_b: bool = False,
                                max_position_embeddings: int | None = None,
                                rng: np.random.Generator | None = None,
                                shuffle: bool = True) -> list[dict]:
    """Make masked sentence-pair examples from documents (spec §5.2-5.3).

    Inputs:
    - documents: list of documents, each a list of sentence strs (or, already
      tokenized, lists of id lists); empty sentences/documents are skipped.
    - tokenizer: a :class:`minialbert.Tokenizer` (ids, vocab size, word starts).
    - max_seq_length: T, the longest example including [CLS]/[SEP] (>= 5).
    - seed: seeds the one Generator every random choice comes from (or pass ``rng``).
    - sentence_task: "sop" (A,B consecutive, swapped with p=0.5: label 0 in order,
      1 swapped), "nsp" (B from a random other document with p=0.5: label 1 random),
      "none" (one segment, label -100).
    - masked_lm_prob, max_predictions_per_seq, max_ngram: the masking budget and
      n-gram lengths (p(n) ∝ 1/n).
    - short_seq_prob: probability of a shorter random target length.
    - dupe_factor: passes over the corpus, each with fresh random choices.
    - one_sentence_random_b: reproduce the reference's quirk (module docstring).
    - max_position_embeddings: if given, ``max_seq_length`` may not exceed it.
    - shuffle: shuffle documents first and examples at the end, as the reference.

    Returns: list of dicts, one per example: ``input_ids`` (T',) int32 with T' <= T,
    ``token_type_ids`` (T',) int8, ``masked_lm_positions`` (MP,) int32,
    ``masked_lm_labels`` (MP,) int32 (original ids there), ``sentence_order_label`` int.
    """
    check_data_args(max_seq_length, sentence_task, masked_lm_prob, max_predictions_per_seq, max_ngram,
                    short_seq_prob, dupe_factor, max_position_embeddings)
    if rng is None:
        rng = np.random.default_rng(seed)
    documents = list(documents)
    if documents and documents[0] and not isinstance(documents[0][0], str) and not isinstance(documents[0], str):
        docs = [[list(s) for s in d if len(s)] for d in documents]   # already tokenized
        docs = [d for d in docs if d]
    else:
        docs = tokenize_documents(documents, tokenizer)
    if not docs:
        raise EmptyCorpusError("documents: the corpus is empty (no document with a non-empty sentence)")
    if shuffle:
        docs = [docs[i] for i in rng.permutation(len(docs))]
    start_table = word_start_table(tokenizer)
    V, cls_id, sep_id, mask_id = tokenizer.vocab_size, tokenizer.cls_id, tokenizer.sep_id, tokenizer.mask_id
    examples = []
    for _ in range(int(dupe_factor)):
        for di in range(len(docs)):
            for a, b, label in _instances_from_document(docs, di, max_seq_length, short_seq_prob,
                                                        sentence_task, one_sentence_random_b, rng):
                if b is None:
                    ids = np.array([cls_id, *a, sep_id], dtype=np.int32)
                    types = np.zeros(len(ids), dtype=np.int8)
                else:
                    ids = np.array([cls_id, *a, sep_id, *b, sep_id], dtype=np.int32)
                    types = np.zeros(len(ids), dtype=np.int8)
                    types[len(a) + 2:] = 1                        # B and its [SEP]
                masked, pos, labels = mask_tokens(ids, rng, start_table, V, mask_id, (cls_id, sep_id),
                                                  masked_lm_prob, max_predictions_per_seq, max_ngram)
                examples.append({"input_ids": masked, "token_type_ids": types,
                                 "masked_lm_positions": pos, "masked_lm_labels": labels,
                                 "sentence_order_label": int(label)})
    if shuffle:
        examples = [examples[i] for i in rng.permutation(len(examples))]
    return examples


# -- batches --------------------------------------------------------------------------
def collate(examples: Sequence[dict], max_seq_length: int | None = None,
            max_predictions_per_seq: int | None = None, pad_id: int = 0) -> dict:
    """Pad a list of examples into a batch of NumPy arrays.

    Inputs: examples from :func:`create_pretraining_examples`; max_seq_length: T to pad
    to (None: the longest in the batch); max_predictions_per_seq: MP (None: the most
    masked positions in the batch).

    Returns: dict of arrays, B = len(examples):
    - ``input_ids`` (B, T) int64, padded with ``pad_id``; ``token_type_ids`` (B, T) int64;
      ``attention_mask`` (B, T) int64, 1 on real tokens;
    - ``labels`` (B, T) int64: the original id at masked positions, -100 elsewhere
      (HF's MLM label format);
    - ``masked_lm_positions`` / ``masked_lm_ids`` (B, MP) int64 padded with 0,
      ``masked_lm_weights`` (B, MP) float32, 1.0 on real predictions;
    - ``sentence_order_label`` (B,) int64 (-100 for sentence_task="none").
    """
    B = len(examples)
    if B == 0:
        raise ValueError("examples: cannot collate an empty batch")
    T = max_seq_length or max(len(e["input_ids"]) for e in examples)
    MP = max_predictions_per_seq or max(1, max(len(e["masked_lm_positions"]) for e in examples))
    batch = {
        "input_ids": np.full((B, T), pad_id, dtype=np.int64),
        "token_type_ids": np.zeros((B, T), dtype=np.int64),
        "attention_mask": np.zeros((B, T), dtype=np.int64),
        "labels": np.full((B, T), IGNORE_INDEX, dtype=np.int64),
        "masked_lm_positions": np.zeros((B, MP), dtype=np.int64),
        "masked_lm_ids": np.zeros((B, MP), dtype=np.int64),
        "masked_lm_weights": np.zeros((B, MP), dtype=np.float32),
        "sentence_order_label": np.zeros(B, dtype=np.int64),
    }
    for r, e in enumerate(examples):
        n, k = len(e["input_ids"]), len(e["masked_lm_positions"])
        if n > T or k > MP:
            raise ValueError(f"examples[{r}] has {n} tokens / {k} predictions, more than T={T} / MP={MP}")
        batch["input_ids"][r, :n] = e["input_ids"]
        batch["token_type_ids"][r, :n] = e["token_type_ids"]
        batch["attention_mask"][r, :n] = 1
        batch["labels"][r, e["masked_lm_positions"]] = e["masked_lm_labels"]
        batch["masked_lm_positions"][r, :k] = e["masked_lm_positions"]
        batch["masked_lm_ids"][r, :k] = e["masked_lm_labels"]
        batch["masked_lm_weights"][r, :k] = 1.0
        batch["sentence_order_label"][r] = e["sentence_order_label"]
    return batch


def iterate_batches(examples: Sequence[dict], batch_size: int, seed: int = 0, shuffle: bool = True,
                    drop_last: bool = False, epochs: int | None = 1, max_seq_length: int | None = None,
                    max_predictions_per_seq: int | None = None, pad_id: int = 0) -> Iterator[dict]:
    """Yield padded batches (see :func:`collate`) from examples held in memory.

    Inputs: examples; batch_size B; seed for the per-epoch shuffles (epoch e uses
    ``default_rng([seed, e])``); drop_last: skip a final short batch; epochs: passes
    (None: forever); max_seq_length / max_predictions_per_seq: fixed T / MP to pad to
    (None: per-batch longest).

    Yields: dicts of NumPy arrays as :func:`collate` returns.
    """
    n = len(examples)
    if n == 0:
        raise ValueError("examples: no examples to batch")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    epoch = 0
    while epochs is None or epoch < epochs:
        order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            yield collate([examples[i] for i in idx], max_seq_length, max_predictions_per_seq, pad_id)
        epoch += 1


# -- examples made on the fly ----------------------------------------------------------
class PretrainingStream:
    """An endless (or ``epochs``-long) stream of batches made on the fly from tokenized
    documents: every epoch draws **fresh sentence pairs and fresh masks** (the reference's
    ``dupe_factor``, without holding the copies in memory), exactly resumable.

    Epoch e: the documents are shuffled with ``default_rng([seed, e])``, cut into pairs by
    the reference's ``create_instances_from_document`` (as :func:`create_pretraining_examples`),
    and the pairs shuffled; example i of epoch e is masked with ``default_rng([seed, e, i])``.
    So the stream depends only on (documents, tokenizer, options, seed), and
    :meth:`state_dict` (epoch, offset) resumes on exactly the next batch. Making one epoch's
    pairs costs ~0.2 s per million tokens, masking ~0.1 ms per example (measured on 2 cores).

    Inputs: docs: tokenized documents (lists of id lists, as :func:`tokenize_documents`
    returns) or documents of sentence strs (tokenized here); tokenizer; batch_size B;
    max_seq_length T; seed; sentence_task, masked_lm_prob, max_predictions_per_seq,
    max_ngram, short_seq_prob, one_sentence_random_b: as :func:`create_pretraining_examples`;
    epochs: epochs to serve (None: forever); dupe_factor: passes over the documents per
    epoch, each with its own cuts, shuffled together (the reference's meaning).

    Yields: batches as :func:`collate` returns, padded to (B, T) and MP = max_predictions_per_seq.
    """

    def __init__(self, docs, tokenizer, batch_size: int, max_seq_length: int, seed: int = 0,
                 sentence_task: str = "sop", masked_lm_prob: float = 0.15, max_predictions_per_seq: int = 20,
                 max_ngram: int = 3, short_seq_prob: float = 0.1, one_sentence_random_b: bool = False,
                 epochs: int | None = None, dupe_factor: int = 1):
        check_data_args(max_seq_length, sentence_task, masked_lm_prob, max_predictions_per_seq, max_ngram,
                        short_seq_prob, dupe_factor)
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: must be an int >= 1")
        if epochs is not None and epochs < 1:
            raise ValueError(f"epochs={epochs}: must be >= 1 or None (forever)")
        docs = list(docs)
        if docs and docs[0] and isinstance(docs[0][0], str):
            docs = tokenize_documents(docs, tokenizer)
        else:
            docs = [d for d in ([list(s) for s in d if len(s)] for d in docs) if d]
        if not docs:
            raise ValueError("docs: the corpus is empty (no document with a non-empty sentence)")
        self.docs, self.tokenizer = docs, tokenizer
        self.batch_size, self.max_seq_length, self.seed = int(batch_size), int(max_seq_length), int(seed)
        self.sentence_task, self.masked_lm_prob = sentence_task, float(masked_lm_prob)
        self.max_predictions_per_seq, self.max_ngram = int(max_predictions_per_seq), int(max_ngram)
        self.short_seq_prob, self.one_sentence_random_b = float(short_seq_prob), bool(one_sentence_random_b)
        self.epochs, self.dupe_factor = epochs, int(dupe_factor)
        self._start_table = word_start_table(tokenizer)
        self.epoch, self.offset, self.batches_yielded = 0, 0, 0
        self._pairs_epoch, self._pairs = None, None

    def pairs(self, epoch: int) -> list:
        """Epoch ``epoch``'s (tokens_a, tokens_b, label) pairs, in the order they are served."""
        if self._pairs_epoch != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            docs = [self.docs[i] for i in rng.permutation(len(self.docs))]
            out = []
            for _ in range(self.dupe_factor):
                for di in range(len(docs)):
                    out.extend(_instances_from_document(docs, di, self.max_seq_length, self.short_seq_prob,
                                                        self.sentence_task, self.one_sentence_random_b, rng))
            if not out:
                raise ValueError("docs: no example can be made from these documents")
            self._pairs = [out[i] for i in rng.permutation(len(out))]
            self._pairs_epoch = epoch
        return self._pairs

    def example(self, epoch: int, i: int) -> dict:
        """Example i of epoch ``epoch`` (a dict as :func:`create_pretraining_examples` makes)."""
        tok = self.tokenizer
        a, b, label = self.pairs(epoch)[i]
        if b is None:
            ids = np.array([tok.cls_id, *a, tok.sep_id], dtype=np.int32)
            types = np.zeros(len(ids), dtype=np.int8)
        else:
            ids = np.array([tok.cls_id, *a, tok.sep_id, *b, tok.sep_id], dtype=np.int32)
            types = np.zeros(len(ids), dtype=np.int8)
            types[len(a) + 2:] = 1
        rng = np.random.default_rng([self.seed, epoch, i])
        masked, pos, labels = mask_tokens(ids, rng, self._start_table, tok.vocab_size, tok.mask_id,
                                          (tok.cls_id, tok.sep_id), self.masked_lm_prob,
                                          self.max_predictions_per_seq, self.max_ngram)
        return {"input_ids": masked, "token_type_ids": types, "masked_lm_positions": pos,
                "masked_lm_labels": labels, "sentence_order_label": int(label)}

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        out = []
        while len(out) < self.batch_size:
            if self.epochs is not None and self.epoch >= self.epochs:
                break
            n = len(self.pairs(self.epoch))
            if self.offset >= n:
                self.epoch, self.offset = self.epoch + 1, 0
                continue
            out.append(self.example(self.epoch, self.offset))
            self.offset += 1
        if not out:
            raise StopIteration
        self.batches_yielded += 1
        return collate(out, self.max_seq_length, self.max_predictions_per_seq, self.tokenizer.pad_id)

    def state_dict(self) -> dict:
        """Where the next batch starts: plain ints, JSON-safe."""
        return {"seed": self.seed, "epoch": self.epoch, "offset": self.offset,
                "batch_size": self.batch_size, "batches_yielded": self.batches_yielded,
                "num_documents": len(self.docs), "dupe_factor": self.dupe_factor}

    def load_state_dict(self, state: dict) -> None:
        """Resume at a position saved by :meth:`state_dict` (same documents, options, seed)."""
        if state.get("num_documents", len(self.docs)) != len(self.docs):
            raise ValueError(f"state: saved for {state['num_documents']} documents, this stream has "
                             f"{len(self.docs)}")
        for k in ("seed", "dupe_factor", "batch_size"):
            if state.get(k, getattr(self, k)) != getattr(self, k):
                raise ValueError(f"state: saved with {k}={state[k]}, this stream has {k}={getattr(self, k)}")
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self.batches_yielded = int(state.get("batches_yielded", 0))



def prepare_text_pretraining(documents, tokenizer=None, *, vocab_size: int = 3000, max_seq_length: int = 64,
                             batch_size: int = 32, seed: int = 0, sentence_task: str = "sop",
                             max_predictions_per_seq: int = 20, dupe_factor: int = 1, eval_size: int = 256,
                             heldout_fraction: float = 0.03, min_heldout_documents: int = 10, log=None,
                             tokenizer_cache=None):
    """Tokenizer, training stream and held-out examples for pretraining on text documents.

    Whole documents are held out (:func:`minialbert.data.heldout.split_documents`,
    ``max(heldout_fraction, min_heldout_documents / N)`` of the N documents, at most 20%),
    so no held-out sentence is ever trained on; the tokenizer (unless given) is trained on
    the training documents only; training batches come from a :class:`PretrainingStream`
    (fresh pairs and masks every epoch); the held-out examples are made once, with seed
    ``seed + 1``, the first ``eval_size`` of them kept. A corpus of fewer than
    ``2 * min_heldout_documents`` documents cannot spare whole documents: then the held-out
    examples come from the training documents (an optimistic score; ``log`` says so).
    ``tokenizer_cache`` (a folder): keep the trained tokenizer there, keyed by the training
    text, ``vocab_size`` and the SentencePiece version, and read it back next time
    (training one on the 6 MB embedded corpus takes ~10 s).

    Inputs: documents (lists of sentence strs, or of token-id lists with their
    ``tokenizer``); the rest as :class:`PretrainingStream` and
    :func:`create_pretraining_examples`.
    Returns: (tokenizer, stream, heldout_examples, info) with info a dict of counts and the
    held-out documents (``info["heldout"]``).
    """
    documents = [d for d in documents if d]
    n = len(documents)
    if n >= 2 * min_heldout_documents:
        frac = min(0.2, max(heldout_fraction, min_heldout_documents / n))
        train_docs, held_docs = split_documents(documents, frac, seed=seed)
    else:
        train_docs, held_docs = documents, []
    pretokenized = bool(documents) and not isinstance(documents[0][0], str)
    if tokenizer is None:
        if pretokenized:
            raise ValueError("tokenizer: documents of token ids need their tokenizer")
        tokenizer = _train_tokenizer(train_docs, vocab_size, tokenizer_cache)
    train_tok = train_docs if pretokenized else tokenize_documents(train_docs, tokenizer)
    stream = PretrainingStream(train_tok, tokenizer, batch_size, max_seq_length, seed=seed,
                               sentence_task=sentence_task, max_predictions_per_seq=max_predictions_per_seq,
                               dupe_factor=dupe_factor)
    source = held_docs or train_tok
    held = create_pretraining_examples(source, tokenizer, max_seq_length=max_seq_length, seed=seed + 1,
                                       sentence_task=sentence_task,
                                       max_predictions_per_seq=max_predictions_per_seq)[:eval_size]
    if not held_docs and log is not None:
        log(f"note: only {n} documents: the held-out examples are drawn from the training documents "
            f"(held-out scores are optimistic; give {2 * min_heldout_documents}+ documents for a "
            "document-level split)")
    info = {"documents": n, "train_documents": len(train_docs), "heldout_documents": len(held_docs),
            "examples_per_epoch": len(stream.pairs(0)), "heldout_examples": len(held),
            "heldout": held_docs}
    return tokenizer, stream, held, info


def _train_tokenizer(docs, vocab_size: int, cache=None):
    """Tokenizer.train, read from / written to the ``cache`` folder when one is given."""

    if cache is None:
        return Tokenizer.train(docs, vocab_size=vocab_size)
    key = f"{corpus_hash(docs)}-{vocab_size}-{sentencepiece.__version__}"
    f = Path(cache) / f"tokenizer-{hashlib.sha256(key.encode()).hexdigest()[:16]}.model"
    if f.is_file():
        try:
            return Tokenizer(f)
        except Exception:  # noqa: BLE001 - a damaged cache entry is retrained below
            pass
    tok = Tokenizer.train(docs, vocab_size=vocab_size)
    try:
        tok.save(f)                                       # atomic
    except OSError:
        pass  # a read-only cache is fine
    return tok
