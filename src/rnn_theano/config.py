"""Settings as frozen dataclasses whose fields *are* the command-line flags.

``--vocab-size`` fills ``vocab_size``, and so on: one spelling everywhere. Each field's
metadata carries its help text (and choices), so the parser is derived, never hand-copied.
"""

from __future__ import annotations

import argparse
import importlib.util
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import UserError

MODES = ("AUTO", "NUMBA", "JAX", "CVM", "FAST_COMPILE")
CELL_NAMES = ("rnn", "relu", "gru", "lstm")
OPTIMIZER_NAMES = ("sgd", "rmsprop", "adam")
# --learning-rate when not given: the tutorial's SGD, or per optimizer for the engine (SGD on
# the mean per-token loss, as PyTorch's word_language_model; RMSprop as the tutorial's part 4).
DEFAULT_LEARNING_RATES = {"tutorial": 0.005, "sgd": 1.0, "rmsprop": 0.001, "adam": 0.001}
TRUNCATIONS = ("tutorial", "scan")
ACTIVATIONS = ("tanh", "relu")
IMPLEMENTATIONS = ("theano", "numpy")
FORMATS = ("auto", "csv", "text", "lines")


def backend(mode: str, engine: bool) -> str:
    """The PyTensor mode a model is compiled with, ``AUTO`` resolved.

    ``AUTO`` is JAX (XLA) for the engine when jax is installed: on the CPU it trained the
    engine 1.4-1.5 times as fast as Numba in the README's benchmark and compiles a graph in
    seconds where Numba's first compile takes 40-50 s (README, "Backends and speed").
    Otherwise, and always for the tutorial's model (one sentence of any length per step,
    which XLA's fixed shapes do not suit), it is NUMBA.
    """
    if mode != "AUTO":
        return mode
    return "JAX" if engine and importlib.util.find_spec("jax") is not None else "NUMBA"


def flag(default: Any, help: str, choices: tuple | None = None, metavar: str | None = None,
         type: type = str, group: str = "common") -> Any:
    """A dataclass field that also describes its command-line flag.

    ``type`` is only needed when the default is ``None``; otherwise the default's type is used.
    ``group`` is ``tutorial`` or ``engine`` for a setting only that model family reads.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar,
                                            "type": type, "group": group})


def tutorial_flag(default: Any, help: str, *args: Any, **kwargs: Any) -> Any:
    return flag(default, help, *args, group="tutorial", **kwargs)


def engine_flag(default: Any, help: str, *args: Any, **kwargs: Any) -> Any:
    return flag(default, help, *args, group="engine", **kwargs)


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``scripts/train_lm.py`` can be told. Defaults are the tutorial's."""

    # data
    data: str | None = flag(None, "a CSV with a 'body' column, a text file, a one-sentence-per-line "
                            "file or a directory of .txt files (default: the built-in corpus)", metavar="PATH")
    corpus: str | None = flag(None, "a named corpus instead of --data: ptb, shakespeare, reddit",
                              metavar="NAME")
    format: str = flag("auto", "how to read --data", FORMATS)
    data_dir: str | None = flag(None, "where named corpora and caches live "
                                "(default: $RNN_THEANO_DATA or ./data)", metavar="DIR")
    keep_case: bool = flag(False, "do not lowercase words")
    max_sentences: int = flag(0, "use only the first N sentences (0: all)", metavar="N")
    valid_fraction: float = flag(0.05, "fraction of sentences held out to score perplexity",
                                 metavar="F")
    valid: str | None = flag(None, "held-out file to score each epoch (instead of a random "
                             "--valid-fraction of the data)", metavar="PATH")
    test: str | None = flag(None, "file to score once training ends", metavar="PATH")
    # the tutorial's model
    impl: str = tutorial_flag("theano", "theano: the PyTensor scan graph; numpy: the "
                              "hand-written reference", IMPLEMENTATIONS)
    vocab_size: int = flag(8000, "the N-1 most frequent words plus UNKNOWN_TOKEN", metavar="N")
    hidden_dim: int = flag(100, "size of the hidden state s_t", metavar="H")
    activation: str = tutorial_flag("tanh", "f in s_t = f(U x_t + W s_{t-1})", ACTIVATIONS)
    bptt_truncate: int = tutorial_flag(4, "steps each error flows back through time (-1: full "
                                       "BPTT)", metavar="K")
    truncation: str = tutorial_flag("tutorial", "tutorial: every output's error flows back K "
                                    "steps; scan: Theano's truncate_gradient, only the last K "
                                    "steps", TRUNCATIONS)
    eval_every: int = tutorial_flag(1, "evaluate losses, adapt the learning rate and save every "
                                    "N epochs", metavar="N")
    mode: str = flag("AUTO", "PyTensor backend (AUTO: JAX for the engine when jax is installed, "
                     "else NUMBA)", MODES)
    float32: bool = flag(False, "compute in float32 (the engine always does)")
    # the engine: any of these flags trains the minibatched engine instead of the tutorial model
    cell: str = engine_flag("rnn", "recurrent cell (rnn with no other engine flag: the "
                            "tutorial's model)", CELL_NAMES)
    layers: int = engine_flag(1, "stacked recurrent layers (a deep RNN)", metavar="N")
    bidirectional: bool = engine_flag(False, "add a stack that reads right to left (predicts "
                                      "each word from both sides; use fill_blank.py)")
    embed_dim: int = engine_flag(0, "word embedding size (0: the hidden size)", metavar="E")
    tie_weights: bool = engine_flag(False, "share the embedding with the output layer")
    no_bias: bool = engine_flag(False, "cells without biases")
    forget_bias: float = engine_flag(1.0, "initial bias of the LSTM's forget gate", metavar="F")
    identity_init: bool = engine_flag(False, "start the relu cell's recurrent matrix at the "
                                      "identity (Le et al. 2015)")
    softmax_classes: int = engine_flag(0, "class-based softmax with K classes of words in "
                                       "frequency order (0: full softmax; about sqrt(C) is "
                                       "fastest)", metavar="K")
    dropout: float = engine_flag(0.0, "dropout on non-recurrent connections", metavar="P")
    batch_size: int = engine_flag(1, "sentences (or stream columns) per step", metavar="B")
    stream: bool = engine_flag(False, "the corpus as one token stream with <eos> per line, "
                               "state carried across windows (the LM benchmark)")
    bptt_len: int = engine_flag(20, "window length in stream mode", metavar="T")
    optimizer: str = engine_flag("sgd", "update rule", OPTIMIZER_NAMES)
    lr_decay: float = engine_flag(1.0, "multiply the learning rate by F each epoch after "
                                  "--decay-after (1: instead halve it when held-out loss rises)",
                                  metavar="F")
    decay_after: int = engine_flag(0, "epochs before --lr-decay starts", metavar="K")
    clip_norm: float = engine_flag(0.0, "clip the gradient to this global norm (0: off)",
                                   metavar="C")
    weight_decay: float = engine_flag(0.0, "L2 penalty on weight matrices", metavar="L")
    patience: int = engine_flag(0, "stop after N epochs without a better held-out loss (0: off)",
                                metavar="N")
    # training
    learning_rate: float | None = flag(None, "step size (default: 0.005 for the tutorial model; "
                                       "engine: 1.0 sgd, 0.001 rmsprop and adam)", metavar="LR",
                                       type=float)
    epochs: int = flag(1, "passes over the training data", metavar="N")
    blas_threads: int = flag(1, "threads for BLAS matrix products (0: the library's default)",
                             metavar="N")
    model_out: str = flag("checkpoints/rnn.npz", "checkpoint to write", metavar="PATH")
    log_json: str | None = flag(None, "rewrite this JSON file after every evaluation with the "
                                "settings and the per-epoch history (losses, perplexities, "
                                "learning rate, tokens/s, seconds)", metavar="PATH")
    resume: str | None = flag(None, "continue training from this checkpoint", metavar="PATH")
    seed: int = flag(0, "random seed (initialisation, held-out split, order)", metavar="N")

    def changed(self, group: str) -> list[str]:
        """The flags of ``group`` set to something other than their default."""
        return ["--" + f.name.replace("_", "-") for f in dataclasses.fields(self)
                if f.metadata["group"] == group and getattr(self, f.name) != f.default]

    @property
    def uses_engine(self) -> bool:
        """True when any engine flag is given: the tutorial's model is the default."""
        return bool(self.changed("engine"))

    @property
    def lr(self) -> float:
        """The learning rate given, or the default for this model and optimizer."""
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LEARNING_RATES[self.optimizer if self.uses_engine else "tutorial"]

    def validate(self) -> None:
        """Reject impossible values with a message that names the fix."""
        positive = {"hidden-dim": self.hidden_dim, "epochs": self.epochs, "learning-rate": self.lr,
                    "eval-every": self.eval_every, "layers": self.layers,
                    "batch-size": self.batch_size, "bptt-len": self.bptt_len}
        for name, value in positive.items():
            if not value > 0:
                raise UserError(f"--{name} must be positive, got {value}")
        if self.vocab_size < 3:
            raise UserError(f"--vocab-size must be at least 3 (UNKNOWN_TOKEN, SENTENCE_START, "
                            f"SENTENCE_END), got {self.vocab_size}")
        if self.blas_threads < 0:
            raise UserError(f"--blas-threads must be 0 (library default) or positive, got "
                            f"{self.blas_threads}")
        if self.max_sentences < 0:
            raise UserError(f"--max-sentences must be 0 (all) or positive, got {self.max_sentences}")
        if not 0.0 < self.valid_fraction < 0.5:
            raise UserError(f"--valid-fraction must be between 0 and 0.5, got {self.valid_fraction}")
        if self.data and self.corpus:
            raise UserError("give either --data or --corpus, not both")
        if self.embed_dim < 0 or self.clip_norm < 0 or self.weight_decay < 0 or self.patience < 0:
            raise UserError("--embed-dim, --clip-norm, --weight-decay and --patience cannot be "
                            "negative (0 turns each off)")
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.lr_decay <= 1.0:
            raise UserError(f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        if self.uses_engine and self.changed("tutorial"):
            raise UserError(f"{', '.join(self.changed('tutorial'))} only apply to the tutorial's "
                            f"model, not to the engine that {', '.join(self.changed('engine'))} "
                            "selects: drop one or the other")
        if self.stream and self.bidirectional:
            raise UserError("--stream cannot train a --bidirectional model: its backward state "
                            "cannot be carried across windows; train it on sentences")
        if self.mode == "JAX" and not self.uses_engine:
            raise UserError("--mode JAX needs fixed shapes, but the tutorial model runs one "
                            "sentence of any length per step: use --mode NUMBA, CVM or FAST_COMPILE")
        if self.mode == "JAX" and importlib.util.find_spec("jax") is None:
            raise UserError("--mode JAX needs the jax package: .venv/bin/pip install -e '.[jax]'")
        if self.bptt_truncate == 0:
            raise UserError("--bptt-truncate 0 would learn nothing through W: use K >= 1, or -1 for full BPTT")


@dataclass(frozen=True)
class GenerateConfig:
    """Everything ``scripts/generate.py`` can be told. Defaults are the tutorial's."""

    model: str = flag("checkpoints/rnn.npz", "checkpoint written by train_lm.py", metavar="PATH")
    num_sentences: int = flag(10, "how many sentences to print", metavar="N")
    min_length: int = flag(7, "keep only sentences of at least N words (the tutorial's 7)",
                           metavar="N")
    max_length: int = flag(60, "give up on a sentence longer than N words and draw another",
                           metavar="N")
    temperature: float = flag(1.0, "below 1: safer, more repetitive; above 1: more surprising",
                              metavar="T")
    prime: str | None = flag(None, "start every sentence with these words", metavar="TEXT")
    seed: int | None = flag(None, "random seed for reproducible samples", metavar="N", type=int)

    def validate(self) -> None:
        if self.num_sentences <= 0:
            raise UserError(f"--num-sentences must be positive, got {self.num_sentences}")
        if not self.temperature > 0:
            raise UserError(f"--temperature must be positive, got {self.temperature}")
        if self.min_length < 1 or self.max_length < self.min_length:
            raise UserError(f"need 1 <= --min-length <= --max-length, got {self.min_length} "
                            f"and {self.max_length}")


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything ``scripts/evaluate.py`` can be told."""

    model: str = flag("checkpoints/rnn.npz", "checkpoint to score", metavar="PATH")
    data: str = flag("", "text to score, read like train_lm.py --data", metavar="PATH")
    format: str = flag("auto", "how to read --data", FORMATS)
    batch_size: int = flag(1, "sequences scored at once (stream models: columns; 1 is the "
                           "standard benchmark setting)", metavar="B")

    def validate(self) -> None:
        if not self.data:
            raise UserError("--data PATH is required: the text to score")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass(frozen=True)
class FillBlankConfig:
    """Everything ``scripts/fill_blank.py`` can be told."""

    text: str = flag("", "a sentence with one ___ where the missing word goes", metavar="TEXT")
    model: str = flag("checkpoints/birnn.npz", "checkpoint (a bidirectional model sees both "
                      "sides of the blank)", metavar="PATH")
    top_k: int = flag(10, "how many candidate words to print", metavar="K")

    def validate(self) -> None:
        if self.text.count(BLANK) != 1:
            raise UserError(f"the text must contain exactly one {BLANK} marking the missing "
                            f"word, e.g. \"the cat sat on the {BLANK} .\"")
        if self.top_k < 1:
            raise UserError(f"--top-k must be at least 1, got {self.top_k}")


BLANK = "___"


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is a one-line ``UserError`` instead of usage text and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


C = TypeVar("C")


def parse_config(cls: type[C], argv: list[str] | None, description: str) -> C:
    """Build a parser from ``cls``'s fields, parse ``argv`` and return a validated ``cls``."""
    parser = _Parser(description=description)
    for f in dataclasses.fields(cls):
        name = "--" + f.name.replace("_", "-")
        meta = f.metadata
        if f.name == "text":  # the one positional argument
            parser.add_argument("text", help=meta["help"])
            continue
        if f.type in (bool, "bool"):
            parser.add_argument(name, action="store_true", help=meta["help"])
            continue
        kind = type(f.default) if f.default is not None else meta["type"]
        shown = "" if f.default is None else f" (default: {f.default})"
        parser.add_argument(name, type=kind, default=f.default, help=meta["help"] + shown,
                            choices=meta["choices"], metavar=meta["metavar"])
    config = cls(**vars(parser.parse_args(argv)))
    config.validate()  # type: ignore[attr-defined]
    return config
