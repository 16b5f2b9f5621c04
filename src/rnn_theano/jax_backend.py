"""What the JAX backend (``--mode JAX``, the route to a GPU) needs beyond PyTensor as shipped.

PyTensor 3.3.8's JAX translation of a reduction (``Sum`` and friends) returns its result in
the op's *accumulator* dtype: a float32 ``Sum`` accumulates in float64 and stays float64 in
JAX, while PyTensor's types say float32. Gradients of biases and of the output layer are such
sums, so after one JAX training step those parameters silently became float64 and the next
function's ``scan`` refused its float32/float64 carry. ``enable()`` re-registers the
translation to cast the result to the dtype PyTensor promised.

XLA compiles again in every process by default; ``enable()`` also turns on JAX's persistent
compilation cache, in a ``jax`` folder of PyTensor's compile directory (so
``PYTENSOR_FLAGS=base_compiledir=...`` moves or empties both caches at once). It saves
0.5-0.9 s of the 2-3 s first call of the benchmark's LSTM graph; the rest is PyTensor's own
graph rewriting, which no cache keeps.
"""

from __future__ import annotations

import functools
import os

_enabled = False


def enable() -> None:
    """Install the fix and the cache, once; the Numba and C backends are untouched."""
    global _enabled
    if _enabled:
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

    jax.config.update("jax_compilation_cache_dir", cache_dir())
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    _enabled = True


def cache_dir() -> str:
    """Where compiled XLA executables are kept between processes."""
    import pytensor
    return os.path.join(pytensor.config.compiledir, "jax")
