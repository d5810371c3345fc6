"""A fill-mask probe on held-out text: does the model's guess for a blank depend on context?

:func:`probe_sentences` picks a few sentences of held-out documents and blanks one word in
each (a word that is one piece of the vocabulary, so the right answer is one prediction);
:func:`probe` returns the model's top-k pieces for every blank; :func:`format_probe` prints
them before/after training side by side, marking the right piece. ``minialbert pretrain``
shows this at the end of a run on the embedded corpus.
"""
from __future__ import annotations

import re

import numpy as np
from .backend import to_numpy

_WORD = re.compile(r"^[A-Za-z]{2,}$")


def encode_masked(tok, text: str, mask_token: str = "[MASK]"):
    """``[CLS] text [SEP]`` ids with the literal "[MASK]"s replaced by the mask id
    (SentencePiece would split the literal into pieces, so each part is encoded alone).
    Returns: (ids list, positions of the masks)."""
    parts = text.split(mask_token)
    if len(parts) < 2:
        raise ValueError(f'text: no {mask_token} in {text!r}; write e.g. "the [MASK] of a list"')
    ids, pos = [tok.cls_id], []
    bare = tok.piece_to_id("\u2581")            # SentencePiece's lone word-start piece
    for i, part in enumerate(parts):
        if part.strip():
            piece_ids = tok.encode(part)
            # text glued to the mask ("[MASK]," / "[MASK]s") starts no new word: drop the
            # word-start piece SentencePiece puts before every encoded string
            if i > 0 and not part[0].isspace() and piece_ids and piece_ids[0] == bare:
                piece_ids = piece_ids[1:]
            ids += piece_ids
        if i < len(parts) - 1:
            pos.append(len(ids))
            ids.append(tok.mask_id)
    ids.append(tok.sep_id)
    return ids, pos


def probe_sentences(documents, tokenizer, n: int = 6, seed: int = 0, min_words: int = 6,
                    max_words: int = 18) -> list[tuple[str, str]]:
    """``n`` (text with one ``[MASK]``, the masked word's piece) pairs from ``documents``.

    A sentence qualifies when it has ``min_words``..``max_words`` words and at least one
    plain word (letters only, not the first) that the tokenizer encodes as a single
    word-start piece; one such word is blanked, chosen with ``default_rng(seed)``. The
    sentences are taken in a seeded order of the documents, at most one per document.
    Returns fewer than ``n`` pairs if the documents have too few such sentences."""
    rng = np.random.default_rng(seed)
    out = []
    for di in rng.permutation(len(documents)):
        for s in documents[di]:
            words = s.split()
            if not min_words <= len(words) <= max_words or not s.isascii():
                continue
            cands = []
            for i, w in enumerate(words[1:], start=1):
                if _WORD.match(w):
                    ids = tokenizer.encode(" " + w)
                    if len(ids) == 1 and tokenizer.id_to_piece(ids[0]).startswith("\u2581"):
                        cands.append((i, tokenizer.id_to_piece(ids[0])))
            if cands:
                i, piece = cands[int(rng.integers(len(cands)))]
                out.append((" ".join(words[:i] + ["[MASK]"] + words[i + 1:]), piece))
                break
        if len(out) >= n:
            break
    return out


def probe(model, tokenizer, texts, top_k: int = 5) -> list[list[tuple[float, str]]]:
    """Top-k (probability, piece) for the first ``[MASK]`` of each text, dropout off."""
    was_training = getattr(model, "training", False)
    model.eval()
    res = []
    try:
        for text in texts:
            ids, pos = encode_masked(tokenizer, text)
            with model.no_grad():
                out = model.forward(np.asarray([ids], dtype=np.int64), full_logits=True)
            logits = to_numpy(out.prediction_logits if getattr(out, "prediction_logits", None) is not None
                              else out.logits)[0, pos[0]].astype(np.float64)
            z = np.exp(logits - logits.max())
            prob = z / z.sum()
            best = np.argsort(-prob, kind="stable")[:top_k]
            res.append([(float(prob[b]), tokenizer.id_to_piece(int(b))) for b in best])
    finally:
        model.train(was_training)
    return res


def format_probe(items, before, after=None) -> str:
    """A text table: each blanked sentence, the right piece, the top-k before (and after)
    training; ``*`` marks the right piece. ``items`` as :func:`probe_sentences` returns."""
    lines = []
    hits_b = hits_a = 0
    for j, (text, answer) in enumerate(items):
        lines.append(f"{text}   (answer {answer})")
        for label, preds in (("before", before[j]), ("after", after[j] if after else None)):
            if preds is None:
                continue
            hit = any(p == answer for _, p in preds)
            if label == "before":
                hits_b += hit
            else:
                hits_a += hit
            cells = ", ".join(f"{'*' if p == answer else ''}{p} {q:.3f}" for q, p in preds)
            lines.append(f"  {label:>6}: {cells}")
    n = len(items)
    summary = f"right word in the top {len(before[0]) if before else 5}: {hits_b}/{n} before"
    if after:
        summary += f", {hits_a}/{n} after training"
    lines.append(summary)
    return "\n".join(lines)
