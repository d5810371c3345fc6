"""The backend: device names, dtypes, host/device transfers, the seeded random stream."""
import types

import numpy as np
import pytest

from minialbert import backend
from minialbert.backend import Random, as_rng, get_array_module, resolve_dtype, to_device, to_numpy


def test_to_numpy_and_to_device_round_trip(xp, device):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    d = to_device(a, device)
    assert get_array_module(d) is xp
    assert backend.device_of(d) == device
    assert to_device(d, device) is d                 # already there: no copy
    back = to_numpy(d)
    assert isinstance(back, np.ndarray) and back.dtype == np.float32
    np.testing.assert_array_equal(back, a)
    np.testing.assert_array_equal(to_device(d, "cpu"), a)


def test_get_array_module_of_host_data_is_numpy():
    assert get_array_module(np.zeros(2), [1.0], 3.0) is np
    assert backend.xp_for("cpu") is np


def test_unknown_device_and_dtype():
    with pytest.raises(ValueError, match=r"unknown device 'tpu'.*\('cpu', 'gpu'\)"):
        to_device(np.zeros(1), "tpu")
    with pytest.raises(ValueError, match=r"unknown device 'cuda'"):
        Random(0, device="cuda")
    with pytest.raises(ValueError, match=r"unknown dtype 'float16'.*float32.*float64"):
        resolve_dtype("float16")
    with pytest.raises(ValueError, match=r"unsupported dtype int64"):
        resolve_dtype(np.int64)
    assert resolve_dtype("float32") == np.float32
    assert resolve_dtype(np.float64) == np.float64
    assert backend.DEFAULT_DTYPE == np.float32


@pytest.mark.skipif(backend.gpu_available(), reason="a GPU is present")
def test_gpu_without_gpu_says_how_to_install(monkeypatch):
    # CuPy missing: the error names it and the install command
    monkeypatch.setattr(backend, "_cupy", False)
    monkeypatch.setattr(backend, "_cupy_error", "ModuleNotFoundError: No module named 'cupy'")
    for call in (lambda: to_device(np.zeros(1), "gpu"), lambda: backend.xp_for("gpu"),
                 lambda: Random(0, device="gpu")):
        with pytest.raises(RuntimeError, match=r"needs CuPy.*pip install minialbert\[cuda12\]"):
            call()
    assert not backend.gpu_available()


def test_gpu_with_cupy_but_no_device_says_so(monkeypatch):
    # CuPy imports but the runtime finds no GPU (what `import cupy` does on a CPU machine)
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False),
                                 ndarray=type("ndarray", (), {}))
    monkeypatch.setattr(backend, "_cupy", fake)
    assert not backend.gpu_available()
    with pytest.raises(RuntimeError, match=r"no CUDA GPU is available.*nvidia-smi"):
        to_device(np.zeros(1), "gpu")


def test_random_is_reproducible(device, xp):
    a, b = Random(123, device), Random(123, device)
    for draw in (lambda r: r.normal((3, 4), std=0.02), lambda r: r.random((5,)),
                 lambda r: r.standard_normal((2,), dtype=np.float64)):
        x, y = draw(a), draw(b)
        assert get_array_module(x) is xp
        np.testing.assert_array_equal(to_numpy(x), to_numpy(y))
    np.testing.assert_array_equal(a.permutation(10), b.permutation(10))
    np.testing.assert_array_equal(a.integers(0, 7, size=4), b.integers(0, 7, size=4))
    np.testing.assert_array_equal(a.choice(9, size=3, replace=False), b.choice(9, size=3, replace=False))
    assert not np.array_equal(to_numpy(Random(1, device).random((8,))), to_numpy(Random(2, device).random((8,))))


def test_random_normal_has_the_requested_std_and_dtype():
    x = Random(0).normal((200, 200), std=0.02, mean=1.0)
    assert x.dtype == np.float32
    assert abs(float(x.std()) - 0.02) < 1e-3 and abs(float(x.mean()) - 1.0) < 1e-3


def test_random_state_round_trip():
    r = Random(5)
    r.permutation(4)
    state = r.get_state()
    first = (r.permutation(20), r.integers(0, 100, size=5), r.random((3,)))
    r.set_state(state)
    again = (r.permutation(20), r.integers(0, 100, size=5), r.random((3,)))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    # a fresh stream restored from the saved state continues identically as well
    s = Random(999)
    s.set_state(state)
    np.testing.assert_array_equal(s.permutation(20), first[0])


def test_fork_is_deterministic_and_independent(device):
    r = Random(11, device)
    f1, f1b, f2 = r.fork(1), Random(11, device).fork(1), r.fork(2)
    a, b, c = (to_numpy(f.random((16,))) for f in (f1, f1b, f2))
    np.testing.assert_array_equal(a, b)           # same (seed, key): same stream
    assert not np.array_equal(a, c)               # another key: another stream
    assert not np.array_equal(r.fork(1, 0).permutation(50), r.fork(1).permutation(50))
    assert f1.device == device
    # forking does not advance the parent
    np.testing.assert_array_equal(Random(11).permutation(10), r.permutation(10))


def test_as_rng():
    r = Random(3)
    assert as_rng(r) is r
    assert as_rng(None).seed == 0 and as_rng(7).seed == 7


def test_erf_matches_math(xp):
    import math
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(to_numpy(backend.erf(xp.asarray(x))), [math.erf(v) for v in x], rtol=1e-14)
