"""rnn-theano train-classifier and classify, end to end on small labelled files the tests write.

The task: a sentence is "pos" when it holds one of a few cue words and "neg" when it holds
another, among random filler words; a tiny bidirectional GRU learns it in a few epochs.
"""

import hashlib
import io
import json

import numpy as np
import pytest

from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import classify_main, generate_main, main, train_classifier_main

FILLER = "the a of to and in it is was on for with as at by this that".split()
CUES = {"pos": ["great", "lovely", "superb"], "neg": ["awful", "dull", "poor"]}
TINY = ["--arch", "gru", "--embed-dim", "8", "--hidden-dim", "8", "--dropout", "0.2",
        "--batch-size", "16", "--mode", "JAX", "--learning-rate", "0.05", "--patience", "0"]


def write_split(path, n, seed):
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(FILLER, rng.integers(3, 9)))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(CUES[label])))
        lines.append(f"{label} {' '.join(words)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("classify")
    return {split: write_split(root / f"{split}.txt", n, seed)
            for split, n, seed in (("train", 240, 0), ("dev", 60, 1), ("test", 60, 2))}


def train(files, out, *extra):
    return train_classifier_main(["--train", str(files["train"]), "--dev", str(files["dev"]),
                                  "--test", str(files["test"]), "--model-out", str(out), *TINY,
                                  *extra])


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "clf.npz"
    log = out.with_suffix(".json")
    assert train(files, out, "--epochs", "6", "--log-json", str(log)) == 0
    return out, log


def test_training_learns_the_cue_words_and_keeps_the_best_dev_accuracy(trained):
    out, log = trained
    ckpt = load_checkpoint(out)
    assert ckpt.settings.task == "classify" and ckpt.labels == ("neg", "pos")
    history = ckpt.state["history"]
    assert [row["epoch"] for row in history] == list(range(1, 7))
    best = max(row["valid_accuracy"] for row in history)
    assert best >= 0.9 and ckpt.state["best"] == -best
    assert ckpt.state["test_accuracy"] >= 0.85
    record = json.loads(log.read_text())
    assert record["labels"] == ["neg", "pos"] and record["test_accuracy"] == ckpt.state[
        "test_accuracy"]


def test_classify_reads_standard_input_and_prints_labels_with_probabilities(trained, capsys,
                                                                            monkeypatch):
    out, _ = trained
    monkeypatch.setattr("sys.stdin", io.StringIO("the great one\n\nit was awful\n"))
    assert classify_main(["--model", str(out), "--top-k", "2"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[0] for row in rows] == ["pos", "neg"]  # the empty line is skipped
    for row in rows:
        probs = [float(p) for p in row[1::2]]
        assert probs[0] >= probs[1] and sum(probs) == pytest.approx(1.0, abs=1e-3)


def test_each_command_refuses_the_other_tasks_checkpoint(trained, tmp_path, small_text, capsys):
    out, _ = trained
    assert generate_main(["--model", str(out)]) == 2
    assert "a classifier checkpoint" in capsys.readouterr().err
    lm = tmp_path / "lm.npz"
    assert main(["train", "--data", str(small_text), "--impl", "numpy", "--hidden-dim", "4",
                 "--vocab-size", "20", "--model-out", str(lm)]) == 0
    capsys.readouterr()
    assert classify_main(["--model", str(lm)]) == 2
    err = capsys.readouterr().err
    assert "a language-model checkpoint" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text, needle", [
    ("pos good\nneg\n", "no text"),
    ("pos a b\npos c d\n", "two"),
])
def test_bad_training_files_are_one_line_and_keep_the_checkpoint(files, trained, tmp_path,
                                                                  capsys, text, needle):
    out, _ = trained
    digest = hashlib.sha1(out.read_bytes()).hexdigest()
    bad = tmp_path / "bad.txt"
    bad.write_text(text)
    code = train_classifier_main(["--train", str(bad), "--dev", str(files["dev"]),
                                  "--model-out", str(out), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert needle in err
    assert hashlib.sha1(out.read_bytes()).hexdigest() == digest


def test_resumed_training_equals_an_uninterrupted_run(files, tmp_path):
    whole, part = tmp_path / "whole.npz", tmp_path / "part.npz"
    slow = ["--learning-rate", "0.01"]  # so that the second epoch is the better one
    assert train(files, whole, "--epochs", "2", *slow) == 0
    assert train(files, part, "--epochs", "1", *slow) == 0
    first = load_checkpoint(part).params
    assert train_classifier_main(["--resume", str(part), "--epochs", "1"]) == 0
    a, b = load_checkpoint(whole), load_checkpoint(part)
    accuracies = [r["valid_accuracy"] for r in a.state["history"]]
    assert accuracies == [r["valid_accuracy"] for r in b.state["history"]]
    assert accuracies[1] > accuracies[0]  # the kept model is the second epoch's
    changed = False
    for name, value in a.params.items():
        np.testing.assert_allclose(b.params[name], value, rtol=1e-6, atol=1e-7)
        changed |= not np.allclose(first[name], value)
    assert changed  # the second epoch did something: not two copies of epoch 1
