"""Held-out data: a document-level split of a corpus, and the folder it is written to.

Splitting *documents*, not examples, is what makes a held-out score mean anything for
pretraining: the examples of one document share sentences (an SOP pair and the NSP pair
made from the same sentences), and NSP's "random other document" draws from the same
pool. With the split made first, no sentence of a held-out document is ever trained on.

``minialbert data build --heldout-fraction F --output DIR`` writes the training shards to
``DIR`` and the held-out shards to ``DIR/heldout/`` (:data:`HELDOUT_DIR`), a complete shard
folder of its own that ``minialbert eval`` and ``pretrain --eval-data`` read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

HELDOUT_DIR = "heldout"


def split_documents(documents: Sequence, fraction: float, seed: int = 0) -> tuple[list, list]:
    """Split documents into (train, heldout), whole documents on each side.

    Inputs: documents (a list of documents, each a list of sentences); fraction in (0, 1):
    the share of documents held out (rounded, at least 1 and at most all but 1); seed:
    the draw is ``default_rng([seed, 7]).permutation``, independent of the example seeds.
    Returns: (train, heldout), each in the corpus' original order.
    """
    if not 0.0 < float(fraction) < 1.0:
        raise ValueError(f"--heldout-fraction: expected a number strictly between 0 and 1, got {fraction}")
    docs = list(documents)
    if len(docs) < 2:
        raise ValueError(f"--heldout-fraction: the corpus has {len(docs)} document(s); a held-out split "
                         "needs at least 2 (documents are separated by blank lines)")
    n_held = min(len(docs) - 1, max(1, int(round(fraction * len(docs)))))
    held = np.zeros(len(docs), dtype=bool)
    held[np.random.default_rng([int(seed), 7]).permutation(len(docs))[:n_held]] = True
    return [d for d, h in zip(docs, held) if not h], [d for d, h in zip(docs, held) if h]


def heldout_dir(data_dir) -> Path:
    """Where ``data build --heldout-fraction`` put the held-out shards of ``data_dir``."""
    return Path(data_dir) / HELDOUT_DIR
