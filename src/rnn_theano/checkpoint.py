"""Checkpoints: one ``.npz`` with the parameters, the vocabulary and the settings that built them.

Layout (readable with numpy alone, ``np.load(path)``):

* one array per parameter under its own name; the tutorial model has ``U`` (H, C),
  ``V`` (C, H) and ``W`` (H, H), exactly as the tutorial shapes them;
* ``__opt__NAME``: the optimizer's state (Adam's moments and step count, RMSprop's mean
  squares), when the model has any, so a resumed run continues it;
* ``__blob__NAME``: a file the model reads its input with, as uint8 bytes (a translation
  model's sentencepiece models, ``source.model`` and ``target.model``; a classifier's,
  ``subwords.model``, under ``--subwords``; a recogniser's feature statistics,
  ``feature_stats.npy``, when it normalises with the training set's);
* ``__meta__``: a 0-d unicode array holding JSON with ``format``, ``version``, ``vocab`` (the
  word list; a word's id is its index), ``settings`` (``config.TrainConfig.to_dict()``: the
  data, model and train sections; ``task`` says which kind: ``lm``, ``classify``, ``mt`` or ``asr``),
  ``labels`` (a classifier's classes) and ``state`` (epoch, learning rate, history, ...).

Version 1 files (flat settings with a ``family`` key) are read and converted on loading.

Writes are atomic: the file is written under a temporary name in the same directory, flushed
to disk, then renamed over the target, so an interrupted save never leaves a half-written
checkpoint and never damages the previous one.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write
from .config import RUN_CONFIGS, SECTIONS, RunConfig, TrainConfig
from .errors import UserError
from .data.vocab import Vocabulary

FORMAT = "rnn-theano-checkpoint"
VERSION = 2
META_KEY = "__meta__"
OPT_PREFIX = "__opt__"
BLOB_PREFIX = "__blob__"


@dataclass
class Checkpoint:
    """What a checkpoint holds; ``state`` is a plain JSON-able dict. ``settings`` is the run's
    typed settings (``TrainConfig`` for a language model, ``ClassifyConfig`` for a
    classifier); ``labels`` a classifier's classes, a class's id its index."""

    params: dict[str, np.ndarray]
    vocab: Vocabulary
    settings: RunConfig
    state: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, np.ndarray] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    blobs: dict[str, bytes] = field(default_factory=dict)


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` to ``path`` atomically (temporary file, fsync, rename)."""
    meta = {"format": FORMAT, "version": VERSION, "task": ckpt.settings.task,
            "vocab": list(ckpt.vocab.words), "labels": list(ckpt.labels),
            "settings": ckpt.settings.to_dict(), "state": ckpt.state}
    arrays = {name: np.asarray(value) for name, value in ckpt.params.items()}
    arrays.update({OPT_PREFIX + name: np.asarray(v) for name, v in ckpt.optimizer.items()})
    arrays.update({BLOB_PREFIX + name: np.frombuffer(data, np.uint8)
                   for name, data in ckpt.blobs.items()})
    atomic_write(path, lambda f: np.savez(f, **arrays, **{META_KEY: np.array(json.dumps(meta))}))


_COMMANDS = {"lm": "generate, evaluate or fill-blank", "classify": "classify",
             "mt": "translate", "asr": "transcribe"}
_KINDS = {"lm": "language-model", "classify": "classifier", "mt": "translation",
          "asr": "speech-recognition"}


def load_checkpoint(path: str | Path, task: str | None = None) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`; any damage is a ``UserError``,
    and so is a checkpoint of another ``task`` than the one asked for."""
    ckpt = _load(Path(path))
    if task is not None and ckpt.settings.task != task:
        raise UserError(f"{path} is a {_KINDS[ckpt.settings.task]} checkpoint, not a "
                        f"{_KINDS[task]} one: use it with rnn-theano "
                        f"{_COMMANDS[ckpt.settings.task]}")
    return ckpt


def _load(path: Path) -> Checkpoint:
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
    if meta.get("version") not in (1, VERSION):
        raise UserError(f"{problem} (format version {meta.get('version')}, this program reads "
                        f"1 and {VERSION}): {fix}")
    try:
        vocab = Vocabulary(tuple(meta["vocab"]))
        optimizer = _pop_prefixed(arrays, OPT_PREFIX)
        blobs = {k: v.tobytes() for k, v in _pop_prefixed(arrays, BLOB_PREFIX).items()}
        sections = meta["settings"] if meta["version"] == VERSION else upgrade_v1(meta["config"])
        settings = RUN_CONFIGS[meta.get("task", TrainConfig.task)].from_dict(sections)
        return Checkpoint(arrays, vocab, settings, dict(meta.get("state", {})), optimizer,
                          tuple(meta.get("labels", ())), blobs)
    except (KeyError, TypeError, AttributeError) as e:
        raise UserError(f"{problem} (incomplete metadata: {e}): {fix}") from None
    except UserError as e:
        raise UserError(f"{problem} ({e}): {fix}") from None


def _pop_prefixed(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Remove the arrays named ``prefix + NAME`` from ``arrays``; return them by NAME."""
    return {name[len(prefix):]: arrays.pop(name) for name in list(arrays)
            if name.startswith(prefix)}


# Version 1 kept every flag in one flat dict; these were dropped or renamed since.
_V1_DROPPED = {"family", "lm", "cell", "config"}


def upgrade_v1(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Version 1's flat settings, by section: ``family`` and ``cell`` become ``arch``."""
    arch = flat.get("cell", "rnn") if flat.get("family") == "engine" else "tutorial"
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for name, kind in SECTIONS.items():
        names = {f.name for f in fields(kind)}
        sections[name] = {k: v for k, v in flat.items() if k in names and k not in _V1_DROPPED}
    sections["model"]["arch"] = arch
    family = "tutorial" if arch == "tutorial" else "engine"
    for name, kind in SECTIONS.items():  # settings the other family's defaults left behind
        for f in fields(kind):
            if f.metadata["only"] not in (None, family):
                sections[name][f.name] = f.default
    return sections
