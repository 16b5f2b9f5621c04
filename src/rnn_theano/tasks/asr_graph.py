"""Speech recognition: a deep bidirectional recurrent network trained with CTC.

The graph for a time-major batch of T frames and B utterances (F features per frame, P
projection units, H hidden units per direction, L layers, K outputs: the blank and the
labels)::

    p = relu(x in_W + in_b)                         (T, B, P)
    h^0 = p; for layer i = 1..L:
        (stride 2 before layers 2..1+subsample: pairs of frames joined, T halves)
        h^i = [fwd_i(h^{i-1}), back_i(h^{i-1})]     (T', B, 2H)  dropout between layers
    log y = log_softmax(h^L out_W + out_b)          (T', B, K)   per frame
    cost_b = CTC(log y_b, labels_b)                 (B,)         ``nn.ctc``

Unlike the language model's two independent stacks, each layer here reads both directions
of the layer below (Graves et al. 2013; Deep Speech 2): a frame's state at layer 2 already
knows the whole utterance. The stride joins frames 2t and 2t+1 into one of twice the width
(the pyramid of Listen, Attend and Spell), halving the steps every later layer and the CTC
recursion take; a joined frame is real when either of its two is. T must be a multiple of
``2 ** subsample`` (the batches are padded to one).

Parameters: ``in_W`` (F, P) and ``in_b`` (P,); the cells ``l{i}_Wx/Wh/b`` (forward) and
``back{i}_*`` (backward) named and initialised as the language model's; ``out_W`` (2H, K)
Uniform(+-1/sqrt(2H)) and ``out_b`` (K,) zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor.tensor as pt

from ..errors import SettingError
from ..nn.cells import CELLS, init_cell_params, project_inputs, run_cell
from ..nn.ctc import ctc_cost
from .lm_graph import (FORWARD, BACKWARD, _Dropout, check_param_shapes, check_rates,
                       init_output)

Tensor = pt.TensorVariable
ASR_CELLS = ("gru", "lstm")


@dataclass(frozen=True)
class RecogniserConfig:
    """Everything that defines the recogniser: what a checkpoint records to rebuild it."""

    cell: str = "gru"
    n_features: int = 40
    proj_dim: int = 128
    hidden_dim: int = 128
    layers: int = 2
    subsample: int = 1  # stride-2 steps, before layers 2 .. 1 + subsample
    n_outputs: int = 11  # the blank and the labels
    dropout: float = 0.0
    float32: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.cell not in ASR_CELLS:
            raise SettingError("cell", f"{self.cell!r} is unknown: use one of "
                               f"{', '.join(ASR_CELLS)}")
        for name in ("n_features", "proj_dim", "hidden_dim", "layers"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.subsample < self.layers:
            raise SettingError("subsample", f"must be between 0 and --layers - 1 "
                               f"({self.layers - 1}): a stride sits between two layers, got "
                               f"{self.subsample}")
        if self.n_outputs < 2:
            raise SettingError("n_outputs", f"needs the blank and a label, got {self.n_outputs}")
        check_rates(self, "dropout")

    @property
    def dtype(self) -> str:
        return "float32" if self.float32 else "float64"

    @property
    def stride(self) -> int:
        """Input frames per output frame."""
        return 2 ** self.subsample

    # What ``_Dropout`` reads: plain dropout only.
    word_rate, recurrent_rate, embed_rate, weight_rate, locked = 0.0, 0.0, 0.0, 0.0, False

    @property
    def draws_masks(self) -> bool:
        return self.dropout > 0.0

    def layer_inputs(self, i: int) -> int:
        """Width of layer i's input: the projection, both directions below, or two frames of
        them after a stride."""
        if i == 0:
            return self.proj_dim
        return 2 * self.hidden_dim * (2 if i <= self.subsample else 1)


def init_asr_params(config: RecogniserConfig) -> dict[str, np.ndarray]:
    """Fresh parameters, named as in the module docstring, in the config's dtype."""
    rng = np.random.default_rng(config.seed)
    cell, H = CELLS[config.cell], config.hidden_dim
    scale = 1.0 / np.sqrt(config.n_features)
    params = {"in_W": rng.uniform(-scale, scale, (config.n_features, config.proj_dim)),
              "in_b": np.zeros(config.proj_dim)}
    for i in range(config.layers):
        for prefix in (FORWARD, BACKWARD):
            layer = init_cell_params(cell, config.layer_inputs(i), H, rng)
            params.update({f"{prefix}{i}_{k}": v for k, v in layer.items()})
    params |= init_output(rng, 2 * H, config.n_outputs)
    return {k: v.astype(config.dtype) for k, v in params.items()}


def check_asr_params(config: RecogniserConfig, params: dict[str, np.ndarray]) -> None:
    """Refuse parameters (e.g. from a checkpoint) whose names or shapes do not fit ``config``."""
    check_param_shapes(init_asr_params(config), params)


@dataclass(frozen=True)
class AsrGraph:
    """The symbolic inputs and outputs of one recogniser graph."""

    x: Tensor           # (T, B, F) features
    mask: Tensor        # (T, B) 1 on real frames
    labels: Tensor      # (B, U) int32 label ids (1..K-1)
    label_mask: Tensor  # (B, U) 1 on real labels
    cost: Tensor        # (B,) CTC cost of each row, in nats
    log_probs: Tensor   # (T', B, K) per-frame log-posteriors, T' = T / stride
    out_mask: Tensor    # (T', B) 1 on real output frames
    updates: dict       # the dropout generator's update (empty without dropout)


def build_asr(config: RecogniserConfig, params: dict[str, Any], dropout_rng: Any | None = None,
              shape: tuple[int, int, int] | None = None) -> AsrGraph:
    """The graph over the shared ``params``; dropout only when ``dropout_rng`` is given.

    ``shape`` (T, B, U) fixes the input shapes (the JAX backend needs them).
    """
    T, B, U = shape or (None, None, None)
    x = pt.tensor("x", dtype=config.dtype, shape=(T, B, config.n_features))
    mask = pt.tensor("mask", dtype=config.dtype, shape=(T, B))
    labels = pt.tensor("labels", dtype="int32", shape=(B, U))
    label_mask = pt.tensor("label_mask", dtype=config.dtype, shape=(B, U))
    drop = _Dropout(config, dropout_rng)

    h = pt.maximum(project_inputs(x, params["in_W"], params["in_b"]), 0.0)
    m = mask
    for i in range(config.layers):
        if i > 0:
            h = drop(h)
        if 0 < i <= config.subsample:
            h, m = _halve(h, m)
        h = _bidirectional(config, params, i, h, m)
    logits = project_inputs(drop(h), params["out_W"], params["out_b"])
    log_probs = pt.special.log_softmax(logits, axis=-1)
    cost = ctc_cost(log_probs, m, labels, label_mask)
    return AsrGraph(x, mask, labels, label_mask, cost, log_probs, m, drop.updates())


def _halve(h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Frames 2t and 2t+1 joined into frame t: (T, B, D) -> (T/2, B, 2D)."""
    T, B, D = h.shape
    joined = h.reshape((T // 2, 2, B, D)).dimshuffle(0, 2, 1, 3).reshape((T // 2, B, 2 * D))
    return joined, mask.reshape((T // 2, 2, B)).max(axis=1)


def _bidirectional(config: RecogniserConfig, params: dict[str, Any], i: int, h: Tensor,
                   mask: Tensor) -> Tensor:
    """Layer i of both directions over ``h`` (T, B, D): their states side by side (T, B, 2H)."""
    cell = CELLS[config.cell]
    zeros = pt.zeros((h.shape[1], config.hidden_dim), dtype=config.dtype)
    outputs = []
    for prefix, reverse in ((FORWARD, False), (BACKWARD, True)):
        seq, m = (h[::-1], mask[::-1]) if reverse else (h, mask)
        xp = project_inputs(seq, params[f"{prefix}{i}_Wx"], params[f"{prefix}{i}_b"])
        states = run_cell(cell, xp, m, [zeros] * cell.states, params[f"{prefix}{i}_Wh"])[0]
        outputs.append(states[::-1] if reverse else states)
    return pt.concatenate(outputs, axis=2)
