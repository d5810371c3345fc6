"""Embedding lookup ``e = W[ids]`` and its scatter-add backward.

Derivation: [docs/layers/embedding.md](../layers/embedding.md)
"""
from __future__ import annotations

from ..backend import get_array_module
from ._check import check_ids


def embedding_forward(ids, W, padding_idx=None, name="ids", *, check=True):
    """Derivation: [docs/layers/embedding.md](../layers/embedding.md).

    Inputs: ids (...) integers in [0, V), W (V, E); padding_idx: a row whose lookup
    gets no gradient (HF's ``nn.Embedding(padding_idx=0)``); name: what errors call ids;
    check: validate the arguments (False: the caller did; the range check costs a device
    synchronisation). Returns: e (..., E), cache = (ids, padding_idx)."""
    if check:
        if W.ndim != 2:
            raise ValueError(f"W must be 2-d (V, E), got shape {tuple(W.shape)}")
        check_ids(name, ids, W.shape[0])
    return W[ids], (ids, padding_idx)


def embedding_backward(de, cache, dW):
    """Derivation: [docs/layers/embedding.md](../layers/embedding.md).

    Inputs: de (..., E); dW (V, E) accumulated into. Returns None (ids have no gradient).

    Ids repeat (every sequence has [CLS], many share "the"). A fancy-indexed in-place add
    (index dW with the ids, then add de) is buffered: it keeps only the last write per
    row. ``add.at`` is unbuffered and adds every one (docs/gradcheck-pitfalls.md)."""
    ids, padding_idx = cache
    xp = get_array_module(dW)
    flat_ids = ids.reshape(-1)                    # (N,)
    flat_de = de.reshape(-1, de.shape[-1])        # (N, E)
    if padding_idx is not None:                   # HF: the padding row gets no gradient
        keep = flat_ids != padding_idx
        flat_ids, flat_de = flat_ids[keep], flat_de[keep]
    if flat_de.dtype != dW.dtype:                 # float16 rows into a float32 master gradient
        flat_de = flat_de.astype(dW.dtype)
    # e = W[ids]  ->  dW[v] += sum of de over the positions with ids == v
    xp.add.at(dW, flat_ids, flat_de)
    return None
