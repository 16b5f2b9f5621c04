"""Sentence classification: the many-to-one RNN, as the trainer and the commands see it.

The tutorial notes that an RNN need not produce an output at every step: to judge a sentence,
only one output matters. Here a (bidirectional) recurrent stack reads the sentence and the
sentence vector (its final states, or a pooling over time, ``classify_graph``) goes through a
softmax over the classes. Training is the one trainer's (``train.train``) with the dev
accuracy as the monitor: the checkpoint keeps the most accurate model on the dev split, and
``--patience`` stops training when it has not improved for that many epochs.

A fresh model's embedding can start from pretrained word vectors (``--embeddings``,
``data.embeddings``), or its embedding and recurrent stacks from a language model trained on
text of the task's kind (``--init-from``: Dai & Le 2015's pretraining). With ``--subwords N``
the words are read as BPE pieces, whose sentencepiece model the checkpoint keeps for
``Predictor``. ``Predictor.explain`` tells what each word of a sentence does for its
predicted class, by scoring the sentence without it.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..checkpoint import Checkpoint, load_checkpoint
from ..config import ClassifyConfig
from ..data.batching import ClassBatches, round_up
from ..data import labelled
from ..data.embeddings import WordVectors, read_vectors, word_ids
from ..data.labelled import Example, LabelledSplits, LabelSet, load_labelled
from ..data.parallel import Subwords
from ..data.tokenize import tokenize_words
from ..data.vocab import Vocabulary
from ..errors import SettingError, UserError
from ..metrics import Score
from ..train import Step, TrainerOptions
from .classify_engine import ClassifierEngine
from .engine import (EngineTask, continue_from, engine_settings, loadable_settings,
                     monitored_options)
from .classify_graph import ClassifierConfig


def graph_config(config: ClassifyConfig, vocab_size: int, n_classes: int) -> ClassifierConfig:
    """The network's graph settings: the model's own, with the real vocabulary and classes."""
    m = config.model
    return ClassifierConfig(cell=m.arch, vocab_size=vocab_size, n_classes=n_classes,
                            embed_dim=m.embed_dim, hidden_dim=m.hidden_dim, layers=m.layers,
                            bidirectional=m.bidirectional, pooling=m.pooling,
                            dropout=m.dropout, seed=config.train.seed,
                            embed_init=m.embed_init, word_dropout=m.word_dropout,
                            variational_dropout=m.variational_dropout,
                            recurrent_dropout=m.recurrent_dropout,
                            embed_dropout=m.embed_dropout, adversarial=m.adversarial)


def check_model(config: ClassifyConfig) -> None:
    """Refuse an impossible network before any data is read."""
    graph_config(config, config.model.vocab_size, 2)


def load_data(config: ClassifyConfig) -> LabelledSplits:
    """The splits the settings name; a dataset with no test split (MR) gives up one of its
    cross-validation folds (``--fold`` of ``--folds``, its protocol's 10 by default)."""
    d = config.data
    return load_labelled(d.dataset, train=d.train, dev=d.dev, test=d.test, fmt=d.format,
                         data_dir=d.data_dir, lowercase=config.model.lowercase,
                         seed=config.train.seed, dev_fraction=d.dev_fraction,
                         folds=d.folds or None, fold=d.fold, encoding=d.encoding,
                         phrases=d.phrases)


def fold_runs(config: ClassifyConfig) -> list[ClassifyConfig]:
    """One run per cross-validation fold: fold I is the test set, the model and the log go to
    their paths with ``.foldI`` before the suffix. Refused for data with a test split."""
    k = load_data(config).folds
    if not k:
        raise SettingError("cross_validate", "needs data without a test split, cut into "
                           "folds: --dataset mr, or your --train FILE with --folds K")

    def fold_path(path: str | None, i: int) -> str | None:
        return None if path is None else str(Path(path).with_suffix(
            f".fold{i}{Path(path).suffix}"))

    return [dataclasses.replace(
        config, data=dataclasses.replace(config.data, fold=i, cross_validate=False),
        train=dataclasses.replace(config.train, model_out=fold_path(config.train.model_out, i),
                                  log_json=fold_path(config.train.log_json, i)))
        for i in range(k)]


def majority_accuracy(splits: LabelledSplits) -> float:
    """Dev accuracy of always answering the most frequent training class: the baseline."""
    top = Counter(e.label for e in splits.train).most_common(1)[0][0]
    return sum(e.label == top for e in splits.dev) / max(1, len(splits.dev))


def class_weights(examples: list[Example], labels: LabelSet) -> np.ndarray:
    """Inverse training frequency, scaled so that the weights average 1 over the examples."""
    counts = np.bincount(labels.indices(examples), minlength=len(labels)).astype(float)
    return len(examples) / (len(labels) * np.maximum(counts, 1.0))


def build_engine(config: ClassifyConfig, vocab: Vocabulary, labels: LabelSet,
                 params: dict[str, np.ndarray] | None = None,
                 weights: np.ndarray | None = None) -> ClassifierEngine:
    return ClassifierEngine(graph_config(config, len(vocab), len(labels)), params,
                            class_weights=weights, **engine_settings(config))


def describe(engine: ClassifierEngine) -> str:
    c = engine.config
    return (f"{c.layers}-layer {'bidirectional ' if c.bidirectional else ''}{c.cell.upper()} "
            f"{c.hidden_dim}, {c.pooling} pooling, embedding {c.embed_dim} (under {engine.mode})")


def encode(examples: list[Example], vocab: Vocabulary) -> list[np.ndarray]:
    return [np.asarray([vocab.id(w) for w in e.words], dtype=np.int32) for e in examples]


def train_subwords(config: ClassifyConfig, train: list[Example]) -> Subwords | None:
    """The BPE model of ``--subwords N`` pieces, learned from the training sentences (None
    for whole words)."""
    n = config.model.subwords
    return Subwords.train([" ".join(e.words) for e in train], n, "bpe", "subwords") if n else None


def subwords_of(ckpt: Checkpoint) -> Subwords | None:
    """The checkpoint's BPE model, if it reads words as pieces."""
    if not ckpt.settings.model.subwords:
        return None
    try:
        return Subwords(ckpt.blobs["subwords.model"])
    except (KeyError, RuntimeError):
        raise UserError("the checkpoint has no usable subword model: it is damaged; retrain "
                        "it with rnn-theano train-classifier") from None


def in_pieces(examples: list[Example], subwords: Subwords | None) -> list[Example]:
    """The examples with their words cut into pieces (unchanged for whole words)."""
    if subwords is None:
        return examples
    return [Example(e.label, subwords.split(" ".join(e.words))) for e in examples]


def trainer_options(config: ClassifyConfig) -> TrainerOptions:
    return monitored_options(config, "accuracy")


@dataclass
class ClassifierTask(EngineTask):
    """The classifier and its batches, as the trainer sees them (``train.Trainable``)."""

    engine: ClassifierEngine
    vocab: Vocabulary
    labels: LabelSet
    batches: dict[str, ClassBatches]
    pretrained: WordVectors | None = None  # what a fresh model started from (LMStart too)
    subwords: Subwords | None = None  # how words become pieces (--subwords), else None

    def __post_init__(self) -> None:
        self.n_train_tokens = self.batches["train"].n_examples  # the progress bar counts rows
        self.has_test, self.unit = "test" in self.batches, "sentences"

    def train_steps(self, epoch: int) -> Iterator[Step]:
        for x, mask, labels in self.batches["train"].epoch(epoch):
            result = self.engine.train_step(x, mask, labels)
            yield Step(result.cost, result.n, result.correct)

    def evaluate(self, split: str) -> Score:
        """Summed cross-entropy, hits and the confusion matrix of ``split``."""
        cost = n = correct = 0.0
        confusion = np.zeros((len(self.labels), len(self.labels)), dtype=np.int64)
        for x, mask, labels in self.batches[split]:
            r = self.engine.eval_step(x, mask, labels)
            cost, n, correct = cost + r.cost, n + r.n, correct + r.correct
            np.add.at(confusion, (labels, r.predicted), 1)
        return Score(cost, n, correct, confusion)

    def class_names(self) -> tuple[str, ...]:
        return tuple(self.labels.labels)

    def blobs(self) -> dict[str, bytes]:
        return {"subwords.model": self.subwords.model} if self.subwords else {}


def make_task(config: ClassifyConfig, splits: LabelledSplits,
              resumed: Checkpoint | None) -> ClassifierTask:
    """The engine (fresh, or the resumed checkpoint's) and the batches of every split."""
    subwords = subwords_of(resumed) if resumed else train_subwords(config, splits.counted)
    named = {k: in_pieces(v or [], subwords)
             for k, v in (("train", splits.train), ("valid", splits.dev), ("test", splits.test))}
    if resumed:
        vocab, labels = resumed.vocab, LabelSet(tuple(resumed.labels))
        unseen = sorted({e.label for e in splits.train} - set(labels.labels))
        if unseen:
            raise UserError(f"the training data has labels the checkpoint was not trained "
                            f"on: {', '.join(unseen)}; train a new classifier")
    else:
        counted = (named["train"] if splits.counted is splits.train
                   else in_pieces(splits.counted, subwords))  # the phrases' sentences
        vocab = Vocabulary.build([e.words for e in counted], config.model.vocab_size,
                                 config.model.min_count)
        if not vocab.has_words:
            raise UserError(f"--min-count {config.model.min_count}: no training word is seen "
                            "that often; lower it")
        labels = splits.labels
    weights = class_weights(splits.train, labels) if config.train.class_weights else None
    engine = build_engine(config, vocab, labels, resumed.params if resumed else None, weights)
    pretrained = None
    if resumed:
        continue_from(engine, resumed, config.train.optimizer)
    elif config.data.embeddings:  # a resumed run has them in its checkpoint's embedding
        pretrained = start_embeddings(engine, vocab, config)
    elif config.data.init_from:
        pretrained = start_from_lm(engine, vocab, config)
    batches = {k: ClassBatches(encode(v, vocab), labels.indices(v), config.data.batch_size,
                               seed=config.train.seed, pad_multiple=engine.pad_multiple)
               for k, v in named.items() if v}
    return ClassifierTask(engine, vocab, labels, batches, pretrained, subwords)


def start_embeddings(engine: ClassifierEngine, vocab: Vocabulary,
                     config: ClassifyConfig) -> WordVectors:
    """Overwrite the fresh embedding rows of the vocabulary words that the ``--embeddings``
    file holds with their vectors; the other words keep their random rows."""
    found = read_vectors(config.data.embeddings, vocab, config.model.embed_dim,
                         lowercase=config.model.lowercase)
    _start_rows(engine, found)
    return found


def _start_rows(engine: ClassifierEngine, found: WordVectors) -> None:
    embed = engine.params["embed"]
    embed.set_value(found.apply(embed.get_value()).astype(embed.dtype))


@dataclass(frozen=True)
class LMStart(WordVectors):
    """What a fresh classifier took from a language model (``--init-from``): the embedding
    rows of the words it knows, as word vectors, and its recurrent weights."""

    weights: tuple[str, ...] = ()  # the recurrent parameters copied, by name

    def describe(self) -> str:
        return (f"{len(self.ids):,} of {self.n_words:,} vocabulary words and "
                f"{len(self.weights)} recurrent weights from the language model {self.path}")


def start_from_lm(engine: ClassifierEngine, vocab: Vocabulary,
                  config: ClassifyConfig) -> LMStart:
    """Overwrite the fresh embedding rows of the words the language model at
    ``--init-from`` knows with its rows, and every recurrent weight the two networks share
    (same name: the same direction and layer) with its values; the output layer and the
    weights it lacks (a deeper or bidirectional classifier's) keep their random start."""
    path = config.data.init_from
    ckpt = load_checkpoint(path, task="lm")
    arch, c = ckpt.settings.model.arch, engine.config
    fix = (f"train it with rnn-theano train --arch {c.cell} --embed-dim {c.embed_dim} "
           f"--hidden-dim {c.hidden_dim}, as this classifier")
    if arch != c.cell:
        raise UserError(f"--init-from {path} is a {arch} language model, the classifier a "
                        f"{c.cell} one: {fix}")
    encoder = re.compile(rf"({'|'.join(c.directions)})\d+_")
    weights = tuple(n for n in engine.params if encoder.match(n) and n in ckpt.params)
    for name in ("embed", *weights):
        have, want = ckpt.params[name].shape, engine.params[name].get_value().shape
        if have[-1] != want[-1] or (name != "embed" and have != want):
            raise UserError(f"--init-from {path}: its {name} is {have}, this classifier's "
                            f"{want}: {fix}")
    for name in weights:
        engine.params[name].set_value(ckpt.params[name].astype(c.dtype))
    wanted = word_ids(vocab)
    known = [w for w in wanted if w in ckpt.vocab]
    found = LMStart(np.asarray([wanted[w] for w in known], dtype=np.int64),
                    ckpt.params["embed"][[ckpt.vocab.id(w) for w in known]], len(wanted),
                    path, weights)
    _start_rows(engine, found)
    return found


class Predictor:
    """Class probabilities of raw sentences under a trained classifier's checkpoint."""

    def __init__(self, ckpt: Checkpoint) -> None:
        self.ckpt, self.labels = ckpt, LabelSet(tuple(ckpt.labels))
        config = loadable_settings(ckpt.settings)
        self.engine = build_engine(config, ckpt.vocab, self.labels, ckpt.params)
        self.lowercase = config.model.lowercase
        self.subwords = subwords_of(ckpt)

    def __call__(self, sentence: str) -> np.ndarray:
        """(K,) probabilities of the classes, in ``self.labels`` order."""
        return self._probs([self._ids(tokenize_words(sentence, self.lowercase))])[0]

    def explain(self, sentence: str) -> Explanation:
        """The sentence's probabilities, and for each of its words how much the predicted
        class's probability drops when the sentence is scored without that word (without all
        its pieces, under ``--subwords``).

        The sentence and its N leave-one-out variants go through the network as one batch.
        """
        words = tokenize_words(sentence, self.lowercase)
        each = [self._ids([w]) for w in words]  # a word's ids: its pieces under --subwords
        ids = np.concatenate(each)
        probs = self._probs([ids, *(np.concatenate(each[:i] + each[i + 1:] or [ids[:0]])
                                    for i in range(len(words)))])
        label = int(np.argmax(probs[0]))  # the first of equals, as classify's stable sort
        return Explanation(probs[0], label, words, probs[0, label] - probs[1:, label])

    def _ids(self, words: list[str]) -> np.ndarray:
        return encode(in_pieces([Example("", words)], self.subwords), self.ckpt.vocab)[0]

    def _probs(self, rows: list[np.ndarray]) -> np.ndarray:
        """(len(rows), K) class probabilities of the id sequences ``rows``, one batch.

        Under JAX each batch shape is a compile of its own, so the length is padded up to the
        engine's multiple, and so is the number of rows when there are several (with empty
        rows): an explanation's batch then has one of a few shapes, not one per sentence.
        """
        m = self.engine.pad_multiple
        x = np.zeros((max(m, round_up(max(map(len, rows)), m)),
                      1 if len(rows) == 1 else round_up(len(rows), m)), np.int32)
        mask = np.zeros(x.shape, np.float32)
        for b, ids in enumerate(rows):
            x[:len(ids), b], mask[:len(ids), b] = ids, 1.0
        return np.exp(self.engine.log_probs(x, mask)[:len(rows)].astype(np.float64))


class Explanation(NamedTuple):
    """What each word of a sentence does for the class it is given (``Predictor.explain``)."""

    probs: np.ndarray  # (K,) the sentence's class probabilities
    label: int         # the predicted class: the most probable
    words: list[str]   # the sentence's words as the model reads them (tokenized, lowercased)
    drops: np.ndarray  # (N,) p(label | sentence) - p(label | sentence without word i)


def read_sentences(path: str) -> list[str]:
    """The non-empty lines of a text file (UTF-8, else Windows-1252 or Latin-1)."""
    text, _ = labelled.decode(Path(path), None)
    return [line for line in text.splitlines() if line.strip()]
