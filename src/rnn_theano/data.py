"""What a run trains and is scored on: the splits of its corpus, as sentences or batches.

The held-out split is a corpus's own validation file (``--valid``, or PTB's), otherwise a
seeded random fraction of the sentences; the vocabulary is later built on the training split
alone, never on held-out or test text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import corpus, datasets, pydocs
from .batching import SentenceBatches, StreamBatches
from .config import TrainConfig
from .errors import UserError
from .stream import encode_stream
from .training import unigram_loss
from .vocab import Vocabulary


@dataclass
class Splits:
    """Tokenized sentences of each split; ``test`` is None when there is nothing to test on."""

    train: list[list[str]]
    valid: list[list[str]]
    test: list[list[str]] | None
    source: str


def load_splits(config: TrainConfig) -> Splits:
    """The training text and its held-out and test sentences, as the flags say."""
    # The LM benchmark's stream convention takes the text as it is (PTB writes numbers as N).
    lowercase, limit = not (config.keep_case or config.stream), config.max_sentences or None
    data_dir = Path(config.data_dir) if config.data_dir else datasets.default_data_dir()
    files: dict[str, Path] = {}
    fmt = config.format
    if config.data:
        train, source = corpus.load_sentences(config.data, fmt, lowercase, limit), config.data
    elif config.corpus:
        files = datasets.corpus_files(config.corpus, data_dir)
        fmt, source = datasets.corpus_format(config.corpus), config.corpus
        train = corpus.load_sentences(files["train"], fmt, lowercase, limit)
    else:
        train = pydocs.builtin_sentences(lowercase, limit, cache_dir=data_dir)
        source = "the built-in corpus (this Python's documentation)"
    valid_file = config.valid or files.get("valid")
    test_file = config.test or files.get("test")
    valid = corpus.load_sentences(valid_file, fmt, lowercase) if valid_file else None
    test = corpus.load_sentences(test_file, fmt, lowercase) if test_file else None
    if valid is None:
        train, valid = split_held_out(train, config.valid_fraction, config.seed)
    return Splits(train, valid, test, source)


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
    def pairs(batches):
        return [(b.x[b.mask > 0], b.y[b.mask > 0]) for b in batches]
    return unigram_loss(pairs(train), pairs(valid), vocab_size)
