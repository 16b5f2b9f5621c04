"""Speech recognition end to end: the network against an independent numpy forward, its
gradient against finite differences, a model that learns a few recordings by heart (under
JAX, as ``--mode AUTO`` runs with jax), and the train-asr and transcribe commands with bad
input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytensor
import pytest
import soundfile

from lm_reference import _step
from rnn_theano import backends
from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import main
from rnn_theano.data.speech import UtteranceBatches
from rnn_theano.tasks.asr_decode import greedy
from rnn_theano.tasks.asr_engine import AsrEngine
from rnn_theano.tasks.asr_graph import RecogniserConfig, build_asr, init_asr_params
from rnn_theano.tasks.engine import shared_params

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")


# --- an independent forward pass ------------------------------------------------------------

def reference_log_probs(cfg: RecogniserConfig, P: dict, x: np.ndarray) -> np.ndarray:
    """(T', K) log-posteriors of one utterance's frames x (T, F), a loop per direction."""
    h = np.maximum(0.0, x @ P["in_W"] + P["in_b"])
    for i in range(cfg.layers):
        if 0 < i <= cfg.subsample:
            h = h.reshape(len(h) // 2, -1)  # frames 2t and 2t+1 side by side
        sides = []
        for prefix, frames in (("l", h), ("back", h[::-1])):
            state, c, out = np.zeros(cfg.hidden_dim), np.zeros(cfg.hidden_dim), []
            for v in frames:
                state, c = _step(cfg.cell, P, f"{prefix}{i}", v, state, c)
                out.append(state)
            sides.append(np.array(out if prefix == "l" else out[::-1]))
        h = np.concatenate(sides, axis=1)
    logits = h @ P["out_W"] + P["out_b"]
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def reference_ctc(log_probs: np.ndarray, labels: list[int]) -> float:
    """-log p(labels) by the alpha recursion in probabilities, plain loops."""
    ext = [0]
    for l in labels:
        ext += [l, 0]
    y = np.exp(log_probs)
    alpha = np.zeros(len(ext))
    alpha[0], alpha[1:2] = y[0, 0], y[0, ext[1]] if len(ext) > 1 else []
    for t in range(1, len(y)):
        new = np.zeros_like(alpha)
        for s in range(len(ext)):
            total = alpha[s] + (alpha[s - 1] if s > 0 else 0.0)
            if s > 1 and ext[s] != 0 and ext[s] != ext[s - 2]:
                total += alpha[s - 2]
            new[s] = total * y[t, ext[s]]
        alpha = new
    return -np.log(alpha[-1] + (alpha[-2] if len(ext) > 1 else 0.0))


@pytest.mark.parametrize("cell, subsample", [("gru", 1), ("lstm", 0)])
def test_the_network_and_its_cost_match_an_independent_forward(cell, subsample):
    cfg = RecogniserConfig(cell=cell, n_features=5, proj_dim=6, hidden_dim=4, layers=2,
                           subsample=subsample, n_outputs=4, float32=False, seed=3)
    P = init_asr_params(cfg)
    rng = np.random.default_rng(0)
    P = {k: v + rng.normal(0, 0.1, v.shape) for k, v in P.items()}  # biases too
    graph = build_asr(cfg, shared_params(P))
    f = pytensor.function([graph.x, graph.mask, graph.labels, graph.label_mask],
                          [graph.cost, graph.log_probs, graph.out_mask], mode="FAST_COMPILE")
    lengths, labels = [8, 4, 6], [[1, 2, 2], [3], []]
    feats = [rng.normal(size=(n, 5)) for n in lengths]
    batch = UtteranceBatches(feats, labels, 3, pad_multiple=2)._batch(np.arange(3))
    cost, log_probs, out_mask = f(*batch[:4])
    for b, n in enumerate(lengths):
        expected = reference_log_probs(cfg, P, feats[b])
        assert out_mask[:, b].sum() == len(expected)
        np.testing.assert_allclose(log_probs[:len(expected), b], expected, rtol=1e-8, atol=1e-10)
        assert cost[b] == pytest.approx(reference_ctc(expected, labels[b]), rel=1e-8)


def test_the_gradient_of_the_whole_network_matches_finite_differences():
    cfg = RecogniserConfig(n_features=3, proj_dim=4, hidden_dim=3, layers=2, subsample=1,
                           n_outputs=3, float32=False, seed=4)
    params = shared_params(init_asr_params(cfg))
    graph = build_asr(cfg, params)
    cost = graph.cost.sum()
    names = ["in_W", "l0_Wh", "back1_Wx", "out_b"]
    grads = pytensor.grad(cost, [params[n] for n in names])
    inputs = [graph.x, graph.mask, graph.labels, graph.label_mask]
    f = pytensor.function(inputs, [cost, *grads], mode="FAST_COMPILE")
    rng = np.random.default_rng(5)
    batch = UtteranceBatches([rng.normal(size=(n, 3)) for n in (6, 4)], [[1, 2], [2]], 2,
                             pad_multiple=2)._batch(np.arange(2))[:4]
    _, *analytic = f(*batch)
    for name, grad in zip(names, analytic):
        value = params[name].get_value()
        for _ in range(3):
            i = tuple(rng.integers(s) for s in value.shape)
            moved = []
            for eps in (1e-6, -1e-6):
                changed = value.copy()
                changed[i] += eps
                params[name].set_value(changed)
                moved.append(f(*batch)[0])
            params[name].set_value(value)
            assert grad[i] == pytest.approx((moved[0] - moved[1]) / 2e-6, rel=1e-5, abs=1e-8)


# --- learning, under JAX --------------------------------------------------------------------

def test_a_few_recordings_are_learnt_to_exact_transcripts_under_jax(shared_data):
    from rnn_theano.data.audio import AudioReader, Features
    from rnn_theano.data.speech import DigitStrings, fsdd_clips
    clips = [c for c in fsdd_clips(shared_data / "fsdd" / "recordings")
             if c.speaker == "jackson" and c.index == 0][:6]
    reader, features = AudioReader(8000), Features()
    audio = {c.path: reader(c.path) for c in clips}
    strings = DigitStrings().make(clips, audio, [3, 2], np.random.default_rng(0))
    utterances = [(audio[c.path], [c.digit]) for c in clips] + [(u.samples, list(u.digits))
                                                               for u in strings]
    feats = []
    for samples, _ in utterances:
        f = features(samples)
        feats.append((f - f.mean(0)) / (f.std(0) + 1e-5))
    digits = [d for _, d in utterances]
    cfg = RecogniserConfig(n_features=40, proj_dim=32, hidden_dim=32, layers=2, subsample=1)
    engine = AsrEngine(cfg, mode=backends.prepare("JAX", fixed_shapes=True),
                       optimizer="adam", learning_rate=0.01, clip_norm=5.0)
    batches = UtteranceBatches(feats, [[d + 1 for d in ds] for ds in digits], 8,
                               pad_multiple=32, label_multiple=8, fill=True)
    for epoch in range(300):
        for batch in batches.epoch(epoch):
            engine.train_step(batch)
    found = {}
    for batch in batches:
        result = engine.eval_step(batch)
        for b, i in enumerate(batch.rows):
            if i >= 0:
                frames = result.log_probs[result.out_mask[:, b] > 0, b]
                found[i] = [k - 1 for k in greedy(frames)]
    assert [found[i] for i in range(len(digits))] == digits
    assert len(engine._functions) == 2  # one shape for training, one for evaluation


# --- the commands ---------------------------------------------------------------------------

TINY = ["--proj-dim", "16", "--hidden-dim", "16", "--strings-per-epoch", "40",
        "--eval-strings", "2", "--max-digits", "5", "--epochs", "1", "--batch-size", "64",
        "--beam", "3", "--mode", "NUMBA"]


@pytest.fixture(scope="module")
def recogniser(shared_data, tmp_path_factory) -> Path:
    """A recogniser trained for one epoch from the command line (not a good one)."""
    out = tmp_path_factory.mktemp("asr")
    code = main(["train-asr", "--data-dir", str(shared_data), "--feature-cache",
                 str(out / "cache"), "--model-out", str(out / "m.npz"), "--log-json",
                 str(out / "log.json"), *TINY])
    assert code == 0
    return out / "m.npz"


def test_train_asr_writes_a_checkpoint_and_a_log(recogniser, capsys):
    log = json.loads(recogniser.with_name("log.json").read_text())
    assert log["best_valid_error_rate"] == min(r["valid_error_rate"] for r in log["history"])
    for report in (log["test_beam1"], log["test_beam3"]):
        # Two strings of each length 3-5: the strings' rate is the digit-weighted mean.
        by_length = [report[f"{n}_digits_error_rate"] * 2 * n for n in (3, 4, 5)]
        assert report["strings_error_rate"] == pytest.approx(sum(by_length) / 24)
        assert report["isolated_accuracy"] in {k / 300 for k in range(301)}
    ckpt = load_checkpoint(recogniser)
    assert ckpt.settings.task == "asr" and ckpt.vocab.words[1:4] == ("zero", "one", "two")
    assert ckpt.settings.data.max_digits == 5  # the string generator's settings are saved


def test_vtlp_warps_every_training_utterance_and_nothing_else(shared_data, tmp_path):
    """The same epoch with and without --vtlp: the same utterances (digits, frame counts),
    each heard warped; without it the recordings' frames are the cached ones."""
    import dataclasses
    from rnn_theano.cli import train_config
    from rnn_theano.data.audio import AudioReader
    from rnn_theano.data.speech import fsdd_clips
    from rnn_theano.tasks import asr
    clips = [c for c in fsdd_clips(shared_data / "fsdd" / "recordings")
             if c.speaker == "jackson"][:12]
    data = asr.SpeechData({"train": clips, "valid": [], "test": []},
                          {c.path: AudioReader(8000)(c.path) for c in clips},
                          {"valid": [], "test": []}, "twelve recordings")
    config, _ = train_config(["--feature-cache", str(tmp_path), *TINY, "--strings-per-epoch",
                              "5"], asr.AsrConfig, "train-asr")
    warped_config = dataclasses.replace(config, data=dataclasses.replace(config.data, vtlp=0.2))
    task = asr.make_task(config, data, None)
    plain, warped = (task.training_utterances(0),
                     asr.make_task(warped_config, data, None).training_utterances(0))
    assert plain[1] == warped[1] and len(plain[0]) == 12 + 5
    assert [f.shape for f in plain[0]] == [f.shape for f in warped[0]]
    assert not any(np.allclose(a, b) for a, b in zip(plain[0], warped[0]))
    np.testing.assert_array_equal(plain[0][0],
                                  task.frontend.normalised(task.frontend.cache(clips[0].path)))


def test_speaker_normalisation_hears_every_utterance_with_its_speakers_statistics(
        shared_data, tmp_path, monkeypatch):
    """Under --normalise speaker, the held-out speaker's recordings and strings are scaled
    with the statistics of its own recordings, a training speaker's with those of its
    training recordings, and every training string with its speaker's."""
    from rnn_theano.cli import train_config
    from rnn_theano.data.audio import AudioReader
    from rnn_theano.data.speech import DigitStrings, fsdd_clips
    from rnn_theano.tasks import asr
    every = fsdd_clips(shared_data / "fsdd" / "recordings")
    train = [c for c in every if c.speaker == "jackson"][:8]
    test = [c for c in every if c.speaker == "theo"][:4]
    audio = {c.path: AudioReader(8000)(c.path) for c in train + test}
    held = ([asr.Utterance(c.path.stem, audio[c.path], (c.digit,), c.speaker) for c in test]
            + DigitStrings().make(test, audio, [3, 4], np.random.default_rng(0)))
    data = asr.SpeechData({"train": train, "valid": [], "test": test}, audio,
                          {"valid": [], "test": held}, "twelve recordings")
    config, _ = train_config(["--feature-cache", str(tmp_path), *TINY, "--strings-per-epoch",
                              "3", "--normalise", "speaker"], asr.AsrConfig, "train-asr")
    task = asr.make_task(config, data, None)
    own = {name: asr.moments([task.frontend.cache(c.path) for c in clips])
           for name, clips in (("jackson", train), ("theo", test))}
    assert [u.speaker for u in held] == ["theo"] * 6
    for u, frames in zip(held, task._held_out["test"]):
        np.testing.assert_allclose(frames, (task.frontend.features(u.samples) - own["theo"][0])
                                   / own["theo"][1], rtol=1e-4, atol=1e-4)
    heard = []
    called = task.frontend.__call__
    monkeypatch.setattr(asr.Frontend, "__call__", lambda self, samples, warp=1.0, speaker="":
                        heard.append(speaker) or called(samples, warp, speaker))
    frames, _ = task.training_utterances(0)
    assert heard == ["jackson"] * 3  # the strings (the recordings are the cached frames)
    first = task.frontend.cache(train[0].path)
    np.testing.assert_allclose(frames[0], (first - own["jackson"][0]) / own["jackson"][1],
                               rtol=1e-5, atol=1e-5)
    assert abs(frames[0].mean()) > 0.01  # not the recording's own statistics


def test_the_test_set_passes_the_network_once_for_its_score_and_both_decodings(recogniser,
                                                                            shared_data):
    from rnn_theano.cli import train_config
    from rnn_theano.tasks import asr
    config, _ = train_config(["--data-dir", str(shared_data), "--feature-cache",
                              str(recogniser.parent / "cache"), *TINY, "--asgd", "1"],
                             asr.AsrConfig, "train-asr")  # --asgd: an engine that can average
    task = asr.make_task(config, asr.load_data(config), None)
    calls, eval_step = [], task.engine.eval_step
    task.engine.eval_step = lambda batch: calls.append(1) or eval_step(batch)
    score = task.evaluate("test")
    one_pass = len(calls)
    greedy_report, beam_report = asr.test_report(task, 1), asr.test_report(task, 3)
    assert len(calls) == one_pass > 0
    assert greedy_report["loss"] == beam_report["loss"] == score.loss
    task.restore(task.snapshot())  # new parameters (here the same ones): a new pass
    assert task.evaluate("test").error_rate == score.error_rate
    assert len(calls) == 2 * one_pass
    task.start_averaging()
    with task.averaged():  # other parameters in, then the trained ones back: a pass each
        task.evaluate("test")
    task.evaluate("test")
    assert len(calls) == 4 * one_pass


def test_transcribe_prints_a_line_per_file(recogniser, shared_data, tmp_path, capsys):
    folder = tmp_path / "wavs"
    folder.mkdir()
    recordings = shared_data / "fsdd" / "recordings"
    for name in ("3_theo_0.wav", "7_lucas_1.wav"):
        (folder / name).write_bytes((recordings / name).read_bytes())
    (folder / "notes.txt").write_text("not audio")
    assert main(["transcribe", "--model", str(recogniser), str(folder),
                 str(recordings / "0_george_0.wav"), "--beam", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [
        str(folder / "3_theo_0.wav"), str(folder / "7_lucas_1.wav"),
        str(recordings / "0_george_0.wav")]
    digits = "zero one two three four five six seven eight nine".split()
    assert all(set(line.split("\t")[1].split()) <= set(digits) for line in lines)


def write(path: Path, samples: np.ndarray, rate: int = 8000, subtype: str = "PCM_16") -> Path:
    soundfile.write(path, samples, rate, subtype=subtype)
    return path


def test_transcribe_bad_files_each_get_one_line_and_the_others_go_on(recogniser, shared_data,
                                                                      tmp_path, capsys):
    good = shared_data / "fsdd" / "recordings" / "3_theo_0.wav"
    text = tmp_path / "text.wav"
    text.write_text("hello")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:1000])
    empty = write(tmp_path / "empty.wav", np.zeros(0))
    silent = write(tmp_path / "silent.wav", np.zeros(4000))
    long = write(tmp_path / "long.wav", np.random.default_rng(0).normal(0, 0.1, 8000 * 200))
    wide = write(tmp_path / "wide.wav", soundfile.read(good)[0], subtype="PCM_24")
    png = tmp_path / "spikes.png"
    code = main(["transcribe", "--model", str(recogniser), str(text), str(cut), str(empty),
                 str(silent), str(long), str(wide), "--plot", str(png)])
    out, err = capsys.readouterr()
    assert code == 1
    assert png.read_bytes()[:4] == b"\x89PNG"  # the first file with sound: wide.wav
    assert [line.split("\t")[0] for line in out.splitlines()] == [str(silent), str(wide)]
    assert out.splitlines()[0] == f"{silent}\t"
    errors = err.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith("error: ") for e in errors)
    for path, reason in ((text, "not an audio file"), (cut, "truncated"), (empty, "no audio"),
                         (long, "200.0 s long")):
        assert any(str(path) in e and reason in e for e in errors), reason
    # Nothing with sound to draw: one line, status 2.
    assert main(["transcribe", "--model", str(recogniser), str(silent), "--plot",
                 str(tmp_path / "none.png")]) == 2
    err = capsys.readouterr().err
    assert "--plot needs a file with sound" in err and "Traceback" not in err


def test_transcribe_takes_a_speaker_normalised_models_voice_from_all_its_files(
        recogniser, shared_data, tmp_path, capsys):
    """A model trained with --normalise speaker hears the files of one command as one voice:
    the statistics of every readable file with sound, the others said as usual."""
    import dataclasses
    from rnn_theano.checkpoint import save_checkpoint
    from rnn_theano.tasks import asr
    ckpt = load_checkpoint(recogniser)
    model = dataclasses.replace(ckpt.settings.model, normalise="speaker")
    speaker = recogniser.with_name("speaker.npz")
    save_checkpoint(speaker, dataclasses.replace(
        ckpt, settings=dataclasses.replace(ckpt.settings, model=model)))
    recordings = shared_data / "fsdd" / "recordings"
    voice = [recordings / f"{d}_theo_0.wav" for d in (3, 5, 8)]
    silent = write(tmp_path / "silent.wav", np.zeros(4000))
    text = tmp_path / "text.wav"
    text.write_text("hello")
    files = [str(p) for p in (*voice, silent, text)]
    assert main(["transcribe", "--model", str(speaker), *files]) == 1
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 4 and "statistics from 3 files" in err
    transcriber = asr.Transcriber(load_checkpoint(speaker))
    assert transcriber.adapt([*voice, silent, text]) == 3
    stats = asr.moments([transcriber.frontend.features(transcriber.reader(p)) for p in voice])
    frames, _ = transcriber.posteriors(voice[0])
    raw = transcriber.frontend.features(transcriber.reader(voice[0]))
    np.testing.assert_allclose(frames, (raw - stats[0]) / stats[1], rtol=1e-5, atol=1e-5)
    assert asr.Transcriber(ckpt).adapt(voice) == 0  # a model normalising otherwise


def test_transcribe_refuses_a_language_model_and_missing_files(tmp_path, small_text, capsys):
    lm = tmp_path / "lm.npz"
    assert main(["train", "--data", str(small_text), "--epochs", "1", "--hidden-dim", "4",
                 "--model-out", str(lm)]) == 0
    capsys.readouterr()
    assert main(["transcribe", "--model", str(lm), str(small_text)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert main(["transcribe", "--model", str(lm), str(tmp_path / "nothing.wav")]) == 2
    assert "not found" in capsys.readouterr().err


def test_train_asr_refuses_bad_settings_in_one_line(shared_data, tmp_path, capsys):
    for flags, words in ((["--test-speaker", "nobody"], "nobody"),
                         (["--max-digits", "2"], "--max-digits"),
                         (["--subsample", "2", "--layers", "2"], "--subsample")):
        code = main(["train-asr", "--data-dir", str(shared_data), "--model-out",
                     str(tmp_path / "m.npz"), *flags])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.npz").exists()


def test_the_speaker_sweep_and_the_results_tables(recogniser, shared_data, tmp_path,
                                                  monkeypatch, capsys):
    from experiments_loader import load
    results = load("speech_results")
    monkeypatch.setenv("RNN_THEANO_DATA", str(shared_data))
    flags = [f for f in TINY if f not in ("--epochs", "1")]
    assert results.main(["speakers", "--speakers", "theo", "--out", str(tmp_path),
                         "--checkpoints", str(tmp_path), "--epochs", "1", "--feature-cache",
                         str(tmp_path / "cache"), *flags]) == 0
    assert results.main(["speakers", "--speakers", "theo", "--out", str(tmp_path),
                         "--checkpoints", str(tmp_path)]) == 0  # done: skipped
    capsys.readouterr()
    assert results.main(["tables", str(recogniser.with_name("log.json")),
                         str(tmp_path / "speaker-theo.json")]) == 0
    out = capsys.readouterr().out
    assert out.count("| official |") == 1 and out.count("| theo |") == 1
    assert "| **mean** |" in out
    png = tmp_path / "posteriors.png"
    assert results.main(["figure", "--model", str(recogniser), "--out", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
