"""Checkpoints: one ``.npz`` with the parameters, the vocabulary and the settings that built them.

Layout (readable with numpy alone, ``np.load(path)``):

* one array per parameter under its own name; the tutorial model has ``U`` (H, C),
  ``V`` (C, H) and ``W`` (H, H), exactly as the tutorial shapes them;
* ``__opt__NAME``: the optimizer's state (Adam's moments and step count, RMSprop's mean
  squares), when the model has any, so a resumed run continues it;
* ``__meta__``: a 0-d unicode array holding JSON with ``format``, ``version``, ``vocab`` (the
  word list; a word's id is its index), ``config`` (the settings) and ``state`` (epoch,
  learning rate, loss history).

Writes are atomic: the file is written under a temporary name in the same directory, flushed
to disk, then renamed over the target, so an interrupted save never leaves a half-written
checkpoint and never damages the previous one.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .errors import UserError
from .vocab import Vocabulary

FORMAT = "rnn-theano-checkpoint"
VERSION = 1
META_KEY = "__meta__"
OPT_PREFIX = "__opt__"


@dataclass
class Checkpoint:
    """What a checkpoint holds; ``config`` and ``state`` are plain JSON-able dicts."""

    params: dict[str, np.ndarray]
    vocab: Vocabulary
    config: dict[str, Any]
    state: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (temporary file, fsync, rename)."""
    meta = {"format": FORMAT, "version": VERSION, "vocab": list(ckpt.vocab.words),
            "config": ckpt.config, "state": ckpt.state}
    arrays = {name: np.asarray(value) for name, value in ckpt.params.items()}
    arrays.update({OPT_PREFIX + name: np.asarray(v) for name, v in ckpt.optimizer.items()})
    atomic_write(path, lambda f: np.savez(f, **arrays, **{META_KEY: np.array(json.dumps(meta))}))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; any damage is a ``UserError``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: train one first (make train, or "
                        f"scripts/train_lm.py --model-out {path})")
    problem = f"{path} is not a usable rnn-theano checkpoint"
    fix = "retrain it (make train) or point at another file"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop(META_KEY)))
    except KeyError:
        raise UserError(f"{problem} (no {META_KEY} record): {fix}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{problem} ({type(e).__name__}: {e}): {fix}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{problem} (unknown format): {fix}")
    if meta.get("version") != VERSION:
        raise UserError(f"{problem} (format version {meta.get('version')}, this program reads "
                        f"{VERSION}): {fix}")
    try:
        vocab = Vocabulary(tuple(meta["vocab"]))
        optimizer = {name[len(OPT_PREFIX):]: arrays.pop(name)
                     for name in list(arrays) if name.startswith(OPT_PREFIX)}
        ckpt = Checkpoint(arrays, vocab, dict(meta["config"]), dict(meta.get("state", {})),
                          optimizer)
    except (KeyError, TypeError) as e:
        raise UserError(f"{problem} (incomplete metadata: {e}): {fix}") from None
    return ckpt
