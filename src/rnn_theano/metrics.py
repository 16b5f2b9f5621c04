"""Metrics: cross-entropy and perplexity (every model), accuracy and macro F1 (classifiers),
BLEU (translation: computed by sacreBLEU in ``tasks.mt``, carried here), the digit error rate
of a recogniser (``tasks.asr``: edit operations per reference word), and the unigram
baseline of a language model.

Losses are mean cross-entropy per predicted token in nats: every target counts
(``SENTENCE_END`` or ``<eos>`` included), ``SENTENCE_START`` never (it is only ever an input),
padding never. Perplexity is ``exp(loss)``. A unigram model (add-one-smoothed word frequencies
of the training targets) scored on the same held-out tokens is the baseline a language model
must beat.

A classifier's accuracy is the fraction of sentences whose most probable class is their label;
its macro F1 is the unweighted mean over the classes of each class's F1 (the harmonic mean of
its precision and recall), as scikit-learn's ``f1_score(average="macro")`` computes it: over
the classes that occur among the labels or the predictions, a class never predicted scoring
precision 0 and one absent from the labels recall 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Score:
    """Summed cross-entropy and the count of what it sums over (predicted tokens, or
    classified sentences), and for a classifier the count of correct predictions."""

    total_cost: float
    n_tokens: float
    correct: float | None = None
    confusion: np.ndarray | None = None  # (K, K) counts: row the label, column the prediction
    bleu: float | None = None  # a translation model's BLEU on the split, when it was decoded
    error_rate: float | None = None  # a recogniser's digit (word) error rate on the split

    @property
    def accuracy(self) -> float | None:
        """Fraction of examples whose most probable class is the label (classifiers)."""
        return None if self.correct is None else self.correct / self.n_tokens

    @property
    def macro_f1(self) -> float | None:
        return None if self.confusion is None else macro_f1(self.confusion)

    @property
    def loss(self) -> float:
        """Mean cross-entropy per predicted token, in nats."""
        return self.total_cost / self.n_tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if self.loss < 700 else math.inf  # exp overflows past ~709


def macro_f1(confusion: np.ndarray) -> float:
    """The mean of F1 = 2 TP / (2 TP + FP + FN) over the classes that occur as a label or a
    prediction, from a (K, K) confusion matrix (row: label, column: prediction)."""
    confusion = np.asarray(confusion, dtype=float)
    tp = np.diag(confusion)
    denominator = confusion.sum(axis=0) + confusion.sum(axis=1)  # 2 TP + FP + FN
    occurring = denominator > 0
    return float(np.mean(2 * tp[occurring] / denominator[occurring]))


def unigram_loss(train_targets: Sequence[np.ndarray], valid_targets: Sequence[np.ndarray],
                 vocab_size: int) -> float:
    """Per-token cross-entropy on ``valid_targets`` of add-one-smoothed training frequencies."""
    counts = np.ones(vocab_size)
    for y in train_targets:
        np.add.at(counts, y, 1.0)
    logp = np.log(counts / counts.sum())
    return float(-np.mean(np.concatenate([logp[y] for y in valid_targets])))
