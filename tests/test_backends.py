"""Backend policy: nothing at import, Numba at LLVM level 1 once prepared unless the user chose
a level, AUTO resolved by whether the model's shapes are fixed."""

import os
import subprocess
import sys

import pytest

from rnn_theano import backends

PRINT_LEVEL = "import numba; print(int(numba.config.OPT))"
PREPARE = "from rnn_theano import backends; backends.prepare('NUMBA')"


def run_python(code: str, numba_opt: str | None) -> str:
    """The last word ``code`` prints in a fresh Python, NUMBA_OPT set or unset."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}  # this process may set it
    if numba_opt is not None:
        env["NUMBA_OPT"] = numba_opt
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    return proc.stdout.split()[-1]


def test_importing_the_package_sets_nothing():
    code = "import os, rnn_theano, rnn_theano.cli; print('NUMBA_OPT' in os.environ)"
    assert run_python(code, None) == "False"


def test_numbas_own_default_is_level_3():
    """What prepare changes: without it, numba optimises at level 3."""
    assert run_python(f"import rnn_theano; {PRINT_LEVEL}", None) == "3"


@pytest.mark.parametrize("code", [
    f"{PREPARE}; {PRINT_LEVEL}",
    f"import numba; {PREPARE}; {PRINT_LEVEL}",  # numba imported first: it reads its settings again
])
def test_prepare_numba_sets_level_1(code):
    assert run_python(code, None) == "1"


def test_the_users_level_wins():
    assert run_python(f"{PREPARE}; {PRINT_LEVEL}", "2") == "2"


def test_auto_resolution():
    assert backends.resolve("AUTO", fixed_shapes=False) == "NUMBA"
    assert backends.resolve("CVM", fixed_shapes=True) == "CVM"
    expected = "JAX" if backends.has_jax() else "NUMBA"
    assert backends.resolve("AUTO", fixed_shapes=True) == expected
    with pytest.raises(ValueError, match="unknown backend"):
        backends.resolve("GPU", fixed_shapes=True)
