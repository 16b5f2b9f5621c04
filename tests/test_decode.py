"""Greedy and beam search: on a decoder built so that greedy's first choice is a trap, and on a
random translation model, batched and one sentence at a time."""

from __future__ import annotations

import numpy as np
import pytest

from rnn_theano.data.parallel import BOS, EOS, source_batches
from rnn_theano.tasks.decode import beam_search, greedy
from rnn_theano.tasks.mt_engine import EncodedBatch, MTEngine
from rnn_theano.tasks.mt_graph import Seq2SeqConfig

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

A, B = 3, 4  # two words after UNK (0), BOS (1) and EOS (2)


class MarkovDecoder:
    """Next-word probabilities that depend on the previous word only: ``table[prev]``.

    After BOS, A (0.6) beats B (0.4); but A leads nowhere likely (EOS 0.34, A or B 0.33),
    while B ends at once (EOS 0.99). Greedy says "A" (p = 0.6 * 0.34 = 0.204); the best
    sentence is "B" (p = 0.4 * 0.99 = 0.396).
    """

    def __init__(self) -> None:
        p = np.full((5, 5), 1e-9)
        p[BOS, [A, B]] = 0.6, 0.4
        p[A, [EOS, A, B]] = 0.34, 0.33, 0.33
        p[B, [EOS, A, B]] = 0.99, 0.005, 0.005
        p[[0, EOS], EOS] = 1.0
        self.log_table = np.log(p / p.sum(axis=1, keepdims=True))

    def encode(self, src: np.ndarray, mask: np.ndarray) -> EncodedBatch:
        n = src.shape[1]
        return EncodedBatch(np.zeros((1, n, 1)), np.zeros((1, n, 1)), mask[:1],
                            [np.zeros((n, 1))])

    def step(self, y_prev: np.ndarray, enc: EncodedBatch):
        return self.log_table[y_prev], enc.states, np.zeros((len(y_prev), 1))

    def log_prob(self, ids: list[int], ended: bool = True) -> float:
        path = [BOS, *ids] + ([EOS] if ended else [])
        return float(sum(self.log_table[a, b] for a, b in zip(path, path[1:])))


def test_beam_finds_the_sentence_greedy_misses():
    model, src, mask = MarkovDecoder(), np.zeros((1, 2), np.int32), np.ones((1, 2))
    (g, _) = greedy(model, src, mask, [10, 10])
    assert g.ids == [A]  # the trap, then EOS (0.34 against 0.33)
    assert g.log_prob == pytest.approx(np.log(0.6 * 0.34), rel=1e-6)
    best = beam_search(model, src, mask, [10, 10], beam=2, length_penalty=0.0)
    assert [h.ids for h in best[0]][0] == [B]
    assert best[0][0].log_prob == pytest.approx(np.log(0.4 * 0.99), rel=1e-6)
    assert best[0][0].log_prob > g.log_prob


def test_scores_are_the_models_log_probabilities():
    model = MarkovDecoder()
    src, mask = np.zeros((1, 1), np.int32), np.ones((1, 1))
    for penalty in (0.0, 1.0):
        for h in beam_search(model, src, mask, [4], beam=3, length_penalty=penalty)[0]:
            ended = len(h.ids) < 4
            assert h.log_prob == pytest.approx(model.log_prob(h.ids, ended), rel=1e-9)
            length = len(h.ids) + ended
            assert h.score == pytest.approx(h.log_prob / length ** penalty, rel=1e-9)
    (g,) = greedy(model, src, mask, [3])
    assert g.log_prob == pytest.approx(model.log_prob(g.ids, len(g.ids) < 3), rel=1e-9)


def test_beam_hypotheses_are_distinct_and_ranked():
    hyps = beam_search(MarkovDecoder(), np.zeros((1, 1), np.int32), np.ones((1, 1)), [6],
                       beam=4)[0]
    assert len(hyps) == 4
    assert len({tuple(h.ids) for h in hyps}) == 4
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


@pytest.fixture(scope="module")
def engine() -> MTEngine:
    """A random float64 model with a small target vocabulary (so that EOS comes up)."""
    config = Seq2SeqConfig(cell="gru", vocab_size=13, embed_dim=4, hidden_dim=5, layers=1,
                           bidirectional=True, target_vocab_size=6, decoder_dim=6,
                           attention_dim=5, float32=False, seed=11)
    return MTEngine(config, mode="FAST_COMPILE")


SOURCES = [np.array(s, np.int32) for s in ([3, 4, 5, 6, 7], [8], [9, 10, 3], [12, 11, 4, 4],
                                           [5, 6])]


def test_beam_one_is_greedy(engine):
    (_, src, mask), = source_batches(SOURCES, 8)
    limits = [7, 3, 6, 9, 5]
    g = greedy(engine, src, mask, limits)
    b = beam_search(engine, src, mask, limits, beam=1)
    for a, (c,) in zip(g, b):
        assert a.ids == c.ids
        assert a.log_prob == pytest.approx(c.log_prob, rel=1e-9)


def test_a_batch_decodes_as_its_sentences_alone(engine):
    (order, src, mask), = source_batches(SOURCES, 8)
    together = beam_search(engine, src, mask, [8] * len(SOURCES), beam=3)
    for column, i in enumerate(order):
        (_, s1, m1), = source_batches([SOURCES[i]], 1)
        (alone,) = beam_search(engine, s1, m1, [8], beam=3)
        assert [h.ids for h in alone] == [h.ids for h in together[column]]
        np.testing.assert_allclose([h.log_prob for h in alone],
                                   [h.log_prob for h in together[column]], rtol=1e-9)


def test_engine_scores_are_its_log_probabilities(engine):
    (order, src, mask), = source_batches(SOURCES, 8)
    limit = 6
    found = beam_search(engine, src, mask, [limit] * len(SOURCES), beam=3, length_penalty=0.0)
    for column, hyps in enumerate(found):
        for h in hyps:
            enc = engine.encode(src[:, [column]], mask[:, [column]])
            total, prev = 0.0, BOS
            path = h.ids + ([EOS] if len(h.ids) < limit else [])
            for word in path:
                log_probs, states, _ = engine.step(np.array([prev], np.int32), enc)
                enc, total, prev = enc._replace(states=states), total + log_probs[0, word], word
            assert h.log_prob == pytest.approx(total, rel=1e-9)
