"""The one place that turns settings into a model, fresh or from a checkpoint."""

from __future__ import annotations

from typing import Any

import numpy as np

from .checkpoint import Checkpoint
from .errors import UserError
from .numpy_rnn import RNNNumpy
from .theano_rnn import RNNTheano

TutorialModel = RNNNumpy | RNNTheano

# The settings that define the network (saved with it); the rest only steer training.
ARCHITECTURE = ("impl", "hidden_dim", "activation", "bptt_truncate", "truncation")


def build_model(config: dict[str, Any], word_dim: int,
                params: dict[str, np.ndarray] | None = None) -> TutorialModel:
    """``RNNTheano`` or ``RNNNumpy`` (``config["impl"]``) with the tutorial's initialisation."""
    common = dict(word_dim=word_dim, hidden_dim=config["hidden_dim"],
                  bptt_truncate=config["bptt_truncate"], truncation=config["truncation"],
                  activation=config["activation"], seed=config.get("seed", 0), params=params)
    if config.get("impl", "theano") == "numpy":
        return RNNNumpy(**common)
    return RNNTheano(**common, mode=config.get("mode", "NUMBA"),
                     float32=config.get("float32", False))


def checked_params(ckpt: Checkpoint) -> dict[str, np.ndarray]:
    """U, V, W from ``ckpt``, after checking they fit its vocabulary and hidden size."""
    C, H = len(ckpt.vocab), ckpt.config.get("hidden_dim")
    expected = {"U": (H, C), "V": (C, H), "W": (H, H)}
    for name, shape in expected.items():
        got = ckpt.params.get(name)
        if got is None or got.shape != shape:
            raise UserError(f"checkpoint parameter {name} has shape "
                            f"{None if got is None else got.shape}, expected {shape} for a "
                            f"vocabulary of {C} and hidden size {H}: the file is damaged, retrain it")
    return {name: ckpt.params[name] for name in expected}


def model_from_checkpoint(ckpt: Checkpoint, **overrides: Any) -> TutorialModel:
    """Rebuild the saved model; ``overrides`` may change e.g. ``impl`` or ``mode``."""
    config = {**ckpt.config, **overrides}
    return build_model(config, len(ckpt.vocab), checked_params(ckpt))


def count_params(model: TutorialModel) -> int:
    return sum(int(np.prod(p.shape)) for p in model.params().values())
