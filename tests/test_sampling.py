"""Sampling from a model whose probabilities are known: temperature and excluded words.

The "model" is a fixed distribution over a six-word vocabulary, the same after every prefix
(a bias-only language model). Sampling at temperature T must draw word w with probability
p_w^(1/T) / Z over the words that may be drawn: never ``UNKNOWN_TOKEN``, and never
``SENTENCE_START`` in sentence mode. Frequencies are checked against five-standard-deviation
binomial bounds (seeded: the counts never change between runs; the bounds say how far a
correct sampler could stray, and a wrong exponent lands far outside them).
"""

from __future__ import annotations

import numpy as np
import pytest

from rnn_theano.data.stream import EOS, UNK
from rnn_theano.data.vocab import SENTENCE_END, SENTENCE_START, UNKNOWN_TOKEN, Vocabulary
from rnn_theano.sampling import generate_sentence, sample_next

VOCAB = Vocabulary((UNKNOWN_TOKEN, SENTENCE_START, SENTENCE_END, "a", "b", "c"))
# UNKNOWN_TOKEN and SENTENCE_START get much of the mass: leaking any of it would show.
PROBS = np.array([0.3, 0.2, 0.1, 0.25, 0.1, 0.05])
DRAWABLE = np.array([False, False, True, True, True, True])
DRAWS = 20_000


def tempered(probs: np.ndarray, allowed: np.ndarray, temperature: float) -> np.ndarray:
    """p^(1/T) / Z over the allowed words, 0 elsewhere."""
    q = np.where(allowed, probs ** (1.0 / temperature), 0.0)
    return q / q.sum()


def assert_frequencies(counts: np.ndarray, expected: np.ndarray) -> None:
    """Each word's count within five binomial standard deviations of n * p; p = 0 never."""
    n = counts.sum()
    sigma = np.sqrt(n * expected * (1 - expected))
    assert np.all(counts[expected == 0] == 0), counts
    assert np.all(np.abs(counts - n * expected) <= 5 * sigma), (counts / n, expected)


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_sample_next_draws_tempered_probabilities(temperature: float) -> None:
    rng = np.random.default_rng(int(temperature * 10))
    draws = [sample_next(PROBS, VOCAB, rng, temperature) for _ in range(DRAWS)]
    counts = np.bincount(draws, minlength=len(VOCAB))
    assert_frequencies(counts, tempered(PROBS, DRAWABLE, temperature))


def test_the_bounds_tell_temperatures_apart() -> None:
    """The expected frequencies of T = 0.5, 1 and 2 are each other's tens of sigmas away, so
    a sampler that ignored or inverted the temperature could not pass the test above."""
    n = DRAWS
    for a, b in [(0.5, 1.0), (1.0, 2.0), (0.5, 2.0)]:
        pa, pb = tempered(PROBS, DRAWABLE, a), tempered(PROBS, DRAWABLE, b)
        sigma = np.sqrt(n * pa * (1 - pa))[DRAWABLE]
        assert np.max(np.abs(n * (pa - pb))[DRAWABLE] / sigma) > 20


def test_stream_vocabulary_excludes_only_unknown() -> None:
    """With a stream vocabulary the sentence start is ``<eos>``, also the end: it may be drawn."""
    vocab = Vocabulary((UNK, EOS, "a", "b"))
    probs = np.array([0.4, 0.1, 0.3, 0.2])
    rng = np.random.default_rng(0)
    counts = np.bincount([sample_next(probs, vocab, rng, 0.5) for _ in range(DRAWS)],
                         minlength=len(vocab))
    assert_frequencies(counts, tempered(probs, np.array([False, True, True, True]), 0.5))


def test_a_word_with_all_the_mass_is_always_drawn() -> None:
    """Underflow at a low temperature: p^(1/T) is 0 in floating point for all words but the
    likeliest drawable one, which is then always drawn (no NaN from 0 / 0)."""
    probs = np.array([0.0, 0.0, 1e-12, 1.0 - 2e-12, 1e-12, 0.0])
    rng = np.random.default_rng(1)
    assert {sample_next(probs, VOCAB, rng, 0.01) for _ in range(200)} == {3}
    # every drawable word's p^(1/T) underflows (1e-500), the unknown word's does not
    probs = np.array([1.0 - 4e-5, 0.0, 1e-5, 2e-5, 1e-5, 0.0])
    assert {sample_next(probs, VOCAB, rng, 0.01) for _ in range(200)} == {3}
    # only UNKNOWN_TOKEN is likely: the drawable words share what is left, as tempered says
    probs = np.array([0.999, 0.0005, 0.0002, 0.0001, 0.0001, 0.0001])
    counts = np.bincount([sample_next(probs, VOCAB, rng, 1.0) for _ in range(DRAWS)],
                         minlength=len(VOCAB))
    assert_frequencies(counts, tempered(probs, DRAWABLE, 1.0))


class FixedModel:
    """A bias-only model: the same distribution after any prefix; records every prefix."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs, self.prefixes = probs, []

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        self.prefixes.append(np.array(ids))
        return self.probs


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_generated_sentences_follow_the_tempered_model(temperature: float) -> None:
    """Every word of every sentence is a draw from the tempered distribution: the words' and
    the sentence ends' frequencies match it, and no marker or unknown word appears."""
    model, rng = FixedModel(PROBS), np.random.default_rng(3)
    counts = np.zeros(len(VOCAB), dtype=int)
    while counts.sum() < DRAWS:
        words = generate_sentence(model, VOCAB, rng, temperature=temperature, min_length=0,
                                  max_length=10_000)
        assert UNKNOWN_TOKEN not in words and SENTENCE_START not in words
        assert SENTENCE_END not in words
        counts += np.bincount([VOCAB.id(w) for w in words], minlength=len(VOCAB))
        counts[VOCAB.end_id] += 1  # each sentence ends with one draw of SENTENCE_END
    assert_frequencies(counts, tempered(PROBS, DRAWABLE, temperature))
    # the model was asked once per draw, each prefix the previous one plus the word drawn
    assert len(model.prefixes) == counts.sum()
    assert all(p[0] == VOCAB.start_id for p in model.prefixes)


def test_generate_sentence_feeds_the_prime_and_the_drawn_words_back() -> None:
    """One try (any length is accepted): the model sees the start and the prime, then that
    prefix grown by each word drawn; the last draw, the sentence end, is not fed back."""
    model, rng = FixedModel(PROBS), np.random.default_rng(4)
    words = generate_sentence(model, VOCAB, rng, prime=["c", "b"], min_length=0,
                              max_length=10_000)
    assert words[:2] == ["c", "b"]
    ids = [VOCAB.start_id] + [VOCAB.id(w) for w in words]
    assert [list(p) for p in model.prefixes] == [ids[:n] for n in range(3, len(ids) + 1)]


def test_lengths_outside_the_range_are_rejected() -> None:
    """P(end) = 1: every try gives the empty sentence; below min_length it is refused and,
    after max_tries, None. A model that never ends yields sentences of max_length at most."""
    ends = np.zeros(len(VOCAB))
    ends[VOCAB.end_id] = 1.0
    rng = np.random.default_rng(5)
    assert generate_sentence(FixedModel(ends), VOCAB, rng, min_length=1, max_tries=5) is None
    assert generate_sentence(FixedModel(ends), VOCAB, rng, min_length=0) == []
    never = np.array([0.5, 0.2, 0.0, 0.1, 0.1, 0.1])
    assert generate_sentence(FixedModel(never), VOCAB, rng, min_length=0, max_length=8,
                             max_tries=3) is None
