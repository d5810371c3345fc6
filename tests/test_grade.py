"""The course kit: ``minialbert grade`` on the blank exercise templates (score 0), on the
library's own functions (``--reference``: full marks), and on planted wrong answers
(each caught by its exercise's checks)."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from minialbert import grade
from minialbert.cli import main

EXERCISE_DIR = Path(__file__).resolve().parents[1] / "notebooks" / "exercises"
TEMPLATES = sorted(EXERCISE_DIR.glob("[0-9][0-9]_*.py"))


def _grade_json(capsys, *argv):
    rc = main(["grade", "--json", *argv])
    return rc, json.loads(capsys.readouterr().out)


def test_every_exercise_has_a_template():
    assert TEMPLATES, f"no exercise notebooks in {EXERCISE_DIR}"
    named = {e.notebook for e in grade.EXERCISES}
    assert named == {p.name for p in TEMPLATES}
    for e in grade.EXERCISES:
        text = (EXERCISE_DIR / e.notebook).read_text()
        assert f"def {e.name}(" in text and "YOUR CODE HERE" in text, e.name
        assert "../../docs/" in text, f"{e.notebook}: hints link the derivation pages"


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
def test_blank_template_scores_zero(path, capsys):
    rc, out = _grade_json(capsys, str(path))
    assert rc == 1
    names = [e.name for e in grade.EXERCISES if e.notebook == path.name]
    assert [x["exercise"] for x in out["exercises"]] == names
    for x in out["exercises"]:
        assert x["total"] > 0 and x["score"] == 0, x
    assert out["cell_errors"] == [], "a blank template runs top to bottom (its grading cells never raise)"


def test_blank_ipynb_scores_zero(tmp_path, capsys):
    jupytext = pytest.importorskip("jupytext")
    nb = tmp_path / "student.ipynb"
    jupytext.write(jupytext.read(TEMPLATES[0]), nb)
    rc, out = _grade_json(capsys, str(nb))
    assert rc == 1 and all(x["score"] == 0 for x in out["exercises"])


def test_reference_scores_full_marks(capsys):
    rc, out = _grade_json(capsys, "--reference")
    assert rc == 0
    assert [x["exercise"] for x in out["exercises"]] == [e.name for e in grade.EXERCISES]
    assert all(x["passed"] and x["score"] == x["total"] > 0 for x in out["exercises"])


def test_reference_answers_in_a_notebook_pass(tmp_path, capsys):
    """A student's .ipynb whose answers are right (here: the reference functions) passes."""
    jupytext = pytest.importorskip("jupytext")
    src = "\n".join(f"from minialbert.grade import reference_{e.name} as {e.name}" for e in grade.EXERCISES)
    py = tmp_path / "answers.py"
    py.write_text("# %%\nimport numpy as np\n# %%\n" + src + "\n# %%\nraise RuntimeError('a demo cell')\n")
    nb = tmp_path / "answers.ipynb"
    jupytext.write(jupytext.read(py), nb)
    rc, out = _grade_json(capsys, str(nb))
    assert rc == 0, out
    assert len(out["exercises"]) == len(grade.EXERCISES)
    assert out["cell_errors"] and "a demo cell" in out["cell_errors"][0]


# Wrong answers a student might write; each must fail its exercise (and only be caught
# by the property the exercise is about).
WRONG = {
    "layernorm_backward": """
        def layernorm_backward(dy, x, gamma, eps=1e-12):
            # treats mean and variance as constants: only the first of the three terms
            mu = x.mean(-1, keepdims=True)
            r = 1 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)
            xhat = (x - mu) * r
            lead = tuple(range(x.ndim - 1))
            return dy * gamma * r, (dy * xhat).sum(lead), dy.sum(lead)
    """,
    "cross_entropy_backward": """
        def cross_entropy_backward(logits, labels, ignore_index=-100):
            # divides by every position, counted or not
            z = logits.reshape(-1, logits.shape[-1])
            y = labels.reshape(-1)
            p = np.exp(z - z.max(-1, keepdims=True)); p /= p.sum(-1, keepdims=True)
            keep = y != ignore_index
            p[np.arange(len(y))[keep], y[keep]] -= 1
            p[~keep] = 0
            return (p / len(y)).reshape(logits.shape)
    """,
    "embedding_backward": """
        def embedding_backward(de, ids, vocab_size):
            dW = np.zeros((vocab_size, de.shape[-1]))
            rows = ids
            dW[rows] += de          # buffered: repeated ids keep one write
            return dW
    """,
    "shared_layer_backward": """
        def shared_layer_backward(dh_L, h0, W, L):
            # keeps only the last depth's contribution to dW
            hs = [h0]
            for _ in range(L):
                hs.append(np.tanh(hs[-1] @ W))
            dh, dW = dh_L, None
            for depth in reversed(range(L)):
                da = dh * (1 - hs[depth + 1] ** 2)
                dW = hs[depth].T @ da
                dh = da @ W.T
            return dh, dW
    """,
    "sop_example": """
        def sop_example(sentences, split, swap):
            a = [t for s in sentences[:split] for t in s]
            b = [t for s in sentences[split:] for t in s]
            if swap:
                a, b = b, a
            ids = [2] + a + [3] + b + [3]
            return {"input_ids": ids, "token_type_ids": [0] * (len(a) + 1) + [1] * (len(b) + 2),
                    "sentence_order_label": int(swap)}
    """,
    "lamb_update": """
        def lamb_update(w, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-6, weight_decay=0.01):
            # Adam's bias correction, which ALBERT's LAMB does not have
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            u = (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps) + weight_decay * w
            wn, un = np.linalg.norm(w), np.linalg.norm(u)
            r = wn / un if wn > 0 and un > 0 else 1.0
            return w - lr * r * u, m, v
    """,
    "check_backward": """
        def check_backward(forward, backward, inputs):
            # an all-ones upstream gradient: blind to the zero softmax backward
            dout = np.ones(np.shape(forward(inputs)))
            grads = backward(dout, inputs)
            for name, x in inputs.items():
                num = np.zeros_like(x)
                for i in np.ndindex(x.shape):
                    old = x[i]
                    x[i] = old + 1e-6; fp = (forward(inputs) * dout).sum()
                    x[i] = old - 1e-6; fm = (forward(inputs) * dout).sum()
                    x[i] = old
                    num[i] = (fp - fm) / 2e-6
                if not np.allclose(grads[name], num, rtol=1e-5, atol=1e-7):
                    return False
            return True
    """,
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_wrong_answer_is_caught(name, tmp_path, capsys):
    f = tmp_path / "student.py"
    f.write_text("import numpy as np\n" + textwrap.dedent(WRONG[name]))
    rc, out = _grade_json(capsys, str(f))
    assert rc == 1
    (x,) = out["exercises"]
    assert x["exercise"] == name and not x["passed"] and x["score"] < x["total"], x
    if name == "check_backward":   # the all-ones check fails exactly on the zero softmax backward
        failed = [c["name"] for c in x["checks"] if not c["passed"]]
        assert failed == ["softmax backward returning zeros (bug)"], failed


def test_bad_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "answers.txt"
    bad.write_text("x = 1\n")
    assert main(["grade", str(bad)]) == 1
    assert "must be a .py or .ipynb" in capsys.readouterr().err
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["grade", str(empty)]) == 1
    assert "defines none of the exercises" in capsys.readouterr().err
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    assert main(["grade", str(broken)]) == 1
    assert "is not a Jupyter notebook" in capsys.readouterr().err
    assert main(["grade"]) == 1
    assert "exactly one of FILE or --reference" in capsys.readouterr().err
