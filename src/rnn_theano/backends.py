"""Backend policy, all of it: which PyTensor mode a model compiles with, and how each backend
is set up. Nothing happens at import; ``prepare(mode, ...)`` applies the policy for one mode
and is called where a model is built (``tasks.lm``), or by a script before it compiles.

Modes: ``NUMBA`` (PyTensor's default), ``JAX`` (XLA: the CPU route for fixed shapes and the
only route to a GPU), ``CVM`` (C) and ``FAST_COMPILE`` (pure Python). ``AUTO`` is JAX for a
model whose batches have fixed shapes when jax is installed, NUMBA otherwise: XLA needs a
static length for every ``scan``, so the tutorial's one sentence of any length per step stays
on Numba. ``docs/backends.md`` has the measurements behind each choice.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

MODES = ("AUTO", "NUMBA", "JAX", "CVM", "FAST_COMPILE")

# LLVM optimisation level for Numba when the user has not set NUMBA_OPT: the graphs' time is
# spent in BLAS and library calls that level 3's extra passes do not touch, while compiling
# at level 1 is markedly faster (docs/backends.md).
NUMBA_OPT_LEVEL = "1"

_jax_ready = False


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
