"""Optimizer update expressions and global-norm clipping, on small closed-form problems."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

from rnn_theano.errors import UserError
from rnn_theano.optimizers import clip_by_global_norm, optimizer_updates

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

PY_MODE = Mode(linker="py", optimizer="fast_compile")
TARGET = np.array([[1.0, -2.0], [0.5, 3.0]])
CURVATURE = np.array([[1.0, 4.0], [0.25, 2.0]])


def test_clipping_scales_to_the_norm_exactly() -> None:
    a, b = pt.vector("a"), pt.matrix("b")
    clipped, norm = clip_by_global_norm([a, b], 5.0)
    fn = pytensor.function([a, b], [*clipped, norm], mode=PY_MODE)
    ga, gb = np.array([3.0, 4.0]), np.array([[0.0, 12.0]])  # ||g|| = 13
    ca, cb, n = fn(ga, gb)
    assert n == pytest.approx(13.0)
    np.testing.assert_allclose(ca, ga * 5 / 13, rtol=1e-15)
    np.testing.assert_allclose(cb, gb * 5 / 13, rtol=1e-15)
    assert np.sqrt((ca**2).sum() + (cb**2).sum()) == pytest.approx(5.0, rel=1e-15)
    small = fn(ga / 10, gb / 10)  # ||g|| = 1.3 <= 5: untouched
    np.testing.assert_array_equal(small[0], ga / 10)
    np.testing.assert_array_equal(fn(0 * ga, 0 * gb)[0], 0 * ga)  # no 0/0


class Quadratic:
    """f(w) = 0.5 sum(CURVATURE (w - TARGET)^2) from w = 0, one compiled step per optimizer."""

    def __init__(self, name: str, lr: float, **kwargs) -> None:
        self.w = pytensor.shared(np.zeros_like(TARGET), name="w")
        self.lr = pytensor.shared(np.asarray(lr), name="lr")
        loss = 0.5 * (CURVATURE * (self.w - TARGET) ** 2).sum()
        updates, _ = optimizer_updates(name, [self.w], [pytensor.grad(loss, self.w)], self.lr,
                                       **kwargs)
        self.step = pytensor.function([], loss, updates=updates, mode=PY_MODE)

    def run(self, steps: int) -> list[float]:
        return [float(self.step()) for _ in range(steps)]


@pytest.mark.parametrize("name, lr", [("sgd", 0.3), ("rmsprop", 3e-2), ("adam", 5e-2)])
def test_optimizers_decrease_a_quadratic(name: str, lr: float) -> None:
    problem = Quadratic(name, lr)
    losses = problem.run(300)
    assert losses[-1] < 0.01 * losses[0]
    np.testing.assert_allclose(problem.w.get_value(), TARGET, atol=0.1)


def test_learning_rate_is_a_shared_variable_read_at_each_step() -> None:
    problem = Quadratic("sgd", 0.1)
    problem.step()
    np.testing.assert_allclose(problem.w.get_value(), 0.1 * CURVATURE * TARGET)
    problem.lr.set_value(np.asarray(0.0))
    before = problem.w.get_value()
    problem.step()  # the same compiled function, now with step size 0
    np.testing.assert_array_equal(problem.w.get_value(), before)


def test_rmsprop_first_step_is_the_tutorial_formula() -> None:
    problem = Quadratic("rmsprop", 1e-3)
    problem.step()
    g = -CURVATURE * TARGET  # gradient at w = 0
    expected = -1e-3 * g / np.sqrt(0.1 * g**2 + 1e-6)
    np.testing.assert_allclose(problem.w.get_value(), expected, rtol=1e-12)


def test_weight_decay_and_clipping_in_the_update() -> None:
    w = pytensor.shared(np.full((2, 2), 2.0), name="w")
    b = pytensor.shared(np.full(2, 2.0), name="b")
    zero = [pt.zeros((2, 2)), pt.zeros(2)]
    updates, _ = optimizer_updates("sgd", [w, b], zero, pt.constant(0.5), weight_decay=0.1)
    pytensor.function([], [], updates=updates, mode=PY_MODE)()
    np.testing.assert_allclose(w.get_value(), 2.0 - 0.5 * 0.1 * 2.0)  # matrices decay
    np.testing.assert_array_equal(b.get_value(), 2.0)  # biases do not
    g = [pt.constant(np.full((2, 2), 10.0)), pt.constant(np.zeros(2))]
    updates, norm = optimizer_updates("sgd", [w, b], g, pt.constant(1.0), clip_norm=1.0)
    before = w.get_value()
    assert pytensor.function([], norm, updates=updates, mode=PY_MODE)() == pytest.approx(20.0)
    np.testing.assert_allclose(before - w.get_value(), 0.5)  # the step has norm exactly 1
    with pytest.raises(UserError, match="unknown optimizer"):
        optimizer_updates("lbfgs", [w], [g[0]], pt.constant(1.0))
