"""Backend policy, all of it: which PyTensor mode a model compiles with, and how each backend
is set up. Nothing happens at import; ``prepare(mode, ...)`` applies the policy for one mode
and is called where a model is built (``tasks.lm``), or by a script before it compiles.

It also owns training over several devices and processes (``join_processes``,
``device_mesh``, ``DeviceMesh.parallel``): a task's compiled training step, re-jitted by XLA
over a mesh of devices, the batch split along its batch axis.

Modes: ``NUMBA`` (PyTensor's default), ``JAX`` (XLA: the CPU route for fixed shapes and the
only route to a GPU), ``CVM`` (C) and ``FAST_COMPILE`` (pure Python). ``AUTO`` is JAX for a
model whose batches have fixed shapes when jax is installed, NUMBA otherwise: XLA needs a
static length for every ``scan``, so the tutorial's one sentence of any length per step stays
on Numba. ``docs/backends.md`` has the measurements behind each choice.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .errors import SettingError, UserError

MODES = ("AUTO", "NUMBA", "JAX", "CVM", "FAST_COMPILE")

# LLVM optimisation level for Numba when the user has not set NUMBA_OPT: the graphs' time is
# spent in BLAS and library calls that level 3's extra passes do not touch, while compiling
# at level 1 is markedly faster (docs/backends.md).
NUMBA_OPT_LEVEL = "1"

_jax_ready = False
_joined = False  # this process has joined a run over several processes


def has_jax() -> bool:
    return importlib.util.find_spec("jax") is not None


def resolve(mode: str, *, fixed_shapes: bool) -> str:
    """``mode`` with ``AUTO`` resolved for a model with (or without) fixed batch shapes."""
    if mode not in MODES:
        raise ValueError(f"unknown backend {mode!r}: use one of {', '.join(MODES)}")
    if mode != "AUTO":
        return mode
    return "JAX" if fixed_shapes and has_jax() else "NUMBA"


def loadable(mode: str) -> str:
    """The mode a saved model runs under here: one trained under ``JAX`` runs as ``AUTO``
    where jax is not installed (the same graph, under Numba)."""
    return "AUTO" if mode == "JAX" and not has_jax() else mode


def prepare(mode: str, *, fixed_shapes: bool = True) -> str:
    """Resolve ``mode`` and set its backend up (once per process); returns the resolved mode."""
    mode = resolve(mode, fixed_shapes=fixed_shapes)
    if mode == "NUMBA":
        configure_numba()
    elif mode == "JAX":
        if not has_jax():
            raise ValueError("the JAX backend needs the jax package: pip install -e '.[jax]'")
        enable_jax()
    return mode


def configure_numba() -> None:
    """Compile at LLVM level ``NUMBA_OPT_LEVEL`` unless ``NUMBA_OPT`` is set (the user's wins).

    Works before or after numba's import: an imported numba is told to read its settings again.
    """
    if "NUMBA_OPT" in os.environ:
        return
    os.environ["NUMBA_OPT"] = NUMBA_OPT_LEVEL
    if "numba" in sys.modules:
        from numba.core import config
        config.reload_config()


def enable_jax() -> None:
    """Install the reduction fix and XLA's persistent cache, once.

    PyTensor's JAX translation of a reduction (``Sum`` and friends) returns its result in the
    op's accumulator dtype: a float32 ``Sum`` accumulates in float64 and stays float64 in JAX,
    while PyTensor's types say float32. Gradients of biases and of the output layer are such
    sums, so after one training step those parameters would become float64 and the next
    function's ``scan`` would refuse its float32/float64 carry. The translation is re-registered
    to cast the result to the dtype PyTensor promised. XLA's compilation cache lives in a
    ``jax`` folder of PyTensor's compile directory, so ``PYTENSOR_FLAGS=base_compiledir=...``
    moves or empties both caches at once.
    """
    global _jax_ready
    if _jax_ready:
        return
    import jax
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.elemwise import CAReduce

    shipped = jax_funcify.dispatch(CAReduce)

    @jax_funcify.register(CAReduce)
    def careduce_in_output_dtype(op, node=None, **kwargs):
        reduce = shipped(op, node=node, **kwargs)
        if node is None:
            return reduce
        dtype = node.outputs[0].dtype

        @functools.wraps(reduce)
        def careduce(x):
            return reduce(x).astype(dtype)

        return careduce

    jax.config.update("jax_compilation_cache_dir", jax_cache_dir())
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    _jax_ready = True


def jax_cache_dir() -> str:
    """Where compiled XLA executables are kept between processes."""
    import pytensor
    return os.path.join(pytensor.config.compiledir, "jax")


def limit_blas_threads(threads: int) -> None:
    """Cap the BLAS thread pools (0: leave the library's default).

    At these matrix sizes extra threads gain little, and on shared cores their spinning slows
    training several-fold (docs/backends.md). Numba-compiled graphs call SciPy's BLAS, so it
    is loaded first for the limit to reach it.
    """
    if threads > 0:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library to be limited)
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")


# --- several devices and processes ------------------------------------------------------------

def join_processes(coordinator: str | None, num_processes: int | None, process_id: int | None,
                   timeout: int) -> bool:
    """Join the other processes of a run over several hosts, before any JAX computation;
    False for a run of one process (no ``--coordinator``, no ``JAX_COORDINATOR_ADDRESS``).

    ``num_processes`` and ``process_id`` left None are read by JAX from the cluster's
    environment (SLURM, Open MPI, Kubernetes...). JAX's own failure to connect aborts the
    process with a C++ stack trace, so a watchdog with a shorter limit stops it first with one
    line; JAX's limits are set past it.
    """
    global _joined
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    if _joined or not coordinator:
        return _joined
    if not has_jax():
        raise UserError("training over several processes needs the jax package: "
                        "pip install -e '.[jax]'")
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU devices' collectives
    who = "process" if process_id is None else f"process {process_id}"
    with watchdog(timeout, f"{who} waited {timeout} s for the coordinator {coordinator} and "
                  "the other processes: start every process with the same --coordinator and "
                  "--num-processes (process 0 listens there), or raise --peer-timeout"):
        try:
            jax.distributed.initialize(coordinator, num_processes, process_id,
                                       initialization_timeout=timeout + 60,
                                       heartbeat_timeout_seconds=timeout + 60,
                                       shutdown_timeout_seconds=timeout)
        except (ValueError, TypeError, RuntimeError) as e:
            raise UserError(f"cannot join the run's processes: {e} (give --num-processes "
                            "and --process-id where no cluster environment says them)") from None
    _joined = True
    return True


def process_index() -> int:
    """This process's index in a run over several processes (0 writes the files); 0 alone."""
    return processes()[0]


def processes() -> tuple[int, int]:
    """(this process's index, the number of processes) of the run: (0, 1) alone."""
    if not _joined:
        return 0, 1
    import jax
    return jax.process_index(), jax.process_count()


def check_same(value: str, what: str) -> None:
    """Refuse to go on when the processes of a run hold different ``value``s (e.g. data read
    from different files): they would take different steps and wait on each other forever."""
    if processes()[1] == 1:
        return
    import zlib

    from jax.experimental import multihost_utils
    mine = np.array([zlib.crc32(value.encode()) & 0x7FFFFFFF], dtype=np.int32)
    if len(set(multihost_utils.process_allgather(mine).ravel().tolist())) > 1:
        raise UserError(f"the processes of the run differ in {what}: give every process the "
                        "same settings and the same data")


def leave(code: int) -> None:
    """End a process of a run over several now, when it fails alone: Python's own exit would
    wait in JAX's shutdown for the others, which wait in their next step for this one."""
    if processes()[1] > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def device_mesh(devices: str, batch_size: int, timeout: int) -> DeviceMesh | None:
    """The devices a run trains over (``--devices N|all``), or None for one device.

    Every process of a run over several takes part, so its mesh is every device of every
    process. The global batch is split evenly, so it must divide by the number of devices.
    """
    if devices == "1" and not _joined:
        return None
    if not has_jax():
        raise SettingError("devices", "needs the jax package: pip install -e '.[jax]'")
    import jax
    available = jax.devices()
    n = len(available) if devices == "all" else int(devices)
    if n > len(available):
        raise SettingError("devices", f"{n} asks for more devices than JAX sees "
                           f"({len(available)}, {available[0].platform}): ask for at most "
                           f"{len(available)}, or use --devices all")
    if _joined and n != len(available):
        raise SettingError("devices", f"must be all ({len(available)}) in a run over "
                           f"{jax.process_count()} processes: each trains on all its devices")
    check_split(batch_size, n)
    return None if n == 1 else DeviceMesh(available[:n], timeout if _joined else 0)


def check_split(batch_size: int, devices: int) -> None:
    """Refuse a global batch that does not split evenly over ``devices``."""
    if batch_size % devices:
        raise SettingError("devices", f"{devices} does not split the batch of {batch_size} "
                           f"evenly: make --batch-size a multiple of {devices} (e.g. "
                           f"{-(-batch_size // devices) * devices}), or use another device "
                           "count")


class DeviceMesh:
    """Devices that a training step runs over, data-parallel.

    ``parallel(function, batch_axes)`` re-jits a PyTensor function compiled under JAX over the
    mesh: each explicit input split along its batch axis (None: the same on every device), the
    shared inputs (parameters, optimizer state, learning rate, dropout stream) replicated,
    passed and returned explicitly, their old buffers donated. XLA partitions the one global
    computation, so the gradient is all-reduced by XLA and the results equal one device's up
    to summation order. ``timeout`` > 0 bounds each step's wait for the other processes.

    Parameters live on the mesh between steps; the PyTensor containers are given a view of
    them on this process's first device, so that evaluation, checkpoints and the other
    compiled functions read them as before. A value set from outside (a restored snapshot, a
    new learning rate) is placed on the mesh again at the next step.
    """

    def __init__(self, devices: Sequence, timeout: int) -> None:
        from jax.sharding import Mesh
        self.mesh = Mesh(np.array(devices), ("data",))
        self.size, self.timeout = len(devices), timeout
        self._placed: dict[int, tuple[Any, Any]] = {}  # id(container): (its view, mesh value)

    def sharding(self, axis: int | None = None, ndim: int = 0):
        """Split along ``axis`` of an ``ndim``-dimensional array, or replicated (None)."""
        from jax.sharding import NamedSharding, PartitionSpec
        spec = [None] * ndim
        if axis is not None:
            spec[axis] = "data"
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def parallel(self, function: Any, batch_axes: Sequence[int | None]) -> DataParallel:
        return DataParallel(self, function, batch_axes)

    def place(self, value: Any, sharding: Any) -> Any:
        """A global array (a pytree of them) on the mesh from the same value in every process."""
        import jax
        return jax.tree_util.tree_map(
            lambda v: jax.make_array_from_callback(np.shape(v), sharding,
                                                   lambda index: np.asarray(v)[index]), value)

    def shared(self, cell: Any) -> Any:
        """The mesh value of a shared container: kept from the last step unless replaced."""
        view, placed = self._placed.get(id(cell), (None, None))
        if cell.storage[0] is not view:
            placed = self.place(cell.storage[0], self.sharding())
        return placed

    def keep(self, cell: Any, placed: Any) -> None:
        """Give ``cell`` a local view of the mesh value ``placed``, remembered for the next step."""
        import jax
        view = jax.tree_util.tree_map(lambda a: a.addressable_data(0), placed)
        cell.storage[0] = view
        self._placed[id(cell)] = (view, placed)


class DataParallel:
    """One compiled training function over a ``DeviceMesh`` (see there); called like it,
    returning its declared outputs as numpy arrays. ``maker`` and ``input_storage`` are the
    PyTensor function's, for code that looks into it."""

    def __init__(self, mesh: DeviceMesh, function: Any, batch_axes: Sequence[int | None]) -> None:
        import jax
        fgraph = function.maker.fgraph
        self.maker, self.input_storage, self._mesh = function.maker, function.input_storage, mesh
        jitted = getattr(function.vm.jit_fn, "__wrapped__", None)
        if jitted is None:  # PyTensor wraps the function when shapes are scalar inputs
            raise UserError("this model's training step has dynamic shapes and cannot be "
                            "split over devices: train it on one device")
        n = len(batch_axes)
        self._dtypes = [v.type.dtype for v in fgraph.inputs[:n]]
        self._cells = function.input_storage[n:]
        self._updates = {out: i - n for out, i in fgraph.update_mapping.items()}  # -> cell
        self._n_outputs = len(fgraph.outputs) - len(self._updates)
        self._inputs = [mesh.sharding(axis, v.type.ndim)
                        for v, axis in zip(fgraph.inputs, batch_axes)]
        shardings = self._inputs + [mesh.sharding()] * len(self._cells)
        donated = tuple(n + i for i in sorted(set(self._updates.values())))
        # Every output replicated: each process reads whole results (a language model's final
        # state, a few kilobytes, to carry into its next window) without gathering them itself.
        self._jit = jax.jit(jitted, in_shardings=shardings, out_shardings=mesh.sharding(),
                            donate_argnums=donated)
        self._compiled: Callable | None = None

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        import jax
        mesh = self._mesh
        args = ([mesh.place(np.asarray(a, dtype=t), s)
                 for a, t, s in zip(inputs, self._dtypes, self._inputs)]
                + [mesh.shared(cell) for cell in self._cells])
        if self._compiled is None:  # compiled apart, so the watchdog times only the step
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Some donated buffers were not usable")
                self._compiled = self._jit.lower(*args).compile()
        lost = (f"process {process_index()} lost the other processes in a training step (one "
                f"has stopped, or the step took over --peer-timeout {mesh.timeout} s); the "
                "checkpoint is whole as last saved: start every process again, with --resume "
                "if one was saved")
        with watchdog(mesh.timeout, lost):
            try:
                outputs = jax.block_until_ready(self._compiled(*args))
            except jax.errors.JaxRuntimeError as e:
                if processes()[1] == 1:
                    raise
                stop(f"{lost} [{str(e).splitlines()[0][:200]}]")
        for out, cell in self._updates.items():
            mesh.keep(self._cells[cell], outputs[out])
        return [np.asarray(o.addressable_data(0)) for o in outputs[:self._n_outputs]]


class _Watchdog:
    """Ends the process with one line when a wait on other processes outlasts its limit.

    JAX notices a lost peer only at its heartbeat timeout and then aborts with a C++ stack
    trace; this stops first, with a message and exit status 2. Checkpoints are written
    atomically, so the last one stays whole.
    """

    def __init__(self) -> None:
        self.deadline: float | None = None
        self.message = ""
        threading.Thread(target=self._watch, name="peer-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(0.25)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                stop(self.message)


def stop(message: str) -> None:
    """End the process at once with ``error: message`` and exit status 2. Not through
    Python's exit: JAX's own shutdown would wait for the lost processes, then abort."""
    sys.stdout.flush()
    sys.stderr.write(f"\nerror: {message}\n")
    sys.stderr.flush()
    os._exit(2)


_watchdog: _Watchdog | None = None


@contextlib.contextmanager
def watchdog(seconds: float, message: str) -> Iterator[None]:
    """Run the block under a limit of ``seconds`` (0: none), past which the process stops
    with ``error: message``."""
    global _watchdog
    if seconds <= 0:
        yield
        return
    if _watchdog is None:
        _watchdog = _Watchdog()
    _watchdog.message, _watchdog.deadline = message, time.monotonic() + seconds
    try:
        yield
    finally:
        _watchdog.deadline = None
