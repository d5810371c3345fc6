"""ALBERT's tokenizer: a SentencePiece unigram model with ALBERT's special ids.

The ids of the special tokens are fixed by how the model is trained (spec §5.1)::

    <pad> = 0   <unk> = 1   [CLS] = 2   [SEP] = 3   [MASK] = 4

Text goes through ALBERT's ``preprocess_text`` before SentencePiece sees it: strip and
collapse whitespace, ````` `` ````` and ``''`` become ``"``, NFKD + drop combining marks
(accents), lower-case (for uncased models). Pieces that end in ``<digit>,`` are re-split
so the comma is its own piece, as the reference ``encode_pieces`` does.

Control symbols are never matched in raw text (the string ``"[MASK]"`` is split into
ordinary pieces), so ``[CLS]``/``[SEP]``/``[MASK]`` are inserted as ids in code.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import unicodedata
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .atomic import atomic_write
from .textfiles import iter_text_files, read_text_file

try:  # imported lazily-ish: a clear message beats an ImportError deep in a call
    import sentencepiece as spm
except ImportError:  # pragma: no cover
    spm = None

PAD, UNK, CLS, SEP, MASK = "<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_IDS = {PAD: 0, UNK: 1, CLS: 2, SEP: 3, MASK: 4}
# the official ALBERT model's --user_defined_symbols (GR-readme): always whole pieces
ALBERT_USER_SYMBOLS = ("(", ")", '"', "-", ".", "–", "£", "€")
SPIECE_UNDERLINE = "\u2581"  # "▁": marks a piece that starts a word

_SPM_TOO_HIGH = re.compile(r"Vocabulary size too high.*?<=\s*(\d+)", re.S)


def preprocess_text(text: str, lowercase: bool = True) -> str:
    """ALBERT's ``preprocess_text``: the normalisation applied before SentencePiece.

    Collapse runs of whitespace to one space and strip the ends, turn LaTeX-style
    quotes ``\u0060\u0060`` and ``''`` into ``"``, decompose (NFKD) and drop combining
    marks, lower-case if ``lowercase``. ASCII text takes a fast path (NFKD is the
    identity on it).
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected a str, got {type(text).__name__}"
                         + (" (decode bytes with .decode('utf-8') first)" if isinstance(text, bytes) else ""))
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates, e.g. from errors="surrogateescape"
            raise ValueError(f"text: undecodable character {text[e.start]!r} at index {e.start} "
                             f"(a lone surrogate; the text was not valid UTF-8)") from None
    text = " ".join(text.split())
    if "``" in text or "''" in text:
        text = text.replace("``", '"').replace("''", '"')
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(c for c in text if not unicodedata.combining(c))
    if lowercase:
        text = text.lower()
    return text


def _require_spm():
    if spm is None:  # pragma: no cover
        raise ImportError("minialbert's tokenizer needs the 'sentencepiece' package: pip install sentencepiece")


def _iter_training_lines(texts, lowercase: bool):
    """Yield preprocessed non-empty lines from sentences, documents, files or folders.

    ``texts`` may be: a path (str or PathLike) to a text file or a folder of them; an
    iterable whose items are sentences (str), documents (lists of sentences) or paths
    (``os.PathLike`` only: a plain str item is always a sentence).
    """
    if isinstance(texts, (str, os.PathLike)):
        texts = [Path(texts)]
    for item in texts:
        if isinstance(item, os.PathLike):
            for f in iter_text_files(item):
                for line in read_text_file(f).splitlines():
                    line = preprocess_text(line, lowercase)
                    if line:
                        yield line
        elif isinstance(item, str):
            line = preprocess_text(item, lowercase)
            if line:
                yield line
        elif isinstance(item, Iterable):  # a document: a list of sentences
            for s in item:
                if not isinstance(s, str):
                    raise ValueError(f"texts: a document must hold sentence strings, got {type(s).__name__}")
                line = preprocess_text(s, lowercase)
                if line:
                    yield line
        else:
            raise ValueError(f"texts: expected sentences, documents or paths, got {type(item).__name__}")


class Tokenizer:
    """A SentencePiece model with ALBERT's special ids, normalisation and pair template.

    ``Tokenizer(model_file)`` loads any ALBERT ``spiece.model`` (a path, the model's
    bytes or a binary file object). ``Tokenizer.train(...)`` makes a new one.

    Attributes: ``pad_id, unk_id, cls_id, sep_id, mask_id`` (0..4 for ALBERT models),
    ``vocab_size`` (V), ``lowercase``, ``content_hash`` (SHA-256 of the model bytes,
    for manifests).
    """

    def __init__(self, model_file, lowercase: bool | None = None):
        _require_spm()
        where = "model_file"
        if isinstance(model_file, (bytes, bytearray)):
            proto = bytes(model_file)
        elif hasattr(model_file, "read"):
            proto = model_file.read()
        else:
            path = Path(model_file)
            if not path.is_file():
                raise FileNotFoundError(f"model_file: no SentencePiece model at {path}")
            proto = path.read_bytes()
            where = f"model_file {path}"
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(proto)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError on bad bytes
            raise ValueError(f"{where}: not a SentencePiece model ({len(proto)} bytes; {e})") from None
        self.model_proto = proto
        self.vocab_size = int(self.sp.get_piece_size())
        self._pieces = [self.sp.id_to_piece(i) for i in range(self.vocab_size)]
        ids = {}
        for name in (PAD, UNK, CLS, SEP, MASK):
            i = self.sp.piece_to_id(name)
            # piece_to_id returns unk's id for an unknown piece
            if self._pieces[i] != name:
                raise ValueError(f"{where}: the model has no {name} piece; it is not an ALBERT tokenizer "
                                 f"(train one with Tokenizer.train)")
            ids[name] = i
        self.pad_id, self.unk_id = ids[PAD], ids[UNK]
        self.cls_id, self.sep_id, self.mask_id = ids[CLS], ids[SEP], ids[MASK]
        if lowercase is None:
            # an uncased model was trained on lower-cased text, so it has no upper-case piece
            lowercase = not any(p not in ids and any(c.isupper() for c in p) for p in self._pieces)
        self.lowercase = bool(lowercase)
        self.content_hash = hashlib.sha256(proto).hexdigest()
        # ids whose piece ends in "<digit>," (re-split by encode, as the reference does)
        self._digit_comma = {i for i, p in enumerate(self._pieces)
                             if len(p) > 1 and p[-1] == "," and p[-2].isdigit()}

    def __getstate__(self):
        # the SentencePiece processor itself is rebuilt from the model bytes
        return {"model_proto": self.model_proto, "lowercase": self.lowercase}

    def __setstate__(self, state):
        self.__init__(state["model_proto"], lowercase=state["lowercase"])

    # -- training ---------------------------------------------------------------------
    @classmethod
    def train(cls, texts, vocab_size: int, output=None, lowercase: bool = True,
              user_defined_symbols: Sequence[str] = ALBERT_USER_SYMBOLS,
              character_coverage: float = 0.99995, num_threads: int | None = None,
              max_sentence_length: int = 16384, verbose: bool = False) -> "Tokenizer":
        """Train a SentencePiece unigram model with ALBERT's flags.

        Inputs:
        - texts: sentences (str), documents (lists of sentences), ``os.PathLike`` paths
          to text files or folders, or a single path; lines are preprocessed as in
          :func:`preprocess_text`, blank ones dropped.
        - vocab_size: V, the number of pieces including the 5 specials and the user symbols.
        - output: None keeps the model in memory; a path writes ``<path>`` (``.model``
          appended if missing); the model bytes are also on ``tokenizer.model_proto``.
        - lowercase: an uncased model (ALBERT's default), trained with ``nmt_nfkc_cf``.
        - user_defined_symbols: pieces always kept whole; ALBERT's official list by default.

        Returns: a :class:`Tokenizer`. Training is deterministic.
        """
        _require_spm()
        vocab_size = int(vocab_size)
        n_fixed = 5 + len(user_defined_symbols)
        if vocab_size <= n_fixed:
            raise ValueError(f"vocab_size={vocab_size} must exceed the {n_fixed} special and user-defined pieces")
        lines = list(_iter_training_lines(texts, lowercase))
        if not lines:
            raise ValueError("texts: the corpus is empty (no non-blank line to train on)")
        # SentencePiece skips a line longer than max_sentence_length bytes (and fails with an
        # INTERNAL error when nothing is left): say so here, in words
        sizes = [len(x.encode("utf-8")) for x in lines]
        too_long = sum(n > max_sentence_length for n in sizes)
        if too_long:
            what = (f"{too_long} of {len(lines)} lines {'is' if too_long == 1 else 'are'} longer than "
                    f"max_sentence_length={max_sentence_length} bytes (the longest: {max(sizes):,} bytes)")
            if too_long == len(lines):
                raise ValueError(f"texts: {what}; SentencePiece trains on none of them. Split the text into "
                                 f"lines or sentences (minialbert tokenizer train --split sentences), or raise "
                                 f"max_sentence_length")
            warnings.warn(f"texts: {what}; SentencePiece skips them", stacklevel=2)
        writer = io.BytesIO()
        kwargs = dict(
            sentence_iterator=iter(lines), model_writer=writer, vocab_size=vocab_size,
            model_type="unigram", pad_id=0, pad_piece=PAD, unk_id=1, unk_piece=UNK,
            bos_id=-1, eos_id=-1, control_symbols=[CLS, SEP, MASK],
            user_defined_symbols=list(user_defined_symbols),
            character_coverage=character_coverage,
            # cased models keep SentencePiece's default rule; uncased ones also case-fold
            normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
            max_sentence_length=max_sentence_length,
            num_threads=num_threads or os.cpu_count() or 1,
            minloglevel=0 if verbose else 2,
        )
        try:
            spm.SentencePieceTrainer.train(**kwargs)
        except RuntimeError as e:
            m = _SPM_TOO_HIGH.search(str(e))
            if m:
                raise ValueError(
                    f"vocab_size={vocab_size} is too large for this corpus: SentencePiece can make at most "
                    f"{m.group(1)} pieces from {len(lines)} lines. Pass vocab_size <= {m.group(1)} "
                    f"or train on more text.") from None
            raise ValueError(f"SentencePiece training failed: {e}") from None
        tok = cls(writer.getvalue(), lowercase=lowercase)
        if output is not None:
            tok.save(output)
        return tok

    def save(self, path) -> Path:
        """Write the SentencePiece model (``spiece.model`` format) atomically; returns its path."""
        path = Path(path)
        if path.suffix != ".model":
            path = path.with_name(path.name + ".model")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(path, self.model_proto)
        except OSError as e:                # a full disk, a read-only folder: name the target
            raise OSError(e.errno, e.strerror, str(path)) from None
        return path

    # -- pieces and ids ----------------------------------------------------------------
    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={self.vocab_size}, lowercase={self.lowercase}, "
                f"hash={self.content_hash[:12]})")

    def preprocess(self, text: str) -> str:
        return preprocess_text(text, self.lowercase)

    def id_to_piece(self, ids):
        """Piece string(s) for an id or a sequence of ids."""
        if isinstance(ids, (int, np.integer)):
            return self._pieces[int(ids)]
        return [self._pieces[int(i)] for i in ids]

    convert_ids_to_tokens = id_to_piece

    def piece_to_id(self, pieces):
        """Id(s) for a piece or a sequence of pieces (unknown pieces give ``unk_id``)."""
        if isinstance(pieces, str):
            return int(self.sp.piece_to_id(pieces))
        return [int(self.sp.piece_to_id(p)) for p in pieces]

    convert_tokens_to_ids = piece_to_id

    @property
    def pieces(self) -> list[str]:
        """All V pieces in id order."""
        return list(self._pieces)

    def is_special(self, i: int) -> bool:
        """True for control/unknown ids (``<pad> <unk> [CLS] [SEP] [MASK]``)."""
        return bool(self.sp.is_control(int(i)) or self.sp.is_unknown(int(i)))

    # -- encoding ----------------------------------------------------------------------
    def _fix_digit_comma(self, ids: list[int]) -> list[int]:
        # reference encode_pieces: "▁1990," -> "▁1990" ","  (keep the word-start marker right)
        out = []
        for i in ids:
            if i not in self._digit_comma:
                out.append(i)
                continue
            piece = self._pieces[i]
            cur = self.sp.encode(piece[:-1].replace(SPIECE_UNDERLINE, ""), out_type=str)
            if piece[0] != SPIECE_UNDERLINE and cur and cur[0][0] == SPIECE_UNDERLINE:
                cur = cur[1:] if len(cur[0]) == 1 else [cur[0][1:]] + cur[1:]
            out.extend(self.sp.piece_to_id(p) for p in cur)
            out.append(self.sp.piece_to_id(","))
        return out

    def encode(self, text: str) -> list[int]:
        """Ids of ``text`` (no [CLS]/[SEP]). Inputs: text str. Returns: list of ints."""
        ids = self.sp.encode(self.preprocess(text))
        if self._digit_comma and any(i in self._digit_comma for i in ids):
            ids = self._fix_digit_comma(ids)
        return ids

    def encode_batch(self, texts: Sequence[str], num_threads: int = 1) -> list[list[int]]:
        """:meth:`encode` over many texts at once (SentencePiece's C++ batch path)."""
        pre = [self.preprocess(t) for t in texts]
        out = self.sp.encode(pre, num_threads=num_threads)
        if self._digit_comma:
            out = [self._fix_digit_comma(ids) if any(i in self._digit_comma for i in ids) else ids
                   for ids in out]
        return out

    def tokenize(self, text: str) -> list[str]:
        """Pieces of ``text``."""
        return self.id_to_piece(self.encode(text))

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of ``ids``. Specials are dropped (``skip_special_tokens``) or written as their names."""
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            return self.sp.decode([i for i in ids if not self.is_special(i) or i == self.unk_id])
        # decode runs of ordinary pieces, write specials by name
        parts, run = [], []
        for i in ids:
            if self.is_special(i):
                if run:
                    parts.append(self.sp.decode(run))
                    run = []
                parts.append(self._pieces[i])
            else:
                run.append(i)
        if run:
            parts.append(self.sp.decode(run))
        return " ".join(parts)

    # -- model inputs ------------------------------------------------------------------
    def build_inputs(self, ids_a: list[int], ids_b: list[int] | None = None):
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]`` and token types 0.../1... ."""
        ids = [self.cls_id] + list(ids_a) + [self.sep_id]
        types = [0] * len(ids)
        if ids_b is not None:
            ids += list(ids_b) + [self.sep_id]
            types += [1] * (len(ids_b) + 1)
        return ids, types

    def __call__(self, text_a, text_b=None, max_length: int | None = None, padding=False,
                 truncation: bool = True, return_tensors: str | None = None) -> dict:
        """Encode one text (pair) or a batch of them into model inputs.

        Inputs:
        - text_a: a str or a list of B strs; text_b: None, a str, or a list of B strs.
        - max_length: the total length T with specials; None = no limit.
        - padding: False (none), True/"longest" (to the longest in the batch), or
          "max_length" (to ``max_length``); pads with ``pad_id``, token type 0, mask 0.
        - truncation: cut over-long inputs, longest-first (one token at a time from the
          end of the longer segment, as HF); if False an over-long input raises.
        - return_tensors: None (lists) or "np" (int64 arrays, needs equal lengths).

        Returns: dict with ``input_ids``, ``token_type_ids``, ``attention_mask``: lists
        of ints for a single text, lists of lists (or (B, T) arrays) for a batch.
        """
        batched = not isinstance(text_a, str)
        if batched:
            text_a = list(text_a)
            if text_b is not None:
                if isinstance(text_b, str) or len(text_b) != len(text_a):
                    raise ValueError("text_b: must be a list as long as text_a when text_a is a batch")
                text_b = list(text_b)
        else:
            if text_b is not None and not isinstance(text_b, str):
                raise ValueError("text_b: must be a str when text_a is a str")
            text_a = [text_a]
            text_b = None if text_b is None else [text_b]
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding: expected False, True, 'longest' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        if max_length is not None and max_length < (2 if text_b is None else 3):
            raise ValueError(f"max_length={max_length} is shorter than the special tokens alone")
        ids_a = self.encode_batch(text_a)
        ids_b = self.encode_batch(text_b) if text_b is not None else [None] * len(ids_a)
        rows, types = [], []
        for a, b in zip(ids_a, ids_b):
            if max_length is not None:
                budget = max_length - (2 if b is None else 3)
                if len(a) + (len(b) if b is not None else 0) > budget:
                    if not truncation:
                        raise ValueError(f"input of {len(a) + len(b or []) + (2 if b is None else 3)} tokens "
                                         f"exceeds max_length={max_length} and truncation=False")
                    a, b = truncate_longest_first(a, b, budget)
            r, t = self.build_inputs(a, b)
            rows.append(r)
            types.append(t)
        masks = [[1] * len(r) for r in rows]
        if padding in (True, "longest", "max_length"):
            T = max_length if padding == "max_length" else max(len(r) for r in rows)
            for r, t, m in zip(rows, types, masks):
                n = T - len(r)
                r += [self.pad_id] * n
                t += [0] * n
                m += [0] * n
        out = {"input_ids": rows, "token_type_ids": types, "attention_mask": masks}
        if return_tensors == "np":
            if len({len(r) for r in rows}) != 1:
                raise ValueError("return_tensors='np' needs equal lengths: pass padding=True")
            out = {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
        elif return_tensors is not None:
            raise ValueError(f"return_tensors: only None or 'np' are supported, got {return_tensors!r}")
        if not batched:
            out = {k: v[0] for k, v in out.items()}
        return out


def truncate_longest_first(a: list[int], b: list[int] | None, budget: int):
    """Cut segments to at most ``budget`` tokens together, from their ends, longest first.

    Same lengths as HF tokenizers' ``longest_first``: the shorter segment is kept whole
    if the longer one can take the rest; otherwise both get half the budget (the
    originally longer one, or B on a tie, gets the odd token).
    Returns: (a, b) truncated copies (b None if it was None).
    """
    if b is None:
        return list(a[:max(budget, 0)]), None
    n1, n2 = len(a), len(b)
    if n1 + n2 <= budget:
        return list(a), list(b)
    swap = n1 > n2
    if swap:
        n1, n2 = n2, n1
    n2 = n1 if n1 > budget else max(n1, budget - n1)
    if n1 + n2 > budget:
        n1 = budget // 2
        n2 = n1 + budget % 2
    if swap:
        n1, n2 = n2, n1
    return list(a[:n1]), list(b[:n2])
