# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. A tour: arrays, the backend, the letters, a gradient check
#
# minialbert runs the same code on NumPy (CPU) and CuPy (GPU). This notebook shows how,
# fixes the letters every later notebook uses, and builds the tool all of them lean on:
# a **numerical gradient check**. We write one by hand, see why it must run in float64
# with a *random* upstream gradient, and end by checking ours against the library's.
#
# | letter | meaning |
# |---|---|
# | B | batch size |
# | T | sequence length |
# | V | vocabulary size |
# | E | embedding size |
# | H | hidden size |
# | NH | attention heads, HS = H / NH the head size |
# | I | intermediate (feed-forward) size |
# | L | depth: how many times the shared layer is applied |

# %%
# Scale: "cpu-small" runs in seconds anywhere; "gpu" uses CuPy and larger arrays.
SCALE = "cpu-small"

import time

import matplotlib.pyplot as plt
import numpy as np

import minialbert
from minialbert import backend, gradcheck
from minialbert.layers import linear_backward, linear_forward

DEVICE = "gpu" if SCALE == "gpu" and backend.gpu_available() else "cpu"
print("minialbert", minialbert.__version__, "| GPU available:", backend.gpu_available(),
      "| running on:", DEVICE)

# %% [markdown]
# ## One module that knows CuPy exists
#
# Every function in minialbert starts with `xp = get_array_module(x)`: NumPy for a NumPy
# array, CuPy for a CuPy array. The function body then calls `xp.tanh`, `xp.exp`, ...
# and runs unchanged on either device. Only `minialbert/backend.py` imports CuPy; arrays
# cross between host and device only through `to_device` and `to_numpy`.
#
# Here is the whole idea by hand, in three lines, next to the library's version.

# %%
def my_get_array_module(x):
    """numpy unless x is a CuPy array (checked by type name: no CuPy import needed)."""
    return np if type(x).__module__.split(".")[0] != "cupy" else __import__("cupy")


x = np.linspace(-3, 3, 7, dtype=np.float32)
print(my_get_array_module(x) is np, backend.get_array_module(x) is np)

xd = backend.to_device(x, DEVICE)              # a CuPy array when DEVICE == "gpu"
xp = backend.get_array_module(xd)
y = xp.tanh(xd)                                # runs where xd lives
print(type(xd).__module__, "->", backend.to_numpy(y).round(3))
assert my_get_array_module(xd) is xp

# %% [markdown]
# Random numbers need care: CuPy's `Generator` has no `normal`, `choice` or `permutation`.
# `backend.Random` is one seeded stream with the same methods on both devices
# (continuous draws on the device, discrete ones on the host) and an exact saved state.

# %%
rng = backend.Random(seed=0, device=DEVICE)
W = rng.normal((3, 4), std=0.02)               # float32 by default, on DEVICE
print(W.dtype, W.shape, backend.device_of(W))
state = rng.get_state()
a = rng.permutation(5)
rng.set_state(state)
assert (rng.permutation(5) == a).all()         # same state, same draw: resume is exact

# %% [markdown]
# ## The layer convention
#
# A layer is a pair of functions: `out, cache = x_forward(...)` and
# `dx = x_backward(dout, cache, <gradient buffers>)`. The backward *adds* parameter
# gradients into buffers the caller zeroed, so a layer used twice sums its two gradients
# by itself (ALBERT applies one layer L times). The linear layer, with the PyTorch weight
# layout `W: (out, in)`:
#
# $$y = x W^\top + b,\qquad \frac{\partial \ell}{\partial x} = \frac{\partial \ell}{\partial y} W,\qquad
# \frac{\partial \ell}{\partial W} = \Big(\frac{\partial \ell}{\partial y}\Big)^\top x,\qquad
# \frac{\partial \ell}{\partial b} = \sum_{\text{rows}} \frac{\partial \ell}{\partial y}.$$

# %%
B, T, H, I = 2, 3, 4, 5
r = np.random.default_rng(0)
x = r.standard_normal((B, T, H))               # float64 for checking
W1, b1 = r.standard_normal((I, H)), r.standard_normal(I)

y, cache = linear_forward(x, W1, b1)           # (B, T, I)
dy = r.standard_normal(y.shape)                # a random upstream gradient
dW, db = np.zeros_like(W1), np.zeros_like(b1)  # zero once...
dx = linear_backward(dy, cache, dW, db)        # ...accumulate
dx_again = linear_backward(dy, cache, dW, db)  # a second use adds a second gradient
print("dW after two backward calls == 2 x one call:",
      np.allclose(dW, 2 * (dy.reshape(-1, I).T @ x.reshape(-1, H))))

# %% [markdown]
# ## A numerical gradient check, by hand
#
# For a function $f$ with output gradient $g$ (the "upstream" gradient), the backward
# computes $\nabla_x \langle f(x), g\rangle$. Central differences estimate the same thing:
#
# $$\frac{\partial}{\partial x_i}\langle f(x), g\rangle \approx
# \frac{\langle f(x + h e_i), g\rangle - \langle f(x - h e_i), g\rangle}{2h}.$$
#
# Two rules. **float64**: the difference of two nearly equal numbers loses digits, and
# float32 has only about 7 of them. **A random $g$**: with $g$ = ones the scalar is
# $\sum f(x)$, whose gradient through softmax or LayerNorm is exactly zero, so a
# backward that returns zeros would pass.

# %%
def my_numerical_gradient(f, x, g, h=1e-6):
    """d/dx <f(x), g> by central differences; perturbs x in place and restores it."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h; fp = (f() * g).sum()
        x[i] = old - h; fm = (f() * g).sum()
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def rel_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))


f = lambda: linear_forward(x, W1, b1)[0]
num_dx = my_numerical_gradient(f, x, dy)
num_dW = my_numerical_gradient(f, W1, dy)
dW1 = np.zeros_like(W1)
dx1 = linear_backward(dy, linear_forward(x, W1, b1)[1], dW1, None)
print(f"dx rel error {rel_error(dx1, num_dx):.1e}   dW rel error {rel_error(dW1, num_dW):.1e}")

# %% [markdown]
# ## Why float64: the error of central differences against the step h
#
# Truncation error falls like $h^2$, rounding error grows like $\epsilon/h$. In float32
# ($\epsilon \approx 10^{-7}$) no step gets the relative error much below $10^{-5}$,
# too coarse to tell a right backward from a slightly wrong one; in float64 it reaches
# $10^{-9}$ and below.

# %%
from minialbert.layers import tanh_backward, tanh_forward


def tanh_linear(x, W, b):                      # a small nonlinear function: tanh(x W^T + b)
    y, c1 = linear_forward(x, W, b)
    out, ct = tanh_forward(y)
    return out, (c1, ct)


c1, ct = tanh_linear(x, W1, b1)[1]
exact = linear_backward(tanh_backward(dy, ct), c1)        # float64 analytic dx
hs = np.logspace(-10, -1, 19)
errs = {}
for dtype in (np.float32, np.float64):
    xs, Ws, bs, gs = (a.astype(dtype) for a in (x, W1, b1, dy))
    fd = lambda: tanh_linear(xs, Ws, bs)[0]
    errs[dtype.__name__] = [rel_error(exact, my_numerical_gradient(fd, xs, gs, h=dtype(h)))
                            for h in hs]

fig, ax = plt.subplots(figsize=(6, 3.5))
for name, e in errs.items():
    ax.loglog(hs, e, "o-", label=name)
ax.set_xlabel("step h"); ax.set_ylabel("relative error of dx")
ax.set_title("Central differences on tanh(x W^T + b): rounding vs truncation")
ax.legend(); ax.grid(True, which="both", alpha=0.3)
plt.show()
print({k: f"best {min(v):.1e}" for k, v in errs.items()})
assert min(errs["float64"]) < 1e-8 < min(errs["float32"])

# %% [markdown]
# ## Why a random upstream gradient: a wrong backward that passes with g = ones
#
# Softmax rows sum to one, so $\sum_j \mathrm{softmax}(x)_j = 1$ whatever $x$ is: its
# gradient is zero, and a "backward" that returns zeros agrees with it perfectly.

# %%
from minialbert.layers import softmax_forward

z = r.standard_normal((2, 5))
fsm = lambda: softmax_forward(z)[0]
zeros_backward = np.zeros_like(z)                 # a broken backward
ones = np.ones((2, 5))
g_rand = r.standard_normal((2, 5))
print("g = ones:   max |numerical|  =", np.abs(my_numerical_gradient(fsm, z, ones)).max())
print("g = random: max |numerical|  =", np.abs(my_numerical_gradient(fsm, z, g_rand)).max(),
      "(the broken backward returns 0: caught)")

# %% [markdown]
# ## The library's version
#
# `minialbert.gradcheck` is the same idea with a report: relative error, the worst
# element and its two values. The tests and every later notebook use it.

# %%
t0 = time.perf_counter()
dW2, db2 = np.zeros_like(W1), np.zeros_like(b1)
dx2 = linear_backward(dy, linear_forward(x, W1, b1)[1], dW2, db2)
res = gradcheck.check_gradients(f, {"x": x, "W": W1, "b": b1}, {"x": dx2, "W": dW2, "b": db2}, dy)
for r_ in res.values():
    print(r_)
print(f"({time.perf_counter() - t0:.3f} s)")
assert all(r_.ok() for r_ in res.values())

# %% [markdown]
# ## Check: our numerical gradient is the library's
#
# Every notebook ends by checking the piece it built against the library.

# %%
for name, arr in {"x": x, "W": W1, "b": b1}.items():
    mine = my_numerical_gradient(f, arr, dy)
    lib = gradcheck.numerical_gradient(f, arr, dy)
    np.testing.assert_allclose(mine, lib, rtol=0, atol=1e-12)
print("hand-written numerical gradient == minialbert.gradcheck.numerical_gradient")
