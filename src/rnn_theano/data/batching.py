"""Minibatches: time-major (T, B) word ids with a mask.

Two ways to cut a corpus into batches for the language model, with one interface:
``epoch(k)`` yields the batches of epoch k (the same every time it is called with the same k),
iterating the object itself yields them in a fixed evaluation order, ``len()`` is the number of
batches and ``n_tokens`` the number of predicted tokens (the perplexity denominator).

``SentenceBatches`` (sentence mode, the tutorial's units)
    Each sentence ``SENTENCE_START w_1 .. w_n SENTENCE_END`` gives ``x = ids[:-1]``,
    ``y = ids[1:]``. Sentences of similar length are batched together (sorted by length with
    ties in random order, cut into batches, the batches shuffled), then padded to the longest
    one; the mask is 0 on padding, so padding changes neither loss nor gradient. The state
    starts from zero for every batch.

``StreamBatches`` (stream mode, the standard LM benchmark)
    The corpus is one stream of ids (see ``stream``), cut into ``batch_size`` equal columns
    (the tail that does not fill a column is dropped), read in windows of ``bptt_len`` steps;
    window k+1 continues where window k ended, so the trainer carries the state across
    windows. Every token after the first of each column is predicted exactly once.

``ClassBatches`` (sentence classification) batch labelled sequences as ``SentenceBatches``
batch sentences, with the same interface: ``n_examples`` counts the sequences, and a batch is
(x, mask, labels).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from .vocab import Vocabulary


class Batch(NamedTuple):
    """One minibatch, time-major."""

    x: np.ndarray     # (T, B) int32 input ids
    y: np.ndarray     # (T, B) int32 target ids (x shifted by one step)
    mask: np.ndarray  # (T, B) float32, 1 for a real token, 0 for padding


def _check_positive(name: str, value: int) -> None:
    if value < 1:
        raise UserError(f"--{name.replace('_', '-')} must be at least 1, not {value}")


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``n``."""
    return -(-n // multiple) * multiple


def padded_length(n: int, multiple: int) -> int:
    """``n`` rounded up to a multiple of ``multiple``, or when shorter than that to a power of
    two. A backend with static shapes compiles one function per length, so lengths are
    rounded to few values; short sequences (a treebank's phrases, most of them under 8 words)
    would be mostly padding if they too were rounded up to the multiple."""
    if n < multiple:
        return min(multiple, 1 << max(0, n - 1).bit_length())
    return round_up(n, multiple)


class _LengthBuckets:
    """Examples batched by similar length, padded; deterministic given ``seed``.

    The ordering shared by sentence and classification batches: a subclass sets
    ``_lengths`` (the real time steps of each example) and builds a batch from indices.
    """

    _lengths: np.ndarray

    def __init__(self, batch_size: int, seed: int, pad_multiple: int) -> None:
        _check_positive("batch_size", batch_size)
        _check_positive("pad_multiple", pad_multiple)
        self.batch_size, self.seed, self.pad_multiple = batch_size, seed, pad_multiple

    def __len__(self) -> int:
        return -(-len(self._lengths) // self.batch_size)

    @property
    def _sort_keys(self) -> np.ndarray:
        """What batches are sorted by: the length (translation: the source's, then the
        target's)."""
        return self._lengths

    def __iter__(self) -> Iterator:
        """Batches by increasing length, no shuffling: for evaluation."""
        order = np.argsort(self._sort_keys, kind="stable")
        return (self._batch(chunk) for chunk in self._chunks(order))

    def epoch(self, k: int) -> Iterator:
        """The shuffled batches of epoch ``k``: a function of (seed, k) only."""
        rng = np.random.default_rng([self.seed, k])
        shuffled = rng.permutation(len(self._lengths))
        # Sort by length, ties in the random order: similar lengths share a batch.
        order = shuffled[np.argsort(self._sort_keys[shuffled], kind="stable")]
        chunks = self._chunks(order)
        return (self._batch(chunks[i]) for i in rng.permutation(len(chunks)))

    def _chunks(self, order: np.ndarray) -> list[np.ndarray]:
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _batch(self, indices: np.ndarray):
        raise NotImplementedError

    def _padded(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Zero ids (T, B) and the mask (T, B) of examples ``indices``, T rounded up by
        ``padded_length`` to ``pad_multiple`` (bounding the number of distinct shapes: a
        backend with static shapes, JAX, compiles one per shape)."""
        lengths = self._lengths[indices]
        T = padded_length(int(lengths.max()), self.pad_multiple)
        mask = (np.arange(T)[:, None] < lengths[None, :]).astype(np.float32)
        return np.zeros((T, len(indices)), dtype=np.int32), mask


class SentenceBatches(_LengthBuckets):
    """Sentences bucketed by length and padded; deterministic given ``seed``."""

    def __init__(self, sequences: Sequence[np.ndarray], batch_size: int, *, seed: int = 0,
                 pad_multiple: int = 1) -> None:
        """``sequences``: encoded sentences, each at least 2 ids (``Vocabulary.encode``).

        ``pad_multiple`` rounds each batch's length up to a multiple of it (``padded_length``).
        """
        super().__init__(batch_size, seed, pad_multiple)
        self.sequences = [np.asarray(s, dtype=np.int32) for s in sequences if len(s) >= 2]
        if not self.sequences:
            raise UserError("no sentence with a word to predict: the corpus is empty")
        self._lengths = np.array([len(s) - 1 for s in self.sequences])  # predicted tokens
        self.n_tokens = int(self._lengths.sum())

    @classmethod
    def from_sentences(cls, sentences: Sequence[Sequence[str]], vocab: Vocabulary,
                       batch_size: int, **kwargs) -> SentenceBatches:
        """Encode tokenized sentences with ``vocab`` (start and end markers added)."""
        return cls([vocab.encode(s) for s in sentences], batch_size, **kwargs)

    def _batch(self, indices: np.ndarray) -> Batch:
        x, mask = self._padded(indices)
        y = np.zeros_like(x)
        for b, i in enumerate(indices):
            ids = self.sequences[i]
            x[:len(ids) - 1, b], y[:len(ids) - 1, b] = ids[:-1], ids[1:]
        return Batch(x, y, mask)


class ClassBatch(NamedTuple):
    """One minibatch of labelled sequences, time-major."""

    x: np.ndarray       # (T, B) int32 word ids
    mask: np.ndarray    # (T, B) float32, 1 for a real token, 0 for padding
    labels: np.ndarray  # (B,) int32 class of each row


class ClassBatches(_LengthBuckets):
    """Labelled sequences bucketed by length and padded; deterministic given ``seed``.

    A sequence is read whole (no start or end markers, nothing predicted from it): row b of
    ``x`` holds sequence b's ids, right-padded. Sequences with no id are left out, with their
    labels: there is nothing to read.
    """

    def __init__(self, sequences: Sequence[np.ndarray], labels: np.ndarray, batch_size: int, *,
                 seed: int = 0, pad_multiple: int = 1) -> None:
        super().__init__(batch_size, seed, pad_multiple)
        labels = np.asarray(labels, dtype=np.int32)
        if len(labels) != len(sequences):
            raise UserError(f"{len(sequences)} sequences but {len(labels)} labels: each "
                            "sequence needs one label")
        kept = [i for i, s in enumerate(sequences) if len(s) >= 1]
        if not kept:
            raise UserError("no sequence with a word to classify: the data set is empty")
        self.sequences = [np.asarray(sequences[i], dtype=np.int32) for i in kept]
        self.labels = labels[kept]
        self._lengths = np.array([len(s) for s in self.sequences])
        self.n_examples = len(self.sequences)

    def _batch(self, indices: np.ndarray) -> ClassBatch:
        x, mask = self._padded(indices)
        for b, i in enumerate(indices):
            x[:len(self.sequences[i]), b] = self.sequences[i]
        return ClassBatch(x, mask, self.labels[indices])


class StreamBatches:
    """One id stream in ``batch_size`` columns, read ``bptt_len`` steps at a time."""

    def __init__(self, ids: np.ndarray, batch_size: int, bptt_len: int) -> None:
        _check_positive("batch_size", batch_size)
        _check_positive("bptt_len", bptt_len)
        ids = np.asarray(ids, dtype=np.int32)
        steps = len(ids) // batch_size
        if steps < 2:
            raise UserError(f"a stream of {len(ids)} tokens is too short for --batch-size "
                            f"{batch_size}: each column needs at least 2 tokens")
        # Column b is ids[b*steps:(b+1)*steps]; rows are time steps.
        self.data = ids[:steps * batch_size].reshape(batch_size, steps).T  # (steps, B)
        self.batch_size, self.bptt_len = batch_size, bptt_len
        self.n_tokens = (steps - 1) * batch_size

    def __len__(self) -> int:
        return -(-(len(self.data) - 1) // self.bptt_len)

    def __iter__(self) -> Iterator[Batch]:
        data, L = self.data, self.bptt_len
        for start in range(0, len(data) - 1, L):
            x = data[start:start + L]
            y = data[start + 1:start + 1 + L]
            x = x[:len(y)]  # the last window may be shorter
            yield Batch(x, y, np.ones(x.shape, dtype=np.float32))

    def epoch(self, k: int) -> Iterator[Batch]:
        """Stream order is the data itself: every epoch reads the same windows."""
        return iter(self)
