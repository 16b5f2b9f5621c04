"""Audio in, features out: WAV files read with soundfile, log-mel filterbanks with librosa.

``AudioReader`` reads any WAV that libsndfile reads (8/16/24/32-bit integer PCM, float) as
mono float32 at the model's sample rate: other rates are resampled (soxr, through librosa)
and several channels mixed down, each said once per reader. A file that is not a WAV, a
truncated one (its header promises more audio than the file holds) and an empty one are a
``UserError`` naming the file.

``Features`` turns samples into frames: log-mel filterbank energies over 25 ms windows every
10 ms (``n_mels`` bands up to the Nyquist frequency), optionally with their first and second
differences (deltas); with a ``warp`` factor other than 1 the spectrum's frequency axis is
stretched first (``vtlp_warp``). ``FeatureCache`` keeps each file's frames as a ``.npy``
beside the others of the same settings, so a dataset's features are computed once.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import UserError

# Log of a band's energy is taken of energy + this: silence gives a floor, not -inf.
_FLOOR = 1e-10


@dataclass
class AudioReader:
    """Mono float32 samples at ``sample_rate`` from WAV files (see the module docstring)."""

    sample_rate: int
    said: set[str] | None = None  # conversions already reported

    def __call__(self, path: str | Path) -> np.ndarray:
        import soundfile
        path = Path(path)
        _check_complete(path)
        try:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (soundfile.SoundFileError, OSError) as error:
            raise UserError(f"{path} is not an audio file this can read ({_reason(error)}): "
                            "give a WAV file") from None
        if samples.shape[0] == 0:
            raise UserError(f"{path} holds no audio (0 samples): give a recording")
        if samples.shape[1] > 1:
            self._say("channels", f"{path.name} has {samples.shape[1]} channels: mixing them "
                      "down to one (and any other multi-channel file)")
        mono = samples.mean(axis=1)
        if rate != self.sample_rate:
            self._say("rate", f"{path.name} is sampled at {rate} Hz: resampling it to the "
                      f"model's {self.sample_rate} Hz (and any other file at another rate)")
            mono = resample(mono, rate, self.sample_rate)
        return mono.astype(np.float32)

    def _say(self, kind: str, message: str) -> None:
        if self.said is None:
            self.said = set()
        if kind not in self.said:
            self.said.add(kind)
            print(f"note: {message}", file=sys.stderr)


def resample(samples: np.ndarray, rate: float, to_rate: float) -> np.ndarray:
    """``samples`` at ``rate`` Hz as samples at ``to_rate`` Hz (the same duration)."""
    import soxr
    return soxr.resample(np.asarray(samples, np.float32), rate, to_rate).astype(np.float32)


def _check_complete(path: Path) -> None:
    """Refuse a RIFF/WAVE file cut short: its data chunk says more bytes than follow it."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return  # not a RIFF WAV: soundfile says what it is, or that it is nothing
            size = path.stat().st_size
            while chunk := f.read(8):
                if len(chunk) < 8:
                    break
                name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if name == b"data":
                    left = size - f.tell()
                    if length > left and length != 0xFFFFFFFF:  # all ones: streamed, unknown
                        raise UserError(f"{path} is truncated: its header promises {length} "
                                        f"bytes of audio and {left} follow; give the whole "
                                        "file")
                    return
                f.seek(length + (length & 1), 1)  # chunks are padded to even sizes
    except OSError as error:
        raise UserError(f"cannot read {path}: {_reason(error)}") from None


def _reason(error: Exception) -> str:
    text = str(error).split(": ", 1)[-1] if ": " in str(error) else str(error)
    return text.strip().rstrip(".") or type(error).__name__


def vtlp_warp(power: np.ndarray, alpha: float, knee: float = 0.8) -> np.ndarray:
    """The power spectrum ``power`` (bins from 0 to the Nyquist frequency N, frames) with its
    frequency axis warped as vocal tract length perturbation does (Jaitly & Hinton 2013):
    the energy at f moves to alpha f up to a knee, and from there on a straight line that
    keeps N at N, so no band leaves the spectrum. The knee lies at ``knee`` N x min(alpha, 1)
    / alpha. Each warped bin reads the spectrum at the inverse of the warp, interpolated
    linearly between the two nearest bins."""
    bins = power.shape[0]
    f = np.arange(bins) / (bins - 1)  # each bin's frequency, as a fraction of N
    bend = knee * min(alpha, 1.0) / alpha  # the knee before warping; alpha bend after it
    source = np.where(f <= alpha * bend, f / alpha,
                      bend + (f - alpha * bend) * (1 - bend) / (1 - alpha * bend))
    position = source * (bins - 1)
    low = np.minimum(np.floor(position).astype(int), bins - 2)
    frac = (position - low)[:, None]
    return power[low] * (1 - frac) + power[low + 1] * frac


@dataclass(frozen=True)
class Features:
    """Log-mel filterbank frames of audio at ``sample_rate`` (see the module docstring)."""

    sample_rate: int = 8000
    n_mels: int = 40
    deltas: bool = False
    window_ms: float = 25.0
    hop_ms: float = 10.0

    @property
    def dim(self) -> int:
        """Values per frame."""
        return self.n_mels * (3 if self.deltas else 1)

    @property
    def hop(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    def __call__(self, samples: np.ndarray, warp: float = 1.0) -> np.ndarray:
        """(frames, dim) float32 features of mono ``samples``, the spectrum warped by
        ``warp`` (``vtlp_warp``) when it is not 1."""
        import librosa
        window = round(self.sample_rate * self.window_ms / 1000)
        n_fft = 1 << (window - 1).bit_length()  # the next power of two
        stft = dict(n_fft=n_fft, win_length=window, hop_length=self.hop, center=True)
        y = np.asarray(samples, np.float32)
        if warp == 1.0:
            power = librosa.feature.melspectrogram(y=y, sr=self.sample_rate,
                                                   n_mels=self.n_mels, **stft)
        else:
            spectrum = vtlp_warp(np.abs(librosa.stft(y, **stft)) ** 2, warp)
            power = librosa.feature.melspectrogram(S=spectrum, sr=self.sample_rate,
                                                   n_mels=self.n_mels, **stft)
        logmel = np.log(power + _FLOOR)  # (n_mels, frames)
        if self.deltas:
            width = min(9, logmel.shape[1] - (1 - logmel.shape[1] % 2))  # odd, at most T
            if width >= 3:
                logmel = np.concatenate([logmel, librosa.feature.delta(logmel, width=width),
                                         librosa.feature.delta(logmel, order=2, width=width)])
            else:
                logmel = np.concatenate([logmel, np.zeros_like(logmel), np.zeros_like(logmel)])
        return logmel.T.astype(np.float32)

    def frames(self, n_samples: int) -> int:
        """How many frames ``n_samples`` samples give."""
        return 1 + n_samples // self.hop


class FeatureCache:
    """Each file's features computed once: ``.npy`` files under ``root``, in a folder per
    feature settings (and per sample rate conversion), named after the file and its size."""

    def __init__(self, root: str | Path | None, features: Features, reader: AudioReader) -> None:
        self.features, self.reader = features, reader
        settings = asdict(features) | {"floor": _FLOOR}  # all that makes the numbers
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
        self.root = None if root is None else Path(root) / key.hexdigest()[:12]

    def __call__(self, path: str | Path) -> np.ndarray:
        path = Path(path)
        cached = self._cached_path(path)
        if cached is not None and cached.exists():
            try:
                return np.load(cached)
            except (OSError, ValueError):
                pass  # damaged: computed and written again
        frames = self.features(self.reader(path))
        if cached is not None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(cached, lambda out: np.save(out, frames))
            except (OSError, UserError):
                self.root = None  # a read-only place: compute without caching from here on
        return frames

    def _cached_path(self, path: Path) -> Path | None:
        if self.root is None:
            return None
        stat = path.stat()
        return self.root / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}.npy"
