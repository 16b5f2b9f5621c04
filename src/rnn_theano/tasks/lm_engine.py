"""Compiled training and evaluation functions for the language model of ``lm``, and perplexity.

``LMEngine`` owns the shared parameters and compiles, each on first use:

* ``train_step(x, y, mask, state)``: one optimizer update on the batch's mean per-token
  cross-entropy, dropout on;
* ``eval_step(x, y, mask, state)``: the same cost, dropout off, no update;
* ``log_probs(x, y, mask, state)``: every word's log-probability at every position.

Each takes a ``batching.Batch``'s arrays and the carried state (``initial_state``) and returns
the summed cross-entropy, the token count and the final state (to feed back in stream mode).

The training objective is the *mean* cross-entropy per real token of the batch, so the step
size does not depend on batch size or padding. Zaremba et al. (and the Lua code they
published) sum over the ``bptt_len`` steps instead, so their SGD lr 1.0 and clip 5 are
lr ``bptt_len`` (20) and clip ``5 / bptt_len`` (0.25) here, PyTorch's word_language_model
settings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
import pytensor.tensor as pt

from ..data.batching import Batch, SentenceBatches, StreamBatches
from .engine import CompiledModel
from .lm_graph import LMConfig, build_lm, check_lm_params, init_lm_params
from ..errors import UserError
from ..metrics import Score


class StepResult(NamedTuple):
    cost: float          # summed cross-entropy over the batch's real tokens, in nats
    n_tokens: float      # real tokens in the batch
    state: np.ndarray    # (L, S, B, H) final state of the forward stack
    grad_norm: float     # global gradient norm before clipping (NaN for evaluation)


class LMEngine(CompiledModel):
    """The language model's parameters and compiled functions.

    ``LMEngine(config, params=None, *, mode="NUMBA", optimizer="sgd", learning_rate=1.0,
    clip_norm=None, weight_decay=0.0, optimizer_options=None)``: ``params`` (e.g. from a
    checkpoint) are checked against ``config``; without them the model starts from
    ``init_lm_params``. ``optimizer`` is a name of ``optimizers.OPTIMIZERS``;
    ``learning_rate`` is a shared scalar, so ``set_learning_rate`` takes effect at the next
    step without recompiling. ``mode`` is the PyTensor backend.
    """

    config: LMConfig
    _init_params = staticmethod(init_lm_params)
    _check_params = staticmethod(check_lm_params)
    _batch_axes = (1, 1, 1, 2)  # x, y, mask (T, B); state (L, S, B, H)

    def _compile(self, kind: str, shape: tuple[int, int] | None) -> Callable:
        if kind == "train":
            graph = build_lm(self.config, self.params, self._dropout_rng, shape)
            objective = graph.cost / pt.maximum(graph.n_tokens, 1)  # mean CE per real token
            updates, norm = self._training_updates(objective, graph.updates)
            outputs = [graph.cost, graph.n_tokens, graph.final_state, norm]
        else:  # evaluation graphs have no random numbers at all
            graph, updates = build_lm(self.config, self.params, None, shape), None
            outputs = ([graph.cost, graph.n_tokens, graph.final_state] if kind == "eval"
                       else [graph.log_probs, graph.final_state])
        return self._pytensor_function([graph.x, graph.y, graph.mask, graph.state], outputs,
                                       updates)

    def train_step(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                   state: np.ndarray) -> StepResult:
        """One update of the parameters on batch (x, y, mask), from ``state``."""
        cost, n, final, norm = self._train(x, y, mask, state)
        return StepResult(float(cost), float(n), np.asarray(final), float(norm))

    def eval_step(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                  state: np.ndarray) -> StepResult:
        """The batch's summed cross-entropy without dropout and without an update."""
        cost, n, final = self._function("eval", x)(x, y, mask, state)
        return StepResult(float(cost), float(n), np.asarray(final), math.nan)

    def log_probs(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                  state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(T, B, C) log-probabilities of the word at each position, and the final state.

        Left to right, ``y`` is unused. Bidirectional, position t's distribution uses x[:t+1]
        and y[t+1:] (the blank is ``y[t]``; its own value is never read).
        """
        log_p, final = self._function("log_probs", x)(x, y, mask, state)
        return np.asarray(log_p), np.asarray(final)

    def initial_state(self, batch_size: int) -> np.ndarray:
        """The zero state (L, S, B, H) a sentence or a stream starts from."""
        return np.zeros(self.config.state_shape(batch_size), dtype=self.config.dtype)


def batch_steps(step: Callable[..., StepResult], batches: Iterable[Batch], *,
                carry_state: bool, initial_state: np.ndarray) -> Iterator[StepResult]:
    """Feed ``batches`` to ``step`` (``engine.train_step`` or ``eval_step``), one result each.

    With ``carry_state`` each batch starts from the previous batch's final state (stream
    mode); otherwise from ``initial_state`` (sentence mode; a smaller last batch takes its
    first rows).
    """
    state = initial_state
    for x, y, mask in batches:
        result = step(x, y, mask, state if carry_state else initial_state[:, :, :x.shape[1]])
        state = result.state
        yield result


def run_batches(step: Callable[..., StepResult], batches: Iterable[Batch], *,
                carry_state: bool, initial_state: np.ndarray) -> Score:
    """The summed cost and token count of ``batch_steps``."""
    total, tokens = 0.0, 0.0
    for result in batch_steps(step, batches, carry_state=carry_state,
                              initial_state=initial_state):
        total, tokens = total + result.cost, tokens + result.n_tokens
    return Score(total, tokens)


def evaluate_batches(engine: LMEngine, batches: SentenceBatches | StreamBatches,
                     stream: bool) -> Score:
    """Perplexity of ``batches``: sentences each from the zero state, or one stream with the
    state carried through the whole of it (a bidirectional model cannot: ``check_stream``)."""
    if stream:
        check_stream_model(engine.config)
    return run_batches(engine.eval_step, batches, carry_state=stream,
                       initial_state=engine.initial_state(batches.batch_size))


def check_stream_model(config: LMConfig) -> None:
    """Refuse stream mode for a bidirectional model.

    Its backward stack would see only the rest of each window, never the stream after it (a
    state cannot be carried backwards in time), so windows would score differently from the
    same text in sentences; bidirectional models are trained and scored in sentence mode.
    """
    if config.bidirectional:
        raise UserError("a bidirectional model cannot run in stream mode: its backward state "
                        "cannot be carried across windows; train it on sentences")
