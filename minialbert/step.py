"""One training step, ``train_step(model, optimizer, batches, lr)``, shared by pretraining
and fine-tuning, and the running metrics between two log records.

``batches`` are the K micro-batches of B sequences that this process (rank) reads for one
optimiser step, on each of N ranks::

    n_mlm, n_pairs = allreduce_sum(counts in the K micro-batches)   # masked tokens, sentence pairs
    model.zero_grad()
    for k, batch in enumerate(batches):             # K micro-batches
        model.rng = rngs[k]                         # the loop's dropout_root.fork(step, k)
        out = model.forward(**batch, mlm_normalizer=n_mlm, sop_normalizer=n_pairs)
        model.backward()                            # grads += d(summed CE / global count) / d params
    allreduce_sum(grads)                            # one flat buffer; nothing to do on one process
    clip_grad_norm(grads, clip_norm)                # global L2 norm
    optimizer.step(grads, lr)                       # not when the loss or the norm is NaN/inf

Each micro-batch's loss is its *summed* cross-entropy divided by the count of the whole step
(all micro-batches, all ranks), so K micro-batches (or N ranks) add up to exactly the loss
and gradient of one batch of N*K*B sequences: MLM per masked token, SOP/NSP per pair.
Fine-tuning heads' losses are means per batch; their micro-batches are averaged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from .backend import Random, get_array_module
from .layers import IGNORE_INDEX
from .optim import clip_grad_norm


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; training stopped."""


class SingleProcess:
    """The default ``comm`` of ``train_step``: one process, rank 0 of 1, so the all-reduce
    is the identity. A data-parallel ``comm`` (MPI) has the same three members."""
    rank = 0
    size = 1

    def allreduce_sum(self, array):
        """Sum ``array`` over all ranks, in place; returns it."""
        return array


@dataclass
class StepStats:
    """What one ``train_step`` measured, over all its micro-batches and ranks."""
    loss: float = 0.0              # the step's loss (pretraining: mlm_loss + sentence_loss)
    mlm_loss: float = 0.0          # MLM cross-entropy per masked token of the step
    sentence_loss: float = 0.0     # SOP/NSP cross-entropy per sentence pair (0 without one)
    mlm_correct: int = 0           # masked tokens predicted right
    mlm_count: int = 0             # masked tokens in the step
    sentence_correct: int = 0      # sentence pairs classified right
    sentence_count: int = 0        # sentence pairs in the step
    grad_norm: float = math.nan    # global L2 norm of the gradient, before clipping
    updated: bool = False          # False: the loss or the gradient was NaN/inf, weights unchanged


def loss_normalizers(model, batches: Sequence[dict], comm) -> dict:
    """The forward keyword arguments that make the micro-batches' losses add up to one big
    batch's: the counts of masked tokens and sentence pairs of the whole step (every micro-
    batch on every rank). Fine-tuning heads take none (their loss is a mean per batch)."""
    if model.head not in ("pretraining", "masked_lm"):
        return {}
    local = np.zeros(2)
    for b in batches:
        local[0] += int((b["labels"] != IGNORE_INDEX).sum())
        if "sentence_order_label" in b:
            local[1] += int((b["sentence_order_label"] != IGNORE_INDEX).sum())
    n_mlm, n_pairs = comm.allreduce_sum(local)
    return {"mlm_normalizer": n_mlm, **({"sop_normalizer": n_pairs} if model.head == "pretraining" else {})}


def allreduce_gradients(grads: dict, comm) -> None:
    """Sum the gradients over ranks in place, as ONE flat buffer (one collective per step)."""
    if comm.size == 1:
        return
    if hasattr(comm, "allreduce_gradients"):   # minialbert.distributed: a few buckets, bound once
        comm.allreduce_gradients(grads)
        return
    arrays = list(grads.values())
    xp = get_array_module(*arrays)
    flat = comm.allreduce_sum(xp.concatenate([g.ravel() for g in arrays]))
    offset = 0
    for g in arrays:
        g[...] = flat[offset:offset + g.size].reshape(g.shape)
        offset += g.size


def train_step(model, optimizer, batches: Sequence[dict], lr: float, *, comm=None, scaler=None,
               clip_norm: float = 1.0, rngs: Optional[Sequence[Random]] = None,
               before_update: Optional[Callable] = None) -> StepStats:
    """One optimiser step over ``batches``, this rank's K micro-batches (dicts of forward
    inputs with labels); the algorithm of the module docstring.

    comm: ``rank``, ``size``, ``allreduce_sum(array)`` (default: one process).
    scaler: a dynamic loss scaler, ``scale`` (the loss's upstream gradient), ``unscale_(grads)``
    and ``update(finite)`` (default None: no scaling). rngs: the dropout stream of each
    micro-batch (default: the model's own). before_update: ``f(model)``, called with the
    step's gradients (summed over micro-batches and ranks, unscaled) before clipping and
    the update, to inspect or change them. Returns StepStats; when the loss or gradient
    norm is NaN/inf the optimiser is not stepped (``updated`` False): the caller stops, or
    with a loss scaler skips the step."""
    comm = comm or SingleProcess()
    norm = loss_normalizers(model, batches, comm)
    weight = 1.0 if norm else 1.0 / (len(batches) * comm.size)   # fine-tuning: mean of the means
    upstream = 1.0 if scaler is None else scaler.scale
    model.zero_grad()
    sums = np.zeros(5)             # loss, mlm_loss, sentence_loss, mlm_correct, sentence_correct
    for k, batch in enumerate(batches):
        if rngs is not None:
            model.rng = rngs[k]
        out = model.forward(**batch, **norm)
        sums += (weight * float(out.loss), *pretraining_stats(out, batch))
        model.backward({"loss": upstream * weight})
    loss, mlm_loss, sentence_loss, mlm_correct, sentence_correct = comm.allreduce_sum(sums)
    allreduce_gradients(model.grads, comm)
    if scaler is not None:
        scaler.unscale_(model.grads)
    if before_update is not None:
        before_update(model)
    grad_norm = clip_grad_norm(model.grads, clip_norm)
    finite = math.isfinite(loss) and math.isfinite(grad_norm)
    if scaler is not None:
        scaler.update(finite)
    if finite:
        optimizer.step(model.grads, lr)
    return StepStats(loss=float(loss), mlm_loss=float(mlm_loss), sentence_loss=float(sentence_loss),
                     mlm_correct=int(mlm_correct), mlm_count=int(norm.get("mlm_normalizer", 0)),
                     sentence_correct=int(sentence_correct), sentence_count=int(norm.get("sop_normalizer", 0)),
                     grad_norm=float(grad_norm), updated=finite)


def pretraining_stats(out, batch) -> tuple:
    """(mlm_loss, sentence_loss, mlm_correct, sentence_correct) of one pretraining forward
    (zeros for other heads)."""
    if out.masked_positions is None:          # a fine-tuning head (pretraining heads gather)
        return 0.0, 0.0, 0, 0
    logits = out.prediction_logits if out.prediction_logits is not None else out.logits
    xp = get_array_module(logits)
    gold = xp.asarray(batch["labels"]).reshape(-1)[out.masked_positions]           # (N,)
    mlm_correct = int((xp.argmax(logits, axis=-1) == gold).sum())
    if out.sop_logits is None:                                                      # MLM only
        return float(out.loss), 0.0, mlm_correct, 0
    sol = xp.asarray(batch["sentence_order_label"])
    sentence_correct = int(((xp.argmax(out.sop_logits, axis=-1) == sol) & (sol != IGNORE_INDEX)).sum())
    return float(out.mlm_loss), float(out.sop_loss), mlm_correct, sentence_correct


# --------------------------------------------------------------------------------------
# metrics between two log records


@dataclass
class RunningMetrics:
    """Sums over the steps since the last metrics.jsonl record."""
    steps: int = 0
    loss: float = 0.0
    mlm_loss: float = 0.0
    sentence_loss: float = 0.0
    mlm_correct: int = 0
    mlm_count: int = 0
    sentence_correct: int = 0
    sentence_count: int = 0
    grad_norm: float = 0.0
    tokens: int = 0
    flops: float = 0.0
    seconds: float = 0.0

    def add(self, s: StepStats, tokens: int = 0, flops: float = 0.0, seconds: float = 0.0) -> None:
        self.steps += 1
        self.loss += s.loss
        self.mlm_loss += s.mlm_loss
        self.sentence_loss += s.sentence_loss
        self.mlm_correct += s.mlm_correct
        self.mlm_count += s.mlm_count
        self.sentence_correct += s.sentence_correct
        self.sentence_count += s.sentence_count
        self.grad_norm += s.grad_norm
        self.tokens += tokens
        self.flops += flops
        self.seconds += seconds

    def record(self, step: int, lr: float, peak_flops: float, sentence_task: str, tokens: int) -> dict:
        """The metrics.jsonl record of these steps (means per step; accuracies over them).
        The sentence task's fields are named after it: ``sop_*`` or ``nsp_*``."""
        k = max(self.steps, 1)
        rec = {"step": step, "loss": self.loss / k, "mlm_loss": self.mlm_loss / k,
               "mlm_accuracy": self.mlm_correct / max(self.mlm_count, 1), "lr": lr,
               "tokens_per_s": self.tokens / self.seconds, "mfu": self.flops / self.seconds / peak_flops,
               "grad_norm": self.grad_norm / k, "step_time_s": self.seconds / k, "tokens": tokens}
        if sentence_task == "none":
            rec["sop_accuracy"] = None
        else:
            rec[f"{sentence_task}_loss"] = self.sentence_loss / k
            rec[f"{sentence_task}_accuracy"] = self.sentence_correct / max(self.sentence_count, 1)
        return rec
