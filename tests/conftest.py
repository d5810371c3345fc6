"""Shared test fixtures: one suite, parametrized over backends.

``xp`` is numpy always, and cupy where a CUDA GPU answers (skipped otherwise; ``import
cupy`` alone succeeds without a GPU, so we ask the runtime, see backend.gpu_available).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minialbert import backend

settings.register_profile(
    "ci", max_examples=25, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=300, deadline=None)
settings.load_profile("ci")


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
