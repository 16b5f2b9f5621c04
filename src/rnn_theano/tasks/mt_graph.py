"""Translation: an attention encoder-decoder over the language model's pieces.

The graph for a source batch of S steps and a target batch of T steps, B rows (E embedding,
H encoder units per direction, R = 2H (H when one-directional), D decoder units, A attention
units, C target vocabulary)::

    h = encoder(src_embed[src])                      (S, B, R)  the LM's stacks (``_stack``)
    hp = h W_h                                       (S, B, A)  hoisted out of the decoder loop
    s_0 = tanh(init(h) init_W + init_b)              (B, D)     mean of h, or its two ends
    for t in 0 .. T-1 (the decoder's ``scan``, teacher forcing: y_in = BOS y_1 .. y_{T-1}):
        c_t, alpha_t = attend(s_{t-1}, h, hp)        (B, R), (B, S)
        s_t = cell(dec_embed[y_in_t] Wx + b + c_t Wc, s_{t-1})     (B, D)
    o_t = tanh(s_t Ws + c_t Wc' + dec_embed[y_in_t] We + b')        (B, E)   deep output
    log p(y_t | y_<t, x) = log_softmax(o_t out_W + out_b)           (B, C)

Attention (Bahdanau et al. 2015; Luong et al. 2015)::

    additive  e_tj = v . tanh(hp_j + s_{t-1} W_s)     hp = h W_h   (the "concat" score)
    general   e_tj = s_{t-1} . hp_j                   hp = h W_a   (D columns)
    dot       e_tj = s_{t-1} . h_j                    hp = h       (needs D == R)
    alpha_t = softmax over the real source positions j of e_tj;  c_t = sum_j alpha_tj h_j

The source-side term of every score does not depend on t, so it is computed once, before the
loop, as one product over all S*B positions (the same hoisting as the cells' input
projections); the loop's step does one product for the context's input gates, one for the
recurrence and, for additive attention, one (B, D) x (D, A) for the query. Source padding is set to a large negative
score before the softmax, so its weight is exactly zero: padding changes neither the output
nor the gradient. The output layer runs after the loop over all T*B positions at once.

Parameters: the encoder's ``embed``, ``l{i}_*``, ``back{i}_*`` (named as the language model's),
then ``dec_embed`` (C, E), the decoder cell ``dec_Wx`` (E, G*D), ``dec_Wc`` (R, G*D),
``dec_Wh`` (D, G*D), ``dec_b``; ``init_W`` (R, D), ``init_b``; the attention's ``att_Wh``
(R, A), ``att_Ws`` (D, A), ``att_v`` (A,) (additive) or ``att_W`` (R, D) (general); the deep
output ``read_Ws`` (D, E), ``read_Wc`` (R, E), ``read_We`` (E, E), ``read_b`` (E,), and
``out_W`` (E, C) (absent when tied to ``dec_embed``), ``out_b`` (C,).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from ..errors import SettingError
from ..nn.cells import CELLS, init_cell_params, project_inputs
from .lm_graph import (FORWARD, BACKWARD, EncoderSettings, _Dropout, _logsumexp, _stack,
                       check_param_shapes, check_rates, init_encoder)

Tensor = pt.TensorVariable
ATTENTIONS = ("additive", "general", "dot")
INIT_STATES = ("mean", "final")

# A padded source position's score: exp() of it is exactly 0 next to any real score.
_NEG = -1e9


@dataclass(frozen=True)
class Seq2SeqConfig(EncoderSettings):
    """Everything that defines the translation network: what a checkpoint rebuilds it from.

    Fields in order: ``EncoderSettings``'s (cell, vocab_size: the source vocabulary,
    embed_dim, hidden_dim: per encoder direction, layers, bidirectional, dropout), then these.
    """

    target_vocab_size: int = 8000
    decoder_dim: int = 512
    attention: str = "additive"
    attention_dim: int = 512
    init_state: str = "mean"
    tie_embeddings: bool = False
    label_smoothing: float = 0.0
    float32: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("target_vocab_size", "decoder_dim", "attention_dim"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"must be at least 1, got {getattr(self, name)}")
        if self.attention not in ATTENTIONS:
            raise SettingError("attention", f"{self.attention!r} is unknown: use one of "
                               f"{', '.join(ATTENTIONS)}")
        if self.attention == "dot" and self.decoder_dim != self.top_dim:
            raise SettingError("attention", f"dot needs the decoder size ({self.decoder_dim}) "
                               f"to equal the encoder's output size ({self.top_dim}): set "
                               f"--decoder-dim {self.top_dim}, or use general")
        if self.init_state not in INIT_STATES:
            raise SettingError("init_state", f"{self.init_state!r} is unknown: use one of "
                               f"{', '.join(INIT_STATES)}")
        check_rates(self, "label_smoothing")

    @property
    def hp_dim(self) -> int:
        """The width of the hoisted source side of the scores: A, D (general) or R (dot)."""
        return {"additive": self.attention_dim, "general": self.decoder_dim,
                "dot": self.top_dim}[self.attention]

    @property
    def states(self) -> int:
        """The decoder cell's states: 1 (h), or 2 (h, c) for the LSTM."""
        return CELLS[self.cell].states


def init_mt_params(config: Seq2SeqConfig) -> dict[str, np.ndarray]:
    """Fresh parameters, named as in the module docstring, in the config's dtype."""
    rng = np.random.default_rng(config.seed)
    params = init_encoder(config, rng)
    R, D, E, A, C = (config.top_dim, config.decoder_dim, config.embed_dim,
                     config.attention_dim, config.target_vocab_size)

    def uniform(*shape: int) -> np.ndarray:
        return rng.uniform(-1 / np.sqrt(shape[0]), 1 / np.sqrt(shape[0]), shape)

    params["dec_embed"] = rng.uniform(-0.1, 0.1, (C, E))
    cell = init_cell_params(CELLS[config.cell], E, D, rng)
    params |= {f"dec_{k}": v for k, v in cell.items()}
    params["dec_Wc"] = uniform(R, CELLS[config.cell].gates * D)
    params |= {"init_W": uniform(R, D), "init_b": np.zeros(D)}
    if config.attention == "additive":
        params |= {"att_Wh": uniform(R, A), "att_Ws": uniform(D, A), "att_v": uniform(A)}
    elif config.attention == "general":
        params["att_W"] = uniform(R, D)
    params |= {"read_Ws": uniform(D, E), "read_Wc": uniform(R, E), "read_We": uniform(E, E),
               "read_b": np.zeros(E)}
    if not config.tie_embeddings:
        params["out_W"] = uniform(E, C)
    params["out_b"] = np.zeros(C)
    return {k: v.astype(config.dtype) for k, v in params.items()}


def check_mt_params(config: Seq2SeqConfig, params: dict[str, np.ndarray]) -> None:
    """Refuse parameters (e.g. from a checkpoint) whose names or shapes do not fit ``config``."""
    check_param_shapes(init_mt_params(config), params)


# --- the encoder ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoded:
    """What the decoder reads of an encoded source batch."""

    h: Tensor        # (S, B, R) encoder states
    hp: Tensor       # (S, B, A) their attention projection (h itself for dot)
    mask: Tensor     # (S, B) 1 on real source tokens
    initial: list    # the decoder's initial states, each (B, D)

    def loop_inputs(self) -> list[Tensor]:
        """What the decoder's loop reads, each once (dot attention's hp is h itself)."""
        return [self.h, self.mask] + ([] if self.hp is self.h else [self.hp])

    @staticmethod
    def in_loop(args: list[Tensor]) -> Encoded:
        """The ``loop_inputs`` as the loop's step receives them."""
        h, mask, *hp = args
        return Encoded(h, hp[0] if hp else h, mask, [])


def encode(config: Seq2SeqConfig, params: dict[str, Any], src: Tensor, mask: Tensor,
           drop: _Dropout) -> Encoded:
    """Run the encoder stacks over ``src`` (S, B) and prepare what attention needs."""
    e = drop(params["embed"][src])
    zeros = pt.zeros((src.shape[1], config.hidden_dim), dtype=config.dtype)
    start = [[zeros] * CELLS[config.cell].states] * config.layers
    tops = [_stack(config, params, FORWARD, e, mask, start, drop)[0]]
    if config.bidirectional:
        back, _ = _stack(config, params, BACKWARD, e[::-1], mask[::-1], start, drop)
        tops.append(back[::-1])  # in forward time: back[j] has read words j .. end
    h = pt.concatenate(tops, axis=2) if len(tops) > 1 else tops[0]
    if config.init_state == "mean":
        summary = (h * mask[:, :, None]).sum(axis=0) / pt.maximum(mask.sum(axis=0), 1)[:, None]
    else:  # the forward stack after the last word, the backward one after the first
        summary = pt.concatenate([tops[0][-1], *[t[0] for t in tops[1:]]], axis=1)
    s0 = pt.tanh(summary.dot(params["init_W"]) + params["init_b"])
    initial = [s0] + [pt.zeros_like(s0)] * (config.states - 1)  # the LSTM's c starts at 0
    return Encoded(h, _hoisted(config, params, h), mask, initial)


def _hoisted(config: Seq2SeqConfig, params: dict[str, Any], h: Tensor) -> Tensor:
    """The source side of every attention score, (S, B, R) -> (S, B, A), computed once."""
    if config.attention == "dot":
        return h
    W = params["att_Wh"] if config.attention == "additive" else params["att_W"]
    return project_inputs(h, W, None)


# --- the decoder step -----------------------------------------------------------------------

def attend(config: Seq2SeqConfig, params: dict[str, Any], s_prev: Tensor, h: Tensor, hp: Tensor,
           mask: Tensor) -> tuple[Tensor, Tensor]:
    """Context (B, R) and attention weights (B, S) of the query ``s_prev`` (B, D)."""
    if config.attention == "additive":
        # v as a product and sum, not a (S, B, A) . (A,) dot: that one reshapes with
        # sizes JAX cannot see inside the loop.
        scores = (pt.tanh(hp + s_prev.dot(params["att_Ws"])[None]) * params["att_v"]).sum(2)
    else:  # general (hp = h W_a) or dot (hp = h)
        scores = (hp * s_prev[None]).sum(axis=2)  # (S, B)
    scores = pt.where(mask > 0, scores, np.asarray(_NEG, dtype=config.dtype))
    alpha = pt.special.softmax(scores, axis=0)  # over the source positions
    context = (alpha[:, :, None] * h).sum(axis=0)  # (B, R)
    return context, alpha.T


def decoder_step(config: Seq2SeqConfig, params: dict[str, Any], xe_t: Tensor, m_t: Tensor,
                 states: list[Tensor], enc: Encoded) -> tuple[list[Tensor], Tensor, Tensor]:
    """One step of the conditional cell: attend with the previous state, then update it.

    ``xe_t`` (B, G*D) is the previous target word's projected embedding, ``m_t`` (B,) marks
    real target steps. Returns the new states, the context (B, R) and the weights (B, S).
    """
    context, alpha = attend(config, params, states[0], enc.h, enc.hp, enc.mask)
    xp = xe_t + context.dot(params["dec_Wc"])
    new = CELLS[config.cell].step(xp, m_t, *states, params["dec_Wh"])
    return (list(new) if config.states > 1 else [new]), context, alpha


def deep_output(params: dict[str, Any], s: Tensor, context: Tensor, e: Tensor) -> Tensor:
    """The deep output layer's ``o`` (..., E) from decoder states, contexts and the input
    words' embeddings (any leading shape)."""
    return pt.tanh(s.dot(params["read_Ws"]) + context.dot(params["read_Wc"])
                   + e.dot(params["read_We"]) + params["read_b"])


def output_logits(config: Seq2SeqConfig, params: dict[str, Any], o: Tensor) -> Tensor:
    """Logits (N, C) of the next word from N deep outputs ``o`` (N, E)."""
    out_W = params["dec_embed"].T if config.tie_embeddings else params["out_W"]
    return o.dot(out_W) + params["out_b"]


# --- the training graph ---------------------------------------------------------------------

@dataclass(frozen=True)
class Seq2SeqGraph:
    """The symbolic inputs and outputs of one teacher-forced translation graph."""

    src: Tensor        # (S, B) int32 source ids
    src_mask: Tensor   # (S, B) 1 on real source tokens
    y_in: Tensor       # (T, B) int32 decoder inputs: BOS, then the target's words
    y_out: Tensor      # (T, B) int32 targets: the target's words, then EOS
    mask: Tensor       # (T, B) 1 on real target positions
    cost: Tensor       # () summed cross-entropy over real target tokens, in nats
    objective: Tensor  # () what training minimises: cost, label-smoothed when set
    n_tokens: Tensor   # () real target tokens
    alpha: Tensor      # (T, B, S) attention weights
    updates: dict      # the dropout generator's update (empty without dropout)


def build_mt(config: Seq2SeqConfig, params: dict[str, Any], dropout_rng: Any | None = None,
             shape: tuple[tuple[int, int], tuple[int, int]] | None = None) -> Seq2SeqGraph:
    """The graph over the shared ``params``; dropout only when ``dropout_rng`` is given.

    ``shape`` fixes ((S, B), (T, B)) in the input types (the JAX backend needs it).
    """
    (S, B), (T, _) = shape or ((None, None), (None, None))
    src = pt.tensor("src", dtype="int32", shape=(S, B))
    src_mask = pt.tensor("src_mask", dtype=config.dtype, shape=(S, B))
    y_in = pt.tensor("y_in", dtype="int32", shape=(T, B))
    y_out = pt.tensor("y_out", dtype="int32", shape=(T, B))
    mask = pt.tensor("mask", dtype=config.dtype, shape=(T, B))
    drop = _Dropout(config, dropout_rng)

    enc = encode(config, params, src, src_mask, drop)
    e = drop(params["dec_embed"][y_in])  # (T, B, E)
    xe = project_inputs(e, params["dec_Wx"], params["dec_b"])

    def step(xe_t, m_t, *args):
        states, enc_t = list(args[:config.states]), Encoded.in_loop(args[config.states:])
        new, context, alpha = decoder_step(config, params, xe_t, m_t, states, enc_t)
        return [*new, context, alpha]

    outputs = pytensor.scan(step, sequences=[xe, mask],
                            outputs_info=[*enc.initial, None, None],
                            non_sequences=enc.loop_inputs(), return_updates=False)
    s_all, context, alpha = outputs[0], outputs[-2], outputs[-1]
    T_, B_ = y_in.shape[0], y_in.shape[1]
    N = T_ * B_
    o = drop(deep_output(params, s_all.reshape((N, config.decoder_dim)),
                         context.reshape((N, config.top_dim)),
                         e.reshape((N, config.embed_dim))))  # (N, E), N = T*B positions
    logits = output_logits(config, params, o)
    cost, objective = _losses(config, logits, y_out.flatten(), mask.flatten())
    return Seq2SeqGraph(src, src_mask, y_in, y_out, mask, cost, objective, mask.sum(), alpha,
                   drop.updates())


def _losses(config: Seq2SeqConfig, logits: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Summed cross-entropy over real tokens, and the label-smoothed version training uses.

    With smoothing eps the target distribution is (1 - eps) on the word and eps spread
    evenly over all C words: the loss is ``lse - (1 - eps) logit_y - eps mean(logits)``.
    """
    lse = _logsumexp(logits)
    target = logits[pt.arange(logits.shape[0]), y]
    cost = ((lse - target) * mask).sum()
    eps = config.label_smoothing
    if not eps:
        return cost, cost
    smoothed = lse - (1 - eps) * target - eps * logits.mean(axis=1)
    return cost, (smoothed * mask).sum()


# --- decoding graphs ------------------------------------------------------------------------

def build_encoder_fn_graph(config: Seq2SeqConfig, params: dict[str, Any],
                           shape: tuple[int, int] | None = None) -> tuple[list, list]:
    """Inputs (src, src_mask) and outputs (h, hp, initial states...) of the encoder alone."""
    S, B = shape or (None, None)
    src = pt.tensor("src", dtype="int32", shape=(S, B))
    src_mask = pt.tensor("src_mask", dtype=config.dtype, shape=(S, B))
    enc = encode(config, params, src, src_mask, _Dropout(config, None))
    return [src, src_mask], [enc.h, enc.hp, *enc.initial]


def build_step_graph(config: Seq2SeqConfig, params: dict[str, Any],
                     shape: tuple[int, int] | None = None) -> tuple[list, list]:
    """One decoding step for N hypotheses: inputs (y_prev (N,), states..., h, hp, src_mask),
    outputs (log-probabilities (N, C), new states..., attention weights (N, S))."""
    S, N = shape or (None, None)
    y_prev = pt.tensor("y_prev", dtype="int32", shape=(N,))
    states = [pt.tensor(f"state{i}", dtype=config.dtype, shape=(N, config.decoder_dim))
              for i in range(config.states)]
    h = pt.tensor("h", dtype=config.dtype, shape=(S, N, config.top_dim))
    hp = pt.tensor("hp", dtype=config.dtype, shape=(S, N, config.hp_dim))
    src_mask = pt.tensor("src_mask", dtype=config.dtype, shape=(S, N))
    e = params["dec_embed"][y_prev]
    xe = e.dot(params["dec_Wx"]) + params["dec_b"]
    ones = pt.ones((y_prev.shape[0],), dtype=config.dtype)
    new, context, alpha = decoder_step(config, params, xe, ones, states,
                                       Encoded(h, hp, src_mask, []))
    logits = output_logits(config, params, deep_output(params, new[0], context, e))
    log_probs = pt.special.log_softmax(logits, axis=-1)
    return [y_prev, *states, h, hp, src_mask], [log_probs, *new, alpha]
