"""What a run trains and is scored on: the splits of its corpus, as sentences or batches.

The held-out split is a corpus's own validation file (``--valid``, or PTB's), otherwise a
seeded random fraction of the sentences; the vocabulary is later built on the training split
alone, never on held-out or test text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import corpus
from . import datasets
from . import pydocs
from .batching import SentenceBatches, StreamBatches
from ..errors import UserError
from .stream import encode_stream
from ..metrics import unigram_loss
from .vocab import Vocabulary


@dataclass
class Splits:
    """Tokenized sentences of each split; ``test`` is None when there is nothing to test on."""

    train: list[list[str]]
    valid: list[list[str]]
    test: list[list[str]] | None
    source: str


def load_splits(*, data: str | None = None, corpus_name: str | None = None,
                fmt: str = "auto", data_dir: str | Path | None = None, lowercase: bool = True,
                max_sentences: int = 0, valid_fraction: float = 0.05, valid: str | None = None,
                test: str | None = None, seed: int = 0) -> Splits:
    """The training text and its held-out and test sentences.

    ``data`` is a file or directory read as ``fmt``; ``corpus_name`` a named corpus of
    ``datasets`` (found in ``data_dir``, else downloaded there); neither: the built-in corpus.
    ``valid`` and ``test`` files replace the corpus's own; with no held-out file, a seeded
    random ``valid_fraction`` of the sentences is held out.
    """
    limit = max_sentences or None
    root = Path(data_dir) if data_dir else datasets.default_data_dir()
    files: dict[str, Path] = {}
    if data:
        train, source = corpus.load_sentences(data, fmt, lowercase, limit), data
    elif corpus_name:
        files = datasets.corpus_files(corpus_name, root)
        fmt, source = datasets.corpus_format(corpus_name), corpus_name
        train = corpus.load_sentences(files["train"], fmt, lowercase, limit)
    else:
        train = pydocs.builtin_sentences(lowercase, limit, cache_dir=root)
        source = "the built-in corpus (this Python's documentation)"
    valid_file, test_file = valid or files.get("valid"), test or files.get("test")
    held_out = corpus.load_sentences(valid_file, fmt, lowercase) if valid_file else None
    test_sentences = corpus.load_sentences(test_file, fmt, lowercase) if test_file else None
    if held_out is None:
        train, held_out = split_held_out(train, valid_fraction, seed)
    return Splits(train, held_out, test_sentences, source)


def split_held_out(sentences: list[list[str]], fraction: float, seed: int
                   ) -> tuple[list[list[str]], list[list[str]]]:
    """A seeded random ``fraction`` of sentences (at least one) held out for perplexity."""
    if len(sentences) < 2:
        raise UserError(f"the corpus has {len(sentences)} sentence(s): at least 2 are needed "
                        "(one to train on, one to score); give it more text")
    order = np.random.default_rng(seed).permutation(len(sentences))
    n_valid = max(1, int(round(fraction * len(sentences))))
    return ([sentences[i] for i in sorted(order[n_valid:])],
            [sentences[i] for i in sorted(order[:n_valid])])


def make_batches(sentences: list[list[str]], vocab: Vocabulary, *, stream: bool,
                 batch_size: int, bptt_len: int, seed: int = 0,
                 pad_multiple: int = 1) -> SentenceBatches | StreamBatches:
    """Sentences (lengths padded up to a multiple of ``pad_multiple``), or one stream in
    windows of ``bptt_len``."""
    if stream:
        return StreamBatches(encode_stream(sentences, vocab), batch_size, bptt_len)
    return SentenceBatches.from_sentences(sentences, vocab, batch_size, seed=seed,
                                          pad_multiple=pad_multiple)


def unigram_loss_of_batches(train: SentenceBatches | StreamBatches,
                            valid: SentenceBatches | StreamBatches, vocab_size: int) -> float:
    """The unigram baseline over exactly the tokens the model is scored on."""
    def targets(batches):
        return [b.y[b.mask > 0] for b in batches]
    return unigram_loss(targets(train), targets(valid), vocab_size)
