"""Compiled training and evaluation functions for the sentence classifier of ``classify_graph``.

``ClassifierEngine`` compiles, each on first use (once per batch shape under JAX):

* ``train_step(x, mask, labels)``: one optimizer update on the batch's weighted mean
  cross-entropy (plus its adversarial term's, ``classify_graph``), dropout on; it reports
  the plain cross-entropy;
* ``eval_step(x, mask, labels)``: the same cost, dropout off, no update;
* ``log_probs(x, mask)``: every class's log-probability for every row.

The objective is ``cost / weight``: the cross-entropy of each row weighted by its label's
class weight, divided by the batch's total weight (PyTorch's ``CrossEntropyLoss(weight=...)``
with the mean reduction), so the step size does not depend on the batch size. Parameters,
optimizer state and dropout streams are kept as ``LMEngine`` keeps them (``engine``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pytensor.tensor as pt

from ..errors import UserError
from .classify_graph import (ClassifierConfig, build_classifier, check_classifier_params,
                             init_classifier_params)
from .engine import CompiledModel


class ClassStepResult(NamedTuple):
    cost: float       # summed class-weighted cross-entropy over the batch's rows, in nats
    n: float          # rows with a real token (examples)
    correct: float    # rows whose most probable class is their label
    grad_norm: float  # global gradient norm before clipping (NaN for evaluation)
    predicted: np.ndarray | None = None  # (B,) most probable class of each row (evaluation)


class ClassifierEngine(CompiledModel):
    """The classifier's parameters and compiled functions.

    ``params`` (e.g. from a checkpoint) are checked against ``config``; without them the model
    starts from ``init_classifier_params``. ``class_weights`` (K,) weigh each class's
    cross-entropy (None: all ones). ``settings`` are ``LMEngine``'s and have its defaults:
    ``mode``, ``optimizer``, ``learning_rate``, ``clip_norm``, ``weight_decay``,
    ``optimizer_options``.
    """

    config: ClassifierConfig
    _init_params = staticmethod(init_classifier_params)
    _check_params = staticmethod(check_classifier_params)
    _batch_axes = (1, 1, 0, None)  # x, mask (T, B); labels (B,); class weights

    def __init__(self, config: ClassifierConfig, params: dict[str, np.ndarray] | None = None,
                 *, class_weights: Sequence[float] | np.ndarray | None = None,
                 **settings: Any) -> None:
        super().__init__(config, params, **settings)
        self.class_weights = _check_weights(class_weights, config)

    def _compile(self, kind: str, shape: tuple[int, int] | None) -> Callable:
        if kind == "train":
            graph = build_classifier(self.config, self.params, self._dropout_rng, shape)
            # The weighted mean cross-entropy, plus its adversarial twin's when set.
            objective = (graph.cost + graph.adversarial) / pt.maximum(graph.weight, 1e-12)
            updates, norm = self._training_updates(objective, graph.updates)
            outputs = [graph.cost, graph.n, graph.correct, norm]
        else:  # evaluation graphs have no random numbers at all
            graph, updates = build_classifier(self.config, self.params, None, shape), None
            if kind == "log_probs":
                return self._pytensor_function([graph.x, graph.mask], [graph.log_probs])
            outputs = [graph.cost, graph.n, graph.correct, graph.predicted]
        return self._pytensor_function([graph.x, graph.mask, graph.labels, graph.class_weights],
                                       outputs, updates)

    def train_step(self, x: np.ndarray, mask: np.ndarray, labels: np.ndarray) -> ClassStepResult:
        """One update of the parameters on batch (x, mask, labels)."""
        cost, n, correct, norm = self._train(x, mask, labels, self.class_weights)
        return ClassStepResult(float(cost), float(n), float(correct), float(norm))

    def eval_step(self, x: np.ndarray, mask: np.ndarray, labels: np.ndarray) -> ClassStepResult:
        """The batch's summed weighted cross-entropy, hits and predicted classes, without
        dropout or update."""
        cost, n, correct, predicted = self._function("eval", x)(x, mask, labels,
                                                                self.class_weights)
        return ClassStepResult(float(cost), float(n), float(correct), math.nan,
                               np.asarray(predicted))

    def log_probs(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, K) log-probabilities of each class for each row of the batch."""
        (log_p,) = self._function("log_probs", x)(x, mask)
        return np.asarray(log_p)


def _check_weights(weights: Sequence[float] | np.ndarray | None,
                   config: ClassifierConfig) -> np.ndarray:
    """``weights`` as a (K,) array in the config's dtype (all ones for None)."""
    if weights is None:
        return np.ones(config.n_classes, dtype=config.dtype)
    array = np.asarray(weights, dtype=config.dtype)
    if array.shape != (config.n_classes,) or not np.all(np.isfinite(array)) or (array < 0).any():
        raise UserError(f"class weights must be {config.n_classes} non-negative numbers, one "
                        f"per class, got {np.asarray(weights).tolist()}")
    return array
