"""Audio reading, features and their cache, FSDD's splits, digit strings and their batches."""

import io
import shutil
import tarfile
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile

from rnn_theano.data import datasets
from rnn_theano.data.audio import AudioReader, FeatureCache, Features, resample, vtlp_warp
from rnn_theano.data.speech import (DigitStrings, UtteranceBatches, bucket, fsdd_clips,
                                    split_clips)
from rnn_theano.errors import UserError


@pytest.fixture(scope="module")
def recordings(shared_data: Path) -> Path:
    return datasets.recordings_dir("fsdd", shared_data, download=False)


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


# --- reading audio ----------------------------------------------------------------------------

@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_every_wav_encoding_reads_as_the_same_float_samples(tmp_path, subtype):
    path = tmp_path / f"{subtype}.wav"
    soundfile.write(path, tone(0.2, 8000), 8000, subtype=subtype)
    samples = AudioReader(8000)(path)
    assert samples.dtype == np.float32
    np.testing.assert_allclose(samples, tone(0.2, 8000), atol=1e-4)


def test_other_rates_are_resampled_and_stereo_mixed_down_each_said_once(tmp_path, capsys):
    for i in range(2):
        soundfile.write(tmp_path / f"s{i}.wav", tone(0.5, 16000, channels=2), 16000)
    reader = AudioReader(8000)
    a, b = reader(tmp_path / "s0.wav"), reader(tmp_path / "s1.wav")
    assert len(a) == len(b) == 4000  # the same duration at the model's rate
    err = capsys.readouterr().err
    assert err.count("resampling") == 1 and err.count("mixing them down") == 1


def test_resampling_keeps_the_duration():
    for rate in (11025, 16000, 44100):
        assert len(resample(np.zeros(rate * 2, np.float32), rate, 8000)) == 16000


@pytest.mark.parametrize("content, problem", [
    (b"hello, this is text", "not an audio file"),
    (b"", "not an audio file"),
])
def test_what_is_not_wav_is_refused_by_name(tmp_path, content, problem):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(UserError, match=problem) as e:
        AudioReader(8000)(path)
    assert str(path) in str(e.value)


def test_truncated_and_empty_files_are_refused(tmp_path, recordings):
    whole = (recordings / "3_theo_7.wav").read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(UserError, match="truncated"):
        AudioReader(8000)(cut)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 8000)
    with pytest.raises(UserError, match="no audio"):
        AudioReader(8000)(empty)


# --- features -------------------------------------------------------------------------------

def test_features_are_log_mel_frames_every_10_ms(recordings):
    samples = AudioReader(8000)(recordings / "3_theo_7.wav")
    frames = Features()(samples)
    assert frames.shape == (Features().frames(len(samples)), 40)
    assert Features(deltas=True)(samples).shape == (len(frames), 120)
    # A louder copy: every log energy well above the floor rises by log(2^2).
    louder, loud = Features()(2 * samples), frames > np.log(1e-7)
    assert loud.mean() > 0.2
    np.testing.assert_allclose(louder[loud] - frames[loud], np.log(4), atol=1e-3)


def test_vtlp_moves_a_tone_by_the_factor_and_keeps_the_frames():
    """A 1 kHz tone (below the knee) lands on the band of alpha x 1 kHz; the identity warp
    changes nothing; the Nyquist bin stays; the frames keep their number."""
    power = np.random.default_rng(0).random((129, 7))
    np.testing.assert_allclose(vtlp_warp(power, 1.0), power, rtol=1e-12)
    for alpha in (0.9, 1.1):
        np.testing.assert_allclose(vtlp_warp(power, alpha)[[0, -1]], power[[0, -1]])
    tone = np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000).astype(np.float32)
    features = Features()
    peak = {alpha: features(tone, alpha)[20].argmax() for alpha in (0.85, 1.0, 1.15)}
    assert peak[1.0] == features(tone)[20].argmax()
    assert peak[0.85] < peak[1.0] < peak[1.15]
    centres = librosa.mel_frequencies(features.n_mels + 2, fmax=4000)[1:-1]
    for alpha, band in peak.items():
        assert abs(centres[band] - 1000 * alpha) < 40, (alpha, centres[band])  # half a band
    assert features(tone, 1.15).shape == features(tone).shape


def test_the_cache_computes_a_file_once(tmp_path, recordings):
    path = recordings / "5_george_12.wav"
    cache = FeatureCache(tmp_path, Features(), AudioReader(8000))
    first = cache(path)
    stored = list(tmp_path.rglob("*.npy"))
    assert len(stored) == 1
    np.save(stored[0], first + 1.0)  # what the cache returns now is the stored array
    np.testing.assert_array_equal(cache(path), first + 1.0)
    other = FeatureCache(tmp_path, Features(n_mels=20), AudioReader(8000))(path)
    assert other.shape[1] == 20  # other settings have a folder of their own


# --- the dataset ----------------------------------------------------------------------------

def test_fsdd_splits(recordings):
    clips = fsdd_clips(recordings)
    assert len(clips) == 3000
    official = split_clips(clips, None)
    assert [len(official[k]) for k in ("train", "valid", "test")] == [2400, 300, 300]
    assert {c.index for c in official["test"]} == set(range(5))
    theo = split_clips(clips, "theo")
    assert {c.speaker for c in theo["test"]} == {"theo"} and len(theo["test"]) == 500
    assert "theo" not in {c.speaker for c in theo["train"] + theo["valid"]}
    with pytest.raises(UserError, match="not one of the dataset's speakers"):
        split_clips(clips, "nobody")


def test_a_recording_with_an_unknown_label_is_refused_by_name(tmp_path, recordings):
    shutil.copy(recordings / "3_theo_7.wav", tmp_path / "3_theo_7.wav")
    shutil.copy(recordings / "3_theo_7.wav", tmp_path / "x_theo_8.wav")
    with pytest.raises(UserError, match="x_theo_8.wav.*digit is unknown"):
        fsdd_clips(tmp_path)


def test_digit_strings_are_one_speaker_and_deterministic(recordings):
    clips = split_clips(fsdd_clips(recordings), None)["test"]
    reader = AudioReader(8000)
    audio = {c.path: reader(c.path) for c in clips}
    maker = DigitStrings(gap_ms=(50, 100))
    a = maker.make(clips, audio, [3, 5], np.random.default_rng(0))
    b = maker.make(clips, audio, [3, 5], np.random.default_rng(0))
    assert [u.digits for u in a] == [u.digits for u in b]
    np.testing.assert_array_equal(a[1].samples, b[1].samples)
    for u in a:
        stems = u.name.split("+")
        assert len({s.split("_")[1] for s in stems}) == 1  # one speaker
        assert u.digits == tuple(int(s[0]) for s in stems)
        assert u.text.split() == [("zero one two three four five six seven eight nine"
                                   .split())[d] for d in u.digits]
        spoken = sum(len(audio[next(c.path for c in clips if c.path.stem == s)])
                     for s in stems)
        gaps = len(u.samples) - spoken  # len(digits) + 1 pauses of 50-100 ms
        assert (len(stems) + 1) * 400 <= gaps <= (len(stems) + 1) * 800


def test_speed_perturbation_changes_the_length_within_its_range():
    rng = np.random.default_rng(1)
    maker = DigitStrings(speed=0.2)
    lengths = [len(maker.perturb(np.zeros(8000, np.float32), rng)) for _ in range(20)]
    assert min(lengths) >= 8000 / 1.2 - 2 and max(lengths) <= 8000 / 0.8 + 2
    assert len(set(lengths)) > 10


def test_batches_pad_frames_and_labels_and_fill_rows():
    feats = [np.ones((n, 3), np.float32) for n in (5, 9, 40)]
    batches = UtteranceBatches(feats, [[1], [2, 3], [4, 5, 6]], 2, pad_multiple=4,
                               label_multiple=8, fill=True)
    got = list(batches)
    assert [b.x.shape for b in got] == [(12, 2, 3), (48, 2, 3)]  # 9 -> 4 x 3, 40 -> 4 x 12
    last = got[1]
    assert list(last.rows) == [2, -1] and last.mask[:, 1].sum() == 0
    assert last.labels.shape == (2, 8) and list(last.labels[0, :3]) == [4, 5, 6]
    assert last.label_mask[0].sum() == 3


def test_buckets_are_few_and_waste_at_most_a_third():
    sizes = {bucket(n, 32) for n in range(1, 2000)}
    assert len(sizes) <= 14
    for n in range(1, 2000):
        assert n <= bucket(n, 32) <= max(64, n * 1.5)


# --- downloading ----------------------------------------------------------------------------

def test_recordings_download_from_an_archive_checked(tmp_path, recordings, monkeypatch):
    names = ["0_george_0.wav", "1_theo_3.wav"]
    sums = {n: s for n, s in datasets._fsdd_sums().items() if n in names}
    archive = tmp_path / "fsdd.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for n in names:
            tar.add(recordings / n, arcname=f"free-spoken-digit-dataset-abc/recordings/{n}")
        readme = io.BytesIO(b"readme")
        info = tarfile.TarInfo("free-spoken-digit-dataset-abc/README.md")
        info.size = 6
        tar.addfile(info, readme)
    monkeypatch.setattr(datasets, "_fsdd_sums", lambda: sums)
    folder = datasets.recordings_dir("fsdd", tmp_path / "data", url=archive.as_uri())
    assert sorted(p.name for p in folder.iterdir()) == names
    (folder / names[0]).write_bytes(b"changed")
    with pytest.raises(UserError, match="corrupt"):
        datasets.recordings_dir("fsdd", tmp_path / "data")
    # A wrong archive leaves nothing behind.
    sums["2_lucas_1.wav"] = "0" * 64
    with pytest.raises(UserError, match="no recordings/2_lucas_1.wav"):
        datasets.recordings_dir("fsdd", tmp_path / "other", url=archive.as_uri())
    assert not (tmp_path / "other" / "fsdd" / "recordings").exists()


# --- what the recogniser hears ----------------------------------------------------------------

def test_spec_augment_zeroes_blocks_of_frames_and_bands_of_a_copy():
    from rnn_theano.tasks.asr import spec_augment
    frames = np.ones((100, 40), np.float32)
    out = spec_augment(frames, np.random.default_rng(0), 2, 10, 2, 8)
    assert frames.min() == 1.0  # the input is untouched
    zero_rows = np.where((out == 0).all(axis=1))[0]
    zero_cols = np.where((out == 0).all(axis=0))[0]
    assert 1 <= len(zero_rows) <= 20 and 1 <= len(zero_cols) <= 16
    assert np.all((out == 0) == (np.isin(np.arange(100), zero_rows)[:, None]
                                 | np.isin(np.arange(40), zero_cols)[None, :]))
    assert np.array_equal(spec_augment(frames, np.random.default_rng(0), 0, 10, 0, 8), frames)


def test_frames_are_normalised_per_utterance_or_with_saved_statistics(tmp_path):
    from rnn_theano.config import AsrConfig, AsrModelSettings
    from rnn_theano.tasks.asr import STATS_BLOB, Frontend
    rng = np.random.default_rng(0)
    frames = rng.normal(3.0, 2.0, size=(50, 40)).astype(np.float32)
    own = Frontend(AsrConfig(), cache_dir=tmp_path).normalised(frames)
    np.testing.assert_allclose(own.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(own.std(axis=0), 1, atol=1e-3)
    config = AsrConfig(model=AsrModelSettings(normalise="dataset"))
    fitted = Frontend(config, cache_dir=tmp_path)
    fitted.fit([frames, frames + 1.0])
    blob = fitted.stats_blob()[STATS_BLOB]
    restored = Frontend(config, np.load(io.BytesIO(blob)))
    np.testing.assert_array_equal(restored.normalised(frames), fitted.normalised(frames))
    assert abs(float(fitted.normalised(frames + 0.5).mean())) < 0.05  # the data's mean is 3.5


def test_speaker_normalisation_takes_a_known_voice_from_training_and_a_new_one_from_itself(
        tmp_path):
    """Each speaker's statistics: a training speaker's over its training recordings only
    (its held-out ones are normalised with them); the test speaker's over its test
    recordings; an utterance of a speaker without statistics by its own."""
    from rnn_theano.config import AsrConfig, AsrModelSettings
    from rnn_theano.data.speech import Clip
    from rnn_theano.tasks.asr import Frontend, speaker_moments
    rng = np.random.default_rng(0)

    def clip(speaker: str, index: int, level: float) -> tuple[Clip, np.ndarray]:
        frames = rng.normal(level, 1.0 + abs(level) / 4, size=(30 + index, 40))
        name = Path(f"{index % 10}_{speaker}_{index}.wav")
        return Clip(name, index % 10, speaker, index), frames

    made = {"train": [clip("ann", i, 2.0) for i in range(10, 14)]
            + [clip("bob", i, -3.0) for i in range(10, 13)],
            "valid": [clip("ann", 5, 6.0), clip("bob", 5, -7.0)],
            "test": [clip("cid", i, 9.0) for i in range(3)]}
    clips = {split: [c for c, _ in part] for split, part in made.items()}
    raw = {c.path: f for part in made.values() for c, f in part}
    stats = speaker_moments(clips, raw)
    assert sorted(stats) == ["ann", "bob", "cid"]
    for speaker, split in (("ann", "train"), ("bob", "train"), ("cid", "test")):
        joined = np.concatenate([raw[c.path] for c in clips[split] if c.speaker == speaker])
        np.testing.assert_allclose(stats[speaker][0], joined.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(stats[speaker][1], joined.std(axis=0) + 1e-5, rtol=1e-6)
    frontend = Frontend(AsrConfig(model=AsrModelSettings(normalise="speaker")),
                        cache_dir=tmp_path)
    frontend.speakers = stats
    held_out = raw[clips["valid"][0].path]  # ann's, louder than her training recordings
    assert frontend.normalised(held_out, "ann").mean() > 1.0
    np.testing.assert_allclose(frontend.normalised(held_out, "ann"),
                               (held_out - stats["ann"][0]) / stats["ann"][1], rtol=1e-5)
    alone = frontend.normalised(held_out, "eve")
    np.testing.assert_allclose(alone.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(alone.std(axis=0), 1, atol=1e-3)


def test_digit_errors_count_edits_over_reference_digits():
    from rnn_theano.tasks.asr import digit_errors
    # one deletion; one insertion; one substitution; one exact
    refs = [[1, 2, 3], [4], [5, 6], [7]]
    hyps = [[1, 3], [4, 4], [5, 0], [7]]
    assert digit_errors(refs, hyps) == (3, 7, 1)
    assert digit_errors([[2]], [[]]) == (1, 1, 0)


def test_held_out_strings_are_made_of_their_own_split(shared_data):
    from rnn_theano.config import AsrConfig, AsrDataSettings
    from rnn_theano.tasks.asr import load_data
    for speaker in (None, "lucas"):
        config = AsrConfig(data=AsrDataSettings(data_dir=str(shared_data), eval_strings=20,
                                                test_speaker=speaker))
        data = load_data(config)
        for split in ("valid", "test"):
            own = {c.path.stem for c in data.clips[split]}
            utterances = data.held_out[split]
            assert len(utterances) == len(own) + 20 * 5
            assert all(set(u.name.split("+")) <= own for u in utterances)
            assert {len(u.digits) for u in utterances} == {1, 3, 4, 5, 6, 7}


def test_the_cache_recomputes_a_changed_or_damaged_file_and_works_read_only(tmp_path,
                                                                           recordings):
    path = tmp_path / "clip.wav"
    path.write_bytes((recordings / "5_george_12.wav").read_bytes())
    cache = FeatureCache(tmp_path / "cache", Features(), AudioReader(8000))
    first = cache(path)
    path.write_bytes((recordings / "6_lucas_3.wav").read_bytes())  # another recording
    assert cache(path).shape != first.shape
    for stored in (tmp_path / "cache").rglob("*.npy"):
        stored.write_bytes(b"damaged")
    np.testing.assert_array_equal(cache(path), Features()(AudioReader(8000)(path)))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache's folder would go")
    np.testing.assert_array_equal(FeatureCache(blocked, Features(), AudioReader(8000))(path),
                                  cache(path))
