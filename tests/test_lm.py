"""The language-model graph in float64: gradients, an independent forward pass, masking.

Every cell, one and two layers, both directions (plus tied weights, with and without a
projection onto the embedding, a bias-free cell and the class-based softmax), at
the sizes C=7, E=4, H=5, T=4, B=2 (B=3 for masking). Each architecture's graph is compiled
once, with PyTensor's Python linker: these graphs are tiny, and the Python linker compiles in
about a second where Numba would take tens of seconds per graph on a cold cache (the Numba
path is exercised in test_engine.py).
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytest
from pytensor.compile.mode import Mode

from lm_reference import reference_cost
from rnn_theano.errors import SettingError, UserError
from rnn_theano.tasks.lm_graph import LMConfig, build_lm, check_lm_params, init_lm_params, shared_params

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

PY_MODE = Mode(linker="py", optimizer="fast_compile")
C, E, H, T, B = 7, 4, 5, 4, 2

CONFIGS = {f"{cell}-{layers}x{'bi' if bi else 'uni'}":
           LMConfig(cell=cell, vocab_size=C, embed_dim=E, hidden_dim=H, layers=layers,
                    bidirectional=bi, float32=False, seed=3)
           for cell in ("rnn", "relu", "gru", "lstm") for layers in (1, 2) for bi in (False, True)}
CONFIGS["rnn-tied-nobias"] = LMConfig(cell="rnn", vocab_size=C, embed_dim=H, hidden_dim=H,
                                      tie_weights=True, no_bias=True, float32=False, seed=4)
CONFIGS["lstm-2xbi-tied"] = LMConfig(cell="lstm", vocab_size=C, embed_dim=2 * H, hidden_dim=H,
                                     layers=2, bidirectional=True, tie_weights=True,
                                     float32=False, seed=5)
CONFIGS["rnn-tied-projected"] = LMConfig(cell="rnn", vocab_size=C, embed_dim=E, hidden_dim=H,
                                         tie_weights=True, float32=False, seed=8)
CONFIGS["gru-2xbi-tied-projected"] = LMConfig(cell="gru", vocab_size=C, embed_dim=E,
                                              hidden_dim=H, layers=2, bidirectional=True,
                                              tie_weights=True, float32=False, seed=9)
CONFIGS["gru-2xuni-classes"] = LMConfig(cell="gru", vocab_size=C, embed_dim=E, hidden_dim=H,
                                        layers=2, softmax_classes=3, float32=False, seed=6)
CONFIGS["lstm-1xbi-classes"] = LMConfig(cell="lstm", vocab_size=C, embed_dim=E, hidden_dim=H,
                                        bidirectional=True, softmax_classes=2, float32=False,
                                        seed=7)


class Compiled:
    """One architecture: its shared parameters and f(x, y, mask, state) -> cost, n, final, grads."""

    def __init__(self, config: LMConfig) -> None:
        self.config = config
        self.params = shared_params(init_lm_params(config))
        # Non-zero biases, so a bias that the graph ignored would show.
        for name, p in self.params.items():
            if p.get_value().ndim == 1:
                p.set_value(np.random.default_rng(len(name)).normal(0, 0.3, p.get_value().shape))
        g = build_lm(config, self.params)
        grads = pytensor.grad(g.cost, list(self.params.values()))
        self.fn = pytensor.function([g.x, g.y, g.mask, g.state],
                                    [g.cost, g.n_tokens, g.final_state, *grads], mode=PY_MODE)

    def __call__(self, x, y, mask, state):
        cost, n, final, *grads = self.fn(x, y, mask, state)
        return float(cost), float(n), final, dict(zip(self.params, grads))

    def values(self) -> dict[str, np.ndarray]:
        return {k: p.get_value() for k, p in self.params.items()}


@pytest.fixture(scope="module", params=list(CONFIGS), ids=list(CONFIGS))
def model(request) -> Compiled:
    return Compiled(CONFIGS[request.param])


def _batch(config: LMConfig, lengths: list[int], seed: int = 0):
    """Right-padded random (x, y, mask) with rows of ``lengths``, and a random initial state."""
    rng = np.random.default_rng(seed)
    T_, B_ = max(lengths), len(lengths)
    x = rng.integers(0, C, (T_, B_)).astype(np.int32)
    y = rng.integers(0, C, (T_, B_)).astype(np.int32)
    mask = (np.arange(T_)[:, None] < np.array(lengths)[None, :]).astype(float)
    state = rng.normal(0, 0.5, config.state_shape(B_))
    return x, y, mask, state


def test_gradients_match_finite_differences(model: Compiled) -> None:
    x, y, mask, state = _batch(model.config, [T, T - 1])
    _, _, _, grads = model(x, y, mask, state)
    rng = np.random.default_rng(1)
    eps = 1e-5
    for name, p in model.params.items():
        # The directional derivative along a random direction checks every entry at once.
        theta = p.get_value()
        v = rng.normal(size=theta.shape)
        p.set_value(theta + eps * v)
        up = model(x, y, mask, state)[0]
        p.set_value(theta - eps * v)
        down = model(x, y, mask, state)[0]
        p.set_value(theta)
        numeric, analytic = (up - down) / (2 * eps), float((grads[name] * v).sum())
        assert abs(numeric - analytic) <= 1e-6 * max(1.0, abs(analytic)), name


def test_loss_matches_independent_numpy_forward(model: Compiled) -> None:
    x, y, mask, state = _batch(model.config, [T, T - 2], seed=2)
    cost, n, final, _ = model(x, y, mask, state)
    expected_cost, expected_final = reference_cost(model.config, model.values(), x, y, mask, state)
    assert n == 2 * T - 2
    assert cost == pytest.approx(expected_cost, rel=1e-10)
    np.testing.assert_allclose(final, expected_final, rtol=1e-10, atol=1e-12)


def test_padded_batch_equals_sentences_one_by_one(model: Compiled) -> None:
    lengths = [2, T, 3]
    x, y, mask, _ = _batch(model.config, lengths, seed=3)
    state = np.zeros(model.config.state_shape(3))
    cost, n, final, grads = model(x, y, mask, state)
    one_cost, one_grads = 0.0, {k: 0.0 for k in grads}
    for b, length in enumerate(lengths):
        c, _, f, g = model(x[:length, b:b + 1], y[:length, b:b + 1], mask[:length, b:b + 1],
                           state[:, :, b:b + 1])
        one_cost += c
        one_grads = {k: one_grads[k] + g[k] for k in grads}
        np.testing.assert_allclose(final[:, :, b:b + 1], f, rtol=1e-12, atol=1e-14)
    assert n == sum(lengths)
    assert cost == pytest.approx(one_cost, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], one_grads[k], rtol=1e-9, atol=1e-12, err_msg=k)


def test_bidirectional_prediction_never_reads_its_target() -> None:
    """Changing y[t] changes no log-probability at position t (only those before it)."""
    config = CONFIGS["gru-2xbi"]
    params = shared_params(init_lm_params(config))
    g = build_lm(config, params)
    fn = pytensor.function([g.x, g.y, g.mask, g.state], g.log_probs, mode=PY_MODE)
    x, y, mask, state = _batch(config, [T, T])
    base = fn(x, y, mask, state)
    for t in range(T):
        y2 = y.copy()
        y2[t, 0] = (y[t, 0] + 1) % C
        changed = np.abs(fn(x, y2, mask, state) - base).max(axis=2)[:, 0] > 0  # (T,) row 0
        assert list(changed) == [s < t for s in range(T)], t


def test_config_refuses_bad_combinations() -> None:
    with pytest.raises(SettingError, match="cell 'transformer' is unknown"):
        LMConfig(cell="transformer")
    with pytest.raises(SettingError, match="dropout must be in"):
        LMConfig(dropout=1.0)
    with pytest.raises(SettingError, match="identity_init is for the relu cell"):
        LMConfig(cell="gru", identity_init=True)


def test_parameter_names_and_shapes() -> None:
    config = CONFIGS["lstm-2xbi"]
    params = init_lm_params(config)
    assert params["embed"].shape == (C, E)
    assert params["l0_Wx"].shape == (E, 4 * H) and params["l1_Wx"].shape == (H, 4 * H)
    assert params["back1_Wh"].shape == (H, 4 * H) and params["back0_b"].shape == (4 * H,)
    assert params["out_W"].shape == (2 * H, C) and params["out_b"].shape == (C,)
    tied = init_lm_params(CONFIGS["lstm-2xbi-tied"])
    assert "out_W" not in tied and "proj_W" not in tied
    projected = init_lm_params(CONFIGS["gru-2xbi-tied-projected"])
    assert "out_W" not in projected and projected["proj_W"].shape == (2 * H, E)
    check_lm_params(config, params)
    with pytest.raises(UserError, match="l1_Wh"):
        check_lm_params(config, {**params, "l1_Wh": np.zeros((H, H))})
    with pytest.raises(UserError, match="unexpected"):
        check_lm_params(config, {**params, "extra": np.zeros(1)})


@pytest.mark.parametrize("name", ["gru-2xuni-classes", "lstm-1xbi-classes"])
def test_class_softmax_is_a_distribution_and_the_cost_reads_it(name) -> None:
    """exp(log_probs) sums to 1 over the C words (padding gets nothing), and the cheap
    target-class path of the cost gives exactly the full distribution's target entries."""
    config = CONFIGS[name]
    params = shared_params(init_lm_params(config))
    for p in params.values():  # biases away from zero, so the padding mask has work to do
        if p.get_value().ndim == 1:
            p.set_value(np.random.default_rng(0).normal(0, 1.0, p.get_value().shape))
    g = build_lm(config, params)
    fn = pytensor.function([g.x, g.y, g.mask, g.state], [g.cost, g.log_probs], mode=PY_MODE)
    x, y, mask, state = _batch(config, [T, T - 1], seed=4)
    cost, log_probs = fn(x, y, mask, state)
    assert log_probs.shape == (T, 2, C)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=2), 1.0, rtol=1e-12)
    target = np.take_along_axis(log_probs, y[:, :, None], axis=2)[:, :, 0]
    assert cost == pytest.approx(-(target * mask).sum(), rel=1e-12)


def test_class_softmax_parameters_and_refusals() -> None:
    config = CONFIGS["gru-2xuni-classes"]  # C = 7 words in K = 3 classes of M = 3 (2 padding)
    params = init_lm_params(config)
    assert config.class_size == 3 and config.output_size == 9
    assert params["class_W"].shape == (H, 3) and params["class_b"].shape == (3,)
    assert params["out_W"].shape == (H, 9) and params["out_b"].shape == (9,)
    with pytest.raises(UserError, match="between 2 and"):
        LMConfig(vocab_size=10, softmax_classes=11)
    with pytest.raises(UserError, match="cannot be combined"):
        LMConfig(vocab_size=10, embed_dim=8, hidden_dim=8, tie_weights=True, softmax_classes=3)
