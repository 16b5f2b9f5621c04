"""The engine's dropout: inverted scaling, fresh masks, and none at all in evaluation.

``_Dropout`` is compiled on its own over a large input, so its statistics are checked with
bounds of five standard deviations (the seeds are fixed: the numbers never change between
runs; the bounds say how far a correct implementation could be, and a wrong scale, keep
probability or reused mask lands far outside them). Then the engine: evaluation with dropout
configured is the deterministic model without it.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytensor.tensor.random as ptr
import pytest
from pytensor.compile.mode import Mode

from lm_reference import reference_cost
from rnn_theano import backends
from rnn_theano.tasks.lm_engine import LMEngine
from rnn_theano.tasks.lm_graph import LMConfig, _Dropout, init_lm_params

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

RATE = 0.3
KEEP = 1.0 - RATE
SHAPE = (40, 50, 100)  # (T, B, H): 200,000 units
N = int(np.prod(SHAPE))
MODES = {"python": Mode(linker="py", optimizer="fast_compile"), "JAX": "JAX"}


def compiled_dropout(mode_name: str):
    """f(h) -> two dropout draws of h in one graph, the generator advanced at every call."""
    if mode_name == "JAX":
        backends.prepare("JAX")
    config = LMConfig(cell="rnn", vocab_size=4, dropout=RATE, float32=False)
    drop = _Dropout(config, ptr.shared_rng(seed=3, name="rng"))
    h = pt.tensor("h", dtype="float64", shape=SHAPE)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The RandomType SharedVariables")  # JAX's copy
        return pytensor.function([h], [drop(h), drop(h)], updates=drop.updates(),
                                 mode=MODES[mode_name])


@pytest.fixture(scope="module", params=list(MODES))
def draws(request) -> list[np.ndarray]:
    """Three calls' outputs (two draws each) on h = 1 + position, every draw's kept units
    divided back by h: each entry is then 0 or the scale."""
    h = 1.0 + np.arange(N, dtype=np.float64).reshape(SHAPE) / N
    f = compiled_dropout(request.param)
    return [np.asarray(out) / h for _ in range(3) for out in f(h)]


def five_sigma(p: float, n: int) -> float:
    """Five standard deviations of the mean of n Bernoulli(p) draws."""
    return 5 * np.sqrt(p * (1 - p) / n)


def test_units_are_dropped_or_scaled_by_one_over_keep(draws) -> None:
    """Each unit is 0 or exactly h / keep, and a fraction keep of them is kept."""
    for d in draws:
        kept = d != 0
        np.testing.assert_allclose(d[kept], 1.0 / KEEP, rtol=1e-12)
        assert abs(kept.mean() - KEEP) < five_sigma(KEEP, N)


def test_expected_activation_is_preserved(draws) -> None:
    """E[drop(h)] = h: the mean of drop(h) / h is 1 within five standard deviations (the
    variance of one unit is (1 - keep) / keep). Without the 1/keep factor it would be 0.7."""
    bound = 5 * np.sqrt((1 - KEEP) / KEEP / N)
    for d in draws:
        assert abs(d.mean() - 1.0) < bound
    # and at every time step separately: B * H units in each of the six draws
    per_step = np.stack(draws).mean(axis=(0, 2, 3))
    n = SHAPE[1] * SHAPE[2] * len(draws)
    assert np.all(np.abs(per_step - 1.0) < 5 * np.sqrt((1 - KEEP) / KEEP / n))


def test_masks_are_independent_across_calls_draws_and_positions(draws) -> None:
    """Two masks agree on a unit with probability keep^2 + (1 - keep)^2 = 0.58 when they are
    independent, 1 when one is reused: between calls, between the two draws of one graph,
    between time steps, batch rows and hidden units."""
    masks = [d != 0 for d in draws]
    agree = KEEP**2 + RATE**2
    pairs = [(masks[0], masks[1]),  # two draws of one call
             (masks[0], masks[2]),  # the same draw in two calls
             (masks[0][1:], masks[0][:-1]),  # neighbouring time steps
             (masks[0][:, 1:], masks[0][:, :-1]),  # neighbouring rows of the batch
             (masks[0][..., 1:], masks[0][..., :-1])]  # neighbouring hidden units
    for a, b in pairs:
        assert abs((a == b).mean() - agree) < five_sigma(agree, a.size)


def test_no_generator_or_rate_zero_is_the_identity() -> None:
    h = pt.matrix("h", dtype="float64")
    with_rate = LMConfig(cell="rnn", vocab_size=4, dropout=0.5, float32=False)
    without = LMConfig(cell="rnn", vocab_size=4, dropout=0.0, float32=False)
    assert _Dropout(with_rate, None)(h) is h  # evaluation graphs
    drop = _Dropout(without, ptr.shared_rng(seed=0))
    assert drop(h) is h and drop.updates() == {}


# --- through the engine --------------------------------------------------------------------

C = 7


def batch(config: LMConfig) -> tuple[np.ndarray, ...]:
    """Three rows of 6 steps, one of them padded after 4, and a carried state."""
    rng = np.random.default_rng(5)
    x, y = rng.integers(0, C, (2, 6, 3)).astype(np.int32)
    mask = np.ones((6, 3))
    mask[4:, 1] = 0.0
    return x, y, mask, rng.normal(0.0, 0.5, config.state_shape(3))


@pytest.fixture(scope="module")
def engines() -> tuple[LMEngine, LMEngine, dict[str, np.ndarray]]:
    """The same parameters in a model with dropout 0.5 and in one without."""
    backends.prepare("JAX")
    config = LMConfig(cell="lstm", vocab_size=C, embed_dim=4, hidden_dim=4, layers=2,
                      dropout=0.5, float32=False, seed=2)
    params = init_lm_params(config)
    plain = dataclasses.replace(config, dropout=0.0)
    return (LMEngine(config, params, mode="JAX", learning_rate=0.0),
            LMEngine(plain, params, mode="JAX"), params)


def test_evaluation_is_the_model_without_dropout(engines) -> None:
    """eval_step and log_probs with dropout configured: deterministic, the same numbers as the
    model without dropout, and the numpy reference's cost."""
    dropped, plain, params = engines
    x, y, mask, state = batch(dropped.config)
    first, again, other = (e.eval_step(x, y, mask, state) for e in (dropped, dropped, plain))
    assert first.cost == again.cost == other.cost
    np.testing.assert_array_equal(first.state, other.state)
    expected, _ = reference_cost(plain.config, params, x, y, mask, state)
    assert first.cost == pytest.approx(expected, rel=1e-10)
    log_p, _ = dropped.log_probs(x, y, mask, state)
    picked = np.take_along_axis(log_p, y[:, :, None], axis=2)[:, :, 0]
    assert -(picked * mask).sum() == pytest.approx(expected, rel=1e-10)


def test_training_draws_a_new_mask_at_every_step(engines) -> None:
    """With lr 0 the parameters stay put, so the training costs differ only by their masks:
    every step's differs from the others and from the evaluation cost."""
    dropped, _, params = engines
    x, y, mask, state = batch(dropped.config)
    costs = [dropped.train_step(x, y, mask, state).cost for _ in range(4)]
    evaluated = dropped.eval_step(x, y, mask, state).cost
    assert len(set(costs + [evaluated])) == 5
    for name, value in dropped.get_params().items():
        np.testing.assert_array_equal(value, params[name])


def test_word_dropout_zeroes_whole_words_and_keeps_the_expectation() -> None:
    """A classifier's word dropout alone (no unit dropout): each word's vector is all zeros or
    all scaled by 1/keep, a fraction keep of the words is kept, the expected input is the
    input, and the mask is not shared between words or rows; evaluation draws nothing."""
    from rnn_theano.tasks.classify_graph import ClassifierConfig
    config = ClassifierConfig(cell="rnn", vocab_size=4, float32=False, word_dropout=RATE)
    assert config.draws_masks and ClassifierConfig(cell="rnn", dropout=0.0).draws_masks is False
    drop = _Dropout(config, ptr.shared_rng(seed=5, name="rng"))
    e = pt.tensor("e", dtype="float64", shape=(200, 100, 8))
    f = pytensor.function([e], drop.words(e), updates=drop.updates(), mode=MODES["python"])
    h = 1.0 + np.arange(200 * 100 * 8, dtype=np.float64).reshape(200, 100, 8) / 1e5
    ratio = np.asarray(f(h)) / h
    word_kept = ratio[..., 0] != 0
    np.testing.assert_allclose(ratio[word_kept], 1.0 / KEEP, rtol=1e-12)  # whole vectors
    assert np.all(ratio[~word_kept] == 0)
    n = word_kept.size
    assert abs(word_kept.mean() - KEEP) < five_sigma(KEEP, n)
    assert abs(ratio.mean() - 1.0) < 5 * np.sqrt((1 - KEEP) / KEEP / n)
    agree = KEEP**2 + RATE**2
    for a, b in ((word_kept[1:], word_kept[:-1]), (word_kept[:, 1:], word_kept[:, :-1])):
        assert abs((a == b).mean() - agree) < five_sigma(agree, a.size)
    assert _Dropout(config, None).words(e) is e  # evaluation graphs have no generator


# --- variational, recurrent and embedding dropout (Gal & Ghahramani 2016; Merity et al.) ----

VARIATIONAL = LMConfig(cell="lstm", vocab_size=C, embed_dim=4, hidden_dim=4, layers=2,
                       dropout=0.5, variational_dropout=True, recurrent_dropout=0.4,
                       embed_dropout=0.3, float32=False, seed=2)


def locked_draws(mode_name: str) -> list[np.ndarray]:
    """Two calls' locked masks on ones (T, B, H) = (30, 40, 50), and two recurrent (B, H)
    masks, from one compiled function; the generator advances between calls."""
    if mode_name in ("JAX", "NUMBA"):
        backends.prepare(mode_name)
    drop = _Dropout(VARIATIONAL, ptr.shared_rng(seed=4, name="rng"))
    h = pt.tensor("h", dtype="float64", shape=(30, 40, 50))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The RandomType SharedVariables")
        f = pytensor.function([h], [drop(h), drop.recurrent(40, 50)], updates=drop.updates(),
                              mode=MODES.get(mode_name, mode_name))
    return [np.asarray(out) for _ in range(2) for out in f(np.ones((30, 40, 50)))]


@pytest.mark.parametrize("mode_name", ["python", "NUMBA", "JAX"])
def test_variational_masks_are_one_per_sequence_and_keep_the_expectation(mode_name) -> None:
    """Locked masks: every step of a row drops the same units; rows differ; kept units are
    scaled by 1/keep so the mean is 1; a new mask at the next call. The recurrent mask is
    one (B, H) draw per call at its own rate."""
    locked, recurrent, locked2, _ = locked_draws(mode_name)
    assert np.all(locked == locked[:1])  # the same at every step
    assert not np.array_equal(locked[0, 0], locked[0, 1])  # rows differ
    assert not np.array_equal(locked, locked2)  # steps differ
    assert set(np.unique(locked)) == {0.0, 2.0}
    assert abs(locked[0].mean() - 1.0) < 2 * five_sigma(0.5, 40 * 50)
    keep = 1.0 - VARIATIONAL.recurrent_dropout
    assert np.allclose(np.unique(recurrent), [0.0, 1.0 / keep])
    assert abs((recurrent > 0).mean() - keep) < five_sigma(keep, 40 * 50)


def test_a_locked_mask_on_one_vector_per_sequence_is_one_per_unit() -> None:
    """A (B, H) input, one vector per sequence (the classifier's sentence vector), gets a mask
    per unit and row under locked dropout: there are no steps to share one across."""
    drop = _Dropout(VARIATIONAL, ptr.shared_rng(seed=4, name="rng"))
    v = pt.tensor("v", dtype="float64", shape=(40, 50))
    f = pytensor.function([v], drop(v), updates=drop.updates(), mode=MODES["python"])
    dropped = np.asarray(f(np.ones((40, 50))))
    assert set(np.unique(dropped)) == {0.0, 2.0}
    assert not np.array_equal(dropped[0], dropped[1])


def test_jax_and_numba_masks_agree_in_distribution() -> None:
    """From the same generator state the two backends draw masks of the same kind: locked
    over time, the same values, rates within five standard deviations of each other. Not
    bit for bit: JAX turns numpy's generator state into a key of its own generator."""
    jax, numba = (locked_draws(m)[:2] for m in ("JAX", "NUMBA"))
    for a, b in zip(jax, numba):
        a, b = (m[0] if m.ndim == 3 else m for m in (a, b))  # one step's (B, H)
        assert a.shape == b.shape and set(np.unique(a)) == set(np.unique(b))
        p = (a > 0).mean()
        assert abs(p - (b > 0).mean()) < 2 * five_sigma(p, a.size)


@pytest.fixture(scope="module")
def variational_engines() -> tuple[LMEngine, LMEngine, dict[str, np.ndarray]]:
    backends.prepare("JAX")
    params = init_lm_params(VARIATIONAL)
    plain = dataclasses.replace(VARIATIONAL, dropout=0.0, variational_dropout=False,
                                recurrent_dropout=0.0, embed_dropout=0.0)
    return (LMEngine(VARIATIONAL, params, mode="JAX", learning_rate=0.0),
            LMEngine(plain, params, mode="JAX"), params)


def test_variational_dropout_is_the_identity_in_evaluation(variational_engines) -> None:
    """Evaluation with every kind of dropout configured is the model without it; training
    draws new masks at every step."""
    dropped, plain, params = variational_engines
    x, y, mask, state = batch(dropped.config)
    assert dropped.eval_step(x, y, mask, state).cost == plain.eval_step(x, y, mask, state).cost
    expected, _ = reference_cost(plain.config, params, x, y, mask, state)
    assert dropped.eval_step(x, y, mask, state).cost == pytest.approx(expected, rel=1e-10)
    costs = {dropped.train_step(x, y, mask, state).cost for _ in range(3)}
    assert len(costs) == 3 and expected not in costs


def test_embedding_dropout_drops_every_occurrence_of_a_word_alike() -> None:
    """A batch that repeats two words many times: each word's rows are all kept (scaled by
    1/keep) or all zero, within the batch."""
    config = LMConfig(cell="rnn", vocab_size=50, embed_dim=6, embed_dropout=0.5, float32=False)
    drop = _Dropout(config, ptr.shared_rng(seed=1, name="rng"))
    x = pt.tensor("x", dtype="int32", shape=(20, 30))
    embed = np.random.default_rng(0).normal(size=(50, 6))
    f = pytensor.function([x], drop.embedded(pt.constant(embed), x), updates=drop.updates(),
                          mode=MODES["python"])
    ids = np.random.default_rng(1).integers(0, 50, (20, 30)).astype(np.int32)
    ratio = np.asarray(f(ids)) / embed[ids]
    for word in np.unique(ids):
        values = ratio[ids == word]
        assert np.allclose(values, 0.0) or np.allclose(values, 2.0), word
    kept = [np.allclose(ratio[ids == w], 2.0) for w in np.unique(ids)]
    assert 0 < sum(kept) < len(kept)


def test_variational_dropout_needs_a_rate() -> None:
    from rnn_theano.errors import SettingError
    with pytest.raises(SettingError, match="variational_dropout"):
        LMConfig(cell="lstm", vocab_size=C, variational_dropout=True)
    with pytest.raises(SettingError, match="recurrent_dropout"):
        LMConfig(cell="lstm", vocab_size=C, recurrent_dropout=1.0)


# --- weight drop: DropConnect on the recurrent matrices (Wan et al. 2013; Merity et al.) -----

WEIGHT_DROP = LMConfig(cell="rnn", vocab_size=C, embed_dim=2, hidden_dim=2, layers=2,
                       weight_drop=0.5, float32=False, seed=3)
# Every way to thin one of its 2x2 recurrent matrices: 2^4 masks, kept entries scaled by 2.
WH_MASKS = [np.reshape(m, (2, 2)) for m in itertools.product([0.0, 2.0], repeat=4)]


@pytest.mark.parametrize("mode_name", ["python", "NUMBA", "JAX"])
def test_weight_drop_keeps_each_entry_scaled_or_drops_it(mode_name) -> None:
    """``_Dropout.weights`` on a (200, 300) matrix, in each backend: every entry is 0 or
    W / keep, a fraction keep is kept, the expected matrix is W, and the next call draws a
    new mask."""
    if mode_name != "python":
        backends.prepare(mode_name)
    config = dataclasses.replace(WEIGHT_DROP, weight_drop=RATE)
    drop = _Dropout(config, ptr.shared_rng(seed=6, name="rng"))
    W = pt.tensor("W", dtype="float64", shape=(200, 300))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The RandomType SharedVariables")
        f = pytensor.function([W], drop.weights(W), updates=drop.updates(),
                              mode=MODES.get(mode_name, mode_name))
    w = 1.0 + np.arange(200 * 300, dtype=np.float64).reshape(200, 300) / 1e5
    first, second = (np.asarray(f(w)) / w for _ in range(2))
    for ratio in (first, second):
        kept = ratio != 0
        np.testing.assert_allclose(ratio[kept], 1.0 / KEEP, rtol=1e-12)
        assert abs(kept.mean() - KEEP) < five_sigma(KEEP, w.size)
        assert abs(ratio.mean() - 1.0) < 5 * np.sqrt((1 - KEEP) / KEEP / w.size)
    agree = KEEP**2 + RATE**2
    assert abs(((first != 0) == (second != 0)).mean() - agree) < five_sigma(agree, w.size)
    assert _Dropout(config, None).weights(W) is W  # evaluation graphs have no generator


def thinned_costs(params: dict[str, np.ndarray], x, y, mask, state) -> dict[tuple, float]:
    """The reference cost of the model without weight drop for each way of thinning its two
    recurrent matrices (``WH_MASKS`` for each): brute force."""
    plain = dataclasses.replace(WEIGHT_DROP, weight_drop=0.0)
    costs = {}
    for i, m0 in enumerate(WH_MASKS):
        for j, m1 in enumerate(WH_MASKS):
            thinned = dict(params, l0_Wh=params["l0_Wh"] * m0, l1_Wh=params["l1_Wh"] * m1)
            costs[(i, j)] = reference_cost(plain, thinned, x, y, mask, state)[0]
    return costs


@pytest.mark.parametrize("mode_name", ["NUMBA", "JAX"])
def test_weight_drop_is_one_mask_per_batch_and_moves_only_kept_weights(mode_name) -> None:
    """Each SGD step's cost is the numpy model's with each layer's Wh thinned by exactly one of
    its 16 masks: one mask served every step and row of the batch (a mask per step or row
    would match none of the 256 combinations). The step then moves exactly the kept entries
    of the first layer's Wh; the steps draw different masks; evaluation is the plain model."""
    backends.prepare(mode_name)
    engine = LMEngine(WEIGHT_DROP, init_lm_params(WEIGHT_DROP), mode=mode_name,
                      learning_rate=0.5)
    x, y, mask, state = batch(WEIGHT_DROP)
    drawn = []
    for _ in range(5):
        before = engine.get_params()
        table = thinned_costs(before, x, y, mask, state)
        cost = engine.train_step(x, y, mask, state).cost
        hits = [k for k, c in table.items() if c == pytest.approx(cost, rel=1e-9)]
        assert len(hits) == 1, hits
        drawn.append(hits[0])
        moved = engine.get_params()["l0_Wh"] != before["l0_Wh"]
        np.testing.assert_array_equal(moved, WH_MASKS[hits[0][0]] != 0)
    assert len(set(drawn)) > 1
    params = engine.get_params()
    plain = dataclasses.replace(WEIGHT_DROP, weight_drop=0.0)
    expected, _ = reference_cost(plain, params, x, y, mask, state)
    assert engine.eval_step(x, y, mask, state).cost == pytest.approx(expected, rel=1e-10)


def test_weight_drop_needs_a_rate_below_one() -> None:
    from rnn_theano.errors import SettingError
    with pytest.raises(SettingError, match="weight_drop"):
        dataclasses.replace(WEIGHT_DROP, weight_drop=1.0)
