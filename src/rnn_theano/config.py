"""Typed settings: frozen dataclasses whose fields *are* the command-line flags.

``--vocab-size`` fills ``ModelSettings.vocab_size``, and so on: one spelling from the command
line to the checkpoint and back. A training run's settings are three sections:

* ``DataSettings``: what text is read and how it is cut into batches;
* ``ModelSettings``: what network is built, and how it reads text into ids (everything a
  checkpoint needs to rebuild and use the model; a resumed run keeps all of it);
* ``TrainSettings``: how it is trained and where the results go.

Each rule is checked once, in ``__post_init__``, raising ``SettingError`` under the field's
name; the command line shows it under the flag's name. Each field's metadata carries its help
text and choices, so the parser (``cli.py``) is derived from these classes, never hand-copied.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .backends import MODES, check_split, has_jax, resolve
from .data.corpus import FORMATS
from .data.labelled import FORMATS as LABELLED_FORMATS
from .data.parallel import SUBWORD_MODELS
from .errors import SettingError, UserError
from .nn.optimizers import OPTIMIZERS
from .tasks.asr_graph import ASR_CELLS
from .tasks.classify_graph import POOLINGS
from .tasks.lm_graph import check_rates
from .tasks.mt_graph import ATTENTIONS, INIT_STATES
from .tutorial.numpy_rnn import ACTIVATIONS, TRUNCATIONS

ARCHS = ("tutorial", "rnn", "relu", "gru", "lstm")
OPTIMIZER_NAMES = tuple(OPTIMIZERS)
# --learning-rate when not given: the tutorial's SGD, or per optimizer for the engine (SGD on
# the mean per-token loss, as PyTorch's word_language_model; RMSprop as the tutorial's part 4).
DEFAULT_LEARNING_RATES = {"tutorial": 0.005, "sgd": 1.0, "rmsprop": 0.001, "adam": 0.001}
IMPLEMENTATIONS = ("theano", "numpy")
BLANK = "___"


def flag(default: Any, help: str, choices: tuple | None = None, metavar: str | None = None,
         type: type = str, only: str | None = None) -> Any:
    """A dataclass field that also describes its command-line flag.

    ``type`` is only needed when the default is ``None``. ``only`` is ``tutorial`` or
    ``engine`` for a setting that only that family of models reads.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar,
                                            "type": type, "only": only})


def refuse_foreign(settings: Any, arch: str, family: str) -> None:
    """Refuse settings that only the other family of models reads, set to a non-default."""
    foreign = [f.name for f in dataclasses.fields(settings)
               if f.metadata["only"] not in (None, family)
               and getattr(settings, f.name) != f.default]
    if foreign:
        raise SettingError("arch", f"{arch} does not read {{others}}: drop "
                           f"{'them' if len(foreign) > 1 else 'it'}, or choose another arch",
                           tuple(foreign))


def check_fields(settings: Any) -> None:
    """Every field of the right type and among its choices, wherever the values came from
    (flags, a recipe file, a checkpoint)."""
    for f in dataclasses.fields(settings):
        value, meta = getattr(settings, f.name), f.metadata
        kind = type(f.default) if f.default is not None else meta["type"]
        if value is None and f.default is None:
            continue
        fits = (type(value) is bool if kind is bool else
                isinstance(value, (int, float)) and type(value) is not bool if kind is float else
                isinstance(value, kind) and type(value) is not bool if kind is int else
                isinstance(value, kind))
        if not fits:
            raise SettingError(f.name, f"must be {kind.__name__}, got {value!r}")
        if meta["choices"] and value not in meta["choices"]:
            raise SettingError(f.name, f"{value!r} is not one of {', '.join(meta['choices'])}")


def _at_most_one_of(settings: Any, a: str, b: str, required: bool) -> None:
    """Two settings that name the same thing two ways (a named dataset, or a file)."""
    given = bool(getattr(settings, a)) + bool(getattr(settings, b))
    if given == 2 or (required and not given):
        raise SettingError(a, "or {others} is needed, and only one of them" if required
                           else "and {others} cannot both be given: choose one", (b,))


def _fraction(settings: Any, name: str) -> None:
    """A share of the sentences held out: some, and less than half."""
    value = getattr(settings, name)
    if not 0.0 < value < 0.5:
        raise SettingError(name, f"must be between 0 and 0.5, got {value}")


def _positive(settings: Any, *names: str) -> None:
    for name in names:
        if not getattr(settings, name) > 0:
            raise SettingError(name, f"must be positive, got {getattr(settings, name)}")


def _not_negative(settings: Any, *names: str) -> None:
    for name in names:
        if getattr(settings, name) < 0:
            raise SettingError(name, f"cannot be negative (0 turns it off), got "
                               f"{getattr(settings, name)}")


class Backend:
    """What every engine model section does with its ``mode`` setting, the PyTensor backend."""

    is_tutorial: ClassVar[bool] = False
    family: ClassVar[str] = "engine"

    mode: str

    @property
    def arch(self) -> str:
        """The model's name in messages: its ``cell`` (translation, speech; the language model
        and the classifier have an ``arch`` setting instead)."""
        return self.cell  # type: ignore[attr-defined]

    def check_backend(self) -> None:
        """Refuse ``--mode JAX`` where jax is not installed: checked before training, never
        when a checkpoint is loaded (one trained under JAX runs under Numba without jax)."""
        if self.mode == "JAX" and not has_jax():
            raise SettingError("mode", "JAX needs the jax package: pip install -e '.[jax]'")


@dataclass(frozen=True)
class DataSettings:
    """What the model is trained and scored on, and how it is batched."""

    data: str | None = flag(None, "a CSV with a 'body' column, a text file, a one-sentence-per-"
                            "line file or a directory of .txt files (default: the built-in "
                            "corpus)", metavar="PATH")
    corpus: str | None = flag(None, "a named corpus instead of --data: ptb, shakespeare, reddit",
                              metavar="NAME")
    format: str = flag("auto", "how to read --data", FORMATS)
    data_dir: str | None = flag(None, "where named corpora and caches live "
                                "(default: $RNN_THEANO_DATA or ./data)", metavar="DIR")
    max_sentences: int = flag(0, "use only the first N sentences (0: all)", metavar="N")
    valid_fraction: float = flag(0.05, "fraction of sentences held out to score perplexity",
                                 metavar="F")
    valid: str | None = flag(None, "held-out file to score each epoch (instead of a random "
                             "--valid-fraction of the data)", metavar="PATH")
    test: str | None = flag(None, "file to score once training ends", metavar="PATH")
    batch_size: int = flag(1, "sentences (or stream columns) per step", metavar="B",
                           only="engine")
    bptt_len: int = flag(20, "window length in stream mode", metavar="T", only="engine")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "batch_size", "bptt_len")
        _not_negative(self, "max_sentences")
        _fraction(self, "valid_fraction")
        _at_most_one_of(self, "corpus", "data", required=False)

    def inputs(self) -> dict[str, str | None]:
        """The files the run reads, by setting."""
        return {"data": self.data, "valid": self.valid, "test": self.test}


# The language model's and the classifier's further dropouts (``lm_graph.SequenceDropout``).
_VARIATIONAL_HELP = ("draw each --dropout mask once per sequence, the same units dropped at "
                     "every step (Gal & Ghahramani)")
_RECURRENT_HELP = "dropout on the state fed back into each layer, one mask per sequence"
_EMBED_DROPOUT_HELP = "drop whole word types from the embedding for a batch"


@dataclass(frozen=True)
class ModelSettings(Backend):
    """The network, and how it reads text: what a checkpoint rebuilds the model from."""

    arch: str = flag("tutorial", "the model: the tutorial's RNN (one sentence per SGD step), "
                     "or the minibatched engine with an rnn, relu, gru or lstm cell", ARCHS)
    vocab_size: int = flag(8000, "the N-1 most frequent words plus the unknown-word token",
                           metavar="N")
    hidden_dim: int = flag(100, "size of the hidden state s_t", metavar="H")
    keep_case: bool = flag(False, "do not lowercase words")
    float32: bool = flag(False, "compute in float32 (the engine always does)", only="tutorial")
    mode: str = flag("AUTO", "PyTensor backend (AUTO: JAX for the engine when jax is installed, "
                     "else NUMBA)", MODES)
    # the tutorial's model
    impl: str = flag("theano", "theano: the PyTensor scan graph; numpy: the hand-written "
                     "reference", IMPLEMENTATIONS, only="tutorial")
    activation: str = flag("tanh", "f in s_t = f(U x_t + W s_{t-1})", ACTIVATIONS,
                           only="tutorial")
    bptt_truncate: int = flag(4, "steps each error flows back through time (-1: full BPTT)",
                              metavar="K", only="tutorial")
    truncation: str = flag("tutorial", "tutorial: every output's error flows back K steps; "
                           "scan: Theano's truncate_gradient, only the last K steps",
                           TRUNCATIONS, only="tutorial")
    # the engine
    layers: int = flag(1, "stacked recurrent layers (a deep RNN)", metavar="N", only="engine")
    bidirectional: bool = flag(False, "add a stack that reads right to left (predicts each "
                               "word from both sides; use fill-blank)", only="engine")
    embed_dim: int = flag(0, "word embedding size (0: the hidden size)", metavar="E",
                          only="engine")
    tie_weights: bool = flag(False, "share the embedding with the output layer (through a "
                             "linear projection when the top state has another size)",
                             only="engine")
    no_bias: bool = flag(False, "cells without biases", only="engine")
    forget_bias: float = flag(1.0, "initial bias of the LSTM's forget gate", metavar="F",
                              only="engine")
    identity_init: bool = flag(False, "start the relu cell's recurrent matrix at the identity "
                               "(Le et al. 2015)", only="engine")
    softmax_classes: int = flag(0, "class-based softmax with K classes of words in frequency "
                                "order (0: full softmax; about sqrt(C) is fastest)", metavar="K",
                                only="engine")
    dropout: float = flag(0.0, "dropout on non-recurrent connections", metavar="P",
                          only="engine")
    variational_dropout: bool = flag(False, _VARIATIONAL_HELP, only="engine")
    recurrent_dropout: float = flag(0.0, _RECURRENT_HELP, metavar="P", only="engine")
    embed_dropout: float = flag(0.0, _EMBED_DROPOUT_HELP, metavar="P", only="engine")
    weight_drop: float = flag(0.0, "drop each recurrent weight (each layer's Wh) with "
                              "probability P, one mask per batch for every step and row "
                              "(DropConnect: AWD-LSTM's weight drop)", metavar="P",
                              only="engine")
    stream: bool = flag(False, "read the corpus as one token stream with <eos> per line, state "
                        "carried across windows (the LM benchmark)", only="engine")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "hidden_dim", "layers")
        _not_negative(self, "embed_dim")
        if self.vocab_size < 3:
            raise SettingError("vocab_size", f"must be at least 3 (unknown word, sentence "
                               f"start, sentence end), got {self.vocab_size}")
        if self.arch not in ARCHS:
            raise SettingError("arch", f"{self.arch!r} is unknown: use one of {', '.join(ARCHS)}")
        refuse_foreign(self, self.arch, self.family)
        if self.bptt_truncate == 0 and self.truncation == "scan":
            raise SettingError("bptt_truncate", "0 with the scan truncation keeps no step of "
                               "the backward pass: use K >= 1, or -1 for full BPTT")
        if self.bptt_truncate < -1:
            raise SettingError("bptt_truncate", f"must be -1 (full BPTT) or at least 0, got "
                               f"{self.bptt_truncate}")
        if self.stream and self.bidirectional:
            raise SettingError("stream", "cannot train a bidirectional model: its backward "
                               "state cannot be carried across windows; train it on sentences")
        if self.mode == "JAX" and self.is_tutorial:
            raise SettingError("mode", "JAX needs fixed shapes, but the tutorial model runs one "
                               "sentence of any length per step: use NUMBA, CVM or FAST_COMPILE")


    @property
    def is_tutorial(self) -> bool:
        return self.arch == "tutorial"

    @property
    def family(self) -> str:
        """``tutorial`` or ``engine``: which settings apply (``flag(only=...)``)."""
        return "tutorial" if self.is_tutorial else "engine"

    @property
    def lowercase(self) -> bool:
        """Whether words are lowercased: the stream convention takes the text as it is."""
        return not (self.keep_case or self.stream)



@dataclass(frozen=True)
class TrainSettings:
    """How the model is trained, and where its results go."""

    optimizer: str = flag("sgd", "update rule", OPTIMIZER_NAMES, only="engine")
    learning_rate: float | None = flag(None, "step size (default: 0.005 for the tutorial model; "
                                       "engine: 1.0 sgd, 0.001 rmsprop and adam)", metavar="LR",
                                       type=float)
    lr_decay: float = flag(1.0, "multiply the learning rate by F each epoch after "
                           "--decay-after (1: instead halve it when held-out loss rises)",
                           metavar="F", only="engine")
    decay_after: int = flag(0, "epochs before --lr-decay starts", metavar="K", only="engine")
    clip_norm: float = flag(0.0, "clip the gradient to this global norm (0: off)", metavar="C",
                            only="engine")
    weight_decay: float = flag(0.0, "L2 penalty on weight matrices", metavar="L", only="engine")
    recurrent_lr_scale: float = flag(1.0, "the recurrent matrices' (Wh) learning rate as a "
                                     "multiple of --learning-rate", metavar="S", only="engine")
    patience: int = flag(0, "stop after N epochs without a better held-out loss (0: off)",
                         metavar="N", only="engine")
    eval_every: int = flag(1, "evaluate, adapt the learning rate and save every N epochs",
                           metavar="N", only="tutorial")
    asgd: int = flag(0, "average the parameters (NT-ASGD, Merity et al. 2017) from the first "
                     "evaluation whose held-out loss is worse than the best before the last N "
                     "(0: off); the averages are scored and saved", metavar="N", only="engine")
    epochs: int = flag(1, "passes over the training data", metavar="N")
    seed: int = flag(0, "random seed (initialisation, held-out split, order, dropout)",
                     metavar="N")
    blas_threads: int = flag(1, "threads for BLAS matrix products (0: the library's default)",
                             metavar="N")
    model_out: str = flag("checkpoints/rnn.npz", "checkpoint to write", metavar="PATH")
    log_json: str | None = flag(None, "rewrite this JSON file after every evaluation with the "
                                "settings and the per-epoch history (losses, perplexities, "
                                "learning rate, tokens/s, seconds)", metavar="PATH")
    resume: str | None = flag(None, "continue training from this checkpoint", metavar="PATH")
    devices: str = flag("1", "train data-parallel over N devices, the batch split evenly "
                        "(all: every device JAX sees; JAX backend)", metavar="N|all",
                        only="engine")
    coordinator: str | None = flag(None, "HOST:PORT where process 0 of a run over several "
                                   "processes listens (default: JAX_COORDINATOR_ADDRESS); "
                                   "every process runs the same command", metavar="HOST:PORT",
                                   only="engine")
    num_processes: int | None = flag(None, "processes of such a run (default: from the "
                                     "cluster's environment)", metavar="N", type=int,
                                     only="engine")
    process_id: int | None = flag(None, "this process's index, 0 to N-1; process 0 writes the "
                                  "checkpoint and log (default: from the cluster's "
                                  "environment)", metavar="I", type=int, only="engine")
    peer_timeout: int = flag(300, "in a run over several processes: the seconds joining, or "
                             "a training step, may take before the run stops with an error",
                             metavar="S", only="engine")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "epochs", "eval_every", "peer_timeout", "recurrent_lr_scale")
        if not (self.devices == "all" or self.devices.isdigit() and int(self.devices) > 0):
            raise SettingError("devices", f"must be a positive number or all, got "
                               f"{self.devices!r}")
        if self.num_processes is not None and self.num_processes < 1:
            raise SettingError("num_processes", f"must be positive, got {self.num_processes}")
        if self.process_id is not None and not (
                0 <= self.process_id < (self.num_processes or self.process_id + 1)):
            raise SettingError("process_id", f"must be 0 to --num-processes - 1, got "
                               f"{self.process_id}")
        _not_negative(self, "clip_norm", "weight_decay", "patience", "decay_after",
                      "blas_threads", "asgd")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise SettingError("learning_rate", f"must be positive, got {self.learning_rate}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise SettingError("lr_decay", f"must be in (0, 1], got {self.lr_decay}")

    def lr(self, model: ModelSettings) -> float:
        """The learning rate given, or the default for this model and optimizer."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES["tutorial" if model.is_tutorial else self.optimizer]


def _same_file(a: str, b: str) -> bool:
    return Path(a).resolve() == Path(b).resolve()


class RunConfig:
    """What every training run's settings share: sections named ``data``, ``model`` and
    ``train`` (the dataclass fields of the subclass), the rules across them, and their JSON
    form. ``task`` names the kind of run in a checkpoint."""

    task: ClassVar[str]
    data: Any
    model: Any
    train: TrainSettings

    @classmethod
    def sections(cls) -> dict[str, type]:
        return {f.name: f.default_factory for f in dataclasses.fields(cls)}  # type: ignore

    def __post_init__(self) -> None:
        for section in (self.data, self.train):
            refuse_foreign(section, self.model.arch, self.model.family)
        self._refuse_overwriting_inputs()

    def check_devices(self) -> None:
        """The devices and processes a training run asks for: checked when it starts, never
        when a checkpoint is loaded (its run's devices are not the loader's)."""
        t = self.train
        if (t.num_processes or t.process_id) and not (
                t.coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")):
            raise SettingError("coordinator", "is needed with --num-processes and "
                               "--process-id: give process 0's HOST:PORT (or set "
                               "JAX_COORDINATOR_ADDRESS)")
        several = t.devices != "1" or t.coordinator or t.num_processes or t.process_id
        if several and resolve(self.model.mode, fixed_shapes=True) != "JAX":
            raise SettingError("devices", "needs the JAX backend to train over several devices "
                               "or processes: use --mode JAX (or AUTO with jax installed)")
        if t.devices.isdigit():
            check_split(self.data.batch_size, int(t.devices))

    def _refuse_overwriting_inputs(self) -> None:
        """The files a run writes must not be the files it reads (nor each other)."""
        inputs = self.data.inputs() | {"resume": self.train.resume}
        outputs = {"model_out": self.train.model_out, "log_json": self.train.log_json}
        for out_name, out in outputs.items():
            for in_name, path in inputs.items():
                if out and path and _same_file(out, path) and not (out_name, in_name) == (
                        "model_out", "resume"):
                    raise SettingError(out_name, f"{out} is also the {{others}} file: "
                                       "writing it would destroy it; choose another path",
                                       (in_name,))
        if outputs["log_json"] and _same_file(outputs["log_json"], outputs["model_out"]):
            raise SettingError("log_json", "is the same file as {others}: choose another "
                               "path", ("model_out",))

    @property
    def lr(self) -> float:
        return self.train.lr(self.model)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """JSON-able, by section: what a checkpoint and a run log record."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in self.sections()}

    @classmethod
    def from_dict(cls, d: dict[str, dict[str, Any]]) -> Any:
        """The settings ``to_dict`` wrote; an unknown key is an error, a missing one a default."""
        return cls(**{name: section_from_dict(kind, d.get(name, {}))
                      for name, kind in cls.sections().items()})


@dataclass(frozen=True)
class TrainConfig(RunConfig):
    """Everything ``rnn-theano train`` can be told, by section."""

    task: ClassVar[str] = "lm"
    data: DataSettings = field(default_factory=DataSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


SECTIONS = TrainConfig.sections()


# --- sentence classification ------------------------------------------------------------

@dataclass(frozen=True)
class ClassifyDataSettings:
    """The labelled sentences a classifier is trained, tuned and tested on."""

    dataset: str | None = flag(None, "a named dataset: sst2, sst5, trec, mr (downloaded into "
                               "--data-dir when absent)", metavar="NAME")
    train: str | None = flag(None, "training file of your own instead of --dataset",
                             metavar="PATH")
    dev: str | None = flag(None, "held-out file for early stopping (default: a --dev-fraction "
                           "of the training file)", metavar="PATH")
    test: str | None = flag(None, "test file, scored once with the kept model", metavar="PATH")
    format: str = flag("auto", "labelled: 'LABEL TEXT' lines; csv: label and text columns; "
                       "trees: a labelled tree a line (auto: by a .csv suffix or a first '(')",
                       LABELLED_FORMATS)
    phrases: bool = flag(False, "train on every labelled phrase of the training sentences' "
                         "trees, the Stanford Sentiment Treebank's protocol, as Kim (2014) "
                         "trained (sst2, sst5: the treebank is downloaded; or a --train file "
                         "of trees); dev and test stay whole sentences")
    data_dir: str | None = flag(None, "where named datasets live (default: $RNN_THEANO_DATA "
                                "or ./data)", metavar="DIR")
    encoding: str | None = flag(None, "the files' encoding, e.g. latin-1 (default: UTF-8, "
                                "else Windows-1252, found per file)", metavar="NAME")
    dev_fraction: float = flag(0.1, "fraction of training sentences held out when there is no "
                               "dev file", metavar="F")
    folds: int = flag(0, "cross-validation folds when there is no test split (0: the "
                      "dataset's protocol, 10 for mr)", metavar="K")
    fold: int = flag(0, "which cross-validation fold is the test set", metavar="I")
    cross_validate: bool = flag(False, "train and test once per fold (every --fold in turn), "
                                "fold I's model in MODEL_OUT with .foldI before its suffix; "
                                "report the mean and standard deviation. Run again after an "
                                "interruption: finished folds are kept")
    batch_size: int = flag(32, "sentences per step", metavar="B")
    # Read only when a fresh model starts: a resumed run has its embeddings in the checkpoint.
    embeddings: str | None = flag(None, "start the embeddings of the vocabulary words found "
                                  "in this word2vec or GloVe text file (.gz too; its vectors "
                                  "must have --embed-dim numbers); the others start random. "
                                  "A resumed run keeps its checkpoint's", metavar="FILE")
    init_from: str | None = flag(None, "start the embedding rows of the words it knows and the "
                                 "recurrent stacks from this language model (rnn-theano train "
                                 "with the same --arch, --embed-dim, --hidden-dim; "
                                 "--bidirectional for the backward stack too), trained on "
                                 "text of the task's kind; the others start random",
                                 metavar="LM.npz")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "batch_size")
        _fraction(self, "dev_fraction")
        if self.folds == 1 or self.fold < 0 or self.fold >= (self.folds or 10):
            raise SettingError("fold", f"must be in [0, folds), with at least 2 folds; got "
                               f"fold {self.fold} of {self.folds or 10}")
        _at_most_one_of(self, "dataset", "train", required=True)
        _at_most_one_of(self, "embeddings", "init_from", required=False)

    def inputs(self) -> dict[str, str | None]:
        return {"train": self.train, "dev": self.dev, "test": self.test,
                "embeddings": self.embeddings, "init_from": self.init_from}


@dataclass(frozen=True)
class ClassifierSettings(Backend):
    """The classifier network, and how it reads text: what a checkpoint rebuilds it from."""

    arch: str = flag("lstm", "recurrent cell", ARCHS[1:])
    vocab_size: int = flag(20000, "vocabulary size: the most frequent training words and the "
                           "unknown-word token (and the two sentence markers)", metavar="N")
    min_count: int = flag(1, "words seen fewer than N times in training (with --phrases, in "
                          "the training sentences) are read as the unknown word, whose vector "
                          "then learns what rare words say",
                          metavar="N")
    subwords: int = flag(0, "read words as BPE pieces, about N kinds learned from the training "
                         "sentences, so that a rare word shares its parts' vectors (0: whole "
                         "words; --vocab-size and --min-count then count pieces)", metavar="N")
    embed_dim: int = flag(300, "word embedding size", metavar="E")
    embed_init: float = flag(1.0, "embeddings start Uniform(-A, A): large next to Adam's "
                             "steps, so that the words' vectors stay near random ones",
                             metavar="A")
    hidden_dim: int = flag(150, "state size of each direction", metavar="H")
    layers: int = flag(1, "stacked recurrent layers", metavar="N")
    bidirectional: bool = flag(True, "add a stack that reads right to left")
    pooling: str = flag("max", "the sentence as its final state(s), or the mean, max or "
                        "attention-weighted mean over time of the top states", POOLINGS)
    dropout: float = flag(0.5, "dropout on the embeddings and the sentence vector", metavar="P")
    word_dropout: float = flag(0.0, "in training, leave out each word of a sentence with "
                               "probability P (its whole embedding zeroed)", metavar="P")
    variational_dropout: bool = flag(False, _VARIATIONAL_HELP)
    recurrent_dropout: float = flag(0.0, _RECURRENT_HELP, metavar="P")
    embed_dropout: float = flag(0.0, _EMBED_DROPOUT_HELP, metavar="P")
    adversarial: float = flag(0.0, "adversarial training: also train on each sentence with "
                              "its embedded words moved a distance A the way that raises its "
                              "cost most (0: off)", metavar="A")
    keep_case: bool = flag(False, "do not lowercase words")
    mode: str = flag("AUTO", "PyTensor backend (AUTO: JAX when jax is installed, else NUMBA)",
                     MODES)

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "embed_dim", "hidden_dim", "layers", "min_count")
        if self.vocab_size < 4:
            raise SettingError("vocab_size", f"must be at least 4 (a word, the unknown word "
                               f"and the two sentence markers), got {self.vocab_size}")
        _not_negative(self, "subwords")
        check_rates(self, "dropout")

    @property
    def lowercase(self) -> bool:
        return not self.keep_case



@dataclass(frozen=True)
class AdamTrainSettings(TrainSettings):
    """``TrainSettings`` with the defaults of the models beyond the language model: Adam at a
    constant rate, the gradient clipped."""

    optimizer: str = flag("adam", "update rule", OPTIMIZER_NAMES)
    clip_norm: float = flag(5.0, "clip the gradient to this global norm (0: off)", metavar="C")
    lr_decay: float = flag(1.0, "multiply the learning rate by F each epoch after "
                           "--decay-after (1: a constant rate)", metavar="F")


@dataclass(frozen=True)
class ClassifierTrainSettings(AdamTrainSettings):
    """``TrainSettings`` with a classifier's defaults: Adam, early stopping on dev accuracy."""

    epochs: int = flag(10, "passes over the training data", metavar="N")
    patience: int = flag(3, "stop after N epochs without a better dev accuracy (0: off)",
                         metavar="N")
    class_weights: bool = flag(False, "weight each class's loss by the inverse of its training "
                               "frequency")
    model_out: str = flag("checkpoints/classifier.npz", "checkpoint to write", metavar="PATH")


@dataclass(frozen=True)
class ClassifyConfig(RunConfig):
    """Everything ``rnn-theano train-classifier`` can be told, by section."""

    data: ClassifyDataSettings = field(default_factory=ClassifyDataSettings)
    model: ClassifierSettings = field(default_factory=ClassifierSettings)
    train: ClassifierTrainSettings = field(default_factory=ClassifierTrainSettings)
    task: ClassVar[str] = "classify"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.subwords and (self.data.embeddings or self.data.init_from):
            raise SettingError("subwords", "cannot start from --embeddings or --init-from, "
                               "whose vectors are of whole words: leave out one or the other")


# --- translation -----------------------------------------------------------------------------

MONITORS = ("bleu", "loss")


@dataclass(frozen=True)
class MTDataSettings:
    """The parallel text a translation model is trained, tuned and tested on."""

    corpus: str | None = flag(None, "a named parallel corpus: multi30k (downloaded into "
                              "--data-dir when absent)", metavar="NAME")
    src_lang: str = flag("de", "source language: the suffix of the corpus's files",
                         metavar="LANG")
    tgt_lang: str = flag("en", "target language", metavar="LANG")
    test_set: str = flag("test_2016_flickr", "the named corpus's test set (multi30k also "
                         "publishes test_2017_flickr, test_2017_mscoco, test_2018_flickr)",
                         metavar="NAME")
    train_src: str | None = flag(None, "training source file of your own instead of --corpus "
                                 "(one sentence per line, .gz too)", metavar="PATH")
    train_tgt: str | None = flag(None, "its translations, line by line", metavar="PATH")
    valid_src: str | None = flag(None, "held-out source file (for your own data)",
                                 metavar="PATH")
    valid_tgt: str | None = flag(None, "its translations", metavar="PATH")
    test_src: str | None = flag(None, "test source file, translated once with the kept model",
                                metavar="PATH")
    test_tgt: str | None = flag(None, "its reference translations", metavar="PATH")
    data_dir: str | None = flag(None, "where named corpora live (default: $RNN_THEANO_DATA or "
                                "./data)", metavar="DIR")
    max_length: int = flag(80, "the longest sentence in subwords: longer training pairs are "
                           "left out, longer input to translate is cut", metavar="N")
    batch_size: int = flag(64, "sentence pairs per step", metavar="B")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "batch_size", "max_length")
        _at_most_one_of(self, "corpus", "train_src", required=True)
        for a, b in (("train_src", "train_tgt"), ("valid_src", "valid_tgt"),
                     ("test_src", "test_tgt")):
            if bool(getattr(self, a)) != bool(getattr(self, b)):
                raise SettingError(a, "and {others} go together: give both", (b,))
        if self.train_src and not self.valid_src:
            raise SettingError("valid_src", "and --valid-tgt are needed with --train-src: a "
                               "held-out pair of files to choose the best model on")
        if self.corpus and (self.valid_src or self.test_src):
            raise SettingError("corpus", "has its own validation and test sets: drop "
                               "{others}, or give your own --train-src as well",
                               ("valid_src" if self.valid_src else "test_src",))
        for name in ("src_lang", "tgt_lang", "test_set"):
            if not re.fullmatch(r"[A-Za-z0-9_]+", getattr(self, name)):
                raise SettingError(name, f"{getattr(self, name)!r} is not a name of the "
                                   "corpus's files: letters, digits and _ only")
        if self.src_lang == self.tgt_lang:
            raise SettingError("tgt_lang", f"is the source language too ({self.src_lang}): "
                               "choose two languages")

    def inputs(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in ("train_src", "train_tgt", "valid_src",
                                                       "valid_tgt", "test_src", "test_tgt")}


@dataclass(frozen=True)
class MTModelSettings(Backend):
    """The encoder-decoder, and how it cuts text: what a checkpoint rebuilds it from."""

    cell: str = flag("gru", "recurrent cell of the encoder and the decoder", ("gru", "lstm"))
    subwords: str = flag("bpe", "sentencepiece model of each language, trained on its training "
                         "side (word: whole words, the rarest as unknown)", SUBWORD_MODELS)
    src_vocab_size: int = flag(8000, "source vocabulary size (pieces; fewer when the text has "
                               "fewer)", metavar="N")
    tgt_vocab_size: int = flag(8000, "target vocabulary size", metavar="N")
    embed_dim: int = flag(256, "word embedding size (both sides)", metavar="E")
    hidden_dim: int = flag(256, "encoder state size of each direction", metavar="H")
    layers: int = flag(1, "stacked encoder layers", metavar="N")
    bidirectional: bool = flag(True, "the encoder reads both ways (--no-bidirectional: left to "
                               "right only)")
    decoder_dim: int = flag(512, "decoder state size", metavar="D")
    attention: str = flag("additive", "additive (Bahdanau), general or dot (Luong)",
                          ATTENTIONS)
    attention_dim: int = flag(512, "hidden size of additive attention", metavar="A")
    init_state: str = flag("mean", "the decoder's first state from the mean of the encoder "
                           "states, or from its final states", INIT_STATES)
    tie_embeddings: bool = flag(False, "share the target embedding with the output layer")
    dropout: float = flag(0.3, "dropout on embeddings, between layers and before the output "
                          "layer", metavar="P")
    label_smoothing: float = flag(0.1, "train towards (1-P) on the reference word and P spread "
                                  "over the vocabulary", metavar="P")
    mode: str = flag("AUTO", "PyTensor backend (AUTO: JAX when jax is installed, else NUMBA)",
                     MODES)

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "embed_dim", "hidden_dim", "layers", "decoder_dim", "attention_dim")
        for name in ("src_vocab_size", "tgt_vocab_size"):
            if getattr(self, name) < 8:
                raise SettingError(name, f"must be at least 8, got {getattr(self, name)}")
        check_rates(self, "dropout")


@dataclass(frozen=True)
class MTTrainSettings(AdamTrainSettings):
    """``TrainSettings`` with a translation model's defaults: Adam, clipping, early stopping
    on the validation BLEU, and how validation and test sentences are decoded."""

    epochs: int = flag(10, "passes over the training data", metavar="N")
    patience: int = flag(3, "stop after N epochs without a better --monitor (0: off)",
                         metavar="N")
    clip_norm: float = flag(1.0, "clip the gradient to this global norm (0: off)", metavar="C")
    monitor: str = flag("bleu", "what picks the best epoch: validation BLEU (greedy, or "
                        "--valid-beam) or validation loss", MONITORS)
    valid_beam: int = flag(1, "beam size of the validation translations (1: greedy)",
                           metavar="K")
    beam: int = flag(5, "beam size of the final test translations (greedy is reported too)",
                     metavar="K")
    length_penalty: float = flag(1.0, "beam search ranks by log-probability / length^P",
                                 metavar="P")
    model_out: str = flag("checkpoints/translator.npz", "checkpoint to write", metavar="PATH")

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "valid_beam", "beam")
        _not_negative(self, "length_penalty")


@dataclass(frozen=True)
class MTConfig(RunConfig):
    """Everything ``rnn-theano train-mt`` can be told, by section."""

    data: MTDataSettings = field(default_factory=MTDataSettings)
    model: MTModelSettings = field(default_factory=MTModelSettings)
    train: MTTrainSettings = field(default_factory=MTTrainSettings)
    task: ClassVar[str] = "mt"


# --- speech recognition ----------------------------------------------------------------------

SPEECH_DATASETS = ("fsdd",)
NORMALISATIONS = ("utterance", "speaker", "dataset")

@dataclass(frozen=True)
class AsrDataSettings:
    """The recordings a recogniser is trained and tested on, and the digit strings and
    augmentation made from them."""

    dataset: str = flag("fsdd", "named dataset of recordings (downloaded into --data-dir when "
                        "absent)", SPEECH_DATASETS)
    data_dir: str | None = flag(None, "where named datasets live (default: $RNN_THEANO_DATA or "
                                "./data)", metavar="DIR")
    feature_cache: str | None = flag(None, "where each recording's features are kept "
                                     "(default: features/ beside the recordings; a read-only "
                                     "place computes them every time)", metavar="DIR")
    test_speaker: str | None = flag(None, "speaker-independent split: test on every recording "
                                    "of this speaker, train on the others (default: the "
                                    "official split, repetitions 0-4 are the test set)",
                                    metavar="NAME")
    strings_per_epoch: int = flag(3000, "digit strings of 2 to --max-digits digits made afresh "
                                  "each epoch, besides every isolated training recording",
                                  metavar="N")
    max_digits: int = flag(7, "the longest digit string", metavar="N")
    eval_strings: int = flag(100, "validation and test strings of each length from 3 to "
                             "--max-digits", metavar="N")
    gap_min_ms: float = flag(50.0, "shortest pause before, between and after the digits of a "
                             "string", metavar="MS")
    gap_max_ms: float = flag(300.0, "longest pause", metavar="MS")
    noise: float = flag(0.01, "noise in the pauses, relative to the string's RMS level",
                        metavar="A")
    speed: float = flag(0.0, "speed perturbation of training audio: each recording resampled "
                        "by a factor in [1-S, 1+S] (0: off)", metavar="S")
    vtlp: float = flag(0.0, "vocal tract length perturbation of training audio: each "
                       "utterance's spectrum stretched by a factor in [1-A, 1+A] below a knee "
                       "at 80%% of the Nyquist frequency (0: off)", metavar="A")
    time_masks: int = flag(0, "SpecAugment: training frames masked in N blocks per utterance",
                           metavar="N")
    time_mask_frames: int = flag(10, "longest time mask", metavar="F")
    freq_masks: int = flag(0, "SpecAugment: mel bands masked in N blocks per utterance",
                           metavar="N")
    freq_mask_bands: int = flag(8, "widest frequency mask", metavar="M")
    batch_size: int = flag(32, "utterances per step", metavar="B")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "max_digits", "eval_strings", "batch_size", "gap_max_ms",
                  "time_mask_frames", "freq_mask_bands")
        _not_negative(self, "strings_per_epoch", "gap_min_ms", "noise", "time_masks",
                      "freq_masks")
        if self.max_digits < 3:
            raise SettingError("max_digits", f"must be at least 3 (test strings have 3 or "
                               f"more digits), got {self.max_digits}")
        if self.gap_min_ms > self.gap_max_ms:
            raise SettingError("gap_min_ms", f"{self.gap_min_ms} is more than {{others}} "
                               f"{self.gap_max_ms}", ("gap_max_ms",))
        for name in ("speed", "vtlp"):
            if not 0.0 <= getattr(self, name) < 0.5:
                raise SettingError(name, f"must be in [0, 0.5), got {getattr(self, name)}")

    def inputs(self) -> dict[str, str | None]:
        return {}


@dataclass(frozen=True)
class AsrModelSettings(Backend):
    """The recogniser and the features it hears: what a checkpoint rebuilds it from."""

    cell: str = flag("gru", "recurrent cell of every layer", ASR_CELLS)
    sample_rate: int = flag(8000, "audio is resampled to this rate (Hz)", metavar="HZ")
    n_mels: int = flag(40, "log-mel filterbank bands per 25 ms frame, every 10 ms",
                       metavar="N")
    deltas: bool = flag(False, "add each band's first and second differences over time")
    normalise: str = flag("utterance", "scale each feature to zero mean and unit variance "
                          "over each utterance, over each speaker's recordings (a new "
                          "speaker's: all its audio there is, unlabelled), or with the "
                          "training set's statistics", NORMALISATIONS)
    proj_dim: int = flag(128, "input projection size", metavar="P")
    hidden_dim: int = flag(128, "state size of each direction", metavar="H")
    layers: int = flag(2, "stacked bidirectional layers", metavar="N")
    subsample: int = flag(1, "halve the frame rate this many times, between the first layers",
                          metavar="N")
    dropout: float = flag(0.1, "dropout between layers and before the output layer",
                          metavar="P")
    mode: str = flag("AUTO", "PyTensor backend (AUTO: JAX when jax is installed, else NUMBA)",
                     MODES)

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "sample_rate", "n_mels", "proj_dim", "hidden_dim", "layers")
        _not_negative(self, "subsample")
        check_rates(self, "dropout")


@dataclass(frozen=True)
class AsrTrainSettings(AdamTrainSettings):
    """``TrainSettings`` with a recogniser's defaults: Adam, clipping, early stopping on the
    validation digit error rate, and the beam of the final test transcriptions."""

    epochs: int = flag(20, "passes over the training data", metavar="N")
    patience: int = flag(5, "stop after N epochs without a lower validation digit error "
                         "rate (0: off)", metavar="N")
    beam: int = flag(8, "prefix beam size of the final test transcriptions (greedy is "
                     "reported too)", metavar="K")
    model_out: str = flag("checkpoints/recogniser.npz", "checkpoint to write", metavar="PATH")

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "beam")


@dataclass(frozen=True)
class AsrConfig(RunConfig):
    """Everything ``rnn-theano train-asr`` can be told, by section."""

    data: AsrDataSettings = field(default_factory=AsrDataSettings)
    model: AsrModelSettings = field(default_factory=AsrModelSettings)
    train: AsrTrainSettings = field(default_factory=AsrTrainSettings)
    task: ClassVar[str] = "asr"


@dataclass(frozen=True)
class TranscribeConfig:
    """Everything ``rnn-theano transcribe`` can be told."""

    files: tuple[str, ...] = flag((), "WAV files to transcribe; a folder: every .wav in it",
                                  metavar="FILE")
    model: str = flag("checkpoints/recogniser.npz", "checkpoint written by train-asr",
                      metavar="PATH")
    beam: int = flag(1, "prefix beam size (1: greedy, the best path)", metavar="K")
    plot: str | None = flag(None, "draw the first file with sound: its features and the label "
                            "posteriors per frame (CTC's spikes) into this PNG file (needs "
                            "matplotlib)", metavar="FILE")

    def __post_init__(self) -> None:
        _positive(self, "beam")
        if not self.files:
            raise SettingError("files", "are required: the WAV files (or folders) to "
                               "transcribe")


RUN_CONFIGS: dict[str, type] = {c.task: c for c in (TrainConfig, ClassifyConfig, MTConfig,
                                                   AsrConfig)}


@dataclass(frozen=True)
class TranslateConfig:
    """Everything ``rnn-theano translate`` can be told."""

    file: str | None = flag(None, "sentences to translate, one per line (default: standard "
                            "input); an empty line gives an empty line", metavar="FILE")
    model: str = flag("checkpoints/translator.npz", "checkpoint written by train-mt",
                      metavar="PATH")
    beam: int = flag(5, "beam size (1: greedy)", metavar="K")
    nbest: int = flag(1, "print the N best translations of each line, each as "
                      "'I<TAB>SCORE<TAB>TEXT' (I the line's number from 0, SCORE its "
                      "log-probability)", metavar="N")
    length_penalty: float = flag(1.0, "beam search ranks by log-probability / length^P",
                                 metavar="P")
    max_ratio: float = flag(2.0, "translations stop at R times the source's length in "
                            "subwords, plus 10", metavar="R")
    reference: str | None = flag(None, "reference translations, line by line: print "
                                 "sacreBLEU (cased and lowercased) on standard error",
                                 metavar="FILE")
    show_attention: str | None = flag(None, "draw the first sentence's attention as a heat "
                                      "map into this PNG file (needs matplotlib)",
                                      metavar="FILE")
    refuse_long: bool = flag(False, "stop with an error on a line longer than the model's "
                             "maximum, instead of cutting it with a warning")
    batch_size: int = flag(32, "sentences translated at once", metavar="B")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "beam", "nbest", "max_ratio", "batch_size")
        _not_negative(self, "length_penalty")
        if self.nbest > self.beam:
            raise SettingError("nbest", f"{self.nbest} is more than --beam {self.beam} "
                               "keeps: raise --beam")


@dataclass(frozen=True)
class ClassifyTextConfig:
    """Everything ``rnn-theano classify`` can be told."""

    file: str | None = flag(None, "sentences to classify, one per line (default: standard "
                            "input)", metavar="FILE")
    model: str = flag("checkpoints/classifier.npz", "checkpoint written by train-classifier",
                      metavar="PATH")
    top_k: int = flag(1, "how many classes to print per sentence, most probable first",
                      metavar="K")
    explain: bool = flag(False, "after each sentence's line, one line per word, in order: two "
                         "spaces, WORD, a tab, DROP, e.g. 'great<TAB>+0.4123'; DROP is how "
                         "much the top class's probability drops when the sentence is scored "
                         "without that word (negative: leaving it out raises it)")

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "top_k")


def section_from_dict(kind: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"unknown settings {', '.join(unknown)}: written by another version "
                        "of rnn-theano, or misspelt")
    return kind(**values)


@dataclass(frozen=True)
class GenerateConfig:
    """Everything ``rnn-theano generate`` can be told. Defaults are the tutorial's."""

    model: str = flag("checkpoints/rnn.npz", "checkpoint written by train", metavar="PATH")
    num_sentences: int = flag(10, "how many sentences to print", metavar="N")
    min_length: int = flag(7, "keep only sentences of at least N words (the tutorial's 7)",
                           metavar="N")
    max_length: int = flag(60, "give up on a sentence longer than N words and draw another",
                           metavar="N")
    temperature: float = flag(1.0, "below 1: safer, more repetitive; above 1: more surprising",
                              metavar="T")
    prime: str | None = flag(None, "start every sentence with these words", metavar="TEXT")
    seed: int | None = flag(None, "random seed for reproducible samples", metavar="N", type=int)

    def __post_init__(self) -> None:
        check_fields(self)
        _positive(self, "num_sentences", "temperature", "min_length")
        if self.max_length < self.min_length:
            raise SettingError("max_length", f"must be at least --min-length, got "
                               f"{self.max_length} < {self.min_length}")


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything ``rnn-theano evaluate`` can be told."""

    model: str = flag("checkpoints/rnn.npz", "checkpoint to score", metavar="PATH")
    data: str = flag("", "text to score, read like train --data", metavar="PATH")
    format: str = flag("auto", "how to read --data", FORMATS)
    batch_size: int = flag(1, "sequences scored at once (stream models: columns; 1 is the "
                           "standard benchmark setting)", metavar="B")

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.data:
            raise SettingError("data", "is required: the text to score")
        _positive(self, "batch_size")


@dataclass(frozen=True)
class FillBlankConfig:
    """Everything ``rnn-theano fill-blank`` can be told."""

    text: str = flag("", "a sentence with one ___ where the missing word goes", metavar="TEXT")
    model: str = flag("checkpoints/birnn.npz", "checkpoint (a bidirectional model sees both "
                      "sides of the blank)", metavar="PATH")
    top_k: int = flag(10, "how many candidate words to print", metavar="K")

    def __post_init__(self) -> None:
        if self.text.count(BLANK) != 1:
            raise UserError(f"the text must contain exactly one {BLANK} marking the missing "
                            f"word, e.g. \"the cat sat on the {BLANK} .\"")
        _positive(self, "top_k")
