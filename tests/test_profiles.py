"""The README's ``pytest`` is deterministic: Hypothesis runs derandomized, without a database.

A user's shell has no ``CI`` variable (Hypothesis derandomizes by itself only when it is
set), so these run pytest in a subprocess with ``CI`` removed from the environment.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).parent

PROBE = '''
import os
from hypothesis import given, strategies as st

@given(st.text(max_size=20), st.integers())
def test_probe(s, n):
    with open(os.environ["PROBE_OUT"], "a", encoding="utf-8") as f:
        f.write(repr((s, n)) + "\\n")
'''


def test_default_profile_is_derandomized_without_a_database():
    if settings.get_current_profile_name() != "default":   # --hypothesis-profile=explore etc.
        return
    s = settings.default
    assert s.derandomize and s.database is None and s.max_examples == 25
    assert settings.get_profile("explore").max_examples == 20 * s.max_examples
    assert not settings.get_profile("explore").derandomize


def _run(tmp_path, *args, tag):
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}
    env["PROBE_OUT"] = str(tmp_path / f"{tag}.txt")
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args,
                          str(tmp_path / "test_probe.py")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    drawn = tmp_path / f"{tag}.txt"
    return out.stdout, drawn.read_text(encoding="utf-8").splitlines() if drawn.exists() else []


def test_same_examples_every_run_without_ci(tmp_path):
    shutil.copy(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    head, _ = _run(tmp_path, "--co", tag="collect")           # the header names the profile
    assert "hypothesis profile 'default': derandomized" in head
    _, first = _run(tmp_path, tag="a")
    _, second = _run(tmp_path, tag="b")
    assert len(first) == 25 and first == second
    assert not (tmp_path / ".hypothesis" / "examples").exists()    # no example database written
    _, third = _run(tmp_path, "--hypothesis-profile=explore", tag="c")
    assert len(third) == 500 and third[:25] != first
