"""Labelled sentences for classification: reading them, their label set, and their splits.

Formats:

``labelled``
    One example a line, ``LABEL TEXT``: the label is the first whitespace-separated token,
    the text is already tokenized (SST and TREC as Kim (2014) distributed them).
``csv``
    A header line naming a ``label`` and a ``text`` column; the text is raw and is tokenized
    like the language-model corpora.
``trees``
    One labelled tree a line, ``(LABEL (LABEL word) (LABEL (LABEL word) ...))``: the Stanford
    Sentiment Treebank's files, whose every phrase carries a label. An example is a tree's
    sentence and the root's label, or with ``phrases`` every distinct phrase and its label
    (the treebank's training protocol, which Kim (2014) followed).
class files
    One file of raw sentences per label (Movie Review's ``rt-polarity.pos``/``.neg``).
``auto``
    ``csv`` for a ``.csv`` file, ``trees`` for a file that starts with ``(``, else ``labelled``.

A file that is not UTF-8 is read as Windows-1252, the usual encoding of older English corpora:
it agrees with Latin-1 on every letter, and also reads MR's ellipses and dashes (bytes 0x85,
0x96, 0x97), which Latin-1 turns into control characters. A file that is not Windows-1252
either is read as Latin-1, which accepts any byte. A line with nothing on it is skipped and
counted; one with a label but no text is an error, since it means the file is not in the
format it is read as.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np

from . import datasets
from ..errors import UserError
from .splits import split_held_out
from .tokenize import tokenize_words

FORMATS = ("auto", "labelled", "csv", "trees")

_FALLBACK_ENCODING = "cp1252"
_INTEGER = re.compile(r"[+-]?\d+")
_TREE_TOKENS = re.compile(r"[()]|[^\s()]+")
# A file of plain sentences read as ``labelled`` makes every first word a label: far more
# labels than any real task has per example. Real tasks with many classes still have several
# examples of each.
_MANY_LABELS = 20

PathLike = str | Path
# One training, dev or test source: a file, or {label: file} of class files.
Source = PathLike | Mapping[str, PathLike]
T = TypeVar("T")


class Example(NamedTuple):
    label: str
    words: list[str]


@dataclass
class ReadResult:
    """The examples read, the empty lines skipped, and the encoding each file was read in."""

    examples: list[Example]
    skipped: int
    encodings: dict[Path, str]
    sentences: list[Example] | None = None  # of the trees whose phrases are the examples


# --- readers ---------------------------------------------------------------------------------


def read_examples(path: PathLike, fmt: str = "auto", lowercase: bool = True,
                  encoding: str | None = None, phrases: bool = False) -> ReadResult:
    """The examples of ``path`` in format ``fmt`` (one of ``FORMATS``); ``phrases``: every
    labelled phrase of a ``trees`` file, not only its sentences."""
    path = Path(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown labelled format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt == "auto":
        fmt = _guess_format(path)
    if fmt == "trees":
        return read_trees(path, lowercase, encoding, phrases)
    if phrases:
        raise UserError(f"training on phrases needs labelled trees, (LABEL (LABEL word) ...) "
                        f"a line, but {path} is read as {fmt}: give a file of trees "
                        "(--format trees), or leave out --phrases")
    reader = read_csv if fmt == "csv" else read_labelled
    return reader(path, lowercase, encoding)


def _guess_format(path: Path) -> str:
    if path.suffix.lower() == ".csv":
        return "csv"
    try:
        with open(path, "rb") as f:
            start = f.read(256).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return "labelled"  # the reader reports the file
    return "trees" if start.startswith(b"(") else "labelled"


def read_labelled(path: PathLike, lowercase: bool = True,
                  encoding: str | None = None) -> ReadResult:
    """``LABEL TEXT`` lines; the text is split on whitespace, the label kept as it is.

    ``encoding`` None tries UTF-8, then Windows-1252, then Latin-1.
    """
    path = Path(path)
    text, used = decode(path, encoding)
    examples, skipped = [], 0
    for number, line in enumerate(io.StringIO(text, newline=None), start=1):
        parts = line.split(maxsplit=1)
        if not parts:
            skipped += 1
            continue
        if len(parts) < 2:
            raise UserError(f"{path}:{number}: the line has a label ({parts[0]!r}) but no text: "
                            "each line must be LABEL TEXT (the label, a space, the sentence); "
                            "complete or delete that line")
        words = (parts[1].lower() if lowercase else parts[1]).split()
        examples.append(Example(parts[0], words))
    return _result(path, examples, skipped, used)


def read_trees(path: PathLike, lowercase: bool = True, encoding: str | None = None,
               phrases: bool = False) -> ReadResult:
    """One labelled tree a line: its sentence with the root's label, or with ``phrases`` every
    phrase with its own label, each distinct word sequence once (the first label it has; the
    treebank gives a phrase one label wherever it occurs)."""
    path = Path(path)
    text, used = decode(path, encoding)
    examples, sentences, seen, skipped = [], [], set(), 0
    for number, line in enumerate(io.StringIO(text, newline=None), start=1):
        if not line.strip():
            skipped += 1
            continue
        try:
            nodes = tree_nodes(line)
        except ValueError as e:
            raise UserError(f"{path}:{number}: not a labelled tree ({e}): each line must be "
                            "one tree, (LABEL (LABEL word) (LABEL ...)), as the Stanford "
                            "Sentiment Treebank writes them") from None
        nodes = [Example(label, [w.lower() for w in words] if lowercase else words)
                 for label, words in (nodes if phrases else nodes[-1:])]
        sentences.append(nodes[-1])
        for node in nodes:
            if phrases and tuple(node.words) in seen:
                continue
            seen.add(tuple(node.words))
            examples.append(node)
    result = _result(path, examples, skipped, used)
    result.sentences = sentences if phrases else None
    return result


def tree_nodes(line: str) -> list[Example]:
    """Every node of one bracketed tree ``(LABEL (LABEL word) ...)`` as (its label, the words
    under it), children before their parent: the root, the whole sentence, comes last.
    ``ValueError`` saying what is wrong with a line that is not one such tree."""
    open_nodes: list[tuple[list[str], list[str]]] = []  # ([label], words) of each open node
    nodes: list[Example] = []
    tokens = _TREE_TOKENS.findall(line)
    for i, token in enumerate(tokens):
        if nodes and not open_nodes:
            raise ValueError(f"{token!r} after the end of the tree")
        if token == "(":
            open_nodes.append(([], []))
        elif token == ")":
            if not open_nodes or not open_nodes[-1][1]:
                raise ValueError("a ')' that closes no labelled words")
            label, words = open_nodes.pop()
            if not label:
                raise ValueError(f"no label before {' '.join(words[:3])!r}")
            nodes.append(Example(label[0], words))
            if open_nodes:
                open_nodes[-1][1].extend(words)
        elif not open_nodes:
            raise ValueError(f"{token!r} outside the tree's brackets")
        elif tokens[i - 1] == "(":
            open_nodes[-1][0].append(token)
        else:
            open_nodes[-1][1].append(token)
    if open_nodes or not nodes:
        raise ValueError("unbalanced brackets" if open_nodes else "no tree")
    return nodes


def read_csv(path: PathLike, lowercase: bool = True,
             encoding: str | None = None) -> ReadResult:
    """Records of a CSV file with ``label`` and ``text`` columns; the text is tokenized."""
    path = Path(path)
    text, used = decode(path, encoding)
    reader = csv.reader(io.StringIO(text, newline=""))  # newlines inside quoted fields
    examples, skipped = [], 0
    try:
        label_column, text_column = _csv_columns(next(reader, []), path)
        start = reader.line_num + 1
        for row in reader:
            label = row[label_column].strip() if label_column < len(row) else ""
            words = tokenize_words(row[text_column], lowercase) if text_column < len(row) else []
            if not label and not words:
                skipped += 1
            elif not (label and words):
                missing = "label" if words else "text"
                raise UserError(f"{path}:{start}: the record has no {missing}: give every "
                                "record both a label and a text, or delete it")
            else:
                examples.append(Example(label, words))
            start = reader.line_num + 1
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: malformed CSV ({e}): fix the quoting "
                        "there") from None
    return _result(path, examples, skipped, used)


def read_class_files(files: Mapping[str, PathLike], lowercase: bool = True,
                     encoding: str | None = None) -> ReadResult:
    """Raw sentences, one a line, labelled by their file: ``{label: path}``."""
    if not files:
        raise UserError("no class files given: give one file of sentences per label")
    results = []
    for label, path in files.items():
        path = Path(path)
        text, used = decode(path, encoding)
        examples, skipped = [], 0
        for line in io.StringIO(text, newline=None):
            words = tokenize_words(line.strip(), lowercase)
            if words:
                examples.append(Example(label, words))
            else:
                skipped += 1
        results.append(_result(path, examples, skipped, used))
    return merge_results(results)


def merge_results(results: Iterable[ReadResult]) -> ReadResult:
    """One result holding the examples of ``results`` in order."""
    merged = ReadResult([], 0, {})
    for result in results:
        merged.examples.extend(result.examples)
        merged.skipped += result.skipped
        merged.encodings.update(result.encodings)
    return merged


def _result(path: Path, examples: list[Example], skipped: int, encoding: str) -> ReadResult:
    if not examples:
        raise UserError(f"{path} contains no example: check that it holds labelled sentences "
                        "and that its format is the right one")
    return ReadResult(examples, skipped, {path: encoding})


def _csv_columns(header: list[str], path: Path) -> tuple[int, int]:
    names = [name.strip().lower() for name in header]
    if "label" not in names or "text" not in names:
        raise UserError(f"{path} needs a 'label' and a 'text' column (its header: "
                        f"{', '.join(header) or 'none'}): name them so in the first line")
    return names.index("label"), names.index("text")


def decode(path: Path, encoding: str | None) -> tuple[str, str]:
    """The text of ``path`` and the encoding it was read in."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): check the path, and that it is "
                        "a readable file") from None
    if b"\0" in data:
        raise UserError(f"{path} looks binary (it has NUL bytes): give a text file; a UTF-16 "
                        f"file looks like this too: convert it with iconv -f UTF-16 -t UTF-8")
    if encoding is not None:
        return _decode_as(path, data, encoding), encoding
    for candidate in ("utf-8", _FALLBACK_ENCODING):
        try:
            return data.decode(candidate).removeprefix("\ufeff"), candidate
        except UnicodeDecodeError:
            pass
    return data.decode("latin-1"), "latin-1"  # every byte is a Latin-1 character


def _decode_as(path: Path, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except LookupError:
        raise UserError(f"unknown encoding {encoding!r}: give a codec name such as utf-8 or "
                        "latin-1") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not {encoding} (byte 0x{data[e.start]:02x} at offset "
                        f"{e.start}): give its real encoding, or none to try UTF-8, then "
                        "Windows-1252, then Latin-1") from None


# --- labels ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSet:
    """The classes, in the order of the classifier's outputs; a label's index is its class.

    Integer labels ("0", "10", "-1") sort numerically, so SST's "0".."4" keep their meaning
    as indices; other labels sort as strings. ``LabelSet(labels.to_list())`` restores a set
    saved as JSON.
    """

    labels: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        labels = tuple(str(label) for label in self.labels)
        if len(set(labels)) != len(labels):
            raise ValueError(f"repeated labels in {labels}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "_index", {label: i for i, label in enumerate(labels)})

    @classmethod
    def of(cls, examples: Iterable[Example]) -> LabelSet:
        """The labels of ``examples``, ordered."""
        found = {example.label for example in examples}
        if all(_INTEGER.fullmatch(label) for label in found):
            return cls(tuple(sorted(found, key=lambda label: (int(label), label))))
        return cls(tuple(sorted(found)))

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: str) -> bool:
        return label in self._index

    def index(self, label: str) -> int:
        try:
            return self._index[label]
        except KeyError:
            raise UserError(f"unknown label {label!r}: the labels are "
                            f"{', '.join(self.labels)}") from None

    def indices(self, examples: Iterable[Example]) -> np.ndarray:
        """The class index of each example, as int32."""
        return np.asarray([self.index(e.label) for e in examples], dtype=np.int32)

    def to_list(self) -> list[str]:
        return list(self.labels)


def check_labels(train: Sequence[Example],
                 others: Mapping[str, Sequence[Example]] | None = None) -> LabelSet:
    """The training label set, refused when it cannot train a classifier, or when a split of
    ``others`` ({"dev": [...], "test": [...]}) has a label no training example has."""
    labels = LabelSet.of(train)
    if len(labels) < 2:
        raise UserError(f"the training examples have {len(labels)} label(s) "
                        f"({', '.join(labels.labels) or 'none'}): a classifier needs at least "
                        "two; check that the training data is complete")
    if len(labels) > _MANY_LABELS and 2 * len(labels) > len(train):
        raise UserError(f"{len(labels)} different labels in {len(train)} training examples: "
                        "is the first token of each line really its label? Plain sentences "
                        "need a label first (LABEL TEXT), or one file per class")
    for split, examples in (others or {}).items():
        unseen = sorted({e.label for e in examples} - set(labels.labels))
        if unseen:
            raise UserError(f"the {split} examples have label(s) {', '.join(unseen[:5])} that no "
                            f"training example has (training labels: {', '.join(labels.labels)}): "
                            f"give {split} data with the training labels")
    return labels


# --- splits ----------------------------------------------------------------------------------


@dataclass
class LabelledSplits:
    """The examples of each split, and where the held-out ones came from, to be stated with
    results: ``dev_source`` and ``test_source`` name a file, a held-out fraction of the
    training examples, or a cross-validation fold (then ``folds`` is the number of folds and
    ``fold`` the one tested on; ``folds`` is 0 otherwise)."""

    train: list[Example]
    dev: list[Example]
    test: list[Example] | None
    labels: LabelSet
    source: str
    skipped: int
    dev_source: str
    test_source: str
    folds: int = 0
    fold: int = 0
    encodings: dict[Path, str] = field(default_factory=dict)
    sentences: list[Example] | None = None  # with phrases, the training trees' sentences

    @property
    def counted(self) -> list[Example]:
        """The training examples whose words the vocabulary counts: with phrases, the trees'
        sentences, since a word recurs in every phrase above it (counted over the phrases,
        nearly every word of the treebank would pass a minimum count of 2)."""
        return self.train if self.sentences is None else self.sentences


def load_labelled(name: str | None = None, *, train: Source | None = None,
                  dev: Source | None = None, test: Source | None = None, fmt: str = "auto",
                  data_dir: PathLike | None = None, lowercase: bool = True, seed: int = 0,
                  dev_fraction: float = 0.1, folds: int | None = None, fold: int = 0,
                  encoding: str | None = None, download: bool = True,
                  phrases: bool = False) -> LabelledSplits:
    """A named dataset of ``datasets.LABELLED`` (found in ``data_dir``, else downloaded
    there), or the user's files in format ``fmt``; a ``{label: path}`` source is class files.

    ``train``, ``dev`` and ``test`` replace the named dataset's own splits. Without a test
    split, fold ``fold`` of a seeded ``folds``-fold cross-validation is the test set
    (``folds`` None: the dataset's standard protocol, 10 folds for MR; 0: no test set).
    Without a dev split, a seeded random ``dev_fraction`` of the remaining training examples
    is held out (none when it is 0). ``phrases``: train on every labelled phrase of the
    training trees, a named dataset's own (``datasets.tree_file``, its labels mapped to the
    dataset's) or a ``trees`` file given as ``train``. Raises ``UserError`` for unreadable
    files and labels no classifier can learn.
    """
    if not 0 <= dev_fraction < 1:
        raise UserError(f"dev fraction {dev_fraction} is out of range: give a number from 0 "
                        "(no dev split) up to, but not including, 1")
    trees = (_dataset_trees(name, data_dir, download)
             if phrases and name is not None and train is None else None)
    given = {split: (source, fmt) for split, source in (("train", train), ("dev", dev),
                                                         ("test", test)) if source is not None}
    if trees is not None:
        given["train"] = (trees, "trees")
    sources, standard_folds = _sources(name, given, data_dir, download)
    read = {split: _read(source, split_fmt, lowercase, encoding, phrases and split == "train")
            for split, (source, split_fmt) in sources.items()}
    if trees is not None:
        read["train"] = _relabelled(read["train"], datasets.labelled_spec(name).tree_labels)
    k = 0 if "test" in read else standard_folds if folds is None else folds
    if phrases and (k or "dev" not in read):
        raise UserError("training on phrases scores whole sentences: give a --dev file of "
                        "them" + ("" if k == 0 else " and a --test file, not folds"))
    train_examples, test_examples, test_source = _test_split(read, sources, k, fold, seed)
    if "dev" in read:
        dev_examples, dev_source = read["dev"].examples, _describe(sources["dev"][0])
    elif dev_fraction > 0:
        train_examples, dev_examples = split_held_out(train_examples, dev_fraction, seed)
        dev_source = (f"{dev_fraction * 100:g}% of the training examples, held out at random "
                      f"(seed {seed})")
    else:
        dev_examples, dev_source = [], "none"
    labels = check_labels(train_examples, {"dev": dev_examples, "test": test_examples or []})
    merged = merge_results(read.values())
    source = name or _describe(sources["train"][0])
    if trees is not None:
        source += f", trained on the phrases of {trees}"
    return LabelledSplits(train_examples, dev_examples, test_examples, labels,
                          source, merged.skipped, dev_source,
                          test_source, k, fold if k else 0, merged.encodings,
                          read["train"].sentences)


def _test_split(read: Mapping[str, ReadResult], sources: Mapping[str, tuple[Source, str]],
                k: int, fold: int, seed: int
                ) -> tuple[list[Example], list[Example] | None, str]:
    """(training examples, test examples, where the test examples came from)."""
    if "test" in read:
        return read["train"].examples, read["test"].examples, _describe(sources["test"][0])
    if k == 0:
        return read["train"].examples, None, "none"
    train, test = fold_split(read["train"].examples, k, fold, seed)
    return train, test, f"fold {fold} of a {k}-fold cross-validation (seed {seed})"


def _sources(name: str | None, given: dict[str, tuple[Source, str]],
             data_dir: PathLike | None, download: bool
             ) -> tuple[dict[str, tuple[Source, str]], int]:
    """Split -> (source, format): the ``given`` ones, and the named dataset's for the others
    (only those are looked for, or downloaded); and the dataset's cross-validation folds."""
    if name is None:
        if "train" not in given:
            raise UserError("no training data: name a labelled dataset "
                            f"({', '.join(datasets.LABELLED)}) or give a training file")
        return dict(given), 0
    spec = datasets.labelled_spec(name)
    root = Path(data_dir) if data_dir is not None else None
    sources: dict[str, tuple[Source, str]] = {}
    if spec.format == "classes":  # its files are the classes of the one training split
        if "train" not in given:
            sources["train"] = (datasets.labelled_files(name, root, download), spec.format)
    else:
        files = datasets.labelled_files(name, root, download, skip=given.keys())
        sources.update((split, (path, spec.format)) for split, path in files.items())
    return sources | given, spec.folds


def _read(source: Source, fmt: str, lowercase: bool, encoding: str | None,
          phrases: bool = False) -> ReadResult:
    if isinstance(source, Mapping):
        if phrases:
            raise UserError("training on phrases needs labelled trees, not one file of "
                            "sentences per class: leave out --phrases")
        return read_class_files(source, lowercase, encoding)
    return read_examples(source, fmt, lowercase, encoding, phrases)


def _dataset_trees(name: str, data_dir: PathLike | None, download: bool) -> Path:
    return datasets.tree_file(name, Path(data_dir) if data_dir is not None else None, download)


def _relabelled(result: ReadResult, labels: tuple[tuple[str, str], ...]) -> ReadResult:
    """The examples whose label ``labels`` maps, with the label it maps to (all of them, as
    they are, when it maps none)."""
    if not labels:
        return result
    mapping = dict(labels)

    def mapped(examples: list[Example]) -> list[Example]:
        return [Example(mapping[e.label], e.words) for e in examples if e.label in mapping]

    return ReadResult(mapped(result.examples), result.skipped, result.encodings,
                      None if result.sentences is None else mapped(result.sentences))


def _describe(source: Source) -> str:
    if isinstance(source, Mapping):
        return ", ".join(f"{label}: {path}" for label, path in source.items())
    return str(source)


# --- cross-validation ------------------------------------------------------------------------


def folds(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint sorted index arrays covering ``range(n)``, sizes within one of each
    other; the same for the same seed."""
    if not 2 <= k <= n:
        raise UserError(f"{k}-fold cross-validation of {n} examples is impossible: the number "
                        f"of folds must be at least 2 and at most the number of examples")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def fold_split(examples: Sequence[T], k: int, i: int, seed: int = 0) -> tuple[list[T], list[T]]:
    """(training, test) examples of fold ``i`` of ``k``: fold ``i`` is the test set."""
    if not 0 <= i < k:
        raise UserError(f"fold {i} does not exist: the {k} folds are numbered 0 to {k - 1}")
    test_indices = folds(len(examples), k, seed)[i]
    in_test = np.zeros(len(examples), dtype=bool)
    in_test[test_indices] = True
    return ([e for e, held in zip(examples, in_test) if not held],
            [examples[j] for j in test_indices])
