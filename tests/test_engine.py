"""The compiled engine on the default Numba backend, float32: one small LSTM, two graphs.

The training and evaluation functions are each compiled once for the module (tens of seconds
on a cold Numba cache, about a second on a warm one).
"""

from __future__ import annotations

import numpy as np
import pytest

from lm_reference import reference_cost
from rnn_theano.data.batching import SentenceBatches, StreamBatches
from rnn_theano.tasks.lm_engine import LMEngine, batch_steps, evaluate_batches, run_batches
from rnn_theano.errors import UserError
from rnn_theano.tasks.lm_graph import LMConfig
from rnn_theano.tasks.lm import next_word_probs

C = 12


def _pattern_stream(n: int, seed: int) -> np.ndarray:
    """A learnable stream: counting 1..C-1 in runs, occasionally jumping to a random word."""
    rng = np.random.default_rng(seed)
    ids, w = [], 1
    for _ in range(n):
        w = int(rng.integers(1, C)) if rng.random() < 0.1 else w % (C - 1) + 1
        ids.append(w)
    return np.asarray(ids, dtype=np.int32)


@pytest.fixture(scope="module")
def engine() -> LMEngine:
    config = LMConfig(cell="lstm", vocab_size=C, embed_dim=8, hidden_dim=8, dropout=0.1, seed=1)
    return LMEngine(config, optimizer="adam", learning_rate=0.02, clip_norm=1.0)


@pytest.fixture(scope="module")
def valid() -> StreamBatches:
    return StreamBatches(_pattern_stream(400, seed=2), batch_size=4, bptt_len=7)


def test_eval_step_matches_the_numpy_reference(engine: LMEngine) -> None:
    batches = SentenceBatches([np.arange(n) % C for n in (3, 6, 5)], batch_size=3)
    x, y, mask = next(iter(batches))
    state = np.random.default_rng(0).normal(0, 0.5, engine.config.state_shape(3))
    result = engine.eval_step(x, y, mask, state)
    expected, final = reference_cost(engine.config, engine.get_params(), x, y, mask, state)
    assert result.n_tokens == 11
    assert result.cost == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(result.state, final, rtol=1e-4, atol=1e-6)
    assert result.state.dtype == np.float32


def test_stream_state_is_carried_across_windows(engine: LMEngine, valid: StreamBatches) -> None:
    windows = evaluate_batches(engine, valid, stream=True)
    whole = evaluate_batches(engine, StreamBatches(_pattern_stream(400, seed=2), 4, bptt_len=1000),
                             stream=True)
    assert windows.n_tokens == whole.n_tokens == valid.n_tokens
    assert windows.total_cost == pytest.approx(whole.total_cost, rel=1e-5)
    # Restarting from zero at every window loses the context: a different number.
    restarted = run_batches(engine.eval_step, valid, carry_state=False,
                            initial_state=engine.initial_state(4))
    assert restarted.total_cost != pytest.approx(windows.total_cost, rel=1e-4)


def test_log_probs_are_normalised_and_agree_with_the_cost(engine: LMEngine) -> None:
    x, y, mask = next(iter(StreamBatches(_pattern_stream(50, seed=3), 2, bptt_len=5)))
    log_probs, _ = engine.log_probs(x, y, mask, engine.initial_state(2))
    assert log_probs.shape == (5, 2, C)
    np.testing.assert_allclose(np.exp(log_probs).sum(axis=2), 1.0, rtol=1e-5)
    picked = np.take_along_axis(log_probs, y[:, :, None], axis=2)
    cost = engine.eval_step(x, y, mask, engine.initial_state(2)).cost
    assert -picked.sum() == pytest.approx(cost, rel=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
def test_next_word_probs_read_a_growing_prefix_once(engine: LMEngine, layers: int) -> None:
    """A sampler asks for ids[:1], ids[:2], ...; each answer is the one a pass over the whole
    prefix gives, also for the same prefix again, a shorter one and a diverging one (both
    start again), with one layer (the LSTM) and with two (a GRU)."""
    if layers == 2:
        engine = LMEngine(LMConfig(cell="gru", vocab_size=C, embed_dim=8, hidden_dim=8,
                                   layers=2, seed=3))
    ids = _pattern_stream(9, seed=4)
    other = ids.copy()
    other[2] = (other[2] + 1) % C
    probs = next_word_probs(engine)
    for prefix in (ids[:1], ids[:2], ids[:3], ids[:6], ids[:9], ids[:9], ids[:4], other[:4]):
        x = prefix[:, None]  # (n, 1)
        log_p, _ = engine.log_probs(x, x, np.ones(x.shape, np.float32), engine.initial_state(1))
        np.testing.assert_allclose(probs(prefix), np.exp(log_p[-1, 0]), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="at least one word"):
        probs(ids[:0])


def test_dropout_is_random_in_training_only(engine: LMEngine, valid: StreamBatches) -> None:
    x, y, mask = next(iter(valid))
    state = engine.initial_state(4)
    engine.set_learning_rate(0.0)  # the same compiled function, now without moving
    try:
        a, b = (engine.train_step(x, y, mask, state).cost for _ in range(2))
    finally:
        engine.set_learning_rate(0.02)
    assert a != b
    assert engine.eval_step(x, y, mask, state).cost == engine.eval_step(x, y, mask, state).cost


def test_training_lowers_the_loss(engine: LMEngine, valid: StreamBatches) -> None:
    train = StreamBatches(_pattern_stream(4000, seed=1), batch_size=4, bptt_len=7)
    before = evaluate_batches(engine, valid, stream=True)
    assert before.perplexity == pytest.approx(C, rel=0.5)  # about uniform at the start
    for k in range(2):
        results = list(batch_steps(engine.train_step, train.epoch(k), carry_state=True,
                                   initial_state=engine.initial_state(4)))
        assert np.isfinite([r.cost for r in results]).all()
        assert sum(r.n_tokens for r in results) == train.n_tokens
        assert len(results) == len(train) and np.isfinite([r.grad_norm for r in results]).all()
    after = evaluate_batches(engine, valid, stream=True)
    assert after.perplexity < 0.5 * before.perplexity
    sentences = SentenceBatches([_pattern_stream(n, seed=n) for n in (5, 9, 12)], batch_size=2)
    assert evaluate_batches(engine, sentences, stream=False).n_tokens == sentences.n_tokens


def test_stream_mode_refuses_a_bidirectional_model(valid: StreamBatches) -> None:
    config = LMConfig(cell="rnn", vocab_size=C, embed_dim=4, hidden_dim=4, bidirectional=True)
    with pytest.raises(UserError, match="stream mode"):
        evaluate_batches(LMEngine(config), valid, stream=True)  # refused before anything is compiled
