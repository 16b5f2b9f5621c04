"""Command-line entry points: ``scripts/train_lm.py`` and ``scripts/generate.py``.

Each ``*_main`` returns an exit status. A ``UserError`` anywhere becomes one line on stderr
and status 2; nothing is written before the inputs have been checked.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import corpus, datasets, pydocs
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import GenerateConfig, TrainConfig, parse_config
from .errors import UserError
from .models import ARCHITECTURE, build_model, count_params, model_from_checkpoint
from .sampling import detokenize, generate_sentence
from .tokenize import tokenize_words
from .training import train, unigram_loss
from .vocab import Vocabulary


def user_errors(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Turn a ``UserError`` into ``error: ...`` on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return wrapper


def load_corpus(config: TrainConfig) -> tuple[list[list[str]], list[list[str]] | None, str]:
    """Training sentences, held-out sentences if the corpus has its own split, and a name."""
    lowercase, limit = not config.keep_case, config.max_sentences or None
    data_dir = Path(config.data_dir) if config.data_dir else datasets.default_data_dir()
    if config.data:
        sentences = corpus.load_sentences(config.data, config.format, lowercase, limit)
        return sentences, None, config.data
    if config.corpus:
        files = datasets.corpus_files(config.corpus, data_dir)
        fmt = datasets.corpus_format(config.corpus)
        train_sents = corpus.load_sentences(files["train"], fmt, lowercase, limit)
        valid = corpus.load_sentences(files["valid"], fmt, lowercase) if "valid" in files else None
        return train_sents, valid, config.corpus
    sentences = pydocs.builtin_sentences(lowercase, limit, cache_dir=data_dir)
    return sentences, None, "the built-in corpus (this Python's documentation)"


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


@user_errors
def train_main(argv: list[str] | None = None) -> int:
    config = parse_config(TrainConfig, argv, "Train the tutorial's RNN language model.")
    settings = asdict(config)
    resumed = load_checkpoint(config.resume) if config.resume else None
    if resumed:  # the network is what was saved; only training settings come from the flags
        settings.update({k: resumed.config[k] for k in ARCHITECTURE if k in resumed.config})

    train_sents, valid_sents, source = load_corpus(config)
    if valid_sents is None:
        train_sents, valid_sents = split_held_out(train_sents, config.valid_fraction, config.seed)
    vocab = resumed.vocab if resumed else Vocabulary.build(train_sents, config.vocab_size)
    train_pairs, valid_pairs = vocab.training_pairs(train_sents), vocab.training_pairs(valid_sents)
    model = (model_from_checkpoint(resumed, **settings) if resumed
             else build_model(settings, len(vocab)))

    n_train_words = sum(len(y) for _, y in train_pairs)
    unigram = unigram_loss(train_pairs, valid_pairs, len(vocab))
    print(f"corpus: {source}\n"
          f"  {len(train_pairs):,} training sentences ({n_train_words:,} predicted words), "
          f"{len(valid_pairs):,} held out\n"
          f"model: {type(model).__name__}, vocabulary {len(vocab):,}, hidden {model.hidden_dim}, "
          f"{count_params(model):,} parameters, {config.activation}, bptt-truncate "
          f"{settings['bptt_truncate']} ({settings['truncation']})\n"
          f"loss = cross-entropy per predicted word in nats (ln C = {math.log(len(vocab)):.3f}); "
          f"held-out perplexity of a unigram model: {math.exp(unigram):.2f}")

    out = Path(config.model_out)

    def save(state: dict) -> None:
        save_checkpoint(out, Checkpoint(model.params(), vocab, settings, state))

    state = train(model, train_pairs, valid_pairs, epochs=config.epochs,
                  learning_rate=config.learning_rate, eval_every=config.eval_every,
                  seed=config.seed, blas_threads=config.blas_threads,
                  state=resumed.state if resumed else None, save=save)
    last = state["history"][-1]
    print(f"held-out perplexity {last['valid_ppl']:.2f} (unigram {math.exp(unigram):.2f}); "
          f"model saved to {out}")
    return 130 if state.get("interrupted") else 0


@user_errors
def generate_main(argv: list[str] | None = None) -> int:
    config = parse_config(GenerateConfig, argv, "Sample sentences from a trained model.")
    ckpt = load_checkpoint(config.model)
    # Sampling needs only forward passes over short prefixes: the numpy model does that
    # with no compilation at all.
    model = model_from_checkpoint(ckpt, impl="numpy")
    prime = tokenize_words(config.prime, lowercase=not ckpt.config.get("keep_case", False)) \
        if config.prime else []
    unknown = [w for w in prime if w not in ckpt.vocab]
    if unknown:
        print(f"note: not in the model's vocabulary, read as UNKNOWN_TOKEN: {' '.join(unknown)}",
              file=sys.stderr)
    rng = np.random.default_rng(config.seed)

    def next_word_probs(ids: np.ndarray) -> np.ndarray:
        return model.forward_propagation(ids)[0][-1]

    for _ in range(config.num_sentences):
        words = generate_sentence(next_word_probs, ckpt.vocab, rng, prime=prime,
                                  temperature=config.temperature, min_length=config.min_length,
                                  max_length=config.max_length)
        if words is None:
            raise UserError(f"the model produced no sentence of {config.min_length} to "
                            f"{config.max_length} words in 1000 tries: train it longer or "
                            "relax --min-length/--max-length")
        print(detokenize(words))
    return 0
