"""The numpy reference RNN: forward shapes, loss at init, hand-written BPTT and its truncations.

Pure numpy: the PyTensor comparison lives with the PyTensor model's tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from rnn_theano.tutorial.numpy_rnn import RNNNumpy, init_params

C, H, T = 10, 6, 8  # a tiny model and an 8-word sentence: every gradient is cheap to check


@pytest.fixture
def sentence() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    return rng.integers(0, C, T), rng.integers(0, C, T)


def tiny(bptt_truncate: int = -1, **kwargs) -> RNNNumpy:
    # Larger weights than the tutorial's init, so that the recurrence (and therefore any
    # wrongly dropped or kept term) carries a clearly visible share of the gradient.
    params = {k: 3 * v for k, v in init_params(C, H, np.random.default_rng(7)).items()}
    return RNNNumpy(C, H, bptt_truncate, params=params, **kwargs)


def assert_grads_close(a: list[np.ndarray], b: list[np.ndarray], atol: float = 1e-12) -> None:
    for name, ga, gb in zip("UVW", a, b):
        np.testing.assert_allclose(ga, gb, rtol=0, atol=atol, err_msg=f"d{name}")


def grads_differ(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return max(np.abs(ga - gb).max() for ga, gb in zip(a, b)) > 1e-3


# ----- an independent truncated-gradient oracle ---------------------------------------------

def frozen_window_gradient(model: RNNNumpy, x, y, outputs, window_start, h: float = 1e-5):
    """Central-difference gradient of ``sum_{t in outputs} -log o_t[y_t]`` where the state
    entering step ``window_start(t)`` is frozen at its value under the unperturbed model.

    That is the definition of both truncations: output t's error reaches the parameters only
    through steps ``window_start(t) .. t``. Written without the model's backward pass.
    """
    f = np.tanh if model.activation == "tanh" else (lambda a: np.maximum(a, 0.0))
    _, s_true = model.forward_propagation(x)
    P = {k: v.copy() for k, v in model.params().items()}

    def loss() -> float:
        total = 0.0
        for t in outputs:
            start = window_start(t)
            state = s_true[start - 1].copy()  # s_true[-1] is the zero initial state
            for step in range(start, t + 1):
                state = f(P["U"][:, x[step]] + P["W"] @ state)
            z = P["V"] @ state
            total -= z[y[t]] - np.log(np.exp(z - z.max()).sum()) - z.max()
        return total

    grads = []
    for name in "UVW":
        g = np.zeros_like(P[name])
        for ix in np.ndindex(g.shape):
            orig = P[name][ix]
            P[name][ix] = orig + h
            plus = loss()
            P[name][ix] = orig - h
            minus = loss()
            P[name][ix] = orig
            g[ix] = (plus - minus) / (2 * h)
        grads.append(g)
    return grads


# ----- construction and forward pass --------------------------------------------------------

def test_init_params_shapes_ranges_and_draw_order():
    p = init_params(C, H, np.random.default_rng(0))
    assert {k: v.shape for k, v in p.items()} == {"U": (H, C), "V": (C, H), "W": (H, H)}
    assert all(v.dtype == np.float64 for v in p.values())
    assert np.abs(p["U"]).max() <= 1 / np.sqrt(C) and np.abs(p["W"]).max() <= 1 / np.sqrt(H)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(p["U"], rng.uniform(-1 / np.sqrt(C), 1 / np.sqrt(C), (H, C)))


def test_constructor_seed_and_params():
    a, b = RNNNumpy(C, H, seed=3), RNNNumpy(C, H, seed=3)
    np.testing.assert_array_equal(a.W, b.W)
    assert not np.array_equal(a.W, RNNNumpy(C, H, seed=4).W)
    given = init_params(C, H, np.random.default_rng(1))
    m = RNNNumpy(C, H, params=given)
    np.testing.assert_array_equal(m.params()["V"], given["V"])
    assert m.V is not given["V"]  # copied: training the model leaves the caller's arrays alone
    with pytest.raises(ValueError, match="shape"):
        RNNNumpy(C + 1, H, params=given)


@pytest.mark.parametrize("kwargs", [{"truncation": "theano"}, {"activation": "sigmoid"},
                                    {"truncation": "scan", "bptt_truncate": 0}])
def test_constructor_rejects_unknown_settings(kwargs):
    with pytest.raises(ValueError):
        RNNNumpy(C, H, **kwargs)


def test_forward_propagation_shapes(sentence):
    x, _ = sentence
    o, s = RNNNumpy(C, H).forward_propagation(x)
    assert o.shape == (T, C) and s.shape == (T + 1, H)
    np.testing.assert_array_equal(s[-1], 0.0)  # the tutorial's s_{-1} = 0 row
    np.testing.assert_allclose(o.sum(axis=1), 1.0)
    assert RNNNumpy(C, H).predict(x).shape == (T,)


def test_initial_loss_is_close_to_ln_vocab_size():
    vocab = 8000
    rng = np.random.default_rng(0)
    lengths = [12, 7, 20, 15]
    X = [rng.integers(0, vocab, n) for n in lengths]
    Y = [rng.integers(0, vocab, n) for n in lengths]
    model = RNNNumpy(vocab, 100)
    loss = model.calculate_loss(X, Y)
    assert abs(loss - np.log(vocab)) < 0.1
    assert model.calculate_total_loss(X, Y) == pytest.approx(loss * sum(lengths))


def test_sgd_step_lowers_the_loss(sentence):
    x, y = sentence
    model = RNNNumpy(C, H)  # the tutorial's settings: tanh, bptt_truncate=4
    before = model.calculate_loss([x], [y])
    model.sgd_step(x, y, 0.005)
    assert model.calculate_loss([x], [y]) < before


# ----- gradient check (full BPTT) -----------------------------------------------------------

# relu has a kink at 0: a finite difference across it averages the two slopes, so a check
# is only meaningful when no pre-activation lies within a few h of 0. Seed 8 is such a model
# for this sentence (seed 0 has a pre-activation of 4e-4 and rightly fails the check).
@pytest.mark.parametrize(("activation", "seed"), [("tanh", 0), ("relu", 8)])
@pytest.mark.parametrize("truncation", ["tutorial", "scan"])
def test_gradient_check_passes_for_full_bptt(sentence, activation, seed, truncation):
    x, y = sentence
    model = RNNNumpy(C, H, bptt_truncate=-1, activation=activation, truncation=truncation,
                     seed=seed)
    _, s = model.forward_propagation(x)
    pre_activations = np.array([model.U[:, x[t]] + model.W @ s[t - 1] for t in range(T)])
    assert np.abs(pre_activations).min() > 10 * 0.001  # the default h, far from any kink
    before = {k: v.copy() for k, v in model.params().items()}
    assert model.gradient_check(x, y) < 1e-3  # 10x inside the 0.01 threshold
    for k, v in model.params().items():  # every perturbed entry was restored
        np.testing.assert_array_equal(v, before[k])


def test_gradient_check_fails_loudly_on_a_wrong_gradient(sentence, monkeypatch):
    x, y = sentence
    model = RNNNumpy(C, H, bptt_truncate=-1)
    right = model.bptt
    monkeypatch.setattr(model, "bptt", lambda x, y: [1.1 * g for g in right(x, y)])
    with pytest.raises(AssertionError, match=r"U\[\d+, \d+\]"):
        model.gradient_check(x, y)


@pytest.mark.parametrize("truncation", ["tutorial", "scan"])
def test_gradient_check_refuses_an_active_truncation(sentence, truncation):
    x, y = sentence
    with pytest.raises(ValueError, match="bptt_truncate=-1"):
        RNNNumpy(C, H, bptt_truncate=4, truncation=truncation).gradient_check(x, y)


# ----- truncation "tutorial" ----------------------------------------------------------------

@pytest.mark.parametrize("k", [T - 1, T, 100])
def test_tutorial_truncation_at_least_T_minus_1_is_full_bptt(sentence, k):
    x, y = sentence
    assert_grads_close(tiny(k).bptt(x, y), tiny(-1).bptt(x, y))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("k", [0, 1, 2, 4])
def test_tutorial_truncation_matches_frozen_state_oracle(sentence, k, activation):
    x, y = sentence
    model = tiny(k, activation=activation)
    got = model.bptt(x, y)
    assert grads_differ(got, tiny(-1, activation=activation).bptt(x, y))
    # Output t reaches steps max(0, t-k) .. t; the state before them is a constant.
    expected = frozen_window_gradient(model, x, y, range(T), lambda t: max(0, t - k))
    assert_grads_close(got, expected, atol=1e-6)


# ----- truncation "scan" --------------------------------------------------------------------

@pytest.mark.parametrize("k", [T, 100])
def test_scan_truncation_at_least_T_is_full_bptt(sentence, k):
    x, y = sentence
    assert_grads_close(tiny(k, truncation="scan").bptt(x, y), tiny(-1).bptt(x, y))


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("k", [1, 2, 4, T - 1])
def test_scan_truncation_matches_frozen_state_oracle(sentence, k, activation):
    x, y = sentence
    model = tiny(k, truncation="scan", activation=activation)
    got = model.bptt(x, y)
    assert grads_differ(got, tiny(-1, activation=activation).bptt(x, y))
    # Only the last k outputs count, through the last k steps; s_{T-k-1} is a constant.
    expected = frozen_window_gradient(model, x, y, range(T - k, T), lambda t: T - k)
    assert_grads_close(got, expected, atol=1e-6)


@pytest.mark.parametrize("k", [1, 4, T - 1])
def test_scan_truncation_ignores_outputs_before_the_window(sentence, k):
    x, y = sentence
    model = tiny(k, truncation="scan")
    y_changed = y.copy()
    y_changed[: T - k] = (y[: T - k] + 1) % C
    assert_grads_close(model.bptt(x, y), model.bptt(x, y_changed), atol=0)
    # ... while the tutorial's truncation uses every output.
    tutorial = tiny(k)
    assert grads_differ(tutorial.bptt(x, y), tutorial.bptt(x, y_changed))
