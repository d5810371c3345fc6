"""The gradient checker itself: it must find wrong gradients, not only pass right ones."""
import numpy as np
import pytest

from minialbert.gradcheck import check_gradients, compare, numerical_gradient
from minialbert.layers import softmax_backward, softmax_forward


@pytest.mark.parametrize("order,h,tol", [(2, 1e-6, 1e-8), (4, 1e-3, 1e-10)])
def test_numerical_gradient_of_a_known_function(xp, order, h, tol):
    # f(x) = x^3 elementwise, dout random: d/dx sum(x^3 * dout) = 3 x^2 dout
    r = np.random.default_rng(0)
    x, dout = xp.asarray(r.uniform(-2, 2, (3, 4))), xp.asarray(r.standard_normal((3, 4)))
    x0 = x.copy()
    num = numerical_gradient(lambda: x * x * x, x, dout, h=h, order=order)
    res = compare("x", 3 * x0 * x0 * dout, num)
    assert res.rel_error < tol, str(res)
    np.testing.assert_array_equal(x, x0)          # restored after perturbing in place


def test_numerical_gradient_refuses_float32_and_bad_order(xp):
    with pytest.raises(ValueError, match="float64"):
        numerical_gradient(lambda: 1.0, xp.zeros(3, dtype=np.float32), 1.0)
    with pytest.raises(ValueError, match="order must be one of"):
        numerical_gradient(lambda: 1.0, xp.zeros(3), 1.0, order=3)


def test_a_wrong_backward_fails_and_the_worst_element_is_reported(xp):
    r = np.random.default_rng(1)
    x = xp.asarray(r.uniform(-2, 2, (2, 5)))
    P, cache = softmax_forward(x)
    dP = xp.asarray(r.standard_normal(P.shape))
    wrong = P * dP                                 # forgets the -sum(dP * P) term
    right = softmax_backward(dP, cache)
    res = check_gradients(lambda: softmax_forward(x)[0], {"x": x}, {"x": wrong}, dP)["x"]
    assert not res.ok(1e-6, 0.0) and res.rel_error > 1e-2
    diff = np.abs(np.asarray(wrong.tolist()) - np.asarray(right.tolist()))
    assert res.worst_index == np.unravel_index(np.argmax(diff), diff.shape)
    assert "rel error" in str(res) and str(res.worst_index) in str(res)
    assert check_gradients(lambda: softmax_forward(x)[0], {"x": x}, {"x": right}, dP)["x"].ok(1e-6, 0.0)


def test_all_ones_upstream_gradient_is_vacuous_for_softmax(xp):
    # why the checks draw dout at random: with dout = 1 a backward returning zeros passes
    x = xp.asarray(np.random.default_rng(2).uniform(-2, 2, (2, 5)))
    ones = xp.ones((2, 5))
    num = numerical_gradient(lambda: softmax_forward(x)[0], x, ones)
    assert float(abs(num).max()) < 1e-9
    assert compare("x", xp.zeros_like(x), num).ok(1e-6, 1e-9)


def test_compare_shape_mismatch(xp):
    with pytest.raises(ValueError, match=r"analytic gradient shape \(2,\) != numerical \(3,\)"):
        compare("w", xp.zeros(2), xp.zeros(3))
