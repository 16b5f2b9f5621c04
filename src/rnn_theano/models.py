"""The one place that turns settings into a model, fresh or from a checkpoint.

Two families: the tutorial's ``RNNTheano``/``RNNNumpy`` (one sentence per step) and the
minibatched ``LMEngine`` (any cell, depth, direction). A checkpoint's ``config["family"]``
says which; everything else asks this module instead of branching on it again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checkpoint import Checkpoint
from .config import backend
from .engine import LMEngine
from .errors import UserError
from .lm import LMConfig
from .numpy_rnn import RNNNumpy
from .sampling import NextWordProbs
from .theano_rnn import RNNTheano

TutorialModel = RNNNumpy | RNNTheano
Model = TutorialModel | LMEngine

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
    return RNNTheano(**common, mode=backend(config.get("mode", "NUMBA"), engine=False),
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


def lm_config(config: dict[str, Any], vocab_size: int) -> LMConfig:
    """The engine's architecture from the command-line settings."""
    return LMConfig(cell=config["cell"], vocab_size=vocab_size,
                    embed_dim=config["embed_dim"] or config["hidden_dim"],
                    hidden_dim=config["hidden_dim"], layers=config["layers"],
                    bidirectional=config["bidirectional"], dropout=config["dropout"],
                    tie_weights=config["tie_weights"], bias=not config["no_bias"],
                    forget_bias=config["forget_bias"], relu_identity_init=config["identity_init"],
                    softmax_classes=config.get("softmax_classes", 0), seed=config["seed"])


def build_engine(config: dict[str, Any], arch: LMConfig,
                 params: dict[str, np.ndarray] | None = None) -> LMEngine:
    """An ``LMEngine`` with the optimizer settings of ``config`` (its learning rate resolved,
    as ``TrainConfig.lr`` does and as every checkpoint records it)."""
    return LMEngine(arch, params, mode=backend(config.get("mode", "NUMBA"), engine=True),
                    optimizer=config.get("optimizer", "sgd"),
                    learning_rate=config["learning_rate"], clip_norm=config.get("clip_norm") or None,
                    weight_decay=config.get("weight_decay", 0.0))


def is_engine(ckpt: Checkpoint) -> bool:
    return ckpt.config.get("family") == "engine"


def model_from_checkpoint(ckpt: Checkpoint, **overrides: Any) -> Model:
    """Rebuild the saved model; ``overrides`` may change e.g. ``impl``, ``mode`` or the optimizer."""
    config = {**ckpt.config, **overrides}
    if "mode" not in overrides and config.get("mode") == "JAX":
        # Trained under XLA; the same function runs under Numba where jax is not installed.
        config["mode"] = "AUTO"
    if is_engine(ckpt):
        arch = LMConfig.from_dict(ckpt.config["lm"])
        if arch.vocab_size != len(ckpt.vocab):
            raise UserError(f"checkpoint vocabulary has {len(ckpt.vocab)} words but the model "
                            f"{arch.vocab_size}: the file is damaged, retrain it")
        return build_engine(config, arch, ckpt.params)
    return build_model(config, len(ckpt.vocab), checked_params(ckpt))


def next_word_probs(model: Model) -> NextWordProbs:
    """ids (T,) -> the model's distribution (C,) of the word after them (left to right)."""
    if isinstance(model, LMEngine):
        if model.config.bidirectional:
            raise UserError("a bidirectional model sees the words after the one it predicts, so "
                            "it cannot generate left to right: use scripts/fill_blank.py")

        return _IncrementalProbs(model)
    return lambda ids: model.forward_propagation(ids)[0][-1]


class _IncrementalProbs:
    """The engine's next-word distribution, reading each word of a growing prefix once.

    A sampler asks for ids[:1], ids[:2], ... in turn. Feeding each new word as a (1, 1) batch
    from the state the previous words left makes a sentence cost one step per word instead
    of one pass over the whole prefix per word, and keeps one input shape: under JAX a
    new shape is a new compile.
    """

    def __init__(self, model: LMEngine) -> None:
        self.model = model
        self.ids = np.zeros(0, np.int32)  # the prefix read so far
        self.state = model.initial_state(1)
        self.log_p: np.ndarray | None = None  # (C,) after self.ids

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            raise ValueError("the prefix needs at least one word (the sentence start)")
        n, state, log_p = len(self.ids), self.state, self.log_p
        if not (len(ids) >= n and np.array_equal(ids[:n], self.ids)):
            n, state = 0, self.model.initial_state(1)  # another prefix: start again
        one = np.ones((1, 1), np.float32)
        for word in ids[n:]:
            x = np.full((1, 1), word, np.int32)
            log_p, state = self.model.log_probs(x, x, one, state)
            log_p = log_p[0, 0]
        # All three together, so that a call stopped halfway leaves a consistent cache.
        self.ids, self.state, self.log_p = np.array(ids, np.int32), state, log_p
        return np.exp(log_p.astype(np.float64))


def count_params(model: Model) -> int:
    if isinstance(model, LMEngine):
        return model.n_params()
    return sum(int(np.prod(p.shape)) for p in model.params().values())
