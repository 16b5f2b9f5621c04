"""rnn-theano train-classifier and classify, end to end on small labelled files the tests write.

The task: a sentence is "pos" when it holds one of a few cue words and "neg" when it holds
another, among random filler words; a tiny bidirectional GRU learns it in a few epochs.
"""

import hashlib
import io
import json
from collections import Counter

import numpy as np
import pytest

from rnn_theano import cli
from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import classify_main, generate_main, main, train_classifier_main
from rnn_theano.config import ClassifyConfig
from rnn_theano.data.batching import round_up
from rnn_theano.data.vocab import SPECIAL_TOKENS
from rnn_theano.tasks import classify

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


def test_explain_prints_each_word_once_in_order_and_the_cue_word_drops_most(trained, capsys,
                                                                          monkeypatch):
    out, _ = trained
    sentences = ["it was a great one on the whole", "this is awful to the end", "dull"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(sentences) + "\n"))
    assert classify_main(["--model", str(out), "--explain", "--top-k", "2"]) == 0
    explained = []
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("  "):  # a word of the sentence above: "  WORD<TAB>+0.1234"
            word, drop = line[2:].split("\t")
            assert drop[0] in "+-" and len(drop.split(".")[1]) == 4
            explained[-1][1].append((word, float(drop)))
        else:
            explained.append((line.split("\t")[0], []))
    assert [label for label, _ in explained] == ["pos", "neg", "neg"]
    for sentence, (label, drops) in zip(sentences, explained):
        assert [word for word, _ in drops] == sentence.split()
        cue = next(w for w in sentence.split() if w in CUES[label])
        assert max(drops, key=lambda pair: pair[1])[0] == cue
        assert dict(drops)[cue] > 0.1


def test_explained_drops_are_the_probability_lost_without_each_word(trained):
    """Checked against the predictor scoring each shortened sentence on its own."""
    from rnn_theano.tasks.classify import Predictor
    predictor = Predictor(load_checkpoint(trained[0]))
    sentence = "the film was superb and it is on at the end of this week"
    words = sentence.split()
    explained = predictor.explain(sentence)
    probs = predictor(sentence)
    assert explained.words == words and explained.label == int(np.argmax(probs))
    np.testing.assert_allclose(explained.probs, probs, atol=1e-5)
    k = explained.label
    lost = [probs[k] - predictor(" ".join(words[:i] + words[i + 1:]))[k]
            for i in range(len(words))]
    np.testing.assert_allclose(explained.drops, lost, atol=1e-5)


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


def test_a_min_count_that_leaves_no_word_is_one_line(files, tmp_path, capsys):
    code = train(files, tmp_path / "m.npz", "--min-count", "1000")
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == ("error: --min-count 1000: no training word is seen "
                                         "that often; lower it")
    assert not (tmp_path / "m.npz").exists()


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


def test_the_adversarial_length_reaches_the_network_and_a_negative_one_is_refused(
        files, trained, capsys):
    argv = ["--train", str(files["train"]), *TINY, "--adversarial", "2.5"]
    config, _ = cli.train_config(argv, ClassifyConfig, "train-classifier")
    assert classify.graph_config(config, 10, 2).adversarial == 2.5
    out, _ = trained
    digest = hashlib.sha1(out.read_bytes()).hexdigest()
    code = train(files, out, "--adversarial", "-1")
    err = capsys.readouterr().err
    assert code == 2 and "--adversarial" in err and len(err.strip().splitlines()) == 1
    assert hashlib.sha1(out.read_bytes()).hexdigest() == digest


@pytest.fixture(scope="module")
def pieces(files, tmp_path_factory):
    """A classifier that reads words as BPE pieces: too few kinds for every filler word, so
    that some words are cut."""
    out = tmp_path_factory.mktemp("pieces") / "clf.npz"
    assert train(files, out, "--epochs", "6", "--subwords", "40") == 0
    return out


def test_subwords_cut_words_into_the_pieces_the_checkpoint_keeps(pieces):
    from rnn_theano.data.parallel import Subwords
    from rnn_theano.tasks.classify import Predictor
    ckpt = load_checkpoint(pieces)
    bpe = Subwords(ckpt.blobs["subwords.model"])
    assert ckpt.settings.model.subwords == 40 and ckpt.state["test_accuracy"] >= 0.85
    sentence = "the film was superb and it is on at the end of this week"
    cut = bpe.split(sentence)
    assert len(cut) > len(sentence.split()) and "".join(cut).replace("\u2581", " ").strip() == (
        sentence)
    assert set(ckpt.vocab.words) - set(bpe.pieces) == set(SPECIAL_TOKENS)  # pieces only
    assert "\u2581the" not in ckpt.vocab.words  # the commonest word is cut, too
    predictor = Predictor(ckpt)
    x = np.zeros((round_up(len(cut), predictor.engine.pad_multiple), 1), np.int32)
    x[:len(cut), 0] = [ckpt.vocab.id(p) for p in cut]
    expected = np.exp(predictor.engine.log_probs(x, (np.arange(len(x)) < len(cut))
                                                 .astype(np.float32)[:, None]))[0]
    np.testing.assert_allclose(predictor(sentence), expected, atol=1e-6)
    explained = predictor.explain(sentence)
    words = sentence.split()
    assert explained.words == words  # whole words, each left out with all its pieces
    k = explained.label
    lost = [explained.probs[k] - predictor(" ".join(words[:i] + words[i + 1:]))[k]
            for i in range(len(words))]
    np.testing.assert_allclose(explained.drops, lost, atol=1e-5)


def test_resumed_training_keeps_the_subword_model(pieces, tmp_path):
    resumed = tmp_path / "resumed.npz"
    assert train_classifier_main(["--resume", str(pieces), "--epochs", "1",
                                  "--model-out", str(resumed)]) == 0
    a, b = load_checkpoint(pieces), load_checkpoint(resumed)
    assert a.blobs["subwords.model"] == b.blobs["subwords.model"] and a.vocab.words == (
        b.vocab.words)


@pytest.mark.parametrize("flags, says", [
    (["--subwords", "-1"], "--subwords"),
    (["--subwords", "3"], "--subwords 3 is too small"),
    (["--subwords", "40", "--embeddings", "vectors.txt"], "whole words")])
def test_bad_subword_settings_are_one_line(files, trained, flags, says, capsys):
    out, _ = trained
    digest = hashlib.sha1(out.read_bytes()).hexdigest()
    code = train(files, out, *flags)
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
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


def test_test_scores_count_what_the_predictor_predicts(trained, files):
    """Accuracy, confusion matrix and macro F1 of the test split, against the labels the
    checkpoint's ``Predictor`` gives each test sentence one at a time."""
    from rnn_theano.tasks.classify import Predictor
    ckpt = load_checkpoint(trained[0])
    predictor, names = Predictor(ckpt), list(ckpt.labels)
    pairs = [line.split(" ", 1) for line in files["test"].read_text().splitlines()]
    truth = [names.index(label) for label, _ in pairs]
    guess = [int(np.argmax(predictor(text))) for _, text in pairs]
    confusion = np.array(ckpt.state["test_confusion"])
    assert confusion.sum() == len(pairs)
    for k in range(len(names)):  # rows are labels, columns predictions
        assert confusion[k].tolist() == [sum(t == k and g == j for t, g in zip(truth, guess))
                                         for j in range(len(names))]
    f1s = []
    for k in range(len(names)):
        hits = sum(t == g == k for t, g in zip(truth, guess))
        precision = hits / max(1, guess.count(k))
        recall = hits / max(1, truth.count(k))
        f1s.append(2 * precision * recall / (precision + recall) if hits else 0.0)
    assert ckpt.state["test_macro_f1"] == pytest.approx(np.mean(f1s))
    assert ckpt.state["test_accuracy"] == pytest.approx(np.mean(np.equal(truth, guess)))


def test_cross_validation_trains_one_model_per_fold(files, tmp_path, capsys):
    out, log = tmp_path / "cv.npz", tmp_path / "cv.json"
    code = train_classifier_main(["--train", str(files["train"]), "--folds", "3",
                                  "--cross-validate", "--epochs", "1", "--model-out", str(out),
                                  "--log-json", str(log), *TINY])
    assert code == 0 and not out.exists()
    tested = []
    for i in range(3):
        ckpt = load_checkpoint(tmp_path / f"cv.fold{i}.npz")
        assert ckpt.settings.data.fold == i
        tested.append(int(np.sum(ckpt.state["test_confusion"])))
    assert sum(tested) == 240 and max(tested) - min(tested) <= 1  # the folds partition
    summary = json.loads(log.read_text())
    assert summary["folds"] == [str(tmp_path / f"cv.fold{i}.npz") for i in range(3)]
    fold_log = json.loads((tmp_path / "cv.fold2.json").read_text())
    assert fold_log["test_accuracy"] == summary["test_accuracy"][2]
    mean = 100 * np.mean(summary["test_accuracy"])
    assert f"3-fold cross-validation: test accuracy {mean:.2f}%" in capsys.readouterr().out
    again = ["--train", str(files["train"]), "--folds", "3", "--cross-validate", "--epochs",
             "1", "--model-out", str(out), "--log-json", str(log), *TINY]
    assert train_classifier_main(again) == 0  # after an interruption: finished folds are kept
    assert capsys.readouterr().out.count("holds this fold's finished run") == 3
    assert json.loads(log.read_text()) == summary
    code = train_classifier_main(["--train", str(files["train"]), "--test", str(files["test"]),
                                  "--cross-validate", "--model-out", str(out), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and "--cross-validate" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("encoding, needle", [("utf-8", "byte 0xe9"),
                                              ("nope", "unknown encoding")])
def test_the_encoding_flag_reaches_the_reader(files, tmp_path, capsys, encoding, needle):
    latin = tmp_path / "latin.txt"
    latin.write_bytes(files["train"].read_bytes() + "pos un café great\n".encode("latin-1"))
    code = train_classifier_main(["--train", str(latin), "--encoding", encoding,
                                  "--model-out", str(tmp_path / "m.npz"), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def as_trees(path, out):
    """The sentences of ``path`` as right-branching trees whose every phrase has the sentence's
    label."""
    def tree(label, words):
        leaf = f"({label} {words[0]})"
        return leaf if len(words) == 1 else f"({label} {leaf} {tree(label, words[1:])})"

    pairs = [line.split(maxsplit=1) for line in path.read_text().splitlines()]
    out.write_text("".join(tree(label, text.split()) + "\n" for label, text in pairs))
    return out


def test_phrases_train_on_every_phrase_of_the_training_trees(files, tmp_path, capsys):
    # "zebra", in one sentence, is in five of its phrases.
    train = tmp_path / "train.txt"
    train.write_text(files["train"].read_text() + "pos the a of zebra great\n")
    trees = as_trees(train, tmp_path / "trees.txt")
    out = tmp_path / "m.npz"
    assert train_classifier_main(["--train", str(trees), "--dev", str(files["dev"]),
                                  "--phrases", "--epochs", "1", "--min-count", "3",
                                  "--model-out", str(out), *TINY]) == 0
    sentences = [line.split()[1:] for line in train.read_text().splitlines()]
    phrases = ({tuple(words[i:]) for words in sentences for i in range(len(words))}
               | {(w,) for words in sentences for w in words})
    assert f"{len(phrases):,} training phrases, 60 dev" in capsys.readouterr().out
    checkpoint = load_checkpoint(out)
    assert checkpoint.settings.data.phrases is True
    # The minimum count counts the sentences' words, not the phrases' that repeat them.
    counts = Counter(w for words in sentences for w in words)
    assert counts["zebra"] == 1
    assert {w for w in checkpoint.vocab.words if w in counts} == {
        w for w, n in counts.items() if n >= 3}


@pytest.mark.parametrize("flags, says", [
    (["--dataset", "trec"], "the trec dataset has no labelled phrases to train on"),
    (["--train", "TRAIN"], "is read as labelled"),
])
def test_phrases_without_trees_are_one_line(files, trained, flags, says, capsys):
    out, _ = trained
    digest = hashlib.sha1(out.read_bytes()).hexdigest()
    flags = [str(files["train"]) if flag == "TRAIN" else flag for flag in flags]
    code = train_classifier_main([*flags, "--phrases", "--model-out", str(out), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert hashlib.sha1(out.read_bytes()).hexdigest() == digest
