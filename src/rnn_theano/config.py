"""Settings as frozen dataclasses whose fields *are* the command-line flags.

``--vocab-size`` fills ``vocab_size``, and so on: one spelling everywhere. Each field's
metadata carries its help text (and choices), so the parser is derived, never hand-copied.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import UserError

MODES = ("NUMBA", "CVM", "JAX", "FAST_COMPILE")
TRUNCATIONS = ("tutorial", "scan")
ACTIVATIONS = ("tanh", "relu")
IMPLEMENTATIONS = ("theano", "numpy")
FORMATS = ("auto", "csv", "text", "lines")


def flag(default: Any, help: str, choices: tuple | None = None, metavar: str | None = None,
         type: type = str) -> Any:
    """A dataclass field that also describes its command-line flag.

    ``type`` is only needed when the default is ``None``; otherwise the default's type is used.
    """
    return field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar,
                                            "type": type})


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
    # model
    impl: str = flag("theano", "theano: the PyTensor scan graph; numpy: the hand-written reference",
                     IMPLEMENTATIONS)
    vocab_size: int = flag(8000, "the N-1 most frequent words plus UNKNOWN_TOKEN", metavar="N")
    hidden_dim: int = flag(100, "size of the hidden state s_t", metavar="H")
    activation: str = flag("tanh", "f in s_t = f(U x_t + W s_{t-1})", ACTIVATIONS)
    bptt_truncate: int = flag(4, "steps each error flows back through time (-1: full BPTT)",
                              metavar="K")
    truncation: str = flag("tutorial", "tutorial: every output's error flows back K steps; "
                           "scan: Theano's truncate_gradient, only the last K steps", TRUNCATIONS)
    mode: str = flag("NUMBA", "PyTensor backend", MODES)
    float32: bool = flag(False, "compute in float32 instead of float64")
    # training
    learning_rate: float = flag(0.005, "SGD step size (halved whenever the training loss rises)",
                                metavar="LR")
    epochs: int = flag(1, "passes over the training sentences", metavar="N")
    eval_every: int = flag(1, "evaluate losses, adapt the learning rate and save every N epochs",
                           metavar="N")
    blas_threads: int = flag(1, "threads for BLAS matrix products (0: the library's default)",
                             metavar="N")
    model_out: str = flag("checkpoints/rnn.npz", "checkpoint to write", metavar="PATH")
    resume: str | None = flag(None, "continue training from this checkpoint", metavar="PATH")
    seed: int = flag(0, "random seed (initialisation, held-out split, order)", metavar="N")

    def validate(self) -> None:
        """Reject impossible values with a message that names the fix."""
        positive = {"hidden-dim": self.hidden_dim, "epochs": self.epochs,
                    "learning-rate": self.learning_rate, "eval-every": self.eval_every}
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
        if self.mode == "JAX":
            raise UserError("--mode JAX needs fixed shapes, but the tutorial model runs one "
                            "sentence of any length per step: use --mode NUMBA, CVM or FAST_COMPILE")
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
