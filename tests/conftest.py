"""Shared test fixtures: one suite, parametrized over backends.

``xp`` is numpy always, and cupy where a CUDA GPU answers (skipped otherwise; ``import
cupy`` alone succeeds without a GPU, so we ask the runtime, see backend.gpu_available).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minialbert import backend

# Hypothesis profiles. ``pytest`` runs "default": derandomized (the examples are a fixed
# function of each test, the same on every run and every machine, with or without the CI
# variable) and no example database, so the README's test command passes or fails the
# same way for everyone. "explore" draws from random seeds with 20 times the examples
# (``pytest --hypothesis-profile=explore``); a failure prints its seed and a
# ``@reproduce_failure`` blob. A test that sets its own count scales it from
# ``settings.default.max_examples`` (the profile in force), so explore multiplies it too.
# "ci" (= default) and "thorough" are the names used before; both still load.
EXAMPLES = 25                 # per property test under the default profile
EXPLORE_FACTOR = 20
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
_BASE = settings.get_profile("default")   # Hypothesis' own defaults, whatever CI says
settings.register_profile("default", _BASE, max_examples=EXAMPLES, derandomize=True, database=None,
                          deadline=None, print_blob=True, suppress_health_check=_QUIET)
settings.register_profile("ci", settings.get_profile("default"))
settings.register_profile("explore", _BASE, max_examples=EXAMPLES * EXPLORE_FACTOR, derandomize=False,
                          database=None, deadline=None, print_blob=True,
                          suppress_health_check=_QUIET + [HealthCheck.filter_too_much])
settings.register_profile("thorough", _BASE, max_examples=300, database=None, deadline=None,
                          print_blob=True, suppress_health_check=_QUIET)
# conftest is imported before Hypothesis' plugin reads --hypothesis-profile, which wins
settings.load_profile("default")


def pytest_report_header(config):
    s = settings.default
    how = "derandomized" if s.derandomize else "random seeds"
    return (f"hypothesis profile {settings.get_current_profile_name()!r}: {how}, "
            f"{s.max_examples} examples per property test, database={s.database!r} "
            f"(pytest --hypothesis-profile=explore for {EXPLORE_FACTOR}x the examples from random seeds)")


def _backends():
    yield pytest.param("cpu", id="numpy")
    yield pytest.param("gpu", id="cupy", marks=pytest.mark.gpu)


@pytest.fixture(params=list(_backends()))
def device(request):
    """'cpu' or 'gpu'; GPU cases are skipped where no CUDA device is available."""
    if request.param == "gpu" and not backend.gpu_available():
        pytest.skip("no CUDA GPU (cupy.cuda.is_available() is False or CuPy is missing)")
    return request.param


@pytest.fixture
def xp(device):
    """The array module for the backend under test."""
    return backend.xp_for(device)


def break_atomic_writes(monkeypatch, error, prefix=""):
    """Make minialbert.atomic's writes of files whose name starts with ``prefix`` write 10
    bytes of the temporary file and then raise ``error`` (a full disk, a kill). Returns the
    set of file descriptors it broke, so a test can check the write was reached."""
    from minialbert import atomic
    real_mkstemp, real_fdopen, broken = atomic.tempfile.mkstemp, atomic.os.fdopen, set()

    def mkstemp(*a, **k):
        fd, name = real_mkstemp(*a, **k)
        if k.get("prefix", "").startswith(prefix):
            broken.add(fd)
        return fd, name

    class Breaks:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:10])
            raise error

    def fdopen(fd, *a, **k):
        f = real_fdopen(fd, *a, **k)
        return Breaks(f) if fd in broken else f

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(atomic.os, "fdopen", fdopen)
    return broken
