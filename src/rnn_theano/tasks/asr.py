"""Speech recognition: spoken digit strings to text, as the trainer and the commands see it.

The tutorial's third application. A deep bidirectional recurrent network (``asr_graph``)
reads log-mel frames and is trained end to end with CTC (``nn.ctc``), on the Free Spoken
Digit Dataset's isolated recordings and on digit strings made from them (``data.speech``);
each epoch's strings are drawn afresh, and ``--speed``, ``--vtlp`` and SpecAugment's masks
perturb every training utterance anew.

Scores (``evaluate``): the CTC cost per utterance, the share of utterances transcribed
exactly (``accuracy``: for an isolated digit, the isolated-digit accuracy) and the digit error
rate (``error_rate``): the edit distance between the transcript's digit words and the
reference's, summed over the utterances and divided by the reference words (jiwer's WER over
digit words). The best epoch is the one with the lowest validation digit error rate, decoded
greedily; the test set is transcribed once at the end, greedily and with ``--beam``, and
reported separately for the isolated recordings and for the strings of each length.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import Checkpoint
from ..config import AsrConfig
from ..data.audio import AudioReader, FeatureCache, Features
from ..data.datasets import recordings_dir
from ..data.speech import (DIGITS, Clip, DigitStrings, Utterance, UtteranceBatches,
                           fsdd_clips, split_clips)
from ..data.vocab import Vocabulary
from ..errors import UserError
from ..metrics import Score
from ..plotting import pyplot, save_png
from ..train import Step, TrainerOptions
from .asr_decode import greedy, prefix_beam_search
from .asr_engine import AsrEngine
from .asr_graph import RecogniserConfig
from .engine import (EngineTask, continue_from, engine_settings, loadable_settings,
                     monitored_options)

# The model's outputs: the blank, then one label per digit word.
LABELS = Vocabulary(("<blank>", *DIGITS))
STATS_BLOB = "feature_stats.npy"
# Under JAX each batch shape compiles once: frames are padded to one of a few lengths.
_JAX_FRAMES = 32


def graph_config(config: AsrConfig) -> RecogniserConfig:
    """The network's graph settings: the model's own, with the features' size."""
    m = config.model
    return RecogniserConfig(cell=m.cell, n_features=features_of(config).dim,
                            proj_dim=m.proj_dim, hidden_dim=m.hidden_dim, layers=m.layers,
                            subsample=m.subsample, n_outputs=len(LABELS), dropout=m.dropout,
                            seed=config.train.seed)


def check_model(config: AsrConfig) -> None:
    """Refuse an impossible network before any data is read."""
    graph_config(config)


def features_of(config: AsrConfig) -> Features:
    m = config.model
    return Features(sample_rate=m.sample_rate, n_mels=m.n_mels, deltas=m.deltas)


def strings_of(config: AsrConfig, train: bool) -> DigitStrings:
    """How strings are made: training ones perturbed with ``--speed``, the others not."""
    d = config.data
    return DigitStrings(config.model.sample_rate, (d.gap_min_ms, d.gap_max_ms), d.noise,
                        d.speed if train else 0.0)


def build_engine(config: AsrConfig, params: dict[str, np.ndarray] | None = None) -> AsrEngine:
    return AsrEngine(graph_config(config), params, **engine_settings(config))


def describe(engine: AsrEngine, config: AsrConfig) -> str:
    c, m = engine.config, config.model
    stride = f", frame rate / {c.stride}" if c.stride > 1 else ""
    return (f"{c.layers}-layer bidirectional {c.cell.upper()} {c.hidden_dim} per direction"
            f"{stride}, {m.n_mels} log-mel bands{' + deltas' if m.deltas else ''}, "
            f"{m.normalise} normalisation (under {engine.mode})")


def trainer_options(config: AsrConfig) -> TrainerOptions:
    return monitored_options(config, "error_rate")


# --- data -------------------------------------------------------------------------------------

@dataclass
class SpeechData:
    """The recordings of each split, their audio in memory, and the held-out utterances
    (each isolated recording, then strings of 3 to ``max_digits`` digits)."""

    clips: dict[str, list[Clip]]
    audio: dict[Path, np.ndarray]
    held_out: dict[str, list[Utterance]]
    source: str


def load_data(config: AsrConfig) -> SpeechData:
    """The dataset's recordings (downloaded when absent), split, read, and the fixed
    validation and test strings drawn (seeded by ``--seed``)."""
    d = config.data
    folder = recordings_dir(d.dataset, Path(d.data_dir) if d.data_dir else None)
    clips = split_clips(fsdd_clips(folder), d.test_speaker)
    reader = AudioReader(config.model.sample_rate)
    audio = {c.path: reader(c.path) for part in clips.values() for c in part}
    held_out = {}
    for i, split in enumerate(("valid", "test")):
        rng = np.random.default_rng([config.train.seed, 7, i])
        lengths = [n for n in range(3, d.max_digits + 1) for _ in range(d.eval_strings)]
        held_out[split] = ([Utterance(c.path.stem, audio[c.path], (c.digit,), c.speaker)
                            for c in clips[split]]
                           + strings_of(config, False).make(clips[split], audio, lengths, rng))
    split = (f"speaker-independent: test speaker {d.test_speaker}" if d.test_speaker
             else "official split: repetitions 0-4 test, 5-9 validation")
    return SpeechData(clips, audio, held_out, f"{d.dataset} ({split})")


def moments(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(2, F): each feature's mean and standard deviation over all these frames."""
    joined = np.concatenate(frames)
    return np.stack([joined.mean(axis=0), joined.std(axis=0) + 1e-5])


class Frontend:
    """Samples to the normalised frames the model reads (the cache keeps the raw features
    of each recording): per utterance, per speaker, or with the training set's statistics."""

    def __init__(self, config: AsrConfig, stats: np.ndarray | None = None,
                 cache_dir: Path | None = None) -> None:
        self.features, self.normalise = features_of(config), config.model.normalise
        self.cache = FeatureCache(cache_dir, self.features, AudioReader(config.model.sample_rate))
        self.stats = stats  # (2, F): mean and standard deviation
        # Under --normalise speaker, each speaker's; data, not model: not in the checkpoint.
        self.speakers: dict[str, np.ndarray] = {}

    def fit(self, frames: Sequence[np.ndarray]) -> None:
        """Take the normalising statistics from these (training) frames."""
        self.stats = moments(frames)

    def __call__(self, samples: np.ndarray, warp: float = 1.0, speaker: str = "") -> np.ndarray:
        return self.normalised(self.features(samples, warp), speaker)

    def normalised(self, frames: np.ndarray, speaker: str = "") -> np.ndarray:
        """``frames`` (T, F) normalised; under ``speaker``, a speaker without statistics
        by the utterance's own."""
        stats = self.stats if self.normalise == "dataset" else (
            self.speakers.get(speaker) if self.normalise == "speaker" else None)
        if stats is None:
            stats = moments([frames])
        return ((frames - stats[0]) / stats[1]).astype(np.float32)

    def stats_blob(self) -> dict[str, bytes]:
        if self.stats is None:
            return {}
        out = io.BytesIO()
        np.save(out, self.stats)
        return {STATS_BLOB: out.getvalue()}


def spec_augment(frames: np.ndarray, rng: np.random.Generator, time_masks: int,
                 time_width: int, freq_masks: int, freq_width: int) -> np.ndarray:
    """A copy of normalised ``frames`` (T, F) with random blocks of frames and of bands set
    to zero, their mean (Park et al. 2019, without time warping)."""
    out = frames.copy()
    T, F = out.shape
    for size, count, width, axis in ((T, time_masks, time_width, 0),
                                     (F, freq_masks, freq_width, 1)):
        for _ in range(count):
            w = int(rng.integers(0, min(width, size) + 1))
            start = int(rng.integers(0, size - w + 1))
            if axis == 0:
                out[start:start + w] = 0.0
            else:
                out[:, start:start + w] = 0.0
    return out


# --- the trainer's view -------------------------------------------------------------------

@dataclass
class AsrTask(EngineTask):
    """The recogniser, its data and how it hears it, as the trainer sees it
    (``train.Trainable``)."""

    engine: AsrEngine
    config: AsrConfig
    data: SpeechData
    frontend: Frontend
    vocab: Vocabulary = LABELS

    def __post_init__(self) -> None:
        self.n_train_tokens = len(self.data.clips["train"]) + self.config.data.strings_per_epoch
        self.has_test, self.unit = True, "utterances"
        raw = {c.path: self.frontend.cache(c.path) for part in self.data.clips.values()
               for c in part}
        if self.config.model.normalise == "dataset" and self.frontend.stats is None:
            self.frontend.fit([raw[c.path] for c in self.data.clips["train"]])
        if self.config.model.normalise == "speaker":
            self.frontend.speakers = speaker_moments(self.data.clips, raw)
        speaker = {c.path: c.speaker for part in self.data.clips.values() for c in part}
        self._frames = {path: self.frontend.normalised(f, speaker[path])
                        for path, f in raw.items()}
        self._held_out = {split: self._encode(utts) for split, utts in
                          self.data.held_out.items()}
        self._outputs: dict[str, tuple[float, list[np.ndarray]]] = {}  # see ``posteriors``

    def _encode(self, utterances: Sequence[Utterance]) -> list[np.ndarray]:
        by_stem = {p.stem: p for p in self._frames}
        return [self._frames[by_stem[u.name]] if u.name in by_stem
                else self.frontend(u.samples, speaker=u.speaker) for u in utterances]

    def batches(self, features: Sequence[np.ndarray], digits: Sequence[Sequence[int]],
                seed: int = 0) -> UtteranceBatches:
        return utterance_batches(self.engine, features, digits, self.config.data.batch_size,
                                 seed)

    def training_utterances(self, epoch: int) -> tuple[list[np.ndarray], list[tuple[int, ...]]]:
        """Epoch ``epoch``'s frames and digits: every training recording (perturbed when
        ``--speed`` or ``--vtlp`` is on) and fresh strings, with SpecAugment's masks; a
        function of the seed and the epoch."""
        d, clips = self.config.data, self.data.clips["train"]
        rng = np.random.default_rng([self.config.train.seed, 11, epoch])
        strings = strings_of(self.config, train=True)
        lengths = rng.integers(2, d.max_digits + 1, size=d.strings_per_epoch)
        made = strings.make(clips, self.data.audio, lengths, rng)
        # Drawn only when on, so that runs without it keep their random numbers.
        warps = (rng.uniform(1 - d.vtlp, 1 + d.vtlp, len(clips) + len(made)) if d.vtlp
                 else np.ones(len(clips) + len(made)))
        frames = [self._frames[c.path] if d.speed == 0.0 and d.vtlp == 0.0 else
                  self.frontend(strings.perturb(self.data.audio[c.path], rng), warp, c.speaker)
                  for c, warp in zip(clips, warps)]
        frames += [self.frontend(u.samples, warp, u.speaker)
                   for u, warp in zip(made, warps[len(clips):])]
        digits = [(c.digit,) for c in clips] + [u.digits for u in made]
        if d.time_masks or d.freq_masks:
            frames = [spec_augment(f, rng, d.time_masks, d.time_mask_frames, d.freq_masks,
                                   d.freq_mask_bands) for f in frames]
        return frames, digits

    def train_steps(self, epoch: int) -> Iterator[Step]:
        self._outputs.clear()
        frames, digits = self.training_utterances(epoch)
        for batch in self.batches(frames, digits, self.config.train.seed).epoch(epoch):
            result = self.engine.train_step(batch)
            yield Step(result.cost, result.n)

    def evaluate(self, split: str) -> Score:
        """CTC cost, exact transcripts and digit errors of ``split``'s utterances, greedy."""
        return self.score(split, beam=1)[0]

    def score(self, split: str, beam: int) -> tuple[Score, list[list[int]]]:
        """``split``'s score with ``beam`` (1: greedy) and each utterance's digits."""
        utterances = self.data.held_out[split]
        cost, posteriors = self.posteriors(split)
        found = [decode(p, beam) for p in posteriors]
        errors, words, exact = digit_errors([u.digits for u in utterances], found)
        return Score(cost, len(utterances), exact, error_rate=errors / words), found

    def posteriors(self, split: str) -> tuple[float, list[np.ndarray]]:
        """``split``'s summed CTC cost and each utterance's (T', K) log-posteriors over its
        real frames. Kept until the parameters change, so that the final test score and the
        test report's greedy and beam decodings share one pass of the network."""
        if split == "train":  # the training set changes every epoch: its running score
            raise UserError("the training set is scored while it is trained on")
        if split not in self._outputs:
            utterances = self.data.held_out[split]
            cost, found = 0.0, [np.empty(0)] * len(utterances)
            for batch in self.batches(self._held_out[split], [u.digits for u in utterances]):
                result = self.engine.eval_step(batch)
                cost += result.cost
                for b, i in enumerate(batch.rows):
                    if i >= 0:
                        found[i] = real_frames(result.log_probs, result.out_mask, b)
            self._outputs[split] = cost, found
        return self._outputs[split]

    def restore(self, snapshot: tuple[dict, dict, dict | None]) -> None:
        super().restore(snapshot)
        self._outputs.clear()

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        self._outputs.clear()
        try:
            with super().averaged():
                yield
        finally:
            self._outputs.clear()

    def blobs(self) -> dict[str, bytes]:
        return self.frontend.stats_blob()


def speaker_moments(clips: dict[str, list[Clip]],
                    raw: dict[Path, np.ndarray]) -> dict[str, np.ndarray]:
    """Each speaker's feature statistics, for ``--normalise speaker``: over its training
    recordings; for a speaker training never heard (the test speaker), over its recordings
    in the split that holds them: their audio only, as a recogniser adapts to a new voice
    from what it hears of it (Kaldi's per-speaker mean and variance normalisation)."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "valid", "test"):
        own: dict[str, list[np.ndarray]] = {}
        for c in clips[split]:
            if c.speaker not in out:
                own.setdefault(c.speaker, []).append(raw[c.path])
        out |= {speaker: moments(frames) for speaker, frames in own.items()}
    return out


def utterance_batches(engine: AsrEngine, features: Sequence[np.ndarray],
                      digits: Sequence[Sequence[int]], batch_size: int,
                      seed: int = 0) -> UtteranceBatches:
    """Batches the engine can take: frames padded to a multiple of its stride, and under JAX
    to one of a few lengths, with full rows, labels to a multiple of 8 (few shapes)."""
    e = engine
    multiple = max(e.config.stride, _JAX_FRAMES if e.static_shapes else 1)
    return UtteranceBatches(features, [[d + 1 for d in ds] for ds in digits], batch_size,
                            seed=seed, pad_multiple=multiple,
                            label_multiple=8 if e.static_shapes else 1, fill=e.static_shapes)


def decode(frames: np.ndarray, beam: int) -> list[int]:
    """One utterance's digits from the (T', K) log-posteriors of its real frames."""
    labels = greedy(frames) if beam == 1 else prefix_beam_search(frames, beam)
    return [k - 1 for k in labels]


def digit_errors(references: Sequence[Sequence[int]],
                 hypotheses: Sequence[Sequence[int]]) -> tuple[int, int, int]:
    """(edit operations, reference digits, exact transcripts) over the utterances: the
    digit error rate's numerator and denominator, by jiwer's word alignment."""
    import jiwer
    refs = [" ".join(DIGITS[d] for d in r) for r in references]
    hyps = [" ".join(DIGITS[d] for d in h) for h in hypotheses]
    words = sum(len(r) for r in references)
    exact = sum(r == h for r, h in zip(refs, hyps))
    out = jiwer.process_words(refs, hyps) if words else None
    errors = 0 if out is None else out.substitutions + out.deletions + out.insertions
    return errors, words, exact


def test_report(task: AsrTask, beam: int) -> dict[str, float]:
    """The test set transcribed with ``beam``: isolated-digit accuracy over the test
    recordings; digit error rate and whole-string accuracy over the strings of each length,
    and over all of them."""
    score, found = task.score("test", beam)
    utterances = task.data.held_out["test"]
    n_isolated = len(task.data.clips["test"])
    refs = [u.digits for u in utterances]
    report = {"isolated_accuracy": sum(f == list(r) for f, r in zip(found[:n_isolated],
                                                                  refs[:n_isolated]))
              / n_isolated}
    groups = {"strings": range(n_isolated, len(utterances))}
    for n in sorted({len(r) for r in refs[n_isolated:]}):
        groups[f"{n}_digits"] = [i for i in range(n_isolated, len(utterances))
                                 if len(refs[i]) == n]
    for name, rows in groups.items():
        errors, words, exact = digit_errors([refs[i] for i in rows], [found[i] for i in rows])
        report[f"{name}_error_rate"] = errors / words
        report[f"{name}_accuracy"] = exact / len(rows)
    return report | {"loss": score.loss}


def make_task(config: AsrConfig, data: SpeechData, resumed: Checkpoint | None) -> AsrTask:
    """The engine (fresh, or the resumed checkpoint's) and the frontend, with the checkpoint's
    normalising statistics (a fresh run's come from its training recordings, ``AsrTask``)."""
    engine = build_engine(config, resumed.params if resumed else None)
    if resumed:
        continue_from(engine, resumed, config.train.optimizer)
    d = config.data
    cache = Path(d.feature_cache) if d.feature_cache else (
        data.clips["train"][0].path.parent.parent / "features")
    return AsrTask(engine, config, data, Frontend(config, _stats(resumed) if resumed else None,
                                                  cache))


def _stats(ckpt: Checkpoint) -> np.ndarray | None:
    blob = ckpt.blobs.get(STATS_BLOB)
    return None if blob is None else np.load(io.BytesIO(blob))


# --- transcribing -----------------------------------------------------------------------

# A file may last this many times a typical long training string (max_digits recordings of
# about a second, each with its longest pause); past that the network is asked for something
# it never learnt, and the file is refused.
_LONGEST = 3.0


class Transcriber:
    """Text of WAV files under a trained recogniser's checkpoint."""

    def __init__(self, ckpt: Checkpoint) -> None:
        config = loadable_settings(ckpt.settings)
        self.engine = build_engine(config, ckpt.params)
        self.frontend = Frontend(config, _stats(ckpt))
        self.reader = AudioReader(config.model.sample_rate)
        d = config.data
        self.limit_s = _LONGEST * d.max_digits * (1.0 + d.gap_max_ms / 1000)

    def transcribe(self, path: Path, beam: int = 1) -> str:
        """The digit words spoken in the WAV file ``path`` (silence: none)."""
        return transcript(self.posteriors(path)[1], beam)

    def adapt(self, paths: Sequence[Path]) -> int:
        """Under ``--normalise speaker``, take the statistics of the voice from ``paths``,
        every readable file with sound as one speaker's (a file that cannot be read is left
        to ``posteriors`` to say so); how many files gave them (0: another normalisation)."""
        if self.frontend.normalise != "speaker":
            return 0
        heard = []
        for path in paths:
            with contextlib.suppress(UserError):
                if (samples := self._samples(path)) is not None:
                    heard.append(self.frontend.features(samples))
        if heard:
            self.frontend.speakers[""] = moments(heard)
        return len(heard)

    def _samples(self, path: Path) -> np.ndarray | None:
        """The file's samples; None for silence (nothing to hear, nothing to normalise)."""
        samples = self.reader(path)
        seconds = len(samples) / self.reader.sample_rate
        if seconds > self.limit_s:
            raise UserError(f"{path} is {seconds:.1f} s long: this model transcribes at most "
                            f"{self.limit_s:.0f} s; cut the recording into shorter pieces")
        return None if np.abs(samples).max() < 1e-4 else samples

    def posteriors(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """The file's normalised frames (T, F) and the network's (T', K) log-posteriors; a
        silent file has no frame."""
        samples = self._samples(path)
        if samples is None:
            return np.zeros((0, self.engine.config.n_features)), np.zeros((0, len(LABELS)))
        frames = self.frontend(samples)
        batch = next(iter(utterance_batches(self.engine, [frames], [[]], 1)))
        log_probs, out_mask = self.engine.posteriors(batch.x, batch.mask)
        return frames, real_frames(log_probs, out_mask, 0)


def real_frames(log_probs: np.ndarray, out_mask: np.ndarray, row: int) -> np.ndarray:
    """Batch row ``row``'s (T', K) log-posteriors over its real output frames, padding cut."""
    return log_probs[:, row][out_mask[:, row] > 0]


def transcript(log_probs: np.ndarray, beam: int = 1) -> str:
    """The digit words read off one utterance's (T', K) log-posteriors."""
    return " ".join(DIGITS[d] for d in decode(log_probs, beam))


def plot_posteriors(frames: np.ndarray, log_probs: np.ndarray, stride: int, title: str,
                    path: str) -> None:
    """The utterance's features over time, and under them each label's posterior per output
    frame: CTC's spikes, blank everywhere else."""
    plt = pyplot("--plot")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True,
                                      gridspec_kw={"height_ratios": [1.2, 1]})
    seconds = len(frames) / 100
    top.imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
               extent=(0, seconds, 0, frames.shape[1]))
    top.set_ylabel("mel band")
    top.set_title(title)
    times = (np.arange(len(log_probs)) + 0.5) * stride / 100
    probs = np.exp(log_probs)
    bottom.plot(times, probs[:, 0], color="0.7", lw=1, label="blank")
    for k in range(1, probs.shape[1]):
        if probs[:, k].max() > 0.1:
            bottom.plot(times, probs[:, k], lw=1.5, label=LABELS.words[k])
    bottom.set_ylim(0, 1.02)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("posterior")
    bottom.legend(loc="upper right", fontsize=8, ncol=6)
    fig.tight_layout()
    save_png(fig, path)
