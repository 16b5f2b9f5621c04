"""The evaluator on cases small enough to compute by hand.

A model whose output weights are zero ignores its input: its distribution is softmax(out_b)
at every position, so its perplexity over a token stream is exp of the average of
-log softmax(out_b)[y] over the predicted tokens, which we compute here directly.
"""

import math

import numpy as np
import pytest

from lm_reference import reference_cost
from rnn_theano.data.batching import SentenceBatches, StreamBatches
from rnn_theano.data.vocab import SENTENCE_END, SENTENCE_START, UNKNOWN_TOKEN, Vocabulary
from rnn_theano.tasks.lm_engine import LMEngine, evaluate_batches, run_batches
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


# --- sentence mode ---------------------------------------------------------------------------

VOCAB = Vocabulary((UNKNOWN_TOKEN, SENTENCE_START, SENTENCE_END, "a", "b"))
# Probabilities that are powers of two, by id: unknown 1/8, start 1/16, end 1/4, a 1/2, b 1/16.
P_BY_ID = np.array([0.125, 0.0625, 0.25, 0.5, 0.0625])
SENTENCES = [["a", "b"], ["b", "zzz", "a", "a"], ["c"]]  # zzz and c are unknown words


@pytest.mark.parametrize("batch_size", [1, 2, 3])
def test_sentence_perplexity_by_hand(engine, batch_size):
    """What sentence-mode perplexity counts: every word and SENTENCE_END, unknown words as
    UNKNOWN_TOKEN; never SENTENCE_START (it is only read) nor padding (with batch sizes 2 and
    3 the shorter sentences are padded with id 0, UNKNOWN_TOKEN, which has a probability)."""
    set_output(engine, np.log(P_BY_ID))
    batches = SentenceBatches.from_sentences(SENTENCES, VOCAB, batch_size)
    # Targets and their cost in bits:  a b END: 1 + 4 + 2;  b UNK a a END: 4 + 3 + 1 + 1 + 2;
    # UNK END: 3 + 2.  23 bits over 10 predicted tokens.
    targets = [VOCAB.id(w) for s in SENTENCES for w in [*s, SENTENCE_END]]
    assert len(targets) == batches.n_tokens == 10
    expected_total = -np.log(P_BY_ID[targets]).sum()
    assert expected_total == pytest.approx(23 * math.log(2), rel=1e-15)
    score = run_batches(engine.eval_step, batches, carry_state=False,
                        initial_state=engine.initial_state(batch_size))
    assert score.n_tokens == 10
    assert score.total_cost == pytest.approx(23 * math.log(2), rel=1e-12)
    assert score.perplexity == pytest.approx(2 ** (23 / 10), rel=1e-12)
    by_sentences = evaluate_batches(engine, batches, stream=False)
    assert by_sentences.total_cost == pytest.approx(score.total_cost, rel=1e-12)


def test_padding_never_changes_a_sentence_score(engine):
    """A model that does read its input (random weights): batched with padding, or one after
    another, each sentence costs what it costs alone; the sum is the numpy reference's."""
    params = init_lm_params(engine.config)
    rng = np.random.default_rng(3)
    for name, value in params.items():
        engine.params[name].set_value(value + rng.normal(0, 0.5, value.shape))
    batches = SentenceBatches.from_sentences(SENTENCES, VOCAB, batch_size=3)
    together = evaluate_batches(engine, batches, stream=False)
    alone = [evaluate_batches(engine, SentenceBatches.from_sentences([s], VOCAB, 1), stream=False)
             for s in SENTENCES]
    assert together.total_cost == pytest.approx(sum(a.total_cost for a in alone), rel=1e-12)
    # one sentence per batch: every batch starts again from the zero state
    in_turn = evaluate_batches(engine, SentenceBatches.from_sentences(SENTENCES, VOCAB, 1),
                               stream=False)
    assert in_turn.total_cost == pytest.approx(together.total_cost, rel=1e-12)
    x, y, mask = next(iter(batches))
    expected, _ = reference_cost(engine.config, engine.get_params(), x, y, mask,
                                 engine.initial_state(3))
    assert together.total_cost == pytest.approx(expected, rel=1e-12)
