"""The evaluator on cases small enough to compute by hand.

A model whose output weights are zero ignores its input: its distribution is softmax(out_b)
at every position, so its perplexity over a token stream is exp of the average of
-log softmax(out_b)[y] over the predicted tokens, which we compute here directly.
"""

import math

import numpy as np
import pytest

from rnn_theano.data.batching import StreamBatches
from rnn_theano.tasks.lm_engine import LMEngine, evaluate_batches
from rnn_theano.tasks.lm_graph import LMConfig, init_lm_params

C = 5


@pytest.fixture(scope="module")
def engine() -> LMEngine:
    config = LMConfig(cell="rnn", vocab_size=C, embed_dim=3, hidden_dim=3, float32=False)
    return LMEngine(config, mode="FAST_COMPILE")


def set_output(engine: LMEngine, out_b: np.ndarray) -> None:
    params = init_lm_params(engine.config)
    params["out_W"] = np.zeros_like(params["out_W"])  # the input no longer matters
    params["out_b"] = out_b
    for name, value in params.items():
        engine.params[name].set_value(value)


def test_uniform_model_has_perplexity_equal_to_vocabulary_size(engine):
    set_output(engine, np.zeros(C))
    stream = np.array([0, 1, 2, 3, 4, 0, 0, 1], dtype=np.int32)
    score = evaluate_batches(engine, StreamBatches(stream, batch_size=1, bptt_len=3), stream=True)
    assert score.n_tokens == 7  # every token but the first is predicted once
    assert score.perplexity == pytest.approx(C, rel=1e-12)


@pytest.mark.parametrize("batch_size, bptt_len", [(1, 1), (1, 3), (1, 100), (2, 2)])
def test_bias_only_model_by_hand(engine, batch_size, bptt_len):
    # p = (0.5, 0.25, 0.125, 0.0625, 0.0625): log-probabilities are easy to write down.
    p = np.array([0.5, 0.25, 0.125, 0.0625, 0.0625])
    set_output(engine, np.log(p))
    stream = np.array([0, 1, 0, 2, 4, 0, 1, 3, 0], dtype=np.int32)
    score = evaluate_batches(engine, StreamBatches(stream, batch_size, bptt_len), stream=True)
    # The stream in `batch_size` columns; the first token of each column is never predicted.
    columns = stream[:len(stream) // batch_size * batch_size].reshape(batch_size, -1)
    targets = columns[:, 1:].ravel()
    expected_loss = float(np.mean(-np.log(p[targets])))
    assert score.n_tokens == len(targets)
    assert score.loss == pytest.approx(expected_loss, rel=1e-12)
    assert score.perplexity == pytest.approx(math.exp(expected_loss), rel=1e-12)
    # By hand for one column: the predicted tokens 1 0 2 4 0 1 3 0 cost 2, 1, 3, 4, 1, 2, 4, 1
    # bits, 18 bits over 8 predictions.
    if batch_size == 1:
        assert score.loss == pytest.approx(18 / 8 * math.log(2), rel=1e-12)
