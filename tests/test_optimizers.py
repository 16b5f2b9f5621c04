"""Optimizer update expressions and global-norm clipping, on small closed-form problems."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

from rnn_theano.errors import UserError
from rnn_theano.nn.optimizers import clip_by_global_norm, optimizer_updates

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


# --- several steps against the update rules written out in numpy -------------------------

# Three steps' gradients for a (2, 3) matrix and a (3,) bias, of unlike sizes and signs: a step
# that forgot its state, or a bias correction that is missing, gives other numbers at some step.
GRADS = [
    (np.array([[0.5, -2.0, 1e-3], [3.0, 0.1, -0.7]]), np.array([0.2, -1.5, 4.0])),
    (np.array([[-1.0, 0.3, 2.0], [0.05, -0.4, 0.9]]), np.array([-0.6, 0.01, 1.2])),
    (np.array([[0.2, 1.1, -0.5], [-2.5, 0.7, 0.3]]), np.array([2.2, -0.3, -0.9])),
]
W0 = np.array([[0.3, -0.2, 0.8], [-1.1, 0.5, 0.05]])
B0 = np.array([0.4, -0.3, 0.2])


def numpy_sgd(p, g, state, t, lr):
    return p - lr * g


def numpy_rmsprop(p, g, state, t, lr, decay=0.9, eps=1e-6):
    state["ms"] = decay * state.get("ms", 0.0) + (1 - decay) * g**2
    return p - lr * g / np.sqrt(state["ms"] + eps)  # eps inside the root


def numpy_adam(p, g, state, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Kingma & Ba's Algorithm 1 with the bias correction folded into the step size (the
    ordering the paper's section 2 gives): eps is added to sqrt(v), not sqrt(v_hat)."""
    state["m"] = beta1 * state.get("m", 0.0) + (1 - beta1) * g
    state["v"] = beta2 * state.get("v", 0.0) + (1 - beta2) * g**2
    lr_t = lr * np.sqrt(1 - beta2**t) / (1 - beta1**t)
    return p - lr_t * state["m"] / (np.sqrt(state["v"]) + eps)


NUMPY_RULES = {"sgd": numpy_sgd, "rmsprop": numpy_rmsprop, "adam": numpy_adam}


def compiled_steps(name: str, lr: float, **kwargs):
    """A (W, b) pair of shared parameters and one compiled step taking their gradients."""
    W = pytensor.shared(W0.copy(), name="W")
    b = pytensor.shared(B0.copy(), name="b")
    gW, gb = pt.matrix("gW"), pt.vector("gb")
    updates, norm = optimizer_updates(name, [W, b], [gW, gb], pytensor.shared(np.asarray(lr)),
                                      **kwargs)
    return W, b, pytensor.function([gW, gb], norm, updates=updates, mode=PY_MODE)


@pytest.mark.parametrize("weight_decay", [0.0, 0.3], ids=["no-decay", "decay"])
@pytest.mark.parametrize("name, lr, hyper", [
    ("sgd", 0.1, {}),
    ("rmsprop", 0.01, {}),
    ("rmsprop", 0.01, {"decay": 0.5, "eps": 0.25}),
    ("adam", 0.01, {}),
    ("adam", 0.01, {"beta1": 0.5, "beta2": 0.75, "eps": 0.3}),
], ids=["sgd", "rmsprop", "rmsprop-big-eps", "adam", "adam-big-eps"])
def test_three_steps_follow_the_update_rule(name, lr, hyper, weight_decay) -> None:
    """Each step's parameters, also with hyperparameters whose effect is large (an eps of
    0.3 puts the difference between eps inside and outside the root at the first digit)."""
    W, b, step = compiled_steps(name, lr, weight_decay=weight_decay, **hyper)
    rule = NUMPY_RULES[name]
    w_ref, b_ref, w_state, b_state = W0.copy(), B0.copy(), {}, {}
    for t, (gW, gb) in enumerate(GRADS, start=1):
        step(gW, gb)
        # weight decay: an L2 term on the matrix's gradient, none on the bias
        w_ref = rule(w_ref, gW + weight_decay * w_ref, w_state, t, lr, **hyper)
        b_ref = rule(b_ref, gb, b_state, t, lr, **hyper)
        np.testing.assert_allclose(W.get_value(), w_ref, rtol=1e-12, atol=1e-15,
                                   err_msg=f"W after step {t}")
        np.testing.assert_allclose(b.get_value(), b_ref, rtol=1e-12, atol=1e-15,
                                   err_msg=f"b after step {t}")


@pytest.mark.parametrize("name, lr", [("sgd", 0.1), ("rmsprop", 0.01), ("adam", 0.01)])
def test_a_scaled_parameter_follows_the_rule_at_its_own_rate(name, lr) -> None:
    """``lr_scales``: W steps at 0.3 lr through the optimizer's whole state (Adam's moments
    and bias correction, RMSprop's mean square), b at lr, as two independent runs of the rule."""
    W, b, step = compiled_steps(name, lr, lr_scales=[0.3, 1.0])
    rule = NUMPY_RULES[name]
    w_ref, b_ref, w_state, b_state = W0.copy(), B0.copy(), {}, {}
    for t, (gW, gb) in enumerate(GRADS, start=1):
        step(gW, gb)
        w_ref = rule(w_ref, gW, w_state, t, 0.3 * lr)
        b_ref = rule(b_ref, gb, b_state, t, lr)
        np.testing.assert_allclose(W.get_value(), w_ref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(b.get_value(), b_ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_tiny_gradients_show_where_eps_goes(name) -> None:
    """Gradients about the size of the default eps: eps inside or outside the root, and
    sqrt(v) against v, change the step by a large factor."""
    scale = 1e-3 if name == "rmsprop" else 1e-8
    W, b, step = compiled_steps(name, 1e-3)
    w_ref, state = W0.copy(), {}
    for t, (gW, gb) in enumerate(GRADS, start=1):
        step(scale * gW, scale * gb)
        w_ref = NUMPY_RULES[name](w_ref, scale * gW, state, t, 1e-3)
        np.testing.assert_allclose(W.get_value() - W0, w_ref - W0, rtol=1e-9)


def test_adam_first_step_is_lr_times_the_gradient_sign() -> None:
    """Bias-corrected, Adam's first step is lr * g / (|g| + eps'): lr in every coordinate
    whatever the gradient's size (without the correction it would be lr * 0.1 / sqrt(0.001))."""
    W, b, step = compiled_steps("adam", 0.01)
    gW, gb = GRADS[0]
    step(gW, gb)
    # rtol: eps' = eps / sqrt(1 - beta2) is 3e-4 of the smallest |g|, 1e-3
    np.testing.assert_allclose(W.get_value() - W0, -0.01 * np.sign(gW), rtol=1e-3)
    np.testing.assert_allclose(b.get_value() - B0, -0.01 * np.sign(gb), rtol=1e-5)


def test_rmsprop_keeps_its_running_mean_square() -> None:
    """The same gradient twice: the second step is smaller than the first (the mean square has
    grown from 0.1 g^2 to 0.19 g^2), by the factor sqrt(0.1 / 0.19) when eps is negligible."""
    W, b, step = compiled_steps("rmsprop", 0.01)
    gW, gb = np.full_like(W0, 5.0), np.full_like(B0, 5.0)
    step(gW, gb)
    first = W0 - W.get_value()
    before = W.get_value()
    step(gW, gb)
    np.testing.assert_allclose(before - W.get_value(), first * np.sqrt(0.1 / 0.19), rtol=1e-7)


def test_optimizers_sharing_slots_advance_one_state() -> None:
    """Two functions compiled with one ``slots`` dict (one per batch shape, as under JAX) take
    turns: together they make the same three steps as one function alone."""
    W = pytensor.shared(W0.copy(), name="W")
    lr = pytensor.shared(np.asarray(0.01))
    slots: dict = {}
    steps = []
    for _ in range(2):
        gW = pt.matrix("gW")
        updates, _ = optimizer_updates("adam", [W], [gW], lr, slots=slots)
        steps.append(pytensor.function([gW], [], updates=updates, mode=PY_MODE))
    w_ref, state = W0.copy(), {}
    for t, (gW, _) in enumerate(GRADS, start=1):
        steps[t % 2](gW)
        w_ref = numpy_adam(w_ref, gW, state, t, 0.01)
    np.testing.assert_allclose(W.get_value(), w_ref, rtol=1e-12)
    assert float(slots["adam_steps"].get_value()) == 3.0


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam"])
def test_clipping_happens_before_the_optimizer(name) -> None:
    """Clipped to norm 0.5, the optimizer sees the gradient 0.5 g / ||g||, weight decay
    included in ||g||, and the function returns ||g|| before clipping."""
    W, b, step = compiled_steps(name, 0.01, clip_norm=0.5, weight_decay=0.3)
    w_ref, b_ref, w_state, b_state = W0.copy(), B0.copy(), {}, {}
    for t, (gW, gb) in enumerate(GRADS, start=1):
        decayed = 100 * gW + 0.3 * w_ref
        norm = np.sqrt((decayed**2).sum() + ((100 * gb)**2).sum())
        assert step(100 * gW, 100 * gb) == pytest.approx(norm, rel=1e-12)
        w_ref = NUMPY_RULES[name](w_ref, 0.5 * decayed / norm, w_state, t, 0.01)
        b_ref = NUMPY_RULES[name](b_ref, 0.5 * 100 * gb / norm, b_state, t, 0.01)
        np.testing.assert_allclose(W.get_value(), w_ref, rtol=1e-12)
        np.testing.assert_allclose(b.get_value(), b_ref, rtol=1e-12)


def test_clipped_sgd_training_step_moves_exactly_lr_times_clip() -> None:
    """A compiled training step on a loss whose gradient is huge: the parameters move by
    lr * clip in global norm, along the gradient; below the clip the step is plain SGD."""
    W = pytensor.shared(W0.copy(), name="W")
    b = pytensor.shared(B0.copy(), name="b")
    scale = pytensor.shared(np.asarray(1e4))
    loss = scale * (0.5 * ((W - 3.0) ** 2).sum() + (b**3).sum())
    params = [W, b]
    grads = pytensor.grad(loss, params)
    updates, norm = optimizer_updates("sgd", params, grads, pt.constant(0.2), clip_norm=0.05)
    train = pytensor.function([], [norm, *grads], updates=updates, mode=PY_MODE)
    norm, gW, gb = train()
    assert norm > 1e3
    dW, db = W.get_value() - W0, b.get_value() - B0
    assert np.sqrt((dW**2).sum() + (db**2).sum()) == pytest.approx(0.2 * 0.05, rel=1e-12)
    np.testing.assert_allclose(dW, -0.2 * 0.05 * gW / norm, rtol=1e-12)
    np.testing.assert_allclose(db, -0.2 * 0.05 * gb / norm, rtol=1e-12)
    scale.set_value(np.asarray(1e-3))  # ||g|| well under the clip: untouched
    before = W.get_value(), b.get_value()
    norm, gW, gb = train()
    assert norm < 0.05
    np.testing.assert_allclose(W.get_value(), before[0] - 0.2 * gW, rtol=1e-15)
    np.testing.assert_allclose(b.get_value(), before[1] - 0.2 * gb, rtol=1e-15)


# --- averaged SGD (NT-ASGD) -----------------------------------------------------------------

def test_averaging_keeps_the_mean_of_the_iterates_since_it_started() -> None:
    """A tiny language model: two SGD steps, then averaging, then three steps. The averages
    are the mean of the three parameter values after those steps, by hand; before any step
    since the start, and without averaging, the parameters are the model's own; inside
    ``averaged()`` the graph scores the averages, and the model's own values come back."""
    from rnn_theano import backends
    from rnn_theano.tasks.lm_engine import LMEngine
    from rnn_theano.tasks.lm_graph import LMConfig

    backends.prepare("JAX")
    config = LMConfig(cell="rnn", vocab_size=6, embed_dim=3, hidden_dim=3, float32=False)
    engine = LMEngine(config, mode="JAX", optimizer="sgd", learning_rate=0.5, average=True)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 6, (2, 5, 4)).astype(np.int32)
    mask, state = np.ones((5, 4)), engine.initial_state(4)

    def own() -> dict[str, np.ndarray]:
        return {name: np.array(p.get_value()) for name, p in engine.params.items()}

    for _ in range(2):
        engine.train_step(x, y, mask, state)
    assert not engine.averaging
    np.testing.assert_equal(engine.get_params(), own())
    engine.start_averaging()
    assert not engine.averaging  # nothing to average before the next step
    iterates = []
    for _ in range(3):
        engine.train_step(x, y, mask, state)
        iterates.append(own())
    assert engine.averaging
    for name, value in engine.get_params().items():
        expected = np.mean([it[name] for it in iterates], axis=0)
        np.testing.assert_allclose(value, expected, rtol=1e-12)
        assert not np.allclose(value, iterates[-1][name])  # the average, not the last
    slots = engine.get_optimizer_state()
    assert slots["avg_count"] == 3 and slots["avg_on"] == 1
    averaged = LMEngine(config, engine.get_params(), mode="JAX")
    with engine.averaged():
        assert engine.eval_step(x, y, mask, state).cost == pytest.approx(
            averaged.eval_step(x, y, mask, state).cost, rel=1e-12)
    np.testing.assert_equal(own(), iterates[-1])


@pytest.mark.parametrize("losses, interval, due", [
    ([5.0, 4.0, 3.0, 2.0], 2, False),      # still improving
    ([5.0, 4.0, 4.5, 4.6], 2, True),       # worse than 4.0, the best before the last 2
    ([5.0, 4.0, 4.5, 3.9], 2, False),      # a new best
    ([5.0, 4.5], 2, False),                # too few evaluations to compare
    ([5.0, 4.0, 4.5, 4.6], 3, False),      # the best before the last 3 is 5.0
])
def test_averaging_starts_at_nt_asgd_trigger(losses, interval, due) -> None:
    from rnn_theano.train import averaging_due
    history = [{"valid_loss": v} for v in losses]
    assert averaging_due(history, interval) is due
    assert not averaging_due(history[:-1] + [{"valid_loss": 9.0, "averaging": True}], 1)
