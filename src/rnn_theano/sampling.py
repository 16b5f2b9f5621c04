"""Generating sentences the tutorial's way: sample each next word from o_t.

Start from ``SENTENCE_START`` (plus any priming words), draw the next word from the model's
distribution, never accept ``UNKNOWN_TOKEN`` (the tutorial resamples it; dropping it and
renormalising is the same distribution), stop at ``SENTENCE_END``, and keep only sentences of
at least ``min_length`` words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from nltk.tokenize.treebank import TreebankWordDetokenizer

from .data.stream import EOS
from .data.vocab import SENTENCE_START, Vocabulary

# ids (T,) -> next-word distribution (C,) after the last of them
NextWordProbs = Callable[[np.ndarray], np.ndarray]

_DETOKENIZER = TreebankWordDetokenizer()


def sentence_markers(vocab: Vocabulary) -> tuple[int, int]:
    """The ids a sentence starts from and ends with: the tutorial's markers, or ``<eos>`` for
    a stream-mode vocabulary (where one line's end is the next one's start)."""
    if SENTENCE_START in vocab:
        return vocab.start_id, vocab.end_id
    return vocab.id(EOS), vocab.id(EOS)


def sample_next(probs: np.ndarray, vocab: Vocabulary, rng: np.random.Generator,
                temperature: float = 1.0) -> int:
    """One word id drawn from ``probs`` sharpened (T < 1) or flattened (T > 1) by temperature."""
    logp = np.log(np.maximum(probs.astype(np.float64), 1e-300)) / temperature
    start, end = sentence_markers(vocab)
    logp[vocab.unknown_id] = -np.inf  # never emitted
    if start != end:
        logp[start] = -np.inf
    p = np.exp(logp - logp.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def generate_sentence(next_word_probs: NextWordProbs, vocab: Vocabulary, rng: np.random.Generator,
                      *, prime: Sequence[str] = (), temperature: float = 1.0,
                      min_length: int = 7, max_length: int = 60,
                      max_tries: int = 1000) -> list[str] | None:
    """Sample one sentence (words, without the markers) of ``min_length..max_length`` words.

    Returns ``None`` if ``max_tries`` draws gave no sentence of an acceptable length (a model
    that has not learned to end sentences).
    """
    start, end = sentence_markers(vocab)
    for _ in range(max_tries):
        ids = [start] + [vocab.id(w) for w in prime]
        while len(ids) <= max_length + 1:
            word = sample_next(next_word_probs(np.asarray(ids, dtype=np.int32)), vocab, rng,
                               temperature)
            if word == end:
                break
            ids.append(word)
        words = list(prime) + vocab.decode(ids[1 + len(prime):])  # prime words as typed
        if min_length <= len(words) <= max_length:
            return words
    return None


def detokenize(words: Sequence[str]) -> str:
    """Readable text from tokens: rejoin punctuation and contractions, capitalise the start."""
    text = _DETOKENIZER.detokenize(list(words))
    return text[:1].upper() + text[1:]
