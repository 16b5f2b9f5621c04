"""A classifier's pretrained start: word vectors (train-classifier --embeddings), their reader,
and a language model's embedding and recurrent weights (--init-from)."""

import gzip

import numpy as np
import pytest

from rnn_theano import cli
from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.config import ClassifyConfig
from rnn_theano.data.embeddings import read_vectors
from rnn_theano.data.vocab import SPECIAL_TOKENS, Vocabulary
from rnn_theano.errors import SettingError, UserError
from rnn_theano.tasks import classify

# Vectors of float32-exact numbers, so that the embedding holds them exactly.
VECTORS = {"great": [0.5, -0.25, 1.5], "dull": [2.0, 0.125, -1.0], "zebra": [1.0, 1.0, 1.0]}
SMALL = ["--arch", "gru", "--embed-dim", "3", "--hidden-dim", "4", "--batch-size", "8",
         "--mode", "JAX", "--patience", "0", "--epochs", "1"]


def write_vectors(path, vectors=VECTORS, header=True, extra=()):
    lines = [f"{len(vectors)} 3"] if header else []
    lines += [" ".join([word, *map(str, v)]) for word, v in vectors.items()]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


@pytest.fixture
def labelled(tmp_path):
    """Training and dev files: "great"/"lovely" sentences are pos, "dull"/"poor" ones neg."""
    rng = np.random.default_rng(0)
    paths = {}
    for split, n in (("train", 40), ("dev", 10)):
        lines = [f"{label} the {rng.choice(cues)} film" for label, cues in
                 (("pos", ["great", "lovely"]), ("neg", ["dull", "poor"])) for _ in range(n // 2)]
        paths[split] = tmp_path / f"{split}.txt"
        paths[split].write_text("\n".join(lines) + "\n")
    return paths


def flags(labelled, out, *extra):
    return ["--train", str(labelled["train"]), "--dev", str(labelled["dev"]),
            "--model-out", str(out), *SMALL, *extra]


def fresh_task(argv):
    """The task train-classifier would train, before its first step."""
    config, resumed = cli.train_config(argv, ClassifyConfig, "train-classifier")
    return classify.make_task(config, classify.load_data(config), resumed)


def test_found_words_start_from_their_vectors_and_the_others_stay_random(labelled, tmp_path):
    vectors = write_vectors(tmp_path / "vectors.txt")
    base = flags(labelled, tmp_path / "m.npz")
    task = fresh_task(base + ["--embeddings", str(vectors)])
    random = fresh_task(base).engine.params["embed"].get_value()
    embed, vocab = task.engine.params["embed"].get_value(), task.vocab
    found = {vocab.id(w) for w in ("great", "dull")}
    for word in ("great", "dull"):
        assert embed[vocab.id(word)].tolist() == VECTORS[word]  # exactly: the header skipped
    others = [i for i in range(len(vocab)) if i not in found]
    np.testing.assert_array_equal(embed[others], random[others])
    assert task.pretrained.describe() == f"2 of {len(vocab) - 3} vocabulary words found in " \
                                         f"{vectors}"


def test_training_reports_the_words_found_and_resuming_keeps_the_checkpoints(
        labelled, tmp_path, capsys):
    vectors, out = write_vectors(tmp_path / "vectors.txt", header=False), tmp_path / "m.npz"
    assert cli.main(["train-classifier", *flags(labelled, out, "--embeddings", str(vectors))]) == 0
    n_words = len(fresh_task(flags(labelled, tmp_path / "x.npz")).vocab) - 3  # the same data
    assert (f"embeddings: 2 of {n_words} vocabulary words found in {vectors}\n"
            in capsys.readouterr().out)
    vectors.unlink()  # a resumed run does not read the file again
    assert cli.main(["train-classifier", "--resume", str(out), "--epochs", "1",
                     "--embeddings", str(vectors)]) == 0
    assert "embeddings:" not in capsys.readouterr().out
    assert cli.main(["train-classifier", "--resume", str(out), "--embeddings", "other.txt"]) == 2
    err = capsys.readouterr().err
    assert "--embeddings other.txt cannot change when resuming" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, needle", [
    ((), "--embed-dim 5 does not fit the 3-dimensional word vectors of {path}: use "
         "--embed-dim 3"),
    (("poor 1.0 2.0",), "{path}, line 5: 2 numbers after the word, not 3"),
    (("poor 1.0 2.0 3.0 4.0",), "{path}, line 5: 4 numbers after the word, not 3"),
    (("poor 1.0 two 3.0",), "{path}, line 5: 'two' is not a number"),
])
def test_a_wrong_dimension_or_a_bad_line_is_one_line(labelled, tmp_path, capsys, extra, needle):
    vectors = write_vectors(tmp_path / "vectors.txt", extra=extra)
    argv = flags(labelled, tmp_path / "m.npz", "--embeddings", str(vectors))
    if not extra:
        argv += ["--embed-dim", "5"]
    assert cli.main(["train-classifier", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert needle.format(path=vectors) in err
    assert not (tmp_path / "m.npz").exists()


def test_a_missing_file_is_one_line(labelled, tmp_path, capsys):
    argv = flags(labelled, tmp_path / "m.npz", "--embeddings", str(tmp_path / "none.txt"))
    assert cli.main(["train-classifier", *argv]) == 2
    err = capsys.readouterr().err
    assert "cannot read word vectors" in err and len(err.strip().splitlines()) == 1


def test_the_reader_takes_gzip_cased_words_and_skips_words_with_spaces(tmp_path):
    vocab = Vocabulary(("UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "great", "paris",
                        "the", "poor"))
    text = ("the 1 2 3\nParis 4 5 6\nparis 7 8 9\nPARIS 0 0 0\nThe 9 9 9\n. . . 1 1 1\n"
            "poor 0.5 0.5 0.5\nGreat 2 2 2\n\n")
    path = tmp_path / "glove.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(text)
    found = read_vectors(str(path), vocab, 3, lowercase=True)
    assert [vocab.words[i] for i in found.ids] == ["great", "paris", "the", "poor"]
    assert found.vectors.tolist() == [[2, 2, 2], [7, 8, 9], [1, 2, 3], [0.5, 0.5, 0.5]]
    cased = read_vectors(str(path), vocab, 3)  # a cased vocabulary takes exact words only
    assert [vocab.words[i] for i in cased.ids] == ["paris", "the", "poor"]
    assert cased.vectors.tolist() == [[7, 8, 9], [1, 2, 3], [0.5, 0.5, 0.5]]
    with pytest.raises(SettingError, match="embed_dim 4 does not fit"):
        read_vectors(str(path), vocab, 4)


def test_a_first_line_with_a_decimal_number_is_a_vector_not_a_header(tmp_path):
    vocab = Vocabulary(("UNKNOWN_TOKEN", "1990", "great"))
    path = tmp_path / "one.txt"
    path.write_text("\ufeff1990 0.5\r\ngreat 1.5\r\n")  # a byte-order mark, Windows lines
    found = read_vectors(str(path), vocab, 1)
    assert found.vectors.tolist() == [[0.5], [1.5]]
    path.write_text("great nan\n")
    with pytest.raises(UserError, match="line 1: a number is not finite"):
        read_vectors(str(path), vocab, 1)


# --- --init-from: a language model's embedding and recurrent weights ----------------------

LM_FLAGS = ["--arch", "gru", "--embed-dim", "3", "--hidden-dim", "4", "--batch-size", "8",
            "--mode", "JAX", "--epochs", "1", "--format", "lines", "--vocab-size", "6"]


@pytest.fixture(scope="module")
def language_models(tmp_path_factory):
    """Two language models trained on film sentences: bidirectional and left-to-right.

    Their vocabularies keep the 5 most frequent words, so that some of the classifier's are
    missing from them."""
    root = tmp_path_factory.mktemp("lm")
    text = root / "films.txt"
    text.write_text("the great film\nthe dull film\nthe lovely film\nthe great show\n" * 4)
    paths = {}
    for name, extra in (("bi", ["--bidirectional"]), ("fwd", [])):
        paths[name] = root / f"{name}.npz"
        assert cli.main(["train", "--data", str(text), *LM_FLAGS, *extra,
                         "--model-out", str(paths[name])]) == 0
    return paths


def test_a_language_model_starts_the_known_words_and_the_shared_weights(labelled, tmp_path,
                                                                        language_models):
    base = flags(labelled, tmp_path / "m.npz", "--bidirectional")
    random = {k: v.get_value() for k, v in fresh_task(base).engine.params.items()}
    for name, copied in (("bi", ("l0_", "back0_")), ("fwd", ("l0_",))):
        lm = load_checkpoint(language_models[name])
        task = fresh_task(base + ["--init-from", str(language_models[name])])
        params, vocab = {k: v.get_value() for k, v in task.engine.params.items()}, task.vocab
        known = [w for w in vocab.words if w in lm.vocab and w not in SPECIAL_TOKENS]
        assert 0 < len(known) < len(vocab) - 3  # some words known, some not
        for w in known:
            np.testing.assert_allclose(params["embed"][vocab.id(w)],
                                       lm.params["embed"][lm.vocab.id(w)], rtol=1e-6)
        unknown = [vocab.id(w) for w in vocab.words if w not in known]
        np.testing.assert_array_equal(params["embed"][unknown], random["embed"][unknown])
        for k in params:
            if k.startswith(copied):
                np.testing.assert_allclose(params[k], lm.params[k], rtol=1e-6)
            elif k != "embed":  # the output layer, and the stack the language model lacks
                np.testing.assert_array_equal(params[k], random[k])
        assert task.pretrained.describe() == (
            f"{len(known)} of {len(vocab) - 3} vocabulary words and {3 * len(copied)} "
            f"recurrent weights from the language model {language_models[name]}")


@pytest.mark.parametrize("extra, needle", [
    (["--arch", "lstm"], "is a gru language model, the classifier a lstm one: train it with "
                         "rnn-theano train --arch lstm --embed-dim 3 --hidden-dim 4"),
    (["--hidden-dim", "5"], "its l0_Wx is (3, 12), this classifier's (3, 15)"),
    (["--embed-dim", "2"], "its embed is (6, 3), this classifier's"),
    (["--embeddings", "vectors.txt"], "embeddings and --init-from cannot both be given"),
])
def test_a_language_model_that_does_not_fit_is_one_line(labelled, tmp_path, capsys,
                                                        language_models, extra, needle):
    argv = flags(labelled, tmp_path / "m.npz", "--init-from", str(language_models["bi"]), *extra)
    assert cli.main(["train-classifier", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert needle in err
    assert not (tmp_path / "m.npz").exists()


def test_a_classifier_checkpoint_is_not_a_language_model(labelled, tmp_path, capsys):
    first = tmp_path / "first.npz"
    assert cli.main(["train-classifier", *flags(labelled, first)]) == 0
    argv = flags(labelled, tmp_path / "m.npz", "--init-from", str(first))
    assert cli.main(["train-classifier", *argv]) == 2
    err = capsys.readouterr().err
    assert f"{first} is a classifier checkpoint, not a language-model one" in err
