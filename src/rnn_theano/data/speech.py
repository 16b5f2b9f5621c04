"""Spoken digits: the Free Spoken Digit Dataset, its splits, and digit strings made from it.

FSDD (Jakobovski et al.) holds 3,000 trimmed recordings of single spoken digits, 8 kHz mono,
named ``{digit}_{speaker}_{index}.wav``: six speakers, each digit 50 times (index 0-49).

Splits (``split_clips``):

* ``official``: the dataset's own, repetitions 0-4 for the test, the rest for training, of
  which repetitions 5-9 are held out to pick the best epoch;
* ``--test-speaker NAME``: speaker-independent, every recording of NAME is the test set; the
  other five speakers train (their repetitions 5-9 held out).

Digit strings (``DigitStrings``) are a real sequence-recognition task built from the isolated
clips: several recordings of one speaker, joined with short random gaps of silence with light
noise, labelled with their digit words ("three one four"). Test strings are made from the
test recordings only. Everything is drawn from a generator seeded by the caller, so a seed
gives the same strings every time.

``UtteranceBatches`` batches utterances (features and labels) by similar length, time-major.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from .audio import resample
from .batching import _LengthBuckets, round_up

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
_NAME = re.compile(r"([0-9])_([A-Za-z]+)_([0-9]+)\.wav")
TEST_REPETITIONS, VALID_REPETITIONS = range(0, 5), range(5, 10)


@dataclass(frozen=True)
class Clip:
    """One FSDD recording: its file, the digit spoken, who spoke it, which repetition."""

    path: Path
    digit: int
    speaker: str
    index: int


def fsdd_clips(recordings: Path) -> list[Clip]:
    """Every ``{digit}_{speaker}_{index}.wav`` in ``recordings``, sorted by name."""
    clips = []
    for path in sorted(Path(recordings).glob("*.wav")):
        match = _NAME.fullmatch(path.name)
        if match is None:
            raise UserError(f"{path} is not named DIGIT_SPEAKER_INDEX.wav as the dataset's "
                            "recordings are: its digit is unknown; move it out of the folder")
        clips.append(Clip(path, int(match[1]), match[2], int(match[3])))
    if not clips:
        raise UserError(f"{recordings} holds no recordings (*.wav)")
    return clips


def split_clips(clips: Sequence[Clip], test_speaker: str | None) -> dict[str, list[Clip]]:
    """train / valid / test clips of the official split, or of the speaker-independent one
    that tests on ``test_speaker`` (see the module docstring)."""
    speakers = sorted({c.speaker for c in clips})
    if test_speaker is not None and test_speaker not in speakers:
        raise UserError(f"--test-speaker {test_speaker!r} is not one of the dataset's "
                        f"speakers: {', '.join(speakers)}")

    def split(c: Clip) -> str:
        if test_speaker is not None:
            if c.speaker == test_speaker:
                return "test"
        elif c.index in TEST_REPETITIONS:
            return "test"
        return "valid" if c.index in VALID_REPETITIONS else "train"

    out: dict[str, list[Clip]] = {"train": [], "valid": [], "test": []}
    for c in clips:
        out[split(c)].append(c)
    for name, part in out.items():
        if not part:
            raise UserError(f"the {name} split of these recordings is empty: the dataset needs "
                            "repetitions 0-9 and more of each speaker")
    return out


class Utterance(NamedTuple):
    """What a model hears and what it should write: samples (mono, the model's rate) and
    the digits spoken; ``name`` says where it came from, ``speaker`` who spoke."""

    name: str
    samples: np.ndarray
    digits: tuple[int, ...]
    speaker: str = ""

    @property
    def text(self) -> str:
        return " ".join(DIGITS[d] for d in self.digits)


@dataclass(frozen=True)
class DigitStrings:
    """How digit strings are made from clips (what a checkpoint records).

    ``gap_ms``: the pause between two digits, and before the first and after the last, drawn
    uniformly from (min, max); ``noise``: the standard deviation of the Gaussian noise in
    the pauses, relative to the string's RMS level; ``speed``: each clip is resampled by a
    factor drawn from [1 - speed, 1 + speed], changing its speed and pitch together (0: off).
    """

    sample_rate: int = 8000
    gap_ms: tuple[float, float] = (50.0, 300.0)
    noise: float = 0.01
    speed: float = 0.0

    def make(self, clips: Sequence[Clip], audio: dict[Path, np.ndarray], lengths: Sequence[int],
             rng: np.random.Generator) -> list[Utterance]:
        """One string per entry of ``lengths`` (its number of digits), each from clips of one
        speaker, drawn with ``rng``."""
        by_speaker: dict[str, list[Clip]] = {}
        for c in clips:
            by_speaker.setdefault(c.speaker, []).append(c)
        names = sorted(by_speaker)
        weights = np.array([len(by_speaker[s]) for s in names], float)
        strings = []
        for n in lengths:
            speaker = names[rng.choice(len(names), p=weights / weights.sum())]
            own = by_speaker[speaker]
            chosen = [own[i] for i in rng.integers(len(own), size=n)]
            samples = self.join([self.perturb(audio[c.path], rng) for c in chosen], rng)
            strings.append(Utterance("+".join(c.path.stem for c in chosen), samples,
                                     tuple(c.digit for c in chosen), speaker))
        return strings

    def perturb(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``samples`` at a random speed (``speed``), or unchanged."""
        if self.speed == 0.0:
            return samples
        factor = rng.uniform(1.0 - self.speed, 1.0 + self.speed)
        return resample(samples, self.sample_rate * factor, self.sample_rate)

    def join(self, pieces: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """The pieces with random pauses of light noise before, between and after them."""
        level = float(np.sqrt(np.mean(np.concatenate(pieces) ** 2))) or 1e-3
        low, high = (round(ms * self.sample_rate / 1000) for ms in self.gap_ms)
        parts = []
        for piece in [*pieces, None]:
            gap = int(rng.integers(low, high + 1))
            parts.append((rng.standard_normal(gap) * self.noise * level).astype(np.float32))
            if piece is not None:
                parts.append(piece)
        return np.concatenate(parts).astype(np.float32)


def bucket(n: int, multiple: int) -> int:
    """The smallest of multiple x (1, 2, 3, 4, 6, 8, 12, 16, ...) that is at least ``n``: few
    distinct lengths, and past twice ``multiple`` at most a third of a batch is padding."""
    k = 1
    while multiple * k < n:
        k = 2 if k == 1 else k * 3 // 2 if k & (k - 1) == 0 else k * 4 // 3  # 2 3 4 6 8 ...
    return multiple * k


class UtteranceBatch(NamedTuple):
    """A minibatch of utterances, time-major; the order of the graph's inputs."""

    x: np.ndarray           # (T, B, F) float32 features
    mask: np.ndarray        # (T, B) float32 1 on real frames
    labels: np.ndarray      # (B, U) int32 label ids (1 + digit), 0 past a row's labels
    label_mask: np.ndarray  # (B, U) float32 1 on real labels
    rows: np.ndarray        # (B,) the utterances' indices; -1 for a filler row


class UtteranceBatches(_LengthBuckets):
    """Feature sequences and their labels, bucketed by frames; deterministic given ``seed``.

    ``pad_multiple`` rounds the frames of a batch up (the model's subsampling needs a multiple
    of its stride), ``label_multiple`` the labels. With ``fill`` (for JAX, which compiles once
    per shape) the frames go up to one of a few lengths (``bucket``) and the last batch is
    filled up with empty rows, so that every batch has ``batch_size`` rows.
    """

    def __init__(self, features: Sequence[np.ndarray], labels: Sequence[Sequence[int]],
                 batch_size: int, *, seed: int = 0, pad_multiple: int = 1,
                 label_multiple: int = 1, fill: bool = False) -> None:
        super().__init__(batch_size, seed, pad_multiple)
        if not features:
            raise UserError("no utterance to batch: the data set is empty")
        self.features, self.labels = list(features), [np.asarray(l, np.int32) for l in labels]
        self._lengths = np.array([len(f) for f in self.features])
        self.label_multiple, self.fill = label_multiple, fill
        self.n_examples = len(self.features)

    def _batch(self, indices: np.ndarray) -> UtteranceBatch:
        rows = np.asarray(indices)
        if self.fill and len(rows) < self.batch_size:
            rows = np.concatenate([rows, -np.ones(self.batch_size - len(rows), int)])
        real = rows[rows >= 0]
        T = max(1, int(self._lengths[real].max()))
        T = bucket(T, self.pad_multiple) if self.fill else round_up(T, self.pad_multiple)
        U = round_up(max(1, max(len(self.labels[i]) for i in real)), self.label_multiple)
        F = self.features[real[0]].shape[1]
        x = np.zeros((T, len(rows), F), np.float32)
        mask = np.zeros((T, len(rows)), np.float32)
        labels = np.zeros((len(rows), U), np.int32)
        label_mask = np.zeros((len(rows), U), np.float32)
        for b, i in enumerate(rows):
            if i < 0:
                continue
            n, u = len(self.features[i]), len(self.labels[i])
            x[:n, b], mask[:n, b] = self.features[i], 1.0
            labels[b, :u], label_mask[b, :u] = self.labels[i], 1.0
        return UtteranceBatch(x, mask, labels, label_mask, rows)
