"""Compiled training and evaluation functions for the recogniser of ``asr_graph``.

``AsrEngine`` compiles, each on first use (once per batch shape under JAX):

* ``train_step(batch)``: one optimizer update on the mean CTC cost per utterance, dropout on;
* ``eval_step(batch)``: the summed CTC cost and the per-frame log-posteriors, no dropout;
* ``posteriors(x, mask)``: the log-posteriors alone, for transcribing.

Rows with no frame (the filler rows of a batch under JAX) cost nothing and are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytensor.tensor as pt

from ..data.speech import UtteranceBatch
from .asr_graph import RecogniserConfig, build_asr, check_asr_params, init_asr_params
from .engine import CompiledModel


class AsrStepResult(NamedTuple):
    cost: float       # summed CTC cost over the batch's utterances, in nats
    n: float          # utterances (rows with a frame)
    grad_norm: float  # global gradient norm before clipping (NaN for evaluation)
    log_probs: np.ndarray | None = None  # (T', B, K) per-frame log-posteriors (evaluation)
    out_mask: np.ndarray | None = None   # (T', B) 1 on real output frames


class AsrEngine(CompiledModel):
    """The recogniser's parameters and compiled functions (settings as ``CompiledModel``)."""

    config: RecogniserConfig
    _init_params = staticmethod(init_asr_params)
    _check_params = staticmethod(check_asr_params)
    _keyed = (0, 1, 2, 3)
    _batch_axes = (1, 1, 0, 0)  # x (T, B, F), mask (T, B); labels, label_mask (B, U)

    def _compile(self, kind: str, shape: tuple | None) -> Callable:
        if shape is not None:  # (x's shape, mask's, labels') -> (T, B, U)
            shape = (shape[0][0], shape[0][1], shape[-1][1] if len(shape) > 2 else None)
        rng = self._dropout_rng if kind == "train" else None
        graph = build_asr(self.config, self.params, rng, shape)
        real = graph.mask.max(axis=0)  # (B,) 1 for a row with a frame
        cost, n = (graph.cost * real).sum(), real.sum()
        if kind == "posteriors":
            return self._pytensor_function([graph.x, graph.mask],
                                           [graph.log_probs, graph.out_mask])
        inputs = [graph.x, graph.mask, graph.labels, graph.label_mask]
        if kind == "train":
            updates, norm = self._training_updates(cost / pt.maximum(n, 1.0), graph.updates)
            return self._pytensor_function(inputs, [cost, n, norm], updates)
        return self._pytensor_function(inputs, [cost, n, graph.log_probs, graph.out_mask])

    def train_step(self, batch: UtteranceBatch) -> AsrStepResult:
        """One update of the parameters on ``batch``."""
        inputs = batch[:4]
        cost, n, norm = self._train(*inputs)
        return AsrStepResult(float(cost), float(n), float(norm))

    def eval_step(self, batch: UtteranceBatch) -> AsrStepResult:
        """The batch's summed CTC cost and log-posteriors, without dropout or update."""
        inputs = batch[:4]
        cost, n, log_probs, out_mask = self._function("eval", *inputs)(*inputs)
        return AsrStepResult(float(cost), float(n), float("nan"), np.asarray(log_probs),
                             np.asarray(out_mask))

    def posteriors(self, x: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T', B, K) log-posteriors of the frames ``x`` (T, B, F), and their (T', B) mask."""
        log_probs, out_mask = self._function("posteriors", x, mask)(x, mask)
        return np.asarray(log_probs), np.asarray(out_mask)
