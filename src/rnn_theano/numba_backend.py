"""How the Numba backend compiles (the tutorial's model always, the engine without jax).

Numba optimises every function it compiles at LLVM level 3 unless ``NUMBA_OPT`` says otherwise.
PyTensor's Numba backend turns a graph into over a hundred small functions (one per node, each
scan's inner graph, Numba's own helpers: 124 for the tutorial's ``sgd_step``, compiled 490
times over their type signatures). With an empty cache, the first call of that ``sgd_step``
took 54 s and of the benchmark's LSTM and GRU training steps 59-63 s (2-core development
machine, 2026-11-26). At level 1 they took 40 s and 46-47 s, and training ran as fast and
gave bit-identical parameters: the time of these graphs is spent in BLAS and in library calls
(``exp``, ``tanh``), which LLVM's extra passes do not touch. So ``configure()`` sets level 1,
unless the user set ``NUMBA_OPT`` (which wins). The cache does not depend on the level: files
compiled at one level load at another.
"""

from __future__ import annotations

import os
import sys

OPT_LEVEL = "1"


def configure() -> None:
    """Compile at LLVM level 1 unless ``NUMBA_OPT`` is set; works before or after numba's import."""
    if "NUMBA_OPT" in os.environ:
        return
    os.environ["NUMBA_OPT"] = OPT_LEVEL  # read by numba when it is imported
    if "numba" in sys.modules:  # imported already: have it read its settings again
        from numba.core import config
        config.reload_config()
