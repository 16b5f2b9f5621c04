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
import warnings
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytensor.tensor.random as ptr
from pytensor.compile.mode import Mode

from ..data.batching import Batch, SentenceBatches, StreamBatches
from .lm_graph import LMConfig, build_lm, check_lm_params, init_lm_params, shared_params
from ..errors import UserError
from ..metrics import Score
from ..nn.optimizers import optimizer_updates


class StepResult(NamedTuple):
    cost: float          # summed cross-entropy over the batch's real tokens, in nats
    n_tokens: float      # real tokens in the batch
    state: np.ndarray    # (L, S, B, H) final state of the forward stack
    grad_norm: float     # global gradient norm before clipping (NaN for evaluation)


class LMEngine:
    """The language model's parameters and compiled functions.

    ``params`` (e.g. from a checkpoint) are checked against ``config``; without them the model
    starts from ``init_lm_params``. ``optimizer`` is a name of ``optimizers.OPTIMIZERS``;
    ``learning_rate`` is a shared scalar, so ``set_learning_rate`` takes effect at the next
    step without recompiling. ``mode`` is the PyTensor backend.
    """

    def __init__(self, config: LMConfig, params: dict[str, np.ndarray] | None = None, *,
                 mode: str | Mode = "NUMBA", optimizer: str = "sgd", learning_rate: float = 1.0,
                 clip_norm: float | None = None, weight_decay: float = 0.0,
                 optimizer_options: dict[str, float] | None = None) -> None:
        if params is None:
            params = init_lm_params(config)
        check_lm_params(config, params)
        self.config, self.mode = config, mode
        self.params = shared_params({k: np.asarray(v, dtype=config.dtype)
                                     for k, v in params.items()})
        self.learning_rate = pytensor.shared(np.asarray(learning_rate, dtype=config.dtype),
                                             name="learning_rate")
        self.optimizer, self.clip_norm, self.weight_decay = optimizer, clip_norm, weight_decay
        self.optimizer_options = optimizer_options or {}
        # JAX traces scan with a fixed number of steps: one compiled function per batch shape
        # (bucketed batches keep the shapes few). The other backends take any shape.
        self.static_shapes = (mode if isinstance(mode, str) else "") == "JAX"
        self._functions: dict[tuple, Callable] = {}
        # Under JAX, each batch shape's function draws its dropout masks from a stream of its
        # own (see _rng_copy); their states by shape, "TxB".
        self._jax_rngs: dict[str, Any] = {}
        self.optimizer_slots: dict = {}  # one optimizer state for every compiled shape
        self._saved_slots: dict[str, np.ndarray] = {}  # from a checkpoint, set once compiled

    # --- compiled functions (each compiled on first use) --------------------------------

    @property
    def pad_multiple(self) -> int:
        """What sentence lengths should be rounded up to in batches for this engine.

        JAX compiles one function per batch shape, so lengths go to multiples of 8 to keep the
        shapes few; the other backends take any length, and padding would only cost time.
        """
        return 8 if self.static_shapes else 1

    def _function(self, kind: str, x: np.ndarray) -> Callable:
        """The compiled ``kind`` ("train", "eval" or "log_probs") for inputs shaped like ``x``."""
        shape = tuple(x.shape) if self.static_shapes else None
        key = (kind, shape)
        if key not in self._functions:
            with warnings.catch_warnings():
                # Each shape's training graph draws from the one shared dropout generator and
                # writes it back (PyTensor warns about a generator in several graphs), and the
                # JAX backend keeps a copy of it inside the compiled function (it says so).
                warnings.filterwarnings("ignore", "RandomGeneratorVariable .* already been used")
                warnings.filterwarnings("ignore", "The RandomType SharedVariables")
                self._functions[key] = self._compile(kind, shape)
            if kind == "train" and self._saved_slots:  # its state variables exist now
                self.set_optimizer_state(self._saved_slots)
        return self._functions[key]

    @cached_property
    def _dropout_rng(self):
        # Dropout draws come from a stream seeded by the config, so runs are reproducible.
        return ptr.shared_rng(seed=self.config.seed + 1, name="dropout_rng")

    def _compile(self, kind: str, shape: tuple[int, int] | None) -> Callable:
        if kind == "train":
            graph = build_lm(self.config, self.params, self._dropout_rng, shape)
            params = list(self.params.values())
            objective = graph.cost / pt.maximum(graph.n_tokens, 1)  # mean CE per real token
            grads = pytensor.grad(objective, params)
            updates, norm = optimizer_updates(self.optimizer, params, grads, self.learning_rate,
                                              clip_norm=self.clip_norm,
                                              weight_decay=self.weight_decay,
                                              slots=self.optimizer_slots,
                                              **self.optimizer_options)
            outputs = [graph.cost, graph.n_tokens, graph.final_state, norm]
            updates = [*updates, *graph.updates.items()]
        else:  # evaluation graphs have no random numbers at all
            graph, updates = build_lm(self.config, self.params, None, shape), None
            outputs = ([graph.cost, graph.n_tokens, graph.final_state] if kind == "eval"
                       else [graph.log_probs, graph.final_state])
        return pytensor.function([graph.x, graph.y, graph.mask, graph.state], outputs,
                                 updates=updates, mode=self.mode, allow_input_downcast=True,
                                 on_unused_input="ignore")

    def train_step(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                   state: np.ndarray) -> StepResult:
        """One update of the parameters on batch (x, y, mask), from ``state``."""
        function = self._function("train", x)
        cell = _rng_copy(function) if self.static_shapes else None
        shape = "x".join(map(str, x.shape))
        if cell is not None and shape in self._jax_rngs:
            cell.storage[0] = self._jax_rngs[shape]  # a restored stream
        cost, n, final, norm = function(x, y, mask, state)
        if cell is not None:
            self._jax_rngs[shape] = cell.storage[0]
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

    # --- state and parameters -------------------------------------------------------------

    def initial_state(self, batch_size: int) -> np.ndarray:
        """The zero state (L, S, B, H) a sentence or a stream starts from."""
        return np.zeros(self.config.state_shape(batch_size), dtype=self.config.dtype)

    def set_learning_rate(self, value: float) -> None:
        self.learning_rate.set_value(np.asarray(value, dtype=self.config.dtype))

    def get_params(self) -> dict[str, np.ndarray]:
        """Copies of the current parameters, by name (what a checkpoint saves)."""
        return {name: np.array(p.get_value()) for name, p in self.params.items()}

    def get_optimizer_state(self) -> dict[str, np.ndarray]:
        """Copies of the optimizer's state (moments, step count), by name; empty for SGD."""
        if not self.optimizer_slots:
            return {k: np.array(v) for k, v in self._saved_slots.items()}
        return {name: np.array(v.get_value()) for name, v in self.optimizer_slots.items()}

    def set_optimizer_state(self, values: dict[str, np.ndarray]) -> None:
        """Continue from a saved optimizer state (applied when training compiles, if later).

        Names or shapes that do not fit (another optimizer, another model) are a UserError.
        """
        self._saved_slots = dict(values)
        if not self.optimizer_slots:
            return
        for name, value in values.items():
            slot = self.optimizer_slots.get(name)
            if slot is None or np.shape(slot.get_value()) != np.shape(value):
                raise UserError(f"the checkpoint's optimizer state {name!r} does not fit this "
                                f"{self.optimizer} model: resume with the optimizer it was "
                                "trained with, or train from scratch")
            slot.set_value(np.asarray(value, dtype=slot.dtype))
        self._saved_slots = {}

    def get_rng_state(self) -> dict | None:
        """The dropout generators' state (JSON-able), so a resumed run draws the same masks:
        ``numpy``, the shared generator's; ``jax``, each JAX function's stream by batch shape
        (arrays as dtype and values)."""
        if self.config.dropout == 0.0:
            return None
        numpy = self._dropout_rng.get_value(borrow=True).bit_generator.state
        return {"numpy": numpy, "jax": {k: _to_json(v) for k, v in self._jax_rngs.items()}}

    def set_rng_state(self, state: dict | None) -> None:
        """Continue the streams ``get_rng_state`` saved (before or after compiling)."""
        if state is None or self.config.dropout == 0.0:
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy"]
        self._dropout_rng.set_value(rng, borrow=True)
        if self.static_shapes:
            self._jax_rngs = {k: _from_json(v) for k, v in state.get("jax", {}).items()}

    def n_params(self) -> int:
        return sum(p.get_value().size for p in self.params.values())


def _rng_copy(function: Callable):
    """The storage cell of the dropout generator inside a JAX-compiled function, or None.

    PyTensor's JAX backend cannot update a shared generator in place: it compiles a private
    copy, seeded from the shared one, and updates that, leaving the shared variable as it
    was. ``train_step`` reads the copy after each step so that a checkpoint can save it.
    """
    from pytensor.tensor.random.type import RandomType
    for variable, cell in zip(function.maker.fgraph.inputs, function.input_storage):
        if isinstance(variable.type, RandomType):
            return cell
    return None


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    array = np.asarray(value)
    return {"dtype": str(array.dtype), "value": array.tolist()}


def _from_json(value: dict) -> Any:
    if set(value) == {"dtype", "value"}:
        return np.asarray(value["value"], dtype=value["dtype"])
    return {k: _from_json(v) for k, v in value.items()}


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
