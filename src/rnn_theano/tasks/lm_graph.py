"""The general language model: embedding, stacked (optionally bidirectional) cells, softmax.

The graph for a time-major batch of T steps and B rows (C words, E embedding, H hidden units,
L layers, H_top = H, or 2H when bidirectional)::

    e = embed[x]                               (T, B, E)   dropout
    h^0 = e;  h^l = cell_l(h^{l-1})            (T, B, H)   dropout between layers
    top = h^L                                  (T, B, H_top)  dropout
    log p(y_t | ...) = log_softmax(top_t out_W + out_b)    (T, B, C)
                       (tied: out_W = proj_W embed.T, proj_W absent when E == H_top)
                       (or class-based: log p(class) + log p(word | class), see _class_softmax)
    cost = -sum_{t,b} mask[t,b] log p(y[t,b])  summed cross-entropy over real tokens

Only the recurrences run inside ``scan`` (``cells.run_cell``); the embedding gather, each
layer's input projection, the output projection and the log-softmax are each one product over
all T*B positions. Dropout (inverted: scaled by 1/keep at training time, the identity at
evaluation) touches these non-recurrent connections (Zaremba et al. 2014): a fresh mask at
every step, or with ``variational_dropout`` one mask per sequence, the same units dropped at
every step (Gal & Ghahramani 2016). ``recurrent_dropout`` adds such a per-sequence mask on
the state h_{t-1} fed back into each layer, ``embed_dropout`` drops whole word types for
a batch (every occurrence of a dropped word reads zeros), and ``weight_drop`` drops entries of
each recurrent matrix ``Wh`` (DropConnect, Wan et al. 2013), one mask per batch shared by
every step and row, as AWD-LSTM does (Merity et al. 2017).

Bidirectional: a second, independent stack of L layers reads the *targets* y backwards in
time. ``x[t]`` is word t and ``y[t]`` word t+1 of a sentence, so the forward state after
``x[t]`` has read words ``<= t``, and the backward state at ``t+1`` (after reading
``y[T-1] .. y[t+1]``) has read words ``>= t+2``: the prediction of ``y[t]`` uses
``concat(forward_t, backward_{t+1})`` (zero past the end) and never sees the word it predicts.
The two stacks meet only at the top: joining them at every layer would hand layer 2 of the
forward stack the backward state of word t+1 itself.

Parameters (a dict of shared variables, saved under these names)::

    embed (C, E)
    l{i}_Wx (D_i, G*H)   l{i}_Wh (H, G*H)   l{i}_b (G*H,)     forward layer i (D_0 = E, else H)
    back{i}_Wx, back{i}_Wh, back{i}_b                          backward layer i (bidirectional)
    out_W (H_top, C)     out_b (C,)                            out_W absent with tied weights
    proj_W (H_top, E)                                          tied weights with E != H_top
    class_W (H_top, K)   class_b (K,)                          class-based softmax only; then
                                                               out_W and out_b have K*M columns

Gate order and cell equations: see ``cells``. With ``tie_weights`` the output layer is
``top_t embed.T + out_b`` (Press & Wolf 2017) when E == H_top, and ``top_t proj_W embed.T +
out_b`` otherwise: a linear map onto the embedding space (Press & Wolf's projection), which
lets a wide recurrent state share a small embedding, the softmax's cost staying C E.

The recurrent state enters as one input ``state`` (L, S, B, H), S = 1 (h) or 2 (h, c for the
LSTM), and the forward stack's final state leaves with the same shape, so stream mode can
feed it back as a plain numpy array: the next window starts where this one ended, and the
gradient stops there. The backward stack always starts from zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph

from ..nn.cells import CELLS, init_cell_params, project_inputs, run_cell
from ..errors import SettingError, UserError

Tensor = pt.TensorVariable
FORWARD, BACKWARD = "l", "back"

# Embeddings start at Uniform(+-0.1), Zaremba et al.'s scale for every weight.
_EMBED_INIT = 0.1


def check_rates(config: Any, *names: str) -> None:
    """Refuse a rate (of dropout, of label smoothing) outside [0, 1): at 1 nothing would be
    kept."""
    for name in names:
        if not 0.0 <= getattr(config, name) < 1.0:
            raise SettingError(name, f"must be in [0, 1), got {getattr(config, name)}")


@dataclass(frozen=True)
class EncoderSettings:
    """The settings of the embedding and the cell stacks, which every model over ``_stack``
    has (each model adds ``float32`` and ``seed`` in its own field order)."""

    cell: str = "lstm"
    vocab_size: int = 10_000
    embed_dim: int = 200
    hidden_dim: int = 200
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise SettingError("cell", f"{self.cell!r} is unknown: use one of {', '.join(CELLS)}")
        for name in ("vocab_size", "embed_dim", "hidden_dim", "layers"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"must be at least 1, got {getattr(self, name)}")
        check_rates(self, "dropout")

    @property
    def dtype(self) -> str:
        return "float32" if self.float32 else "float64"  # type: ignore[attr-defined]

    @property
    def word_rate(self) -> float:
        """The rate at which whole words are dropped from the input (``_Dropout.words``)."""
        return 0.0

    @property
    def locked(self) -> bool:
        """Whether each dropout mask is drawn once per sequence, for every step alike."""
        return False

    @property
    def recurrent_rate(self) -> float:
        """The dropout rate on the state fed back into each layer (``cells._recurrent``)."""
        return 0.0

    @property
    def embed_rate(self) -> float:
        """The rate at which word types are dropped from the embedding for a batch."""
        return 0.0

    @property
    def weight_rate(self) -> float:
        """The rate at which entries of each recurrent matrix are dropped for a batch."""
        return 0.0

    @property
    def draws_masks(self) -> bool:
        """Whether training draws random dropout masks (and keeps a generator for them)."""
        return (self.dropout > 0.0 or self.word_rate > 0.0 or self.recurrent_rate > 0.0
                or self.embed_rate > 0.0 or self.weight_rate > 0.0)

    @property
    def top_dim(self) -> int:
        """H_top: the size of the top states, forward and backward joined."""
        return self.hidden_dim * (2 if self.bidirectional else 1)

    @property
    def directions(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the stacks: forward, then backward if bidirectional."""
        return (FORWARD, BACKWARD) if self.bidirectional else (FORWARD,)


class SequenceDropout:
    """The dropouts beyond ``EncoderSettings.dropout`` that a model reading whole sequences
    offers (the language model, the classifier): its dataclass declares the fields
    ``variational_dropout: bool``, ``recurrent_dropout: float`` and ``embed_dropout: float``,
    lists this class before ``EncoderSettings`` and calls ``check_sequence_dropout``."""

    variational_dropout: bool
    recurrent_dropout: float
    embed_dropout: float
    dropout: float

    def check_sequence_dropout(self) -> None:
        check_rates(self, "recurrent_dropout", "embed_dropout")
        if self.variational_dropout and not self.dropout:
            raise SettingError("variational_dropout", "draws the --dropout masks once per "
                               "sequence, but --dropout is 0: give it a rate")

    @property
    def locked(self) -> bool:
        return self.variational_dropout

    @property
    def recurrent_rate(self) -> float:
        return self.recurrent_dropout

    @property
    def embed_rate(self) -> float:
        return self.embed_dropout


@dataclass(frozen=True)
class LMConfig(SequenceDropout, EncoderSettings):
    """Everything that defines the network: what a checkpoint records to rebuild it.

    Fields in order: ``EncoderSettings``'s (cell, vocab_size, embed_dim, hidden_dim, layers,
    bidirectional, dropout), then these.
    """

    tie_weights: bool = False
    float32: bool = True
    forget_bias: float = 1.0
    identity_init: bool = False
    no_bias: bool = False
    softmax_classes: int = 0
    seed: int = 0
    variational_dropout: bool = False
    recurrent_dropout: float = 0.0
    embed_dropout: float = 0.0
    weight_drop: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_sequence_dropout()
        check_rates(self, "weight_drop")
        if self.softmax_classes and not 2 <= self.softmax_classes <= self.vocab_size:
            raise SettingError("softmax_classes", f"{self.softmax_classes} must be between 2 "
                               f"and the vocabulary size {self.vocab_size} (0: the full "
                               f"softmax; about sqrt(C) = {round(self.vocab_size ** 0.5)} is "
                               "fastest)")
        if self.softmax_classes and self.tie_weights:
            raise SettingError("softmax_classes", "cannot be combined with tied weights: the "
                               "class layer's word matrix is laid out by class; drop one")
        if self.identity_init and self.cell != "relu":
            raise SettingError("identity_init", f"is for the relu cell, not {self.cell}")

    @property
    def weight_rate(self) -> float:
        return self.weight_drop

    @property
    def projected(self) -> bool:
        """Whether a ``proj_W`` maps the top state onto tied embeddings of another size."""
        return self.tie_weights and self.embed_dim != self.top_dim

    @property
    def class_size(self) -> int:
        """M: words per class of the class-based softmax (the last class is padded to M)."""
        return -(-self.vocab_size // self.softmax_classes)

    @property
    def output_size(self) -> int:
        """Columns of out_W: C, or K * M with the class-based softmax (padding included)."""
        return self.softmax_classes * self.class_size if self.softmax_classes else self.vocab_size

    def state_shape(self, batch_size: int) -> tuple[int, int, int, int]:
        """Shape of the carried state: (layers, states per cell, batch, hidden)."""
        return (self.layers, CELLS[self.cell].states, batch_size, self.hidden_dim)


def init_lm_params(config: LMConfig) -> dict[str, np.ndarray]:
    """Fresh parameters, named as in the module docstring, in the config's dtype."""
    rng = np.random.default_rng(config.seed)
    params = init_encoder(config, rng, bias=not config.no_bias, forget_bias=config.forget_bias,
                          identity_init=config.identity_init)
    scale = 1.0 / np.sqrt(config.top_dim)
    if config.projected:
        params["proj_W"] = rng.uniform(-scale, scale, (config.top_dim, config.embed_dim))
    elif not config.tie_weights:
        params["out_W"] = rng.uniform(-scale, scale, (config.top_dim, config.output_size))
    params["out_b"] = np.zeros(config.output_size)
    if config.softmax_classes:
        params["class_W"] = rng.uniform(-scale, scale, (config.top_dim, config.softmax_classes))
        params["class_b"] = np.zeros(config.softmax_classes)
    return {k: v.astype(config.dtype) for k, v in params.items()}


def init_encoder(config: Any, rng: np.random.Generator, embed_init: float = _EMBED_INIT,
                 **cell_options: Any) -> dict[str, np.ndarray]:
    """Fresh ``embed`` (C, E) and the cells of every layer of every direction (float64).

    What the language model and the classifier share: the embedding, then the forward stack's
    layers, then the backward stack's, drawn from ``rng`` in that order. ``config`` needs
    ``cell``, ``vocab_size``, ``embed_dim``, ``hidden_dim``, ``layers`` and ``directions``;
    the embedding is Uniform(+-``embed_init``), ``cell_options`` go to ``init_cell_params``.
    """
    cell, H = CELLS[config.cell], config.hidden_dim
    params = {"embed": rng.uniform(-embed_init, embed_init,
                                   (config.vocab_size, config.embed_dim))}
    for prefix in config.directions:
        for i in range(config.layers):
            layer = init_cell_params(cell, config.embed_dim if i == 0 else H, H, rng,
                                     **cell_options)
            params.update({f"{prefix}{i}_{k}": v for k, v in layer.items()})
    return params


def init_output(rng: np.random.Generator, n_in: int, n_out: int) -> dict[str, np.ndarray]:
    """A softmax layer's fresh ``out_W`` (n_in, n_out), Uniform(+-1/sqrt(n_in)), and zero
    ``out_b`` (n_out,), in float64 (the classifier's and the recogniser's)."""
    scale = 1.0 / np.sqrt(n_in)
    return {"out_W": rng.uniform(-scale, scale, (n_in, n_out)), "out_b": np.zeros(n_out)}


def check_lm_params(config: LMConfig, params: dict[str, np.ndarray]) -> None:
    """Refuse parameters (e.g. from a checkpoint) whose names or shapes do not fit ``config``."""
    check_param_shapes(init_lm_params(config), params)


def check_param_shapes(fresh: dict[str, np.ndarray], params: dict[str, np.ndarray]) -> None:
    """Refuse ``params`` unless they have the names and shapes of ``fresh``, a fresh
    initialisation of the same architecture (one source of truth for names and shapes)."""
    expected = {name: value.shape for name, value in fresh.items()}
    for name, shape in expected.items():
        got = params.get(name)
        if got is None or tuple(got.shape) != shape:
            raise UserError(f"parameter {name} has shape {None if got is None else got.shape}, "
                            f"expected {shape} for this architecture: the checkpoint is damaged "
                            "or from another model; retrain it")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise UserError(f"unexpected parameters {', '.join(extra)} for this architecture: the "
                        "checkpoint is from another model; retrain it")


@dataclass(frozen=True)
class LMGraph:
    """The symbolic inputs and outputs of one language-model graph."""

    x: Tensor            # (T, B) int32 input words
    y: Tensor            # (T, B) int32 target words
    mask: Tensor         # (T, B) 1 for a real token, 0 for padding
    state: Tensor        # (L, S, B, H) initial state of the forward stack
    cost: Tensor         # () summed cross-entropy over real tokens, in nats
    n_tokens: Tensor     # () number of real tokens (sum of mask)
    log_probs: Tensor    # (T, B, C) log-probabilities of every word at every position
    final_state: Tensor  # (L, S, B, H) state of the forward stack after the last real token
    updates: dict        # the dropout generator's update (empty without dropout)


def build_lm(config: LMConfig, params: dict[str, Any], dropout_rng: Any | None = None,
             shape: tuple[int, int] | None = None) -> LMGraph:
    """The graph over the shared ``params``; dropout only when ``dropout_rng`` is given.

    ``shape`` fixes (T, B) in the input types, as the JAX backend needs (its scan must know
    the number of steps when it traces); without it the graph takes any T and B.

    ``dropout_rng`` is a shared generator (``pytensor.tensor.random.shared_rng``); the graph's
    ``updates`` then advance it, and the function compiled from the graph must apply them.
    Build the graph twice over the same shared variables for training (with a generator) and
    evaluation (without): the evaluation graph then contains no random numbers at all.
    """
    T, B = shape or (None, None)
    x, y = pt.tensor("x", dtype="int32", shape=(T, B)), pt.tensor("y", dtype="int32", shape=(T, B))
    mask = pt.tensor("mask", dtype=config.dtype, shape=(T, B))
    state = pt.tensor("state", dtype=config.dtype,
                      shape=(config.layers, CELLS[config.cell].states, B, config.hidden_dim))
    drop = _Dropout(config, dropout_rng)

    S = CELLS[config.cell].states
    initial = [[state[i, s] for s in range(S)] for i in range(config.layers)]
    top, finals = _stack(config, params, FORWARD, drop(drop.embedded(params["embed"], x)),
                         mask, initial, drop)

    if config.bidirectional:
        zeros = pt.zeros((x.shape[1], config.hidden_dim), dtype=config.dtype)  # (B, H)
        back, _ = _stack(config, params, BACKWARD,
                         drop(drop.embedded(params["embed"], y[::-1])), mask[::-1],
                         [[zeros] * S] * config.layers, drop)
        back = back[::-1]  # (T, B, H) in forward time: back[t] has read y[t], y[t+1], ...
        # Predicting y[t] may use back[t+1] only (it has not read y[t]); zero past the end.
        back_next = pt.concatenate([back[1:], pt.zeros_like(back[:1])], axis=0)
        top = pt.concatenate([top, back_next], axis=2)  # (T, B, 2H)

    top = drop(top)
    T, B = top.shape[0], top.shape[1]
    h = top.reshape((T * B, config.top_dim))  # (N, H_top), N = T*B positions
    if config.softmax_classes:
        log_probs, target_lp = _class_softmax(config, params, h, y.flatten())
    else:
        if config.projected:
            h = h.dot(params["proj_W"])  # (N, E)
        out_W = params["embed"].T if config.tie_weights else params["out_W"]
        logits = h.dot(out_W) + params["out_b"]  # (N, C)
        log_probs = pt.special.log_softmax(logits, axis=-1)
        target_lp = _target_log_prob(logits, y.flatten())  # (N,)
    cost = -(target_lp * mask.flatten()).sum()
    final_state = pt.stack([pt.stack(layer) for layer in finals])  # (L, S, B, H)
    return LMGraph(x, y, mask, state, cost, mask.sum(),
                   log_probs.reshape((T, B, config.vocab_size)),
                   final_state, drop.updates())


def _target_log_prob(logits: Tensor, targets: Tensor) -> Tensor:
    """log softmax(logits)[n, targets[n]] for each row n, without the (N, C) log-softmax.

    ``logits[target] - logsumexp(logits)`` is the same number, and its gradient,
    ``onehot - softmax``, takes one pass over the logits (see ``_logsumexp``), which makes the
    output layer's forward and gradient faster under XLA than the log-softmax form
    (docs/benchmarks.md). ``test_lm.py`` checks the gradient against finite differences.
    """
    return logits[pt.arange(logits.shape[0]), targets] - _logsumexp(logits)


def _logsumexp(logits: Tensor) -> Tensor:
    """log sum_c exp(logits[:, c]), (N, C) -> (N,), with the gradient ``softmax * g``.

    PyTensor's ``logsumexp`` differentiates through a separate graph that computes the max,
    the exponentials and their sum again; the gradient here reuses the forward's result,
    ``exp(logits - lse)``: one fused elementwise pass.
    """
    z = logits.type()

    def gradient(inputs: list, outputs: list, output_grads: list) -> list:
        return [pt.exp(inputs[0] - outputs[0][:, None]) * output_grads[0][:, None]]

    return OpFromGraph([z], [pt.special.logsumexp(z, axis=-1)],
                       pullback=gradient)(logits)


def _class_softmax(config: LMConfig, params: dict[str, Any], h: Tensor,
                   y: Tensor) -> tuple[Tensor, Tensor]:
    """Class-based softmax (Mikolov et al. 2011): p(w) = p(class(w)) p(w | class(w)).

    Word ids are in frequency order (the vocabulary's), and class k holds ids k*M .. k*M+M-1:
    K classes of M words (the last one padded, its padding never predicted). Training needs
    only the target's class: a softmax over K classes and one over M words, (K + M) H
    multiply-adds per position instead of C H. The product is a normalised distribution over
    the C words, so the perplexity it gives is exact, not an estimate.

    Returns the full (N, C) log-probabilities (C H work: only what is evaluated is computed)
    and the targets' (N,) log-probabilities through the cheap path.
    """
    K, M, C = config.softmax_classes, config.class_size, config.vocab_size
    N = h.shape[0]
    pad = np.where(np.arange(K * M) < C, 0.0, -1e9).astype(config.dtype)  # padding: p = 0
    class_logits = h.dot(params["class_W"]) + params["class_b"]               # (N, K)
    W = params["out_W"].reshape((config.top_dim, K, M)).dimshuffle(1, 0, 2)  # (K, H_top, M)
    b = (params["out_b"] + pad).reshape((K, M))                                # (K, M)
    c, j = y // M, y % M                                                        # (N,) each
    # Only the target's class: gather its (H_top, M) block per position.
    in_logits = (h[:, :, None] * W[c]).sum(axis=1) + b[c]                      # (N, M)
    target_lp = _target_log_prob(class_logits, c) + _target_log_prob(in_logits, j)
    every = pt.special.log_softmax(h.dot(params["out_W"]).reshape((N, K, M)) + b,
                                   axis=-1)                                    # (N, K, M)
    class_lp = pt.special.log_softmax(class_logits, axis=-1)
    log_probs = (class_lp[:, :, None] + every).reshape((N, K * M))[:, :C]      # (N, C)
    return log_probs, target_lp


class _Dropout:
    """Inverted dropout: keep each unit with probability 1 - rate and scale it by 1/(1 - rate).

    The identity without a generator or with rate 0. Each call draws from the generator state
    the previous call left, so all masks of one step differ; ``updates`` stores the last state.
    """

    def __init__(self, config: EncoderSettings, rng: Any | None) -> None:
        self.rng = rng if config.draws_masks else None
        self.next_rng = self.rng
        self.keep, self.dtype = 1.0 - config.dropout, config.dtype
        self.keep_word, self.locked = 1.0 - config.word_rate, config.locked
        self.keep_state, self.keep_type = 1.0 - config.recurrent_rate, 1.0 - config.embed_rate
        self.keep_weight = 1.0 - config.weight_rate

    def __call__(self, h: Tensor) -> Tensor:
        """``h`` (T, B, H) dropped: a mask per unit, or one per sequence if ``locked``; ``h``
        (B, H), one vector per sequence, gets a mask per unit either way."""
        shape = (1, h.shape[1], h.shape[2]) if self.locked and h.ndim == 3 else h.shape
        return self._dropped(h, self.keep, shape)

    def recurrent(self, batch: Any, units: int) -> Tensor | None:
        """A (B, H) mask for the state fed back in a layer, scaled by 1/keep (None: off)."""
        if self.rng is None or self.keep_state == 1.0:
            return None
        return self._dropped(pt.ones((batch, units), dtype=self.dtype), self.keep_state,
                             (batch, units))

    def weights(self, Wh: Tensor) -> Tensor:
        """A recurrent matrix with each entry dropped at the weight rate, the rest scaled by
        1/keep: one draw per call, outside ``scan``, so every step and row of the batch runs
        the same thinned matrix, and the gradient reaches only the kept entries."""
        return self._dropped(Wh, self.keep_weight, Wh.shape)

    def embedded(self, embed: Tensor, x: Tensor) -> Tensor:
        """``embed[x]``, with each word type of the vocabulary dropped for the whole batch at
        the embedding rate (every occurrence alike), the rest scaled by 1/keep."""
        if self.rng is None or self.keep_type == 1.0:
            return embed[x]
        rows = self._dropped(pt.ones((embed.shape[0],), dtype=self.dtype), self.keep_type,
                             (embed.shape[0],))
        return embed[x] * rows[x][:, :, None]

    def words(self, e: Tensor) -> Tensor:
        """Word dropout on the embedded batch ``e`` (T, B, E): each word's whole vector is
        zeroed with the word rate (one draw per word, broadcast over E), the others scaled up
        as in ``__call__``."""
        return self._dropped(e, self.keep_word, (e.shape[0], e.shape[1], 1))

    def _dropped(self, h: Tensor, keep: float, shape: Any) -> Tensor:
        if self.rng is None or keep == 1.0:
            return h
        # A Bernoulli draw, not binomial(1, p): JAX samples a binomial by rejection, far
        # slower (docs/backends.md).
        self.next_rng, kept = self.next_rng.bernoulli(keep, size=shape)
        return h * pt.cast(kept, self.dtype) * np.asarray(1.0 / keep, dtype=self.dtype)

    def updates(self) -> dict[Any, Any]:
        return {} if self.rng is None else {self.rng: self.next_rng}


def _stack(config: LMConfig, params: dict[str, Any], prefix: str, inputs: Tensor, mask: Tensor,
           initial: list[list[Tensor]], drop: _Dropout) -> tuple[Tensor, list[list[Tensor]]]:
    """Run the ``config.layers`` cells named ``prefix{i}_*`` over ``inputs`` (T, B, E).

    Returns the top layer's states (T, B, H) and each layer's final states [h] or [h, c].
    """
    cell = CELLS[config.cell]
    h, finals = inputs, []
    for i in range(config.layers):
        if i > 0:
            h = drop(h)
        xp = project_inputs(h, params[f"{prefix}{i}_Wx"], params.get(f"{prefix}{i}_b"))
        keep = drop.recurrent(mask.shape[1], config.hidden_dim)
        Wh = drop.weights(params[f"{prefix}{i}_Wh"])
        states = run_cell(cell, xp, mask, initial[i], Wh, keep)
        finals.append([s[-1] for s in states])
        h = states[0]  # the next layer reads h, never the LSTM's c
    return h, finals


def shared_params(params: dict[str, np.ndarray]) -> dict[str, Any]:
    """One named shared variable per parameter array, its shape fixed in its type."""
    return {name: pytensor.shared(value, name=name, shape=value.shape)
            for name, value in params.items()}
