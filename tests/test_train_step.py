"""One training step, checked against gradients that nothing in the package computes.

The engine's step must be ``p - lr * grad`` of the *mean* cross-entropy over the batch's real
tokens. The reference gradient is central finite differences of ``lm_reference``'s numpy
forward pass, which cuts every row to its real length (so padding cannot matter to it) and
starts from the state it is given (stream mode). The tutorial models' step must follow the
*summed* loss of the sentence: finite differences of ``RNNNumpy.calculate_total_loss``.

The engine runs under JAX in float64 (one compile per batch shape, no Numba cold compile),
the tutorial's PyTensor model under the Python linker (a tiny graph compiled in a moment).
"""

from __future__ import annotations

import numpy as np
import pytest
from pytensor.compile.mode import Mode

from lm_reference import reference_cost
from rnn_theano import backends
from rnn_theano.data.batching import SentenceBatches, StreamBatches
from rnn_theano.tasks.lm_engine import LMEngine
from rnn_theano.tasks.lm_graph import LMConfig, init_lm_params
from rnn_theano.tutorial.numpy_rnn import RNNNumpy
from rnn_theano.tutorial.theano_rnn import RNNTheano

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

C = 6
CONFIG = LMConfig(cell="lstm", vocab_size=C, embed_dim=3, hidden_dim=3, float32=False, seed=4)
LR = 0.5
FD_STEP = 1e-6


@pytest.fixture(scope="module")
def params() -> dict[str, np.ndarray]:
    """Initial parameters moved off their special values (zero biases), so that every
    parameter has a gradient of its own."""
    rng = np.random.default_rng(7)
    return {name: value + rng.normal(0.0, 0.3, value.shape)
            for name, value in init_lm_params(CONFIG).items()}


@pytest.fixture(scope="module")
def engine() -> LMEngine:
    backends.prepare("JAX")
    return LMEngine(CONFIG, mode="JAX", optimizer="sgd", learning_rate=LR)


def sentence_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three sentences of 3, 6 and 4 ids in one padded batch: 10 real tokens, 5 of padding."""
    sentences = [np.array([1, 4, 2]), np.array([1, 3, 5, 0, 4, 2]), np.array([1, 5, 5, 2])]
    x, y, mask = next(iter(SentenceBatches(sentences, batch_size=3)))
    assert x.shape == (5, 3) and mask.sum() == 10
    return x, y, mask


def stream_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The second window of a stream, and a state as the first window could have left it."""
    stream = np.random.default_rng(1).integers(0, C, 20)
    windows = iter(StreamBatches(stream, batch_size=2, bptt_len=4))
    next(windows)
    x, y, mask = next(windows)
    state = np.random.default_rng(2).normal(0.0, 0.5, CONFIG.state_shape(2))
    return x, y, mask, state


def mean_ce_gradient(P: dict[str, np.ndarray], x, y, mask, state) -> dict[str, np.ndarray]:
    """Central finite differences of the reference's summed cost / the number of real tokens."""
    n = float(mask.sum())  # a float32 count would make the quotient float32

    def loss(name: str, value: np.ndarray) -> float:
        return reference_cost(CONFIG, {**P, name: value}, x, y, mask, state)[0] / n

    grads = {}
    for name, value in P.items():
        g = np.zeros_like(value)
        for ix in np.ndindex(value.shape):
            plus, minus = value.copy(), value.copy()
            plus[ix] += FD_STEP
            minus[ix] -= FD_STEP
            g[ix] = (loss(name, plus) - loss(name, minus)) / (2 * FD_STEP)
        grads[name] = g
    return grads


def load(engine: LMEngine, P: dict[str, np.ndarray]) -> None:
    for name, value in P.items():
        engine.params[name].set_value(value.copy())


def global_norm(grads: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum((g**2).sum() for g in grads.values())))


@pytest.mark.parametrize("batch", ["sentences", "stream"])
def test_engine_step_descends_the_mean_cross_entropy(engine, params, batch) -> None:
    """A padded sentence batch from the zero state, and a stream window from a carried state:
    the step is -lr times the gradient of the mean over real tokens (the summed cost would
    move it 10 and 8 times as far), and the step reports the cost before it."""
    if batch == "sentences":
        (x, y, mask), state = sentence_batch(), engine.initial_state(3)
    else:
        x, y, mask, state = stream_batch()
    load(engine, params)
    expected_cost, expected_state = reference_cost(CONFIG, params, x, y, mask, state)
    grads = mean_ce_gradient(params, x, y, mask, state)
    result = engine.train_step(x, y, mask, state)
    assert result.n_tokens == mask.sum()
    assert result.cost == pytest.approx(expected_cost, rel=1e-10)
    np.testing.assert_allclose(result.state, expected_state, rtol=1e-10, atol=1e-12)
    assert result.grad_norm == pytest.approx(global_norm(grads), rel=1e-6)
    after = engine.get_params()
    for name, value in params.items():
        np.testing.assert_allclose(after[name], value - LR * grads[name], rtol=0, atol=1e-8,
                                   err_msg=name)


def test_engine_step_honours_clip_norm_and_weight_decay(params) -> None:
    """A clip far below the gradient's norm: the parameters move by exactly lr * clip in global
    norm, along the gradient with the L2 term of the weight matrices (not of the biases)."""
    clip, decay = 1e-3, 0.1
    engine = LMEngine(CONFIG, params, mode="JAX", optimizer="sgd", learning_rate=LR,
                      clip_norm=clip, weight_decay=decay)
    x, y, mask = sentence_batch()
    grads = mean_ce_gradient(params, x, y, mask, engine.initial_state(3))
    grads = {name: g + decay * params[name] if g.ndim >= 2 else g for name, g in grads.items()}
    norm = global_norm(grads)
    assert norm > 100 * clip
    result = engine.train_step(x, y, mask, engine.initial_state(3))
    assert result.grad_norm == pytest.approx(norm, rel=1e-6)  # the norm before clipping
    after = engine.get_params()
    moves = {name: after[name] - value for name, value in params.items()}
    assert global_norm(moves) == pytest.approx(LR * clip, rel=1e-9)
    for name, move in moves.items():
        np.testing.assert_allclose(move, -LR * clip * grads[name] / norm, rtol=0, atol=1e-11,
                                   err_msg=name)


def test_engine_step_scales_only_the_recurrent_matrix_rate(params) -> None:
    """``recurrent_lr_scale``: the layer's Wh moves by 0.25 lr times its gradient, every
    other parameter (the input matrix Wx included) by lr times its own."""
    engine = LMEngine(CONFIG, params, mode="JAX", optimizer="sgd", learning_rate=LR,
                      recurrent_lr_scale=0.25)
    x, y, mask = sentence_batch()
    grads = mean_ce_gradient(params, x, y, mask, engine.initial_state(3))
    engine.train_step(x, y, mask, engine.initial_state(3))
    after = engine.get_params()
    for name, value in params.items():
        rate = LR * (0.25 if name == "l0_Wh" else 1.0)
        np.testing.assert_allclose(after[name], value - rate * grads[name], rtol=0, atol=1e-8,
                                   err_msg=name)


# --- the tutorial's step: SGD on one sentence's summed loss --------------------------------

WORDS, HIDDEN = 7, 4
X = np.array([0, 3, 6, 3, 2], dtype=np.int32)
Y = np.array([3, 6, 3, 2, 1], dtype=np.int32)


def tutorial_params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {"U": rng.uniform(-1, 1, (HIDDEN, WORDS)), "V": rng.uniform(-1, 1, (WORDS, HIDDEN)),
            "W": rng.uniform(-0.7, 0.7, (HIDDEN, HIDDEN))}


def summed_loss_gradient(P: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Finite differences of the numpy model's total loss over the one sentence."""
    grads = {}
    for name, value in P.items():
        g = np.zeros_like(value)
        for ix in np.ndindex(value.shape):
            losses = []
            for sign in (1, -1):
                moved = value.copy()
                moved[ix] += sign * FD_STEP
                model = RNNNumpy(WORDS, HIDDEN, -1, params={**P, name: moved})
                losses.append(model.calculate_total_loss([X], [Y]))
            g[ix] = (losses[0] - losses[1]) / (2 * FD_STEP)
        grads[name] = g
    return grads


@pytest.fixture(scope="module")
def tutorial_gradient() -> dict[str, np.ndarray]:
    return summed_loss_gradient(tutorial_params())


@pytest.mark.parametrize("impl, bptt_truncate", [("numpy", -1), ("numpy", len(X)),
                                                 ("theano", -1)])
def test_tutorial_sgd_step_follows_the_summed_loss(tutorial_gradient, impl, bptt_truncate):
    """Full BPTT (no truncation, or one longer than the sentence): U, V and W each move by
    -lr times the gradient of the sentence's summed cross-entropy."""
    P, lr = tutorial_params(), 0.05
    if impl == "numpy":
        model = RNNNumpy(WORDS, HIDDEN, bptt_truncate, params=P)
    else:
        model = RNNTheano(WORDS, HIDDEN, bptt_truncate, params=P,
                          mode=Mode(linker="py", optimizer="fast_compile"))
    before = RNNNumpy(WORDS, HIDDEN, -1, params=P).calculate_total_loss([X], [Y])
    assert model.sgd_step(X, Y, lr) == pytest.approx(before, rel=1e-12)
    after = model.params()
    for name, value in P.items():
        np.testing.assert_allclose(after[name], value - lr * tutorial_gradient[name], rtol=0,
                                   atol=1e-8, err_msg=name)
