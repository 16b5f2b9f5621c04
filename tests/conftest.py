"""Shared test helpers."""

from pathlib import Path

import pytest

# The reference corpora live beside the repository, never inside it (see ../shared/data/SOURCES.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared reference corpora directory; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference corpora not found at {SHARED_DATA}")
    return SHARED_DATA
