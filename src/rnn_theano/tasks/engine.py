"""What every compiled model (``LMEngine``, ``ClassifierEngine``) does the same way.

``CompiledModel`` owns the shared parameters, the learning rate, the optimizer state and the
dropout generator, and compiles each function on first use, once per batch shape under JAX.
A subclass says what its graphs are (``_compile``) and what its steps take and return; the
plumbing here keeps checkpoints of both models alike: parameters, optimizer state and dropout
streams are saved and restored by the same methods.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytensor.tensor.random as ptr
from pytensor.compile.mode import Mode

from .. import backends
from ..errors import UserError
from ..nn.optimizers import averaging_updates, optimizer_updates
from ..train import Schedule, TrainerOptions
from .lm_graph import shared_params


class CompiledModel:
    """Parameters, optimizer and compiled functions of one model.

    ``params`` (e.g. from a checkpoint) are checked against ``config`` (``_check_params``);
    without them the model starts from ``_init_params(config)``. ``optimizer`` is a name of
    ``optimizers.OPTIMIZERS``; ``learning_rate`` is a shared scalar, so ``set_learning_rate``
    takes effect at the next step without recompiling; the recurrent matrices (``_recurrent``)
    learn at ``recurrent_lr_scale`` times it. ``mode`` is the PyTensor backend. ``config``
    needs ``dtype``, ``dropout`` and ``seed``.
    """

    # A subclass's fresh parameters for a config, and its check of given ones.
    _init_params: Callable[[Any], dict[str, np.ndarray]]
    _check_params: Callable[[Any, dict[str, np.ndarray]], None]
    # The training step's inputs whose shapes select its compiled function (``_function``;
    # the first is the first input), and, to split a batch over devices (``distribute``),
    # each training input's batch axis (None: not per row).
    _keyed: tuple[int, ...] = (0,)
    _batch_axes: tuple[int | None, ...] = ()
    # The recurrent matrices (``recurrent_lr_scale`` applies to them): each stack layer's Wh.
    _recurrent = re.compile(r"(l|back)\d+_Wh")

    def __init__(self, config: Any, params: dict[str, np.ndarray] | None = None, *,
                 mode: str | Mode = "NUMBA", optimizer: str = "sgd", learning_rate: float = 1.0,
                 clip_norm: float | None = None, weight_decay: float = 0.0,
                 optimizer_options: dict[str, float] | None = None,
                 average: bool = False, recurrent_lr_scale: float = 1.0) -> None:
        if params is None:
            params = self._init_params(config)
        self._check_params(config, params)
        self.config, self.mode = config, mode
        self.params = shared_params({k: np.asarray(v, dtype=config.dtype)
                                     for k, v in params.items()})
        self.learning_rate = pytensor.shared(np.asarray(learning_rate, dtype=config.dtype),
                                             name="learning_rate")
        self.optimizer, self.clip_norm, self.weight_decay = optimizer, clip_norm, weight_decay
        self.optimizer_options = optimizer_options or {}
        self.recurrent_lr_scale = recurrent_lr_scale
        # JAX traces scan with a fixed number of steps: one compiled function per batch shape
        # (bucketed batches keep the shapes few). The other backends take any shape.
        self.static_shapes = (mode if isinstance(mode, str) else "") == "JAX"
        self._functions: dict[tuple, Callable] = {}
        # Under JAX, each batch shape's function draws its dropout masks from a stream of its
        # own (see _rng_copy); their states by shape, "TxB".
        self._jax_rngs: dict[str, Any] = {}
        self.optimizer_slots: dict = {}  # one optimizer state for every compiled shape
        self._saved_slots: dict[str, np.ndarray] = {}  # from a checkpoint, set once compiled
        self.mesh: backends.DeviceMesh | None = None  # training over several devices
        # Averaged SGD (``start_averaging``): its flag joins the optimizer's slots when training
        # compiles, so a checkpoint's optimizer state carries it with the averages.
        self._avg_on = pytensor.shared(np.asarray(0.0, dtype=config.dtype),
                                       name="avg_on") if average else None

    # --- compiled functions (each compiled on first use) --------------------------------

    @property
    def pad_multiple(self) -> int:
        """What sentence lengths should be rounded up to in batches for this engine.

        JAX compiles one function per batch shape, so lengths go to multiples of 8 to keep the
        shapes few; the other backends take any length, and padding would only cost time.
        """
        return 8 if self.static_shapes else 1

    def _compile(self, kind: str, shape: tuple[int, int] | None) -> Callable:
        """The function ``kind`` for batches of ``shape`` (T, B), or of any shape if None."""
        raise NotImplementedError

    def _function(self, kind: str, *like: np.ndarray) -> Callable:
        """The compiled ``kind`` (e.g. "train" or "eval") for inputs shaped like ``like``
        (one array: its shape is the key; several, as a translation batch's source and
        target: the tuple of their shapes)."""
        shape = _shape_key(like) if self.static_shapes else None
        key = (kind, shape)
        if key not in self._functions:
            with warnings.catch_warnings():
                # Each shape's training graph draws from the one shared dropout generator and
                # writes it back (PyTensor warns about a generator in several graphs), and the
                # JAX backend keeps a copy of it inside the compiled function (it says so).
                warnings.filterwarnings("ignore", "RandomGeneratorVariable .* already been used")
                warnings.filterwarnings("ignore", "The RandomType SharedVariables")
                function = self._compile(kind, shape)
            if kind == "train" and self._splits(like):
                function = self.mesh.parallel(function, self._batch_axes)
            self._functions[key] = function
            if kind == "train" and self._saved_slots:  # its state variables exist now
                self.set_optimizer_state(self._saved_slots)
        return self._functions[key]

    @cached_property
    def _dropout_rng(self):
        # Dropout draws come from a stream seeded by the config, so runs are reproducible.
        return ptr.shared_rng(seed=self.config.seed + 1, name="dropout_rng")

    def _training_updates(self, objective: pt.TensorVariable,
                          graph_updates: dict) -> tuple[list, pt.TensorVariable]:
        """The optimizer's updates for minimising ``objective``, the graph's own (dropout)
        updates after them, and the gradient norm before clipping."""
        params = list(self.params.values())
        grads = pytensor.grad(objective, params)
        scales = [self.recurrent_lr_scale if self._recurrent.fullmatch(name) else 1.0
                  for name in self.params]
        updates, norm = optimizer_updates(self.optimizer, params, grads, self.learning_rate,
                                          clip_norm=self.clip_norm,
                                          weight_decay=self.weight_decay, lr_scales=scales,
                                          slots=self.optimizer_slots, **self.optimizer_options)
        if self._avg_on is not None:
            self.optimizer_slots["avg_on"] = self._avg_on
            updates += averaging_updates(updates, params, self._avg_on, self.optimizer_slots)
        return [*updates, *graph_updates.items()], norm

    def _pytensor_function(self, inputs: Sequence, outputs: Sequence,
                           updates: list | None = None) -> Callable:
        return pytensor.function(list(inputs), list(outputs), updates=updates, mode=self.mode,
                                 allow_input_downcast=True, on_unused_input="ignore")

    def distribute(self, mesh: backends.DeviceMesh) -> None:
        """Train data-parallel over ``mesh`` from the next step on (see ``backends``)."""
        if not self.static_shapes:
            raise UserError("training over several devices needs the JAX backend: --mode JAX")
        self.mesh = mesh
        self._functions = {k: f for k, f in self._functions.items() if k[0] != "train"}

    def _splits(self, like: Sequence[np.ndarray]) -> bool:
        """Whether training batches shaped like ``like`` are split over the mesh. A short last
        batch whose rows do not divide evenly runs whole, on each process's first device
        (every process holds the same batch and parameters), which gives one device's
        result exactly, dropout masks included."""
        return self.mesh is not None and not np.shape(like[0])[self._batch_axes[0]] % self.mesh.size

    def _train(self, *inputs: np.ndarray) -> list:
        """Run the training function for these inputs (``_keyed`` ones select it), keeping its
        dropout stream under JAX (see ``_rng_copy``)."""
        like = tuple(inputs[i] for i in self._keyed)
        function = self._function("train", *like)
        cell = _rng_copy(function) if self.static_shapes else None
        shape = "_".join("x".join(map(str, a.shape)) for a in like)
        if cell is not None and shape in self._jax_rngs:
            cell.storage[0] = self._jax_rngs[shape]  # a restored stream
        outputs = function(*inputs)
        if cell is not None:
            self._jax_rngs[shape] = cell.storage[0]
        return outputs

    # --- state and parameters -------------------------------------------------------------

    def set_learning_rate(self, value: float) -> None:
        self.learning_rate.set_value(np.asarray(value, dtype=self.config.dtype))

    def get_params(self) -> dict[str, np.ndarray]:
        """Copies of the current parameters, by name (what a checkpoint saves): once averaging
        has started (``start_averaging``), their averages."""
        if self.averaging:
            return {name: np.array(self.optimizer_slots[f"{name}_avg"].get_value())
                    for name in self.params}
        return {name: np.array(p.get_value()) for name, p in self.params.items()}

    @property
    def averaging(self) -> bool:
        """Whether the parameters' averages are being kept and have a value."""
        count = self.optimizer_slots.get("avg_count")
        return self._avg_on is not None and count is not None and float(count.get_value()) > 0

    def start_averaging(self) -> None:
        """Average the parameters over every step from now on (an engine built with
        ``average``); evaluation and checkpoints then use the averages."""
        if self._avg_on is None:
            raise UserError("this model was built without averaging: train it with --asgd")
        self._avg_on.set_value(np.asarray(1.0, dtype=self.config.dtype))

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Within the block the parameters hold their averages (once averaging has started),
        so that the evaluation functions score them; training's own values come back after."""
        if not self.averaging:
            yield
            return
        own = {name: p.get_value() for name, p in self.params.items()}
        self.set_params(self.get_params())
        try:
            yield
        finally:
            self.set_params(own)

    def set_params(self, values: dict[str, np.ndarray]) -> None:
        """Give the parameters these values, by name."""
        for name, value in values.items():
            self.params[name].set_value(value)

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
        if not self.config.draws_masks:
            return None
        numpy = self._dropout_rng.get_value(borrow=True).bit_generator.state
        return {"numpy": numpy, "jax": {k: _to_json(v) for k, v in self._jax_rngs.items()}}

    def set_rng_state(self, state: dict | None) -> None:
        """Continue the streams ``get_rng_state`` saved (before or after compiling)."""
        if state is None or not self.config.draws_masks:
            return
        rng = np.random.default_rng()
        rng.bit_generator.state = state["numpy"]
        self._dropout_rng.set_value(rng, borrow=True)
        if self.static_shapes:
            self._jax_rngs = {k: _from_json(v) for k, v in state.get("jax", {}).items()}

    def n_params(self) -> int:
        return sum(p.get_value().size for p in self.params.values())


def _shape_key(like: Sequence[np.ndarray]) -> tuple:
    """One array's shape, or the tuple of several arrays' shapes."""
    shapes = tuple(tuple(np.shape(a)) for a in like)
    return shapes[0] if len(shapes) == 1 else shapes


def _rng_copy(function: Callable):
    """The storage cell of the dropout generator inside a JAX-compiled function, or None.

    PyTensor's JAX backend cannot update a shared generator in place: it compiles a private
    copy, seeded from the shared one, and updates that, leaving the shared variable as it
    was. ``_train`` reads the copy after each step so that a checkpoint can save it.
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


def engine_settings(config: Any) -> dict[str, Any]:
    """A run's settings as ``CompiledModel``'s keywords: the backend (fixed shapes), the
    optimizer, its learning rate (and the recurrent matrices'), clipping, weight decay and
    averaging."""
    train = config.train
    return dict(mode=backends.prepare(config.model.mode, fixed_shapes=True),
                optimizer=train.optimizer, learning_rate=config.lr,
                clip_norm=train.clip_norm or None, weight_decay=train.weight_decay,
                average=train.asgd > 0, recurrent_lr_scale=train.recurrent_lr_scale)


def loadable_settings(config: Any) -> Any:
    """A checkpoint's run settings with its backend resolved for this machine
    (``backends.loadable``: a model trained under JAX runs where jax is missing)."""
    return dataclasses.replace(config, model=dataclasses.replace(
        config.model, mode=backends.loadable(config.model.mode)))


def monitored_options(config: Any, monitor: str) -> TrainerOptions:
    """The trainer's options for a model kept by its held-out ``monitor``, with patience:
    a constant rate (or ``--lr-decay`` after ``--decay-after``), the test set scored once."""
    train = config.train
    schedule = Schedule("decay", train.lr_decay, train.decay_after)  # constant at lr-decay 1
    return TrainerOptions(train.epochs, config.lr, schedule, patience=train.patience,
                          monitor=monitor, test_each_evaluation=False, asgd=train.asgd)


class EngineTask:
    """What the trainer asks of any task whose model is a ``CompiledModel`` (``self.engine``)
    read with ``self.vocab``: its learning rate, its state as a snapshot, and a checkpoint."""

    engine: CompiledModel
    vocab: Any

    def set_learning_rate(self, lr: float) -> None:
        self.engine.set_learning_rate(lr)

    def start_averaging(self) -> None:
        self.engine.start_averaging()

    def averaged(self) -> contextlib.AbstractContextManager:
        return self.engine.averaged()

    def snapshot(self) -> tuple[dict, dict, dict | None]:
        e = self.engine
        return e.get_params(), e.get_optimizer_state(), e.get_rng_state()

    def restore(self, snapshot: tuple[dict, dict, dict | None]) -> None:
        params, optimizer, rng = snapshot
        self.engine.set_params(params)
        self.engine.set_optimizer_state(optimizer)
        self.engine.set_rng_state(rng)

    def checkpoint(self, config: Any, state: dict) -> Any:
        from ..checkpoint import Checkpoint
        rng = self.engine.get_rng_state()
        return Checkpoint(self.engine.get_params(), self.vocab, config,
                          state | ({"dropout_rng": rng} if rng else {}),
                          self.engine.get_optimizer_state(), self.class_names(), self.blobs())

    def class_names(self) -> tuple[str, ...]:
        """A classifier's classes, saved with it (none for a language model)."""
        return ()

    def blobs(self) -> dict[str, bytes]:
        """Files the model reads text with, saved with it (a translator's subword models)."""
        return {}


def continue_from(engine: CompiledModel, resumed: Any, optimizer: str) -> None:
    """Carry a checkpoint's dropout streams and optimizer state over into a resumed run (the
    optimizer's only when it is the same one: another starts fresh, with a note)."""
    engine.set_rng_state(resumed.state.get("dropout_rng"))
    if not resumed.optimizer:
        return
    if resumed.settings.train.optimizer == optimizer:
        engine.set_optimizer_state(resumed.optimizer)
    else:
        print(f"note: the checkpoint was trained with {resumed.settings.train.optimizer}; "
              f"{optimizer} starts from a fresh state", file=sys.stderr)
