"""Language modelling: models built from settings, and the task the trainer runs.

Two families of model, one task:

* the tutorial's ``RNNTheano``/``RNNNumpy`` (``--arch tutorial``): one sentence per SGD step,
  the loss summed over the sentence, the learning rate halved when the training loss rises;
* the minibatched ``LMEngine`` (``--arch rnn|relu|gru|lstm``): batches of sentences or stream
  windows, an optimizer on the mean loss per token, the best checkpoint by held-out loss.

``ModelSettings.arch`` says which; this module is the one place that branches on it. Both
are scored by the same metric (``metrics.Score``: summed cross-entropy and predicted tokens),
and both are driven by ``train.train`` through ``TutorialLM`` and ``EngineLM``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import backends
from ..checkpoint import Checkpoint
from ..config import ModelSettings, TrainConfig
from ..data.splits import Splits, make_batches, unigram_loss_of_batches
from ..data.stream import build_stream_vocabulary
from ..data.vocab import Vocabulary
from ..errors import UserError
from ..metrics import Score, unigram_loss
from ..sampling import NextWordProbs
from ..train import Schedule, Step, TrainerOptions
from ..tutorial.numpy_rnn import RNNNumpy
from ..tutorial.theano_rnn import RNNTheano
from .engine import EngineTask, engine_settings
from .lm_engine import LMEngine, batch_steps, evaluate_batches
from .lm_graph import LMConfig

TutorialModel = RNNNumpy | RNNTheano
Model = TutorialModel | LMEngine

# The training loss the tutorial's halving rule watches is scored on at most this many
# training sentences (the tutorial's notebook also checked its loss on 1,000 examples): a
# full pass over a large corpus would cost a third of an epoch at every evaluation.
TRAIN_EVAL_SENTENCES = 2000


# --- models -------------------------------------------------------------------------------

def graph_config(model: ModelSettings, vocab_size: int, seed: int) -> LMConfig:
    """The engine's graph settings: the model's own, with the vocabulary's real size."""
    return LMConfig(cell=model.arch, vocab_size=vocab_size,
                    embed_dim=model.embed_dim or model.hidden_dim, hidden_dim=model.hidden_dim,
                    layers=model.layers, bidirectional=model.bidirectional,
                    dropout=model.dropout, tie_weights=model.tie_weights,
                    no_bias=model.no_bias, forget_bias=model.forget_bias,
                    identity_init=model.identity_init, softmax_classes=model.softmax_classes,
                    seed=seed, variational_dropout=model.variational_dropout,
                    recurrent_dropout=model.recurrent_dropout, embed_dropout=model.embed_dropout,
                    weight_drop=model.weight_drop)


def check_model(config: TrainConfig) -> None:
    """Refuse an impossible network before any data is read (the real vocabulary may still be
    smaller than asked for; ``LMConfig`` checks again against it)."""
    if not config.model.is_tutorial:
        graph_config(config.model, config.model.vocab_size, config.train.seed)


def build_model(config: TrainConfig, vocab_size: int,
                params: dict[str, np.ndarray] | None = None) -> Model:
    """The model ``config`` describes, fresh (``params`` None) or with the given parameters."""
    model, seed = config.model, config.train.seed
    if model.is_tutorial:
        common = dict(word_dim=vocab_size, hidden_dim=model.hidden_dim,
                      bptt_truncate=model.bptt_truncate, truncation=model.truncation,
                      activation=model.activation, seed=seed, params=params)
        if model.impl == "numpy":
            return RNNNumpy(**common)
        return RNNTheano(**common, mode=backends.prepare(model.mode, fixed_shapes=False),
                         float32=model.float32)
    return LMEngine(graph_config(model, vocab_size, seed), params, **engine_settings(config))


def model_from_checkpoint(ckpt: Checkpoint, config: TrainConfig | None = None,
                          **model_overrides: Any) -> Model:
    """Rebuild the saved model, with the training settings of ``config`` (a resumed run) or
    the checkpoint's; ``model_overrides`` may change e.g. ``impl`` or ``mode``."""
    config = config or ckpt.settings
    model = dataclasses.replace(config.model, **{"mode": backends.loadable(config.model.mode),
                                                 **model_overrides})
    if model.is_tutorial:  # the engine checks its parameters' shapes itself
        _check_tutorial_params(ckpt)
    return build_model(dataclasses.replace(config, model=model), len(ckpt.vocab), ckpt.params)


def _check_tutorial_params(ckpt: Checkpoint) -> None:
    """U, V, W must fit the checkpoint's vocabulary and hidden size."""
    C, H = len(ckpt.vocab), ckpt.settings.model.hidden_dim
    for name, shape in {"U": (H, C), "V": (C, H), "W": (H, H)}.items():
        got = ckpt.params.get(name)
        if got is None or got.shape != shape:
            raise UserError(f"checkpoint parameter {name} has shape "
                            f"{None if got is None else got.shape}, expected {shape} for a "
                            f"vocabulary of {C} and hidden size {H}: the file is damaged, "
                            "retrain it")


def build_vocabulary(model: ModelSettings, train: list[list[str]]) -> Vocabulary:
    if model.stream:
        return build_stream_vocabulary(train, model.vocab_size)
    return Vocabulary.build(train, model.vocab_size)


def count_params(model: Model) -> int:
    if isinstance(model, LMEngine):
        return model.n_params()
    return sum(int(np.prod(p.shape)) for p in model.params().values())


def describe(model: Model, config: TrainConfig) -> str:
    """One line: the network and how it is trained."""
    if isinstance(model, LMEngine):
        arch = model.config
        return (f"{arch.layers}-layer {'bidirectional ' if arch.bidirectional else ''}"
                f"{arch.cell.upper()} {arch.hidden_dim} (engine under {model.mode}, "
                f"{config.train.optimizer}, {'stream' if config.model.stream else 'sentences'}, "
                f"batch {config.data.batch_size})")
    m = config.model
    return (f"{type(model).__name__} hidden {model.hidden_dim}, {m.activation}, "
            f"bptt-truncate {m.bptt_truncate} ({m.truncation})"
            + (f", under {model.mode}" if isinstance(model, RNNTheano) else ""))


def trainer_options(config: TrainConfig) -> TrainerOptions:
    """The tutorial's schedule and saving for its model; the engine's for the others."""
    train = config.train
    if config.model.is_tutorial:
        return TrainerOptions(train.epochs, config.lr, Schedule("tutorial"), keep_best=False,
                              eval_every=train.eval_every)
    schedule = (Schedule("decay", train.lr_decay, train.decay_after) if train.lr_decay < 1.0
                else Schedule("plateau"))
    return TrainerOptions(train.epochs, config.lr, schedule, patience=train.patience,
                          asgd=train.asgd)


# --- scoring --------------------------------------------------------------------------------

def tutorial_score(model: TutorialModel, pairs: list[tuple[np.ndarray, np.ndarray]]) -> Score:
    """Summed cross-entropy and predicted words of sentences (x, y), for the tutorial's model."""
    return Score(model.calculate_total_loss([x for x, _ in pairs], [y for _, y in pairs]),
                 sum(len(y) for _, y in pairs))


def score_sentences(model: Model, sentences: list[list[str]], vocab: Vocabulary,
                    config: TrainConfig, batch_size: int = 1) -> Score:
    """Perplexity of tokenized ``sentences`` under a trained model, either family."""
    if not isinstance(model, LMEngine):
        return tutorial_score(model, vocab.training_pairs(sentences))
    batches = make_batches(sentences, vocab, stream=config.model.stream, batch_size=batch_size,
                           bptt_len=config.data.bptt_len, pad_multiple=model.pad_multiple)
    return evaluate_batches(model, batches, config.model.stream)


# --- the trainer's view -------------------------------------------------------------------

@dataclass
class TutorialLM:
    """The tutorial's model and sentences, as the trainer sees them (``train.Trainable``)."""

    model: TutorialModel
    vocab: Vocabulary
    splits: dict[str, list[tuple[np.ndarray, np.ndarray]]]
    seed: int
    lr: float = 0.0

    def __post_init__(self) -> None:
        train = self.splits["train"]
        sample = np.random.default_rng(self.seed).permutation(len(train))[:TRAIN_EVAL_SENTENCES]
        self.train_sample = [train[i] for i in sample]
        self.n_train_tokens = sum(len(y) for _, y in train)
        self.has_test, self.unit = "test" in self.splits, "tokens"

    def train_steps(self, epoch: int) -> Iterator[Step]:
        train = self.splits["train"]
        # Seeded by epoch, so a resumed run visits sentences in the same order.
        for i in np.random.default_rng([self.seed, epoch]).permutation(len(train)):
            x, y = train[i]
            yield Step(float(self.model.sgd_step(x, y, self.lr)), len(y))

    def evaluate(self, split: str) -> Score:
        pairs = self.train_sample if split == "train" else self.splits[split]
        return tutorial_score(self.model, pairs)

    def set_learning_rate(self, lr: float) -> None:
        self.lr = lr

    def snapshot(self) -> dict[str, np.ndarray]:
        return {name: np.array(value) for name, value in self.model.params().items()}

    def restore(self, snapshot: dict[str, np.ndarray]) -> None:
        self.model.set_params(snapshot)

    def start_averaging(self) -> None:
        raise UserError("the tutorial's model trains without averaging")  # --asgd is refused

    def averaged(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def unigram_loss(self) -> float:
        return unigram_loss([y for _, y in self.splits["train"]],
                            [y for _, y in self.splits["valid"]], self.model.word_dim)

    def checkpoint(self, config: TrainConfig, state: dict) -> Checkpoint:
        return Checkpoint(self.model.params(), self.vocab, config, state)


@dataclass
class EngineLM(EngineTask):
    """The engine and its batches, as the trainer sees them (``train.Trainable``)."""

    engine: LMEngine
    vocab: Vocabulary
    batches: dict[str, Any]
    stream: bool

    def __post_init__(self) -> None:
        self.n_train_tokens = self.batches["train"].n_tokens
        self.has_test, self.unit = "test" in self.batches, "tokens"

    def train_steps(self, epoch: int) -> Iterator[Step]:
        train = self.batches["train"]
        for result in batch_steps(self.engine.train_step, train.epoch(epoch),
                                  carry_state=self.stream,
                                  initial_state=self.engine.initial_state(train.batch_size)):
            yield Step(result.cost, result.n_tokens)

    def evaluate(self, split: str) -> Score:
        return evaluate_batches(self.engine, self.batches[split], self.stream)

    def unigram_loss(self) -> float:
        return unigram_loss_of_batches(self.batches["train"], self.batches["valid"],
                                       self.engine.config.vocab_size)


def make_task(config: TrainConfig, splits: Splits, vocab: Vocabulary,
              model: Model) -> TutorialLM | EngineLM:
    """The trainer's view of ``model`` on ``splits``: its sentences, or its batches."""
    named = {"train": splits.train, "valid": splits.valid, "test": splits.test}
    named = {k: v for k, v in named.items() if v}
    if not isinstance(model, LMEngine):
        return TutorialLM(model, vocab, {k: vocab.training_pairs(v) for k, v in named.items()},
                          config.train.seed)
    batches = {k: make_batches(v, vocab, stream=config.model.stream, seed=config.train.seed,
                               batch_size=config.data.batch_size, bptt_len=config.data.bptt_len,
                               pad_multiple=model.pad_multiple) for k, v in named.items()}
    return EngineLM(model, vocab, batches, config.model.stream)


# --- generation -------------------------------------------------------------------------------

def next_word_probs(model: Model) -> NextWordProbs:
    """ids (T,) -> the model's distribution (C,) of the word after them (left to right)."""
    if isinstance(model, LMEngine):
        if model.config.bidirectional:
            raise UserError("a bidirectional model sees the words after the one it predicts, so "
                            "it cannot generate left to right: use fill-blank")
        return _IncrementalProbs(model)
    def probs(ids: np.ndarray) -> np.ndarray:
        o = model.forward_propagation(ids)  # RNNNumpy returns (o, s), RNNTheano o alone
        return (o[0] if isinstance(o, tuple) else o)[-1]
    return probs


class _IncrementalProbs:
    """The engine's next-word distribution, reading each word of a growing prefix once.

    A sampler asks for ids[:1], ids[:2], ... in turn. Feeding each new word as a (1, 1) batch
    from the state the previous words left makes a sentence cost one step per word instead
    of one pass over the whole prefix per word, and keeps one input shape: under JAX a
    new shape is a new compile.
    """

    def __init__(self, model: LMEngine) -> None:
        self.model = model
        self.ids = np.zeros(0, np.int32)  # the prefix read so far
        self.state = model.initial_state(1)
        self.log_p: np.ndarray | None = None  # (C,) after self.ids

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            raise ValueError("the prefix needs at least one word (the sentence start)")
        n, state, log_p = len(self.ids), self.state, self.log_p
        if not (len(ids) >= n and np.array_equal(ids[:n], self.ids)):
            n, state = 0, self.model.initial_state(1)  # another prefix: start again
        one = np.ones((1, 1), np.float32)
        for word in ids[n:]:
            x = np.full((1, 1), word, np.int32)
            log_p, state = self.model.log_probs(x, x, one, state)
            log_p = log_p[0, 0]
        # All three together, so that a call stopped halfway leaves a consistent cache.
        self.ids, self.state, self.log_p = np.array(ids, np.int32), state, log_p
        return np.exp(log_p.astype(np.float64))
