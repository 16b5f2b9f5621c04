"""Shared test helpers.

The reference corpora are found through ``RNN_THEANO_DATA``, the project's data-dir setting
(``.ci/run`` sets it; unset, a ``shared/data`` directory beside the repository is used when
there is one). Tests that need them are skipped only when neither is there; configured but
missing is an error.
"""

import os
from pathlib import Path

import pytest

DATA_ENV_VAR = "RNN_THEANO_DATA"
BESIDE = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The reference corpora directory named by ``RNN_THEANO_DATA``."""
    configured = os.environ.get(DATA_ENV_VAR) or (str(BESIDE) if BESIDE.is_dir() else None)
    if not configured:
        pytest.skip(f"{DATA_ENV_VAR} is not set: the tests on reference corpora need it")
    path = Path(configured)
    if not (path / "ptb").is_dir():
        pytest.fail(f"{DATA_ENV_VAR}={configured} has no ptb/ folder: point it at the reference "
                    "data directory, or unset it", pytrace=False)
    return path


@pytest.fixture
def small_text(tmp_path: Path) -> Path:
    """A small one-sentence-per-line text, enough for any command that needs some corpus."""
    words = ("the cat sat on the mat . a dog ran to the park . we read a book by the sea . "
             "she saw the cat and the dog . they sat in the park all day .").split(" . ")
    rng = __import__("random").Random(0)
    lines = [" ".join(rng.sample(s.split(), len(s.split()))) + " ." for s in words * 40]
    path = tmp_path / "small.txt"
    path.write_text("\n".join(lines) + "\n")
    return path
