"""rnn_theano compiles Numba code at LLVM level 1 unless the user chose a level."""

import os
import subprocess
import sys

import pytest

PRINT_LEVEL = "import numba; print(int(numba.config.OPT))"


def opt_level(code: str, numba_opt: str | None) -> int:
    """numba's optimisation level after running ``code`` in a fresh Python."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}  # this process set it
    if numba_opt is not None:
        env["NUMBA_OPT"] = numba_opt
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          check=True)
    return int(proc.stdout.split()[-1])


def test_numbas_own_default_is_level_3():
    """What the package changes: without it, numba optimises at level 3."""
    assert opt_level(PRINT_LEVEL, None) == 3


@pytest.mark.parametrize("code", [
    f"import rnn_theano; {PRINT_LEVEL}",
    f"import numba, rnn_theano; {PRINT_LEVEL}",  # numba imported first: it reads its settings again
])
def test_level_1_by_default(code):
    assert opt_level(code, None) == 1


def test_the_users_level_wins():
    assert opt_level(f"import rnn_theano; {PRINT_LEVEL}", "2") == 2
