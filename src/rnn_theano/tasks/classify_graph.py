"""Sentence classification: a many-to-one network over the language model's pieces.

The graph for a time-major batch of T steps and B rows (C words, E embedding, H hidden units,
L layers, K classes, R = H, or 2H when bidirectional)::

    e = embed[x]                                    (T, B, E)   embedding, word, dropout
    fwd = forward stack over e, zero initial state  (T, B, H)   (``lm_graph._stack``)
    back = backward stack over e[::-1]              (T, B, H)   bidirectional only
    rep = pool(fwd, back)                           (B, R)      dropout
    log p(k | sentence) = log_softmax(rep out_W + out_b)        (B, K)
    cost = sum_b w[y_b] CE_b                        summed over rows with a real token
    adversarial = cost at e + r, r = a g_b / |g_b|  training with --adversarial a only

Masking keeps a row's state through its padding (``cells``), so the forward stack's last state
is the state after the row's last real word, and the backward stack, which reads the reversed
rows (padding first, keeping its zero state), ends after reading the first word. Pooling:

* ``final``: the forward stack's last state joined with the backward stack's: the two ends of
  the sentence, each summarised by the stack that reads towards it;
* ``mean``: the mean over the real steps of the top states, the backward ones put back in
  forward time so that step t joins the state after word t from each side;
* ``max``: their elementwise maximum over the real steps (padding cannot win: it is set to a
  large negative number first);
* ``attention``: their weighted mean over the real steps, the weights a softmax over the
  steps of ``tanh(h_t att_W + att_b) . att_v`` (Yang et al. 2016, Zhou et al. 2016): the
  network learns which words to listen to, where ``mean`` listens to all alike.

Parameters: ``embed`` (C, E) Uniform(+-``embed_init``), the cells ``l{i}_Wx/Wh/b`` (and
``back{i}_*``) named and initialised as the language model's, ``out_W`` (R, K)
Uniform(+-1/sqrt(R)) and ``out_b`` (K,) zero; with attention also ``att_W`` (R, R) and
``att_v`` (R,) Uniform(+-1/sqrt(R)) and ``att_b`` (R,) zero, drawn after the others so that
the other poolings start from the same numbers with or without it.

Adversarial training (Miyato et al. 2017) moves each training row's embedded words (after
dropout) a distance ``adversarial`` in the direction g_b, the gradient of the row's cost with
respect to them, where a small step raises it most, and adds the cost there to the objective:
the network learns to keep its answer when the words' vectors shift a little. r is held
constant (no gradient flows through g); evaluation graphs have no such term.

``class_weights`` (K,) weigh each row's cross-entropy by its label's weight (all ones: the
plain summed cross-entropy); the engine trains on ``(cost + adversarial) / weight``, the
weighted mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad

from ..errors import SettingError
from ..nn.cells import CELLS
from .lm_graph import (FORWARD, BACKWARD, EncoderSettings, SequenceDropout, _Dropout, _stack,
                       _target_log_prob, check_param_shapes, check_rates, init_encoder,
                       init_output)

Tensor = pt.TensorVariable
POOLINGS = ("final", "mean", "max", "attention")

# Padding's value before max pooling: far below any state a cell reaches (|h| <= 1 for the
# saturating cells), so the maximum of a row is always one of its real steps.
_NEG = -1e9


@dataclass(frozen=True)
class ClassifierConfig(SequenceDropout, EncoderSettings):
    """Everything that defines the classifier: what a checkpoint records to rebuild it.

    Fields in order: ``EncoderSettings``'s (cell, vocab_size, embed_dim, hidden_dim, layers,
    bidirectional, dropout), then these.
    """

    n_classes: int = 2
    pooling: str = "final"
    seed: int = 0
    float32: bool = True
    embed_init: float = 1.0  # embeddings start Uniform(+-embed_init): see ClassifierSettings
    word_dropout: float = 0.0  # training drops each word of a sentence with this probability
    variational_dropout: bool = False  # the language model's three (``SequenceDropout``)
    recurrent_dropout: float = 0.0
    embed_dropout: float = 0.0
    adversarial: float = 0.0  # training adds the cost of embeddings pushed this far uphill

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_sequence_dropout()
        check_rates(self, "word_dropout")
        if not 0.0 <= self.adversarial < math.inf:
            raise SettingError("adversarial", f"must be a length >= 0, got {self.adversarial}")
        if not self.embed_init > 0:
            raise SettingError("embed_init", f"must be positive, got {self.embed_init}")
        if self.n_classes < 2:
            raise SettingError("n_classes", f"must be at least 2, got {self.n_classes}")
        if self.pooling not in POOLINGS:
            raise SettingError("pooling", f"{self.pooling!r} is unknown: use one of "
                               f"{', '.join(POOLINGS)}")

    @property
    def word_rate(self) -> float:
        return self.word_dropout


def init_classifier_params(config: ClassifierConfig) -> dict[str, np.ndarray]:
    """Fresh parameters, named as in the module docstring, in the config's dtype."""
    rng = np.random.default_rng(config.seed)
    params = init_encoder(config, rng, config.embed_init)
    params |= init_output(rng, config.top_dim, config.n_classes)
    if config.pooling == "attention":
        R = config.top_dim
        scale = 1.0 / np.sqrt(R)
        params |= {"att_W": rng.uniform(-scale, scale, (R, R)), "att_b": np.zeros(R),
                   "att_v": rng.uniform(-scale, scale, R)}
    return {k: v.astype(config.dtype) for k, v in params.items()}


def check_classifier_params(config: ClassifierConfig, params: dict[str, np.ndarray]) -> None:
    """Refuse parameters (e.g. from a checkpoint) whose names or shapes do not fit ``config``."""
    check_param_shapes(init_classifier_params(config), params)


@dataclass(frozen=True)
class ClassifierGraph:
    """The symbolic inputs and outputs of one classifier graph."""

    x: Tensor              # (T, B) int32 word ids
    mask: Tensor           # (T, B) 1 for a real token, 0 for padding
    labels: Tensor         # (B,) int32 class of each row
    class_weights: Tensor  # (K,) weight of each class's cross-entropy
    cost: Tensor           # () sum over real rows of w[label] * cross-entropy, in nats
    adversarial: Tensor    # () the same cost at the perturbed embeddings (training; else 0)
    n: Tensor              # () rows with at least one real token
    weight: Tensor         # () sum over real rows of w[label]: the cost's denominator
    correct: Tensor        # () real rows whose most probable class is their label
    predicted: Tensor      # (B,) int the most probable class of each row
    log_probs: Tensor      # (B, K) log-probabilities of every class
    updates: dict          # the dropout generator's update (empty without dropout)


def build_classifier(config: ClassifierConfig, params: dict[str, Any],
                     dropout_rng: Any | None = None,
                     shape: tuple[int, int] | None = None) -> ClassifierGraph:
    """The graph over the shared ``params``; a training graph (dropout, the adversarial
    cost) only when ``dropout_rng`` is given.

    ``shape`` fixes (T, B) in the input types (the JAX backend needs it); ``dropout_rng`` is a
    shared generator whose update the compiled function must apply (as in ``lm_graph.build_lm``).
    """
    T, B = shape or (None, None)
    x = pt.tensor("x", dtype="int32", shape=(T, B))
    mask = pt.tensor("mask", dtype=config.dtype, shape=(T, B))
    labels = pt.tensor("labels", dtype="int32", shape=(B,))
    class_weights = pt.tensor("class_weights", dtype=config.dtype, shape=(config.n_classes,))
    drop = _Dropout(config, dropout_rng)

    real = mask.max(axis=0)  # (B,): 1 for a row with a real token, 0 for an empty one
    weights = class_weights[labels] * real  # (B,)

    def classify(e: Tensor) -> tuple[Tensor, Tensor]:
        """The logits (B, K) of the embedded batch ``e`` (T, B, E), and their cost."""
        rep = drop(_represent(config, params, e, mask, real, drop))
        logits = rep.dot(params["out_W"]) + params["out_b"]
        return logits, -(_target_log_prob(logits, labels) * weights).sum()

    e = drop(drop.words(drop.embedded(params["embed"], x)))
    logits, cost = classify(e)
    adversarial = pt.zeros((), dtype=config.dtype)
    if dropout_rng is not None and config.adversarial > 0:
        adversarial = classify(e + _uphill(config, cost, e))[1]
    predicted = pt.argmax(logits, axis=-1)
    hits = pt.cast(pt.eq(predicted, labels), config.dtype)
    return ClassifierGraph(x, mask, labels, class_weights, cost, adversarial, real.sum(),
                           weights.sum(), (hits * real).sum(), predicted,
                           pt.special.log_softmax(logits, axis=-1), drop.updates())


def _uphill(config: ClassifierConfig, cost: Tensor, e: Tensor) -> Tensor:
    """The adversarial perturbation of the embedded batch ``e`` (T, B, E) (Miyato et al.
    2017): for each row, the direction in which its cost rises fastest, scaled to length
    ``config.adversarial`` over the row's whole (T, E) block; a constant to the gradient.

    ``cost`` sums the rows, so its gradient at a row's embeddings is that row's own; it is
    zero on padding, which the cells and the pooling ignore, and a row whose gradient is all
    zero (an empty row) stays where it is.
    """
    g = disconnected_grad(pytensor.grad(cost, e))
    norm = pt.sqrt((g * g).sum(axis=(0, 2), keepdims=True))  # (1, B, 1)
    tiny = np.asarray(1e-20, dtype=config.dtype)
    return np.asarray(config.adversarial, dtype=config.dtype) * g / pt.maximum(norm, tiny)


def _represent(config: ClassifierConfig, params: dict[str, Any], e: Tensor, mask: Tensor,
               real: Tensor, drop: _Dropout) -> Tensor:
    """The sentence representation (B, R) of the embedded batch ``e`` (T, B, E); ``drop``
    between layers, ``real`` (B,) marks the rows with a real token."""
    S = CELLS[config.cell].states
    zeros = pt.zeros((e.shape[1], config.hidden_dim), dtype=config.dtype)  # (B, H)
    initial = [[zeros] * S] * config.layers
    tops = [_stack(config, params, FORWARD, e, mask, initial, drop)[0]]
    if config.bidirectional:
        back, _ = _stack(config, params, BACKWARD, e[::-1], mask[::-1], initial, drop)
        tops.append(back)
    if config.pooling == "final":
        return pt.concatenate([top[-1] for top in tops], axis=1)
    # Put the backward states in forward time: step t joins the states after word t.
    states = pt.concatenate([tops[0], *[top[::-1] for top in tops[1:]]], axis=2)  # (T, B, R)
    m = mask[:, :, None]
    if config.pooling == "mean":
        return (states * m).sum(axis=0) / pt.maximum(mask.sum(axis=0), 1)[:, None]
    if config.pooling == "attention":
        return (states * _attention(config, params, states, mask)[:, :, None]).sum(axis=0)
    pooled = pt.where(m > 0, states, np.asarray(_NEG, dtype=config.dtype)).max(axis=0)
    return pt.where(real[:, None] > 0, pooled, 0)  # an empty row: zero, not -1e9


def _attention(config: ClassifierConfig, params: dict[str, Any], states: Tensor,
               mask: Tensor) -> Tensor:
    """(T, B) weights of the steps of ``states`` (T, B, R): a softmax over each row's real
    steps of their scores; zero on padding, and on every step of an empty row."""
    scores = pt.tanh(states.dot(params["att_W"]) + params["att_b"]).dot(params["att_v"])
    # The max over padding too only steadies exp: the scores are bounded by sum |att_v|.
    e = pt.exp(scores - scores.max(axis=0, keepdims=True)) * mask
    return e / pt.maximum(e.sum(axis=0, keepdims=True), np.asarray(1e-30, config.dtype))
