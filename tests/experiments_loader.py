"""The scripts of ``experiments/`` as modules, for the tests that exercise them.

They are scripts, not part of the installed package: run as ``python experiments/NAME.py``,
Python puts their folder on ``sys.path`` and they import each other by file name
(``import torch_peer``). ``load`` does the same for a test.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def script(name: str) -> Path:
    """The path of ``experiments/NAME.py``."""
    return EXPERIMENTS / f"{name}.py"


def load(name: str) -> ModuleType:
    """``experiments/NAME.py`` imported as the module ``NAME``."""
    if str(EXPERIMENTS) not in sys.path:
        sys.path.insert(0, str(EXPERIMENTS))
    module = importlib.import_module(name)
    assert Path(module.__file__).resolve() == script(name), f"{name} is not {script(name)}"
    return module
