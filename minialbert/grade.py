r"""The course kit's grader: checks a student's answers to the exercises in
``notebooks/exercises/`` and scores each exercise.

Every exercise names the function(s) a student writes and a list of checks. A check is
a gradient check with a *random* upstream gradient (central differences in float64,
:mod:`minialbert.gradcheck`), or a comparison with the library on random inputs. A check
that raises (the blank templates raise ``NotImplementedError``) fails. An exercise
passes when all its checks pass.

``minialbert grade FILE`` runs the student's file (``.py`` or ``.ipynb``) cell by cell,
keeping going past a failing cell, then grades every exercise whose function the file
defines. ``minialbert grade --reference`` grades the library's own functions, wrapped to
the exercises' signatures, as if they were a student's answers: full marks, exit 0.

Instructors: docs/course/instructors.md.
"""
from __future__ import annotations

import ast
import contextlib
import io
import json
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .gradcheck import compare, numerical_gradient
from .layers import (attention_backward as _lib_attention_backward, attention_forward, cross_entropy_backward,
                     cross_entropy_forward, embedding_backward as _lib_embedding_backward,
                     embedding_forward, gelu_new_backward, gelu_new_forward, layernorm_backward,
                     layernorm_forward, softmax_backward, softmax_forward)
from .optim import LAMB

RTOL = 1e-6          # relative error allowed between analytic and numerical gradients (float64)


# --------------------------------------------------------------------------------------
# The reference forwards the checks differentiate numerically. Written out here in
# plain NumPy (not taken from the student's file), so a wrong forward cannot hide a
# wrong backward.
# --------------------------------------------------------------------------------------
def _layernorm(x, gamma, beta, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)            # biased, as BERT/ALBERT
    return (x - mu) / np.sqrt(var + eps) * gamma + beta


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _gelu_new(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


def _cross_entropy(logits, labels, ignore_index=-100):
    z = logits.reshape(-1, logits.shape[-1])
    y = labels.reshape(-1)
    keep = y != ignore_index
    logp = z - z.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    return -logp[np.arange(len(y))[keep], y[keep]].mean()


def _attention(q, k, v, mask_add):
    d = q.shape[-1]
    P = _softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask_add)
    return P @ v


def _shared_stack(h0, W, L):
    h = h0
    for _ in range(L):
        h = np.tanh(h @ W)
    return h


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------
@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str = ""


@dataclass
class ExerciseResult:
    exercise: str
    title: str
    checks: list = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def total(self) -> int:
        return len(self.checks)

    @property
    def passed(self) -> bool:
        return self.total > 0 and self.score == self.total


def _grad_check(name, f, x, analytic, dout, order=4, h=1e-4) -> CheckResult:
    """Compare ``analytic`` with d/dx sum(f() * dout) by finite differences."""
    if analytic is None:
        return CheckResult(name, False, "returned None instead of a gradient")
    analytic = np.asarray(analytic)
    if analytic.shape != x.shape:
        return CheckResult(name, False, f"gradient has shape {analytic.shape}, expected {x.shape}")
    numeric = numerical_gradient(f, x, dout, h=h, order=order)
    r = compare(name, analytic, numeric)
    ok = r.ok(rtol=RTOL, atol=1e-9)
    return CheckResult(name, ok, "" if ok else str(r))


def _close(name, got, want, rtol=1e-10, atol=1e-12) -> CheckResult:
    got = np.asarray(got, dtype=np.float64) if got is not None else None
    if got is None or got.shape != np.shape(want):
        return CheckResult(name, False, f"shape {None if got is None else got.shape}, expected {np.shape(want)}")
    err = float(np.max(np.abs(got - want))) if got.size else 0.0
    scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
    ok = err <= atol + rtol * scale
    return CheckResult(name, ok, "" if ok else f"max abs difference {err:.3e} (scale {scale:.3e})")


def _run(name, fn) -> list:
    """Run one check function; a raised exception is a failed check with its message."""
    try:
        out = fn()
        return out if isinstance(out, list) else [out]
    except NotImplementedError as e:
        return [CheckResult(name, False, f"not implemented yet ({e})" if str(e) else "not implemented yet")]
    except Exception as e:  # a student's bug of any kind is a failed check, never a crash
        return [CheckResult(name, False, f"{type(e).__name__}: {e}")]


def _rng(seed):
    return np.random.default_rng(seed)


# ---- 1. LayerNorm ----------------------------------------------------------------------
def check_layernorm_backward(ns) -> list:
    f_student = ns["layernorm_backward"]
    out = []
    for i, shape in enumerate([(4, 6), (2, 3, 5), (1, 1)]):
        def case(shape=shape, i=i):
            rng = _rng(100 + i)
            D = shape[-1]
            x, gamma, beta = rng.standard_normal(shape), rng.standard_normal(D), rng.standard_normal(D)
            dy = rng.standard_normal(shape)
            x0 = x.copy()
            dx, dgamma, dbeta = f_student(dy.copy(), x.copy(), gamma.copy(), 1e-12)
            f = lambda: _layernorm(x, gamma, beta)                    # noqa: E731
            return [_grad_check(f"dx {shape}", f, x, dx, dy),
                    _grad_check(f"dgamma {shape}", f, gamma, dgamma, dy),
                    _grad_check(f"dbeta {shape}", f, beta, dbeta, dy),
                    CheckResult(f"x unchanged {shape}", bool(np.array_equal(x, x0)))]
        out += _run(f"layernorm {shape}", case)
    return out


def reference_layernorm_backward(dy, x, gamma, eps=1e-12):
    _, cache = layernorm_forward(x, gamma, np.zeros_like(gamma), eps)
    dgamma, dbeta = np.zeros_like(gamma), np.zeros_like(gamma)
    dx = layernorm_backward(dy, cache, dgamma, dbeta)
    return dx, dgamma, dbeta


# ---- 2. softmax ------------------------------------------------------------------------
def check_softmax_backward(ns) -> list:
    out = []
    for i, shape in enumerate([(3, 7), (2, 2, 4), (5, 1)]):
        def case(shape=shape, i=i):
            rng = _rng(200 + i)
            x = rng.standard_normal(shape) * 3
            dy = rng.standard_normal(shape)
            dx = ns["softmax_backward"](dy.copy(), _softmax(x))
            return _grad_check(f"dx {shape}", lambda: _softmax(x), x, dx, dy)
        out += _run(f"softmax {shape}", case)
    return out


def reference_softmax_backward(dy, y):
    return softmax_backward(dy, y)


# ---- 3. GELU (tanh form) ---------------------------------------------------------------
def check_gelu_backward(ns) -> list:
    out = []
    for i, scale in enumerate([1.0, 4.0]):
        def case(scale=scale, i=i):
            rng = _rng(300 + i)
            x = rng.standard_normal((4, 9)) * scale
            dy = rng.standard_normal(x.shape)
            dx = ns["gelu_backward"](dy.copy(), x.copy())
            return _grad_check(f"dx (|x| ~ {scale:g})", lambda: _gelu_new(x), x, dx, dy)
        out += _run(f"gelu scale {scale}", case)
    return out


def reference_gelu_backward(dy, x):
    _, cache = gelu_new_forward(x)
    return gelu_new_backward(dy, cache)


# ---- 4. cross-entropy with ignore_index -------------------------------------------------
def check_cross_entropy_backward(ns) -> list:
    out = []
    cases = [("some ignored", [3, -100, 0, 4, -100, 1]),
             ("none ignored", [0, 1, 2, 3, 4, 0]),
             ("one counted", [-100, -100, 2, -100, -100, -100])]
    for i, (what, labels) in enumerate(cases):
        def case(labels=labels, what=what, i=i):
            rng = _rng(400 + i)
            y = np.array(labels).reshape(2, 3)
            logits = rng.standard_normal((2, 3, 5)) * 2
            dlogits = ns["cross_entropy_backward"](logits.copy(), y.copy(), -100)
            res = [_grad_check(f"dlogits ({what})", lambda: _cross_entropy(logits, y), logits,
                               dlogits, np.array(1.0))]
            ignored = y == -100
            if ignored.any():
                zero = dlogits is not None and np.all(np.asarray(dlogits)[ignored] == 0)
                res.append(CheckResult(f"ignored rows get zero gradient ({what})", bool(zero)))
            return res
        out += _run(f"cross-entropy {what}", case)
    return out


def reference_cross_entropy_backward(logits, labels, ignore_index=-100):
    _, cache = cross_entropy_forward(logits, labels, ignore_index)
    return cross_entropy_backward(1.0, cache)


# ---- 5. embedding scatter-add ------------------------------------------------------------
def check_embedding_backward(ns) -> list:
    out = []
    cases = [("repeated ids", np.array([[1, 3, 1], [1, 0, 3]])), ("distinct ids", np.array([[0, 2, 4]]))]
    for i, (what, ids) in enumerate(cases):
        def case(ids=ids, what=what, i=i):
            rng = _rng(500 + i)
            V, E = 5, 4
            W = rng.standard_normal((V, E))
            de = rng.standard_normal(ids.shape + (E,))
            dW = ns["embedding_backward"](de.copy(), ids.copy(), V)
            return _grad_check(f"dW ({what})", lambda: W[ids], W, dW, de)
        out += _run(f"embedding {what}", case)
    return out


def reference_embedding_backward(de, ids, vocab_size):
    dW = np.zeros((vocab_size, de.shape[-1]))
    _, cache = embedding_forward(ids, dW)
    _lib_embedding_backward(de, cache, dW)
    return dW


# ---- 6. attention -------------------------------------------------------------------------
def check_attention_backward(ns) -> list:
    out = []
    for i, (B, T, d, pad) in enumerate([(2, 4, 3, False), (2, 5, 4, True), (1, 1, 2, False)]):
        def case(B=B, T=T, d=d, pad=pad, i=i):
            rng = _rng(600 + i)
            q, k, v = (rng.standard_normal((B, T, d)) for _ in range(3))
            mask_add = np.zeros((B, 1, T))
            if pad:
                mask_add[0, 0, -2:] = np.finfo(np.float64).min    # the last two keys of row 0 are padding
            dout = rng.standard_normal((B, T, d))
            res = ns["attention_backward"](dout.copy(), q.copy(), k.copy(), v.copy(), mask_add.copy())
            dq, dk, dv = res
            f = lambda: _attention(q, k, v, mask_add)            # noqa: E731
            tag = f"B={B} T={T} d={d}{' padded' if pad else ''}"
            return [_grad_check(f"dq {tag}", f, q, dq, dout), _grad_check(f"dk {tag}", f, k, dk, dout),
                    _grad_check(f"dv {tag}", f, v, dv, dout)]
        out += _run(f"attention case {i}", case)
    return out


def reference_attention_backward(dout, q, k, v, mask_add):
    """The library's attention layer, one head, turned into single-head attention of
    q, k, v: it takes one input x, so x = [q | k | v] (width H = 3d) and the projections
    select the blocks. Rows of W give outputs (y = x W^T + b, HF's convention)."""
    B, T, d = q.shape
    H = 3 * d
    x = np.concatenate([q, k, v], axis=-1)                      # (B, T, 3d)
    p = {f"{n}.{w}": np.zeros((H, H) if w == "weight" else H)
         for n in ("query", "key", "value", "dense") for w in ("weight", "bias")}
    # the layer scales scores by 1/sqrt(head size 3d): sqrt(3) on the queries makes it 1/sqrt(d)
    p["query.weight"][:d, :d] = math.sqrt(3.0) * np.eye(d)     # q_full = [sqrt(3) q, 0, 0]
    p["key.weight"][:d, d:2 * d] = np.eye(d)                    # k_full = [k, 0, 0]
    p["value.weight"][:d, 2 * d:] = np.eye(d)                   # v_full = [v, 0, 0]
    p["dense.weight"][:] = np.eye(H)                            # out = [P v, 0, 0]
    _, cache = attention_forward(x, p, 1, mask_add[:, None])    # mask (B, 1, 1, T)
    g = {name: np.zeros_like(w) for name, w in p.items()}
    dx = _lib_attention_backward(np.concatenate([dout, np.zeros((B, T, 2 * d))], axis=-1), cache, g)
    return dx[..., :d], dx[..., d:2 * d], dx[..., 2 * d:]


# ---- 7. the shared layer's gradient -------------------------------------------------------
def check_shared_layer_backward(ns) -> list:
    out = []
    for i, L in enumerate([1, 3, 6]):
        def case(L=L, i=i):
            rng = _rng(700 + i)
            h0 = rng.standard_normal((3, 4))
            W = rng.standard_normal((4, 4)) * 0.5
            dhL = rng.standard_normal((3, 4))
            dh0, dW = ns["shared_layer_backward"](dhL.copy(), h0.copy(), W.copy(), L)
            f = lambda: _shared_stack(h0, W, L)                   # noqa: E731
            return [_grad_check(f"dW (L={L})", f, W, dW, dhL), _grad_check(f"dh0 (L={L})", f, h0, dh0, dhL)]
        out += _run(f"shared L={L}", case)
    return out


def reference_shared_layer_backward(dhL, h0, W, L):
    hs = [h0]
    for _ in range(L):
        hs.append(np.tanh(hs[-1] @ W))
    dW, dh = np.zeros_like(W), dhL
    for depth in reversed(range(L)):          # the same W at every depth: its gradients add up
        da = dh * (1.0 - hs[depth + 1] ** 2)
        dW += hs[depth].T @ da
        dh = da @ W.T
    return dh, dW


# ---- 8. SOP pairs --------------------------------------------------------------------------
def check_sop_example(ns) -> list:
    out = []
    cases = [([[5, 6], [7], [8, 9, 10]], 1, False), ([[5, 6], [7], [8, 9, 10]], 2, True),
             ([[11], [12, 13]], 1, True), ([[20, 21, 22], [23], [24], [25, 26]], 3, False)]
    for i, (sents, split, swap) in enumerate(cases):
        def case(sents=sents, split=split, swap=swap, i=i):
            got = ns["sop_example"]([list(s) for s in sents], split, swap)
            want = reference_sop_example(sents, split, swap)
            res = []
            for key in ("input_ids", "token_type_ids", "sentence_order_label"):
                g = None if not isinstance(got, dict) else got.get(key)
                ok = g is not None and np.array_equal(np.asarray(g), np.asarray(want[key]))
                res.append(CheckResult(f"{key} (split={split}, swap={swap})", bool(ok),
                                       "" if ok else f"got {g!r}, expected {want[key]!r}"))
            return res
        out += _run(f"sop case {i}", case)
    return out


CLS_ID, SEP_ID = 2, 3        # ALBERT's ids for [CLS] and [SEP] (minialbert.tokenizer)


def reference_sop_example(sentences, split, swap):
    """Segment A = sentences[:split], B = the rest; swapped with label 1, else label 0.
    Layout: [CLS] A [SEP] B [SEP]; token types 0 up to the first [SEP], 1 after it."""
    a = [t for s in sentences[:split] for t in s]
    b = [t for s in sentences[split:] for t in s]
    label = 0
    if swap:
        a, b, label = b, a, 1
    ids = [CLS_ID] + a + [SEP_ID] + b + [SEP_ID]
    types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    return {"input_ids": ids, "token_type_ids": types, "sentence_order_label": label}


# ---- 9. one LAMB update ---------------------------------------------------------------------
def check_lamb_update(ns) -> list:
    out = []
    cases = [("t=1", 1, 1.0), ("t=7, decay", 7, 1.0), ("zero weights", 1, 0.0)]
    for i, (what, t, wscale) in enumerate(cases):
        def case(what=what, t=t, wscale=wscale, i=i):
            rng = _rng(900 + i)
            w = rng.standard_normal((3, 4)) * wscale
            g = rng.standard_normal((3, 4))
            m = rng.standard_normal((3, 4)) * 0.1 if t > 1 else np.zeros((3, 4))
            v = np.abs(rng.standard_normal((3, 4))) * 0.01 if t > 1 else np.zeros((3, 4))
            kw = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01)
            got = ns["lamb_update"](w.copy(), g.copy(), m.copy(), v.copy(), t, **kw)
            want = reference_lamb_update(w.copy(), g.copy(), m.copy(), v.copy(), t, **kw)
            return [_close(f"{n} ({what})", a, b) for n, a, b in zip(("w", "m", "v"), got, want)]
        out += _run(f"lamb {what}", case)
    return out


def reference_lamb_update(w, g, m, v, t, lr=0.01, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01):
    opt = LAMB({"weight": w}, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay)
    opt.t = t - 1                             # LAMB as ALBERT has it uses no bias correction: t is unused
    opt.m["weight"], opt.v["weight"] = m, v
    opt.step({"weight": g})
    return opt.params["weight"], opt.m["weight"], opt.v["weight"]


# ---- 10. the planted-bug hunt --------------------------------------------------------------
def _bug_cases():
    """(name, forward(inputs) -> out, backward(dout, inputs) -> grads, inputs, buggy?)."""
    rng = _rng(1000)
    ids = np.array([[1, 2, 1], [0, 1, 2]])                    # id 1 repeats

    def emb_f(p):
        return p["W"][ids]

    def emb_b_right(dout, p):
        dW = np.zeros_like(p["W"])
        np.add.at(dW, ids, dout)
        return {"W": dW}

    def emb_b_buffered(dout, p):
        dW = np.zeros_like(p["W"])
        rows = ids
        dW[rows] += dout           # planted bug: a buffered fancy-index add keeps one write per row
        return {"W": dW}

    def ln_f_right(p):
        return _layernorm(p["x"], p["gamma"], p["beta"])

    def ln_f_unbiased(p):           # planted bug: the forward divides the variance by D - 1
        x = p["x"]
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).sum(-1, keepdims=True) / (x.shape[-1] - 1)
        return (x - mu) / np.sqrt(var + 1e-12) * p["gamma"] + p["beta"]

    def ln_b(dout, p):               # the backward of the biased (correct) forward
        dx, dgamma, dbeta = reference_layernorm_backward(dout, p["x"], p["gamma"])
        return {"x": dx, "gamma": dgamma, "beta": dbeta}

    def sm_f(p):
        return _softmax(p["x"])

    def sm_b_right(dout, p):
        return {"x": softmax_backward(dout, _softmax(p["x"]))}

    def sm_b_zero(dout, p):          # planted bug: what only an all-ones upstream gradient would accept
        return {"x": np.zeros_like(p["x"])}

    emb_in = {"W": rng.standard_normal((3, 4))}
    ln_in = {"x": rng.standard_normal((2, 5)), "gamma": rng.standard_normal(5), "beta": rng.standard_normal(5)}
    sm_in = {"x": rng.standard_normal((3, 4))}
    return [("embedding, add.at (correct)", emb_f, emb_b_right, emb_in, False),
            ("embedding, buffered fancy-index add (bug)", emb_f, emb_b_buffered, emb_in, True),
            ("LayerNorm (correct)", ln_f_right, ln_b, ln_in, False),
            ("LayerNorm forward with unbiased variance (bug)", ln_f_unbiased, ln_b, ln_in, True),
            ("softmax (correct)", sm_f, sm_b_right, sm_in, False),
            ("softmax backward returning zeros (bug)", sm_f, sm_b_zero, sm_in, True)]


def check_check_backward(ns) -> list:
    out = []
    for name, f, b, inputs, buggy in _bug_cases():
        def case(name=name, f=f, b=b, inputs=inputs, buggy=buggy):
            verdict = ns["check_backward"](f, b, {k: v.copy() for k, v in inputs.items()})
            if not isinstance(verdict, (bool, np.bool_)):
                return CheckResult(name, False, f"check_backward must return True/False, got {verdict!r}")
            ok = bool(verdict) is (not buggy)
            return CheckResult(name, ok, "" if ok else
                               ("passed a planted bug" if buggy else "rejected a correct backward"))
        out += _run(name, case)
    return out


def reference_check_backward(forward, backward, inputs, seed=0) -> bool:
    """The library's gradient check: a random upstream gradient, float64 central differences."""
    rng = np.random.default_rng(seed)
    dout = rng.standard_normal(np.shape(forward(inputs)))
    analytic = backward(dout, inputs)
    for name, x in inputs.items():
        numeric = numerical_gradient(lambda: forward(inputs), x, dout, h=1e-4, order=4)
        if not compare(name, analytic[name], numeric).ok(rtol=RTOL):
            return False
    return True


# --------------------------------------------------------------------------------------
# The exercise table
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exercise:
    name: str                    # the function the student writes
    title: str
    notebook: str                # notebooks/exercises/<notebook>
    check: Callable
    reference: Callable


EXERCISES = [
    Exercise("layernorm_backward", "LayerNorm backward", "01_layer_backwards.py",
             check_layernorm_backward, reference_layernorm_backward),
    Exercise("softmax_backward", "softmax backward", "01_layer_backwards.py",
             check_softmax_backward, reference_softmax_backward),
    Exercise("gelu_backward", "GELU (tanh form) backward", "01_layer_backwards.py",
             check_gelu_backward, reference_gelu_backward),
    Exercise("cross_entropy_backward", "cross-entropy with ignore_index", "01_layer_backwards.py",
             check_cross_entropy_backward, reference_cross_entropy_backward),
    Exercise("embedding_backward", "embedding scatter-add", "01_layer_backwards.py",
             check_embedding_backward, reference_embedding_backward),
    Exercise("attention_backward", "attention backward", "02_attention_and_sharing.py",
             check_attention_backward, reference_attention_backward),
    Exercise("shared_layer_backward", "the shared layer's summed gradient", "02_attention_and_sharing.py",
             check_shared_layer_backward, reference_shared_layer_backward),
    Exercise("sop_example", "building SOP pairs", "03_sop_and_lamb.py",
             check_sop_example, reference_sop_example),
    Exercise("lamb_update", "one LAMB update", "03_sop_and_lamb.py",
             check_lamb_update, reference_lamb_update),
    Exercise("check_backward", "planted-bug hunt: a gradient check", "04_bug_hunt.py",
             check_check_backward, reference_check_backward),
]
BY_NAME = {e.name: e for e in EXERCISES}


def grade_namespace(ns: dict, names=None) -> list:
    """Grade the exercises ``names`` (default: every exercise whose function ``ns`` defines)."""
    if names is None:
        names = [e.name for e in EXERCISES if callable(ns.get(e.name))]
    results = []
    for n in names:
        ex = BY_NAME[n]
        res = ExerciseResult(ex.name, ex.title)
        if not callable(ns.get(n)):
            res.checks = [CheckResult(n, False, f"{n} is not defined")]
        else:
            res.checks = ex.check(ns)
        results.append(res)
    return results


def reference_namespace() -> dict:
    return {e.name: e.reference for e in EXERCISES}


def check_exercise(name: str, fn: Callable) -> ExerciseResult:
    """For the notebooks: grade one answer right after writing it; prints, never raises."""
    with contextlib.redirect_stderr(io.StringIO()):
        (res,) = grade_namespace({name: fn}, [name])
    print(format_results([res]))
    return res


# --------------------------------------------------------------------------------------
# Reading a student's file
# --------------------------------------------------------------------------------------
class GradeInputError(ValueError):
    """The file to grade cannot be read as a notebook or a Python file."""


def read_cells(path) -> list:
    """The code cells of a ``.py`` (jupytext percent format, or a plain script: one cell)
    or ``.ipynb`` file, as source strings. IPython magics (``%``, ``!``) are dropped."""
    path = Path(path)
    if not path.is_file():
        raise GradeInputError(f"FILE: {path} does not exist or is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise GradeInputError(f"FILE: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if path.suffix == ".ipynb":
        try:
            nb = json.loads(text)
            cells = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                     for c in nb["cells"] if c.get("cell_type") == "code"]
        except (ValueError, KeyError, TypeError) as e:
            raise GradeInputError(f"FILE: {path} is not a Jupyter notebook (expected JSON with "
                                  f"'cells'; {type(e).__name__}: {e})") from None
    elif path.suffix == ".py":
        cells, cur, in_markdown = [], [], False
        for line in text.splitlines():
            if line.startswith("# %%"):
                if cur and not in_markdown:
                    cells.append("\n".join(cur))
                cur, in_markdown = [], "[markdown]" in line
                continue
            cur.append(line)
        if cur and not in_markdown:
            cells.append("\n".join(cur))
    else:
        raise GradeInputError(f"FILE: {path} must be a .py or .ipynb file, got {path.suffix or 'no suffix'!r}")
    return ["\n".join(ln for ln in c.splitlines() if not ln.lstrip().startswith(("%", "!"))) for c in cells]


def run_cells(cells) -> tuple:
    """Execute cells in one namespace, going on past a failing cell. Returns (ns, notes)."""
    import matplotlib
    matplotlib.use("Agg")             # a student's plotting cell must not open windows
    ns = {"__name__": "__student__"}
    notes = []
    for i, src in enumerate(cells, 1):
        try:
            code = compile(ast.parse(src), f"<cell {i}>", "exec")
            with contextlib.redirect_stdout(io.StringIO()):
                exec(code, ns)        # the student's own notebook, run as they would run it
        except Exception as e:
            notes.append(f"cell {i}: {type(e).__name__}: {e}".splitlines()[0])
    return ns, notes


def grade_file(path) -> tuple:
    cells = read_cells(path)
    ns, notes = run_cells(cells)
    found = [e.name for e in EXERCISES if callable(ns.get(e.name))]
    if not found:
        raise GradeInputError(f"FILE: {path} defines none of the exercises' functions "
                              f"({', '.join(e.name for e in EXERCISES)})")
    return grade_namespace(ns, found), notes


def format_results(results, verbose=False) -> str:
    lines = []
    for r in results:
        status = "pass" if r.passed else "FAIL"
        lines.append(f"{r.exercise:<24} {r.score:>3}/{r.total:<3} {status}  {r.title}")
        for c in r.checks:
            if not c.passed or verbose:
                lines.append(f"    {'ok  ' if c.passed else 'fail'} {c.name}{': ' + c.detail if c.detail else ''}")
    n_pass = sum(r.passed for r in results)
    lines.append(f"{n_pass}/{len(results)} exercises pass")
    return "\n".join(lines)


def format_traceback() -> str:        # pragma: no cover - debugging aid
    return traceback.format_exc()
