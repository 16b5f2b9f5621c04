"""Labelled sentences: the readers, the label set, the splits and the named datasets."""

import json
from pathlib import Path

import numpy as np
import pytest

from rnn_theano.data import datasets
from rnn_theano.data.labelled import (Example, LabelSet, check_labels, fold_split, folds,
                                      load_labelled, read_class_files, read_csv, read_examples,
                                      read_labelled, read_trees, tree_nodes)
from rnn_theano.errors import UserError


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _error(function, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        function(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def _examples(*pairs: str) -> list[Example]:
    """``"pos good film"`` -> Example("pos", ["good", "film"])."""
    return [Example(p.split()[0], p.split()[1:]) for p in pairs]


# --- readers ---------------------------------------------------------------------------------


def test_labelled_lines_split_off_the_label_and_lowercase_the_text(tmp_path):
    path = _write(tmp_path / "train.txt",
                  "1 A Fine film .\n\n0 dull ,  DULL\r\n   \nNEG it 's bad\n")
    result = read_labelled(path)
    assert result.examples == [Example("1", ["a", "fine", "film", "."]),
                               Example("0", ["dull", ",", "dull"]),
                               Example("NEG", ["it", "'s", "bad"])]
    assert result.skipped == 2
    assert result.encodings == {path: "utf-8"}
    assert read_labelled(path, lowercase=False).examples[0].words == ["A", "Fine", "film", "."]


def test_a_label_without_text_names_the_file_and_line(tmp_path):
    path = _write(tmp_path / "train.txt", "1 good\n\n0\n1 fine\n")
    message = _error(read_labelled, path)
    assert f"{path}:3:" in message and "'0'" in message and "LABEL TEXT" in message


def test_csv_tokenizes_the_text_column(tmp_path):
    path = _write(tmp_path / "reviews.csv",
                  'id,Text,Label\n1,"Don\'t go, really.",neg\n\n2,"A fine\nfilm!",pos\n')
    result = read_examples(path)  # auto: csv by its suffix
    assert result.examples == [Example("neg", ["do", "n't", "go", ",", "really", "."]),
                               Example("pos", ["a", "fine", "film", "!"])]
    assert result.skipped == 1


def test_csv_record_without_a_label_names_its_line(tmp_path):
    path = _write(tmp_path / "reviews.csv", 'label,text\npos,"two\nlines"\n,no label here\n')
    assert f"{path}:4: the record has no label" in _error(read_csv, path)
    no_columns = _write(tmp_path / "bare.csv", "body\nhello\n")
    assert "'label' and a 'text' column" in _error(read_csv, no_columns)


def test_class_files_in_latin1_read_their_accents(tmp_path):
    pos = _write(tmp_path / "rt.pos", b"a caf\xe9 of a film \x85 fine .\n\n")
    neg = _write(tmp_path / "rt.neg", b"dull.\n")
    result = read_class_files({"positive": pos, "negative": neg})
    assert result.examples == [
        Example("positive", ["a", "café", "of", "a", "film", "…", "fine", "."]),
        Example("negative", ["dull", "."])]
    assert result.skipped == 1
    # Windows-1252 reads 0x85 as an ellipsis; Latin-1 proper only when 1252 cannot (0x81).
    assert result.encodings == {pos: "cp1252", neg: "utf-8"}
    odd = _write(tmp_path / "odd.txt", b"1 caf\xe9 \x81\n")
    assert read_labelled(odd).encodings == {odd: "latin-1"}
    assert read_labelled(odd, encoding="latin-1").examples[0].words == ["café", "\x81"]


def test_unreadable_files_are_user_errors(tmp_path):
    assert "cannot read" in _error(read_labelled, tmp_path / "absent.txt")
    assert "contains no example" in _error(read_labelled, _write(tmp_path / "blank.txt", "\n \n"))
    assert "NUL" in _error(read_labelled, _write(tmp_path / "u16.txt", "1 hi\n".encode("utf-16")))
    latin = _write(tmp_path / "latin.txt", b"1 caf\xe9\n")
    assert "byte 0xe9 at offset 5" in _error(read_labelled, latin, encoding="utf-8")
    assert "unknown labelled format" in _error(read_examples, latin, fmt="tsv")


# Two sentences of the Stanford Sentiment Treebank's kind; "a fine film" is a phrase of both.
TREES = ("(4 (3 (2 A) (4 (3 fine) (2 film))) (2 .))\n"
         "\n"
         "(1 (2 Not) (1 (2 (2 a) (4 (3 fine) (2 film))) (0 (2 at) (2 all))))\n")


def test_a_tree_reads_as_its_phrases_children_first():
    nodes = tree_nodes("(3 (2 (2 The) (2 Rock)) (4 (2 is) (4 good)))")
    assert nodes == _examples("2 The", "2 Rock", "2 The Rock", "2 is", "4 good", "4 is good",
                              "3 The Rock is good")


def test_trees_give_sentences_or_every_distinct_phrase(tmp_path):
    path = _write(tmp_path / "train.txt", TREES)
    sentences = read_examples(path)  # auto: trees, by the first "("
    assert sentences.examples == _examples("4 a fine film .", "1 not a fine film at all")
    assert sentences.skipped == 1
    phrases = read_trees(path, phrases=True).examples
    assert phrases == _examples("2 a", "3 fine", "2 film", "4 fine film", "3 a fine film",
                                "2 .", "4 a fine film .", "2 not", "2 at", "2 all", "0 at all",
                                "1 a fine film at all", "1 not a fine film at all")
    assert read_trees(path, phrases=True).sentences == sentences.examples
    assert read_trees(path, lowercase=False).examples[0].words == ["A", "fine", "film", "."]


@pytest.mark.parametrize("line, problem", [
    ("(3 (2 a) (2 b)", "unbalanced brackets"),
    ("(3 (2 a)) (2 b)", "'(' after the end of the tree"),
    ("((2 a) (2 b))", "no label before 'a b'"),
    ("3 a fine film", "'3' outside the tree's brackets"),
    ("(3 )", "a ')' that closes no labelled words"),
])
def test_a_line_that_is_not_a_tree_is_named(tmp_path, line, problem):
    path = _write(tmp_path / "train.txt", f"(2 (2 fine) (2 .))\n{line}\n")
    message = _error(read_trees, path)
    assert f"{path}:2: not a labelled tree ({problem})" in message


def test_phrases_need_trees(tmp_path):
    labelled = _write(tmp_path / "train.txt", "1 a fine film\n0 dull\n")
    assert "is read as labelled" in _error(load_labelled, train=labelled, phrases=True)
    trees = _write(tmp_path / "trees.txt", TREES)
    splits = load_labelled(train=trees, dev=labelled, phrases=True)
    assert len(splits.train) == 13 and len(splits.dev) == 2
    assert splits.counted == _examples("4 a fine film .", "1 not a fine film at all")
    assert load_labelled(train=labelled, dev=labelled).counted == _examples("1 a fine film",
                                                                            "0 dull")
    assert "--dev file" in _error(load_labelled, train=trees, phrases=True)
    assert "not folds" in _error(load_labelled, train=trees, dev=labelled, folds=2,
                                 phrases=True)
    assert "only sst2, sst5" in _error(load_labelled, "trec", data_dir=tmp_path, phrases=True,
                                       download=False)


# --- labels ----------------------------------------------------------------------------------


def test_integer_labels_sort_numerically_and_others_as_strings():
    labels = LabelSet.of(_examples("10 a", "2 b", "-1 c", "2 d"))
    assert labels.labels == ("-1", "2", "10")
    assert labels.index("10") == 2
    assert labels.indices(_examples("2 x", "-1 y")).tolist() == [1, 0]
    assert LabelSet.of(_examples("pos a", "neg b", "10 c")).labels == ("10", "neg", "pos")
    assert LabelSet(json.loads(json.dumps(labels.to_list()))) == labels
    assert "'7'" in _error(labels.index, "7")
    with pytest.raises(ValueError):
        LabelSet(["a", "a"])


def test_one_class_only_is_refused():
    assert "1 label(s) (pos)" in _error(check_labels, _examples("pos a", "pos b"))


def test_a_test_label_unseen_in_training_is_named_with_its_split():
    train = _examples("pos a", "neg b")
    assert check_labels(train, {"dev": _examples("neg c")}).labels == ("neg", "pos")
    message = _error(check_labels, train, {"dev": _examples("pos c"), "test": _examples("meh d")})
    assert "the test examples have label(s) meh" in message


def test_first_words_of_plain_sentences_are_not_taken_for_labels():
    plain = _examples(*(f"word{i} of a sentence" for i in range(30)))
    assert "really its label" in _error(check_labels, plain)


# --- splits and folds ------------------------------------------------------------------------


def test_user_files_hold_out_a_seeded_dev_split(tmp_path):
    lines = [f"{i % 3} sentence number {i}" for i in range(40)]
    train = _write(tmp_path / "train.txt", "\n".join(lines) + "\n\n")
    test = _write(tmp_path / "test.txt", "0 a\n2 b\n")
    splits = load_labelled(train=train, test=test, dev_fraction=0.25, seed=3)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (30, 10, 2)
    assert sorted(splits.train + splits.dev) == sorted(read_labelled(train).examples)
    assert splits.labels.labels == ("0", "1", "2")
    assert splits.dev_source == "25% of the training examples, held out at random (seed 3)"
    assert splits.source == str(train) and splits.skipped == 1
    assert load_labelled(train=train, dev_fraction=0.25, seed=3).dev == splits.dev
    assert load_labelled(train=train, dev_fraction=0).dev == []
    assert "no training data" in _error(load_labelled)


def test_a_dev_file_is_used_as_it_is(tmp_path):
    pos, neg = _write(tmp_path / "p.txt", "good .\nfine .\n"), _write(tmp_path / "n.txt", "bad .\n")
    dev = _write(tmp_path / "dev.csv", "text,label\nso good,p\n")
    splits = load_labelled(train={"p": pos, "n": neg}, dev=dev)
    assert splits.dev == [Example("p", ["so", "good"])] and splits.dev_source == str(dev)
    assert splits.test is None and splits.test_source == "none" and len(splits.train) == 3


def test_without_a_test_file_a_fold_can_be_the_test_set(tmp_path):
    train = _write(tmp_path / "train.txt", "".join(f"{i % 2} s {i}\n" for i in range(20)))
    tested = [load_labelled(train=train, folds=4, fold=i, dev_fraction=0, seed=5).test
              for i in range(4)]
    assert sorted(e for test in tested for e in test) == sorted(read_labelled(train).examples)
    assert "numbered 0 to 3" in _error(load_labelled, train=train, folds=4, fold=4)


def test_folds_partition_the_indices_reproducibly():
    parts = folds(23, 5, seed=1)
    assert [len(p) for p in parts] == [5, 5, 5, 4, 4]
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(23))
    assert all(np.array_equal(a, b) for a, b in zip(parts, folds(23, 5, seed=1)))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, folds(23, 5, seed=2)))
    items = list(range(23))
    train, test = fold_split(items, 5, 3, seed=1)
    assert test == parts[3].tolist() and sorted(train + test) == items
    assert "at least 2" in _error(folds, 3, 1)
    assert "numbered 0 to 4" in _error(fold_split, items, 5, 5)


# --- named datasets --------------------------------------------------------------------------


def test_registry_and_unknown_names():
    assert set(datasets.LABELLED) == {"sst2", "sst5", "trec", "mr"}
    files = [f for spec in datasets.LABELLED.values() for f in spec.files]
    assert all(f.url.startswith("https://") and f.path.startswith("sentences/") and f.sha256
               for f in files)
    assert "sst2, sst5, trec, mr" in _error(datasets.labelled_files, "imdb")


def test_missing_dataset_file_names_where_to_put_it(tmp_path):
    message = _error(load_labelled, "trec", data_dir=tmp_path, download=False)
    assert str(tmp_path / "sentences/TREC.train.all") in message and "https://" in message


def test_only_the_splits_not_given_are_looked_for(shared_data, tmp_path):
    """A named dataset's file that the caller's own replaces is neither needed nor fetched."""
    (tmp_path / "sentences").mkdir()
    for name in ("stsa.fine.dev", "stsa.fine.test"):
        (tmp_path / "sentences" / name).symlink_to(shared_data / "sentences" / name)
    trees = _write(tmp_path / "trees.txt", TREES)
    splits = load_labelled("sst5", train=trees, data_dir=tmp_path, download=False,
                           phrases=True)
    assert len(splits.train) == 13 and len(splits.dev) == 1101 and len(splits.test) == 2210
    assert "stsa.fine.train" in _error(load_labelled, "sst5", data_dir=tmp_path,
                                       download=False)
    own = _write(tmp_path / "mr.txt", "1 a fine film\n0 dull\n" * 10)
    assert len(load_labelled("mr", train=own, data_dir=tmp_path, download=False,
                             folds=2, dev_fraction=0).train) == 10


@pytest.mark.parametrize("name, sizes, labels", [
    ("sst2", (6920, 872, 1821), ("0", "1")),
    ("sst5", (8544, 1101, 2210), ("0", "1", "2", "3", "4")),
])
def test_sst(shared_data, name, sizes, labels):
    splits = load_labelled(name, data_dir=shared_data, download=False)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == sizes
    assert splits.labels.labels == labels and splits.skipped == 0
    assert splits.dev_source.endswith(".dev") and splits.test_source.endswith(".test")
    assert splits.folds == 0


def test_trec_holds_out_its_dev_split(shared_data):
    splits = load_labelled("trec", data_dir=shared_data, download=False)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (5452 - 545, 545, 500)
    assert splits.labels.labels == ("0", "1", "2", "3", "4", "5")
    assert "held out" in splits.dev_source
    assert splits.train[0] == Example("0", "how did serfdom develop in and then leave russia ?"
                                      .split())


def test_mr_tests_on_one_of_ten_folds(shared_data):
    whole = load_labelled("mr", data_dir=shared_data, download=False, folds=0, dev_fraction=0)
    assert whole.labels.labels == ("negative", "positive")
    assert [e.label for e in whole.train].count("positive") == 5331
    assert len(whole.train) == 2 * 5331 and whole.test is None
    assert set(whole.encodings.values()) == {"cp1252"}
    splits = load_labelled("mr", data_dir=shared_data, download=False, fold=9)
    assert (splits.folds, splits.fold) == (10, 9)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (9596 - 960, 960, 1066)
    assert splits.test_source == "fold 9 of a 10-fold cross-validation (seed 0)"
    assert splits.test == fold_split(whole.train, 10, 9)[1]
