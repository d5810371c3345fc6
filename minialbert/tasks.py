"""Fine-tuning tasks: readers, features and post-processing.

Three task kinds, GLUE/CoNLL/SQuAD style:

* ``sequence_classification`` / ``regression``: CSV, TSV or JSONL rows with one text or a
  pair of texts and a label (GLUE column names are recognised: ``sentence``,
  ``sentence1``/``sentence2``, ``question``/``sentence``, ``question1``/``question2``,
  ``premise``/``hypothesis``, ``text``, ``text_a``/``text_b``; label ``label``, ``labels``,
  ``gold_label`` or ``score``). String labels are mapped to ids in sorted order; float
  labels that are not all integers make a regression task (``num_labels = 1``).
* ``token_classification``: CoNLL text (one ``token ... tag`` per line, blank line between
  sentences, ``-DOCSTART-`` skipped) or JSONL with ``tokens`` and ``tags``/``ner_tags``/
  ``labels``. A word's tag goes to its first piece; the other pieces get -100 (ignored).
* ``question_answering``: SQuAD-format JSON (v1.1 or v2.0), long contexts split into
  windows with a document stride; answers are predicted per window and the best span
  over all windows of a question is kept.

Every reader raises ValueError naming the file and the line/row that is wrong.
The embedded demo task (:func:`demo_task`) needs no download at all.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .layers.losses import IGNORE_INDEX
from .tokenizer import truncate_longest_first
TASK_KINDS = ("sequence_classification", "regression", "token_classification", "question_answering")

TEXT_COLUMNS = [("sentence1", "sentence2"), ("question1", "question2"), ("question", "sentence"),
                ("premise", "hypothesis"), ("text_a", "text_b"), ("sentence",), ("text",),
                ("text_a",)]
LABEL_COLUMNS = ("label", "labels", "gold_label", "score")


@dataclass
class Task:
    """A loaded task: kind, examples and label names.

    ``train``/``eval`` are lists of dicts: sequence tasks ``{"text_a", "text_b", "label"}``;
    token tasks ``{"tokens", "labels"}``; QA ``{"id", "question", "context", "answers"}``."""
    kind: str
    train: list
    eval: list
    label_names: list = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        if self.kind == "regression":
            return 1
        if self.kind == "question_answering":
            return 2
        return len(self.label_names)


# --------------------------------------------------------------------------------------
# reading files


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    """The whole file as text; a byte that is not valid ``encoding`` is a ValueError naming
    the file, the line and the byte (and the --encoding flag that fixes it)."""
    raw = path.read_bytes()
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(f"{path}:{line}: not valid {encoding} text (byte 0x{raw[e.start]:02x} at line {line}, "
                         f"byte {col} of the line; {e.reason}); pass --encoding (e.g. latin-1, cp1252) "
                         f"if the file uses another encoding") from None
    except LookupError:
        raise ValueError(f"--encoding: unknown text encoding {encoding!r}") from None


def _read_rows(path, encoding: str = "utf-8") -> list[dict]:
    """CSV / TSV (header row) / JSONL rows as dicts of strings (JSON values kept)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        # io.StringIO(newline=None) splits lines as open() does (not str.splitlines, which
        # also splits at U+2028 and friends, valid inside a JSON string)
        for n, line in enumerate(io.StringIO(_read_text(path, encoding), newline=None), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object ({e.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: expected a JSON object per line")
            rows.append(row)
        return rows
    if suffix not in (".csv", ".tsv", ".txt"):
        raise ValueError(f"{path}: unknown data format {suffix!r}: expected .csv, .tsv or .jsonl")
    f = io.StringIO(_read_text(path, encoding), newline="")
    if suffix == ".csv":
        reader = csv.DictReader(f)
    else:  # GLUE TSVs are unquoted: a quote char is just a character
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = list(reader)
    for n, row in enumerate(rows, 2):
        if None in row or any(v is None for v in row.values()):
            raise ValueError(f"{path}:{n}: row has a different number of fields than the header")
    return rows


def _pick_columns(rows, path, text_columns=None, label_column=None):
    if not rows:
        raise ValueError(f"{path}: no rows")
    cols = set(rows[0])
    if text_columns:
        missing = [c for c in text_columns if c not in cols]
        if missing:
            raise ValueError(f"{path}: no column {missing[0]!r} (columns: {sorted(cols)})")
    else:
        text_columns = next((c for c in TEXT_COLUMNS if all(x in cols for x in c)), None)
        if text_columns is None:
            raise ValueError(f"{path}: cannot tell the text column(s) from {sorted(cols)}; "
                             "pass --text-columns")
    if label_column is None:
        label_column = next((c for c in LABEL_COLUMNS if c in cols), None)
        if label_column is None:
            raise ValueError(f"{path}: no label column (looked for {LABEL_COLUMNS}); pass --label-column")
    elif label_column not in cols:
        raise ValueError(f"{path}: no column {label_column!r} (columns: {sorted(cols)})")
    return list(text_columns), label_column


def _is_int(s) -> bool:
    if isinstance(s, bool):
        return False
    if isinstance(s, int):
        return True
    try:
        return float(s) == int(float(s)) and "." not in str(s) and "e" not in str(s).lower()
    except (TypeError, ValueError):
        return False


def _is_float(s) -> bool:
    try:
        float(s)
        return not isinstance(s, bool)
    except (TypeError, ValueError):
        return False


def load_sequence_task(train_path, eval_path=None, text_columns=None, label_column=None,
                       label_names=None, num_labels=None, regression=None, encoding: str = "utf-8") -> Task:
    """Read a (single text or pair) classification or regression task.

    Inputs: train_path / eval_path (CSV, TSV, JSONL; without eval_path, 10% of train is
    held out, deterministically), text_columns (1 or 2 names) and label_column (guessed
    from GLUE names when None), label_names (order of string labels; default sorted),
    num_labels (for integer labels; default max+1), regression (default: labels that are
    floats but not all integers), encoding (of the files; default UTF-8).
    Returns: Task. Labels outside [0, num_labels) raise ValueError naming file and row."""
    train_rows = _read_rows(train_path, encoding)
    text_columns, label_column = _pick_columns(train_rows, train_path, text_columns, label_column)
    if eval_path is not None:
        eval_rows = _read_rows(eval_path, encoding)
        _pick_columns(eval_rows, eval_path, text_columns, label_column)
    else:
        idx = np.random.default_rng(0).permutation(len(train_rows))
        n_eval = max(1, len(train_rows) // 10)
        eval_rows = [train_rows[i] for i in sorted(idx[:n_eval])]
        train_rows = [train_rows[i] for i in sorted(idx[n_eval:])]
        if not train_rows:
            raise ValueError(f"{train_path}: too few rows to hold out an evaluation set; pass --eval")
    all_labels = [r[label_column] for r in train_rows + eval_rows]
    if regression is None:
        regression = (all(_is_float(x) for x in all_labels)
                      and not all(_is_int(x) for x in all_labels) and not label_names)
    kind = "regression" if regression else "sequence_classification"
    if regression:
        label_names = []
    elif label_names is None:
        if all(_is_int(x) for x in all_labels):
            n = int(num_labels) if num_labels else max(int(float(x)) for x in all_labels) + 1
            label_names = [str(i) for i in range(n)]
        else:
            label_names = sorted({str(x) for x in all_labels})
    label_names = [str(x) for x in label_names]

    def convert(rows, path):
        out = []
        for n, r in enumerate(rows, 1):
            lab = r[label_column]
            if regression:
                if not _is_float(lab):
                    raise ValueError(f"{path}: row {n}: label {lab!r} is not a number")
                y = float(lab)
            else:
                s = str(lab)
                if _is_int(lab) and s not in label_names:
                    s = str(int(float(lab)))
                if s not in label_names:
                    raise ValueError(f"{path}: row {n}: label {lab!r} is outside the {len(label_names)} "
                                     f"labels {label_names[:10]} (num_labels={len(label_names)})")
                y = label_names.index(s)
            texts = [str(r[c] or "") for c in text_columns]
            out.append({"text_a": texts[0], "text_b": texts[1] if len(texts) > 1 else None, "label": y})
        return out

    return Task(kind, convert(train_rows, train_path), convert(eval_rows, eval_path or train_path),
                label_names)


def _read_conll(path, encoding: str = "utf-8") -> list[dict]:
    sents, toks, tags = [], [], []
    for n, line in enumerate(io.StringIO(_read_text(Path(path), encoding), newline=None), 1):
        line = line.rstrip("\n")
        if not line.strip():
            if toks:
                sents.append({"tokens": toks, "tags": tags})
            toks, tags = [], []
            continue
        parts = line.split()
        if parts[0] == "-DOCSTART-":
            continue
        if len(parts) < 2:
            raise ValueError(f"{path}:{n}: expected 'token ... tag', got {line!r}")
        toks.append(parts[0])
        tags.append(parts[-1])
    if toks:
        sents.append({"tokens": toks, "tags": tags})
    return sents


def _read_token_file(path, encoding: str = "utf-8") -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.suffix.lower() in (".jsonl", ".json"):
        out = []
        for n, row in enumerate(_read_rows(path, encoding), 1):
            tags = next((row[k] for k in ("tags", "ner_tags", "labels") if k in row), None)
            if "tokens" not in row or tags is None:
                raise ValueError(f"{path}: row {n}: expected keys 'tokens' and 'tags' (or 'ner_tags'/'labels')")
            if len(tags) != len(row["tokens"]):
                raise ValueError(f"{path}: row {n}: {len(row['tokens'])} tokens but {len(tags)} tags")
            out.append({"tokens": [str(t) for t in row["tokens"]], "tags": tags})
        return out
    return _read_conll(path, encoding)


def load_token_task(train_path, eval_path=None, label_names=None, encoding: str = "utf-8") -> Task:
    """Read a token-classification task (CoNLL or JSONL; see the module docstring).
    Integer tags are used as ids (label_names default "0".."max"); string tags are mapped
    in sorted order (or the order of ``label_names``)."""
    train = _read_token_file(train_path, encoding)
    if not train:
        raise ValueError(f"{train_path}: no sentences")
    if eval_path is not None:
        ev = _read_token_file(eval_path, encoding)
    else:
        n_eval = max(1, len(train) // 10)
        ev, train = train[:n_eval], train[n_eval:]
        if not train:
            raise ValueError(f"{train_path}: too few sentences to hold out an evaluation set; pass --eval")
    all_tags = [t for s in train + ev for t in s["tags"]]
    if label_names is None:
        if all(_is_int(t) for t in all_tags):
            label_names = [str(i) for i in range(max(int(t) for t in all_tags) + 1)]
        else:
            label_names = sorted({str(t) for t in all_tags})
    label_names = [str(x) for x in label_names]

    def convert(sents, path):
        out = []
        for n, s in enumerate(sents, 1):
            ids = []
            for t in s["tags"]:
                k = str(int(t)) if _is_int(t) else str(t)
                if k not in label_names:
                    raise ValueError(f"{path}: sentence {n}: tag {t!r} is outside the {len(label_names)} "
                                     f"labels (num_labels={len(label_names)})")
                ids.append(label_names.index(k))
            out.append({"tokens": s["tokens"], "labels": ids})
        return out

    return Task("token_classification", convert(train, train_path),
                convert(ev, eval_path or train_path), label_names)


def read_squad(path, encoding: str = "utf-8") -> list[dict]:
    """SQuAD v1.1/v2.0 JSON -> [{"id", "question", "context", "answers": [{"text", "answer_start"}]}].
    Unanswerable (v2.0 ``is_impossible``) questions get ``answers == []``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        data = json.loads(_read_text(path, encoding))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or "data" not in data:
        raise ValueError(f"{path}: not SQuAD format (expected a top-level 'data' list)")
    out = []
    for article in data["data"]:
        for para in article.get("paragraphs", []):
            ctx = para["context"]
            for qa in para.get("qas", []):
                answers = [] if qa.get("is_impossible") else list(qa.get("answers", []))
                for a in answers:
                    s = int(a["answer_start"])
                    if ctx[s:s + len(a["text"])] != a["text"]:
                        raise ValueError(f"{path}: question {qa.get('id')!r}: answer {a['text']!r} "
                                         f"is not at answer_start={s} of its context")
                out.append({"id": str(qa["id"]), "question": qa["question"], "context": ctx,
                            "answers": answers})
    if not out:
        raise ValueError(f"{path}: no questions")
    return out


def load_qa_task(train_path, eval_path=None, encoding: str = "utf-8") -> Task:
    train = read_squad(train_path, encoding)
    if eval_path is not None:
        ev = read_squad(eval_path, encoding)
    else:
        n_eval = max(1, len(train) // 10)
        ev, train = train[:n_eval], train[n_eval:]
        if not train:
            raise ValueError(f"{train_path}: too few questions to hold out an evaluation set; pass --eval")
    return Task("question_answering", train, ev, [])


# --------------------------------------------------------------------------------------
# features


def _special_ids(tok):
    return int(tok.cls_id), int(tok.sep_id), int(tok.pad_id)


def encode_pair(tok, ids_a, ids_b, max_length):
    """[CLS] A [SEP] (B [SEP]) cut to ``max_length`` longest-first, with the tokenizer's own
    template and truncation (HF's rules). Returns (input_ids, token_type_ids) lists."""
    budget = max_length - (3 if ids_b is not None else 2)
    if budget < 1:
        raise ValueError(f"max_length={max_length} leaves no room for text")
    a, b = truncate_longest_first(list(ids_a), None if ids_b is None else list(ids_b), budget)
    return tok.build_inputs(a, b)


def _pad(rows, T, value):
    out = np.full((len(rows), T), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def sequence_features(examples, tok, max_length, regression=False) -> dict:
    """Inputs: sequence examples, tokenizer, max_length T.
    Returns: dict of arrays input_ids/token_type_ids/attention_mask (N, T) and labels (N,)
    (int64, or float32 for regression). Sequences are padded to the longest in the set."""
    ids, types = [], []
    for ex in examples:
        a = tok.encode(ex["text_a"])
        b = tok.encode(ex["text_b"]) if ex.get("text_b") is not None else None
        i, t = encode_pair(tok, a, b, max_length)
        ids.append(i)
        types.append(t)
    T = max(len(r) for r in ids)
    _, _, pad = _special_ids(tok)
    feats = {"input_ids": _pad(ids, T, pad), "token_type_ids": _pad(types, T, 0),
             "attention_mask": _pad([[1] * len(r) for r in ids], T, 0)}
    labels = [ex["label"] for ex in examples]
    feats["labels"] = np.asarray(labels, np.float32 if regression else np.int64)
    return feats


def token_features(examples, tok, max_length) -> dict:
    """Each word is encoded alone; its label goes to its first piece, -100 to the others,
    to [CLS]/[SEP] and to padding. Words past max_length are dropped (their labels are
    not scored). Returns arrays as :func:`sequence_features`, labels (N, T)."""
    cls, sep, pad = _special_ids(tok)
    ids, labels = [], []
    for ex in examples:
        row, lab = [cls], [IGNORE_INDEX]
        for word, y in zip(ex["tokens"], ex["labels"]):
            pieces = tok.encode(word) or [int(tok.unk_id)]
            if len(row) + len(pieces) > max_length - 1:
                break
            row += pieces
            lab += [y] + [IGNORE_INDEX] * (len(pieces) - 1)
        ids.append(row + [sep])
        labels.append(lab + [IGNORE_INDEX])
    T = max(len(r) for r in ids)
    return {"input_ids": _pad(ids, T, pad), "token_type_ids": np.zeros((len(ids), T), np.int64),
            "attention_mask": _pad([[1] * len(r) for r in ids], T, 0),
            "labels": _pad(labels, T, IGNORE_INDEX)}


def _words_with_offsets(text):
    """Whitespace words and the char offset where each starts (BERT's run_squad split)."""
    words, starts, prev_ws = [], [], True
    for i, ch in enumerate(text):
        if ch.isspace():
            prev_ws = True
            continue
        if prev_ws:
            words.append(ch)
            starts.append(i)
        else:
            words[-1] += ch
        prev_ws = False
    return words, starts


def qa_features(examples, tok, max_length=384, doc_stride=128, max_query_length=64) -> dict:
    """SQuAD features: ``[CLS] question [SEP] context window [SEP]``, windows ``doc_stride``
    pieces apart. The context is split on whitespace and each word is encoded alone, so a
    piece maps back to a word and the answer text is read from the original context.

    Returns: dict of arrays input_ids/token_type_ids/attention_mask (N, T),
    start_positions/end_positions (N,) (0 = [CLS] when the answer is not in the window or
    the question has none), and per feature ``example_index`` (N,), plus lists
    ``token_to_word`` (N lists, -1 outside the context) and ``max_context`` (N lists of
    bools: is this window the one where the piece has the most context on both sides)."""
    cls, sep, pad = _special_ids(tok)
    feats = {k: [] for k in ("input_ids", "token_type_ids", "start_positions", "end_positions",
                             "example_index", "token_to_word", "max_context")}
    for ei, ex in enumerate(examples):
        q = tok.encode(ex["question"])[:max_query_length]
        words, starts = _words_with_offsets(ex["context"])
        pieces, piece_word = [], []
        for wi, w in enumerate(words):
            for p in tok.encode(w) or [int(tok.unk_id)]:
                pieces.append(p)
                piece_word.append(wi)
        # answer span in pieces (the first gold answer is the training target)
        ans_s = ans_e = None
        if ex["answers"]:
            a = ex["answers"][0]
            c0, c1 = int(a["answer_start"]), int(a["answer_start"]) + len(a["text"]) - 1
            w0 = max(i for i, s in enumerate(starts) if s <= c0) if starts and starts[0] <= c0 else 0
            w1 = max(i for i, s in enumerate(starts) if s <= c1) if starts and starts[0] <= c1 else 0
            ps = [i for i, w in enumerate(piece_word) if w0 <= w <= w1]
            if ps:
                ans_s, ans_e = ps[0], ps[-1]
        room = max_length - len(q) - 3
        if room < 1:
            raise ValueError(f"max_length={max_length} leaves no room for the context "
                             f"(question has {len(q)} pieces)")
        windows, start = [], 0
        while True:
            length = min(room, len(pieces) - start)
            windows.append((start, length))
            if start + length >= len(pieces):
                break
            start += min(length, doc_stride)
        for ws, wl in windows:
            ids = [cls] + q + [sep] + pieces[ws:ws + wl] + [sep]
            types = [0] * (len(q) + 2) + [1] * (wl + 1)
            off = len(q) + 2
            t2w = [-1] * off + piece_word[ws:ws + wl] + [-1]
            mc = [False] * off
            for j in range(ws, ws + wl):
                best = max(((s, l) for s, l in windows if s <= j < s + l),
                           key=lambda sl: min(j - sl[0], sl[0] + sl[1] - 1 - j) + 0.01 * sl[1])
                mc.append(best == (ws, wl))
            mc.append(False)
            if ans_s is not None and ws <= ans_s and ans_e < ws + wl:
                sp, ep = ans_s - ws + off, ans_e - ws + off
            else:
                sp = ep = 0
            feats["input_ids"].append(ids)
            feats["token_type_ids"].append(types)
            feats["start_positions"].append(sp)
            feats["end_positions"].append(ep)
            feats["example_index"].append(ei)
            feats["token_to_word"].append(t2w)
            feats["max_context"].append(mc)
    T = max(len(r) for r in feats["input_ids"])
    out = {"input_ids": _pad(feats["input_ids"], T, pad),
           "token_type_ids": _pad(feats["token_type_ids"], T, 0),
           "attention_mask": _pad([[1] * len(r) for r in feats["input_ids"]], T, 0),
           "start_positions": np.asarray(feats["start_positions"], np.int64),
           "end_positions": np.asarray(feats["end_positions"], np.int64),
           "example_index": np.asarray(feats["example_index"], np.int64),
           "token_to_word": feats["token_to_word"], "max_context": feats["max_context"]}
    return out


def qa_predictions(examples, feats, start_logits, end_logits, n_best=20,
                   max_answer_length=30, null_answers=False) -> dict:
    """Best answer text per question over all its windows: the span (s <= e, both inside
    the context, at most ``max_answer_length`` pieces, s where its window has max context)
    with the highest start + end logit, mapped back to whitespace words of the context.
    With ``null_answers`` (SQuAD 2.0) an empty string is predicted when the [CLS] score
    beats every span.
    Returns: {question id: answer text}."""
    start_logits, end_logits = np.asarray(start_logits), np.asarray(end_logits)
    best = {}
    for f in range(len(feats["example_index"])):
        ei = int(feats["example_index"][f])
        t2w, mc = feats["token_to_word"][f], feats["max_context"][f]
        sl, el = start_logits[f, :len(t2w)], end_logits[f, :len(t2w)]
        null = float(sl[0] + el[0])
        cand = []
        s_top = np.argsort(-sl)[:n_best]
        e_top = np.argsort(-el)[:n_best]
        for s in s_top:
            if t2w[s] < 0 or not mc[s]:
                continue
            for e in e_top:
                if t2w[e] < 0 or e < s or e - s + 1 > max_answer_length:
                    continue
                cand.append((float(sl[s] + el[e]), t2w[s], t2w[e]))
        cur = best.setdefault(ei, {"span": None, "null": null})
        cur["null"] = min(cur["null"], null)
        if cand:
            top = max(cand)
            if cur["span"] is None or top[0] > cur["span"][0]:
                cur["span"] = top
    preds = {}
    for ei, ex in enumerate(examples):
        b = best.get(ei)
        if b is None or b["span"] is None:
            preds[ex["id"]] = ""
            continue
        score, w0, w1 = b["span"]
        if null_answers and b["null"] > score:
            preds[ex["id"]] = ""
            continue
        words, starts = _words_with_offsets(ex["context"])
        preds[ex["id"]] = ex["context"][starts[w0]:starts[w1] + len(words[w1])]
    return preds
