"""Compiled functions of the translation model of ``mt_graph``.

``MTEngine`` compiles, each on first use (once per batch shape under JAX):

* ``train_step(batch)``: one optimizer update on the batch's mean per-token (label-smoothed)
  cross-entropy, dropout on;
* ``eval_step(batch)``: the plain summed cross-entropy, dropout off, no update;
* ``attention(batch)``: the attention weights (T, B, S) of the targets given, teacher forced;
* ``encode(src, src_mask)`` and ``step(y_prev, states, encoded)``: the encoder, run once per
  batch, and one decoder step for any number of hypotheses, for greedy and beam search
  (``decode``).

Parameters, optimizer state and dropout streams are kept as every ``CompiledModel`` keeps them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import pytensor.tensor as pt

from ..data.parallel import PairBatch
from .engine import CompiledModel
from .mt_graph import (Seq2SeqConfig, build_encoder_fn_graph, build_mt, build_step_graph,
                       check_mt_params, init_mt_params)


class EncodedBatch(NamedTuple):
    """A source batch as the decoder reads it, in numpy (columns: sentences or hypotheses)."""

    h: np.ndarray          # (S, N, R) encoder states
    hp: np.ndarray         # (S, N, A) their attention projection
    mask: np.ndarray       # (S, N) 1 on real source tokens
    states: list           # the decoder's initial states, each (N, D)

    def take(self, columns: np.ndarray) -> EncodedBatch:
        """The same batch with columns ``columns`` (hypotheses of sentences), in order."""
        return EncodedBatch(self.h[:, columns], self.hp[:, columns], self.mask[:, columns],
                            [s[columns] for s in self.states])


class MTEngine(CompiledModel):
    """The translation model's parameters and compiled functions (``CompiledModel``'s
    settings: ``mode``, ``optimizer``, ``learning_rate``, ``clip_norm``, ...)."""

    config: Seq2SeqConfig
    _init_params = staticmethod(init_mt_params)
    _check_params = staticmethod(check_mt_params)
    _keyed = (0, 2)  # the source and target lengths
    _batch_axes = (1, 1, 1, 1, 1)  # src, src_mask (S, B); y_in, y_out, mask (T, B)
    # The encoder's recurrent matrices and the decoder's (not att_Wh, the attention's).
    _recurrent = re.compile(CompiledModel._recurrent.pattern + "|dec_Wh")

    def _compile(self, kind: str, shape: tuple | None) -> Callable:
        if kind == "encode":
            return self._pytensor_function(*build_encoder_fn_graph(self.config, self.params,
                                                                   shape))
        if kind == "step":
            return self._pytensor_function(*build_step_graph(self.config, self.params, shape))
        rng = self._dropout_rng if kind == "train" else None
        graph = build_mt(self.config, self.params, rng, shape)
        inputs = [graph.src, graph.src_mask, graph.y_in, graph.y_out, graph.mask]
        if kind == "attention":
            return self._pytensor_function(inputs, [graph.alpha])
        if kind == "eval":
            return self._pytensor_function(inputs, [graph.cost, graph.n_tokens])
        objective = graph.objective / pt.maximum(graph.n_tokens, 1)  # mean per real token
        updates, norm = self._training_updates(objective, graph.updates)
        return self._pytensor_function(inputs, [graph.cost, graph.n_tokens, norm], updates)

    def train_step(self, batch: PairBatch) -> tuple[float, float, float]:
        """One update on ``batch``: its summed cross-entropy, target tokens, gradient norm."""
        cost, n, norm = self._train(*batch)
        return float(cost), float(n), float(norm)

    def eval_step(self, batch: PairBatch) -> tuple[float, float]:
        """The batch's summed cross-entropy and target tokens, without dropout or update."""
        cost, n = self._function("eval", batch.src, batch.y_in)(*batch)
        return float(cost), float(n)

    def attention(self, batch: PairBatch) -> np.ndarray:
        """(T, B, S) attention weights of each target position over the source."""
        (alpha,) = self._function("attention", batch.src, batch.y_in)(*batch)
        return np.asarray(alpha)

    def encode(self, src: np.ndarray, src_mask: np.ndarray) -> EncodedBatch:
        h, hp, *states = self._function("encode", src)(src, src_mask)
        return EncodedBatch(np.asarray(h), np.asarray(hp), src_mask,
                            [np.asarray(s) for s in states])

    def step(self, y_prev: np.ndarray, enc: EncodedBatch) -> tuple[np.ndarray, list, np.ndarray]:
        """Log-probabilities (N, C) of the next word after ``y_prev`` (N,) for N hypotheses
        in the decoder states ``enc.states``; the new states and attention weights (N, S)."""
        function = self._function("step", enc.mask)
        log_probs, *rest = function(y_prev.astype(np.int32), *enc.states, enc.h, enc.hp,
                                    enc.mask)
        return np.asarray(log_probs), [np.asarray(s) for s in rest[:-1]], np.asarray(rest[-1])
