"""Command-line entry points: ``scripts/train_lm.py``, ``generate.py``, ``evaluate.py`` and
``fill_blank.py``.

Each ``*_main`` returns an exit status. A ``UserError`` anywhere becomes one line on stderr
and status 2; nothing is written before the inputs have been checked.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from . import corpus
from .atomic import write_json
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import (BLANK, EvaluateConfig, FillBlankConfig, GenerateConfig, TrainConfig,
                     parse_config)
from .data import Splits, load_splits, make_batches, unigram_loss_of_batches
from .engine import LMEngine
from .errors import UserError
from .interrupt import StopFlag
from .lm_training import evaluate, train_engine
from .models import (ARCHITECTURE, Model, build_engine, build_model, count_params, is_engine,
                     lm_config, model_from_checkpoint, next_word_probs)
from .sampling import detokenize, generate_sentence, sentence_markers
from .stream import build_stream_vocabulary
from .theano_rnn import RNNTheano
from .tokenize import tokenize_words
from .training import limit_blas_threads, mean_loss, train, unigram_loss
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


# What a resumed run keeps from its checkpoint whatever the flags say: the network and the
# way its data was cut.
KEPT_ON_RESUME = {*ARCHITECTURE, "vocab_size", "cell", "layers", "bidirectional", "embed_dim",
                  "tie_weights", "dropout", "stream", "keep_case", "float32", "no_bias",
                  "forget_bias", "identity_init"}


def resume_config(config: TrainConfig, saved: dict) -> TrainConfig:
    """The run's settings when resuming a checkpoint saved with ``saved``.

    The network and data cutting always come from the checkpoint; the other model settings
    from the checkpoint unless a flag now gives them another value; the rest of the run
    (data, epochs, output, ...) from this command line.
    """
    merged = {}
    for f in fields(TrainConfig):
        now = getattr(config, f.name)
        from_saved = f.name in KEPT_ON_RESUME or (f.metadata["group"] != "common"
                                                  and now == f.default)
        merged[f.name] = saved.get(f.name, now) if from_saved else now
    resumed = TrainConfig(**merged)
    resumed.validate()
    return resumed


@user_errors
def train_main(argv: list[str] | None = None) -> int:
    config = parse_config(TrainConfig, argv, "Train a recurrent language model: the tutorial's "
                          "RNN by default, the minibatched engine with any engine flag.")
    resumed = load_checkpoint(config.resume) if config.resume else None
    if resumed:
        config = resume_config(config, resumed.config)
    splits = load_splits(config)
    limit_blas_threads(config.blas_threads)
    train = _train_engine if config.uses_engine else _train_tutorial
    with StopFlag() as stop:
        state = train(config, splits, resumed, stop)
    return 130 if state.get("interrupted") else 0


def _report(config: TrainConfig, splits: Splits, model: Model, vocab: Vocabulary,
            n_train: int, unigram: float) -> None:
    print(f"corpus: {splits.source}\n"
          f"  {len(splits.train):,} training sentences ({n_train:,} predicted tokens), "
          f"{len(splits.valid):,} held out" + (f", {len(splits.test):,} test" if splits.test else "")
          + f"\nmodel: {describe(model, config)}, vocabulary {len(vocab):,}, "
          f"{count_params(model):,} parameters\n"
          f"loss = cross-entropy per predicted token in nats (ln C = {math.log(len(vocab)):.3f}); "
          f"held-out perplexity of a unigram model: {math.exp(unigram):.2f}")


def describe(model: Model, config: TrainConfig) -> str:
    if isinstance(model, LMEngine):
        arch = model.config
        return (f"{arch.layers}-layer {'bidirectional ' if arch.bidirectional else ''}"
                f"{arch.cell.upper()} {arch.hidden_dim} (engine under {model.mode}, "
                f"{config.optimizer}, {'stream' if config.stream else 'sentences'}, "
                f"batch {config.batch_size})")
    return (f"{type(model).__name__} hidden {model.hidden_dim}, {config.activation}, "
            f"bptt-truncate {config.bptt_truncate} ({config.truncation})"
            + (f", under {model.mode}" if isinstance(model, RNNTheano) else ""))


def _train_tutorial(config: TrainConfig, splits: Splits, resumed: Checkpoint | None,
                    stop: StopFlag) -> dict:
    settings = {**asdict(config), "family": "tutorial", "learning_rate": config.lr}
    vocab = resumed.vocab if resumed else Vocabulary.build(splits.train, config.vocab_size)
    train_pairs, valid_pairs = vocab.training_pairs(splits.train), vocab.training_pairs(splits.valid)
    model = (model_from_checkpoint(resumed, **settings) if resumed
             else build_model(settings, len(vocab)))
    unigram = unigram_loss(train_pairs, valid_pairs, len(vocab))
    _report(config, splits, model, vocab, sum(len(y) for _, y in train_pairs), unigram)
    out = Path(config.model_out)

    def save(state: dict) -> None:
        save_checkpoint(out, Checkpoint(model.params(), vocab, settings, state))
        if config.log_json:
            write_json(config.log_json, {"settings": settings, "history": state["history"]})

    state = train(model, train_pairs, valid_pairs, epochs=config.epochs,
                  learning_rate=config.lr, eval_every=config.eval_every,
                  seed=config.seed, state=resumed.state if resumed else None, save=save,
                  stop=stop)
    if state["history"]:
        print(f"held-out perplexity {state['history'][-1]['valid_ppl']:.2f} "
              f"(unigram {math.exp(unigram):.2f}); model saved to {out}")
    if splits.test:
        test_loss = mean_loss(model, vocab.training_pairs(splits.test))
        print(f"test perplexity {math.exp(test_loss):.2f} ({test_loss:.4f} nats per token)")
    return state


def _train_engine(config: TrainConfig, splits: Splits, resumed: Checkpoint | None,
                  stop: StopFlag) -> dict:
    if resumed:
        vocab = resumed.vocab
    elif config.stream:
        vocab = build_stream_vocabulary(splits.train, config.vocab_size)
    else:
        vocab = Vocabulary.build(splits.train, config.vocab_size)
    settings = {**asdict(config), "family": "engine", "learning_rate": config.lr}
    engine = (model_from_checkpoint(resumed, **settings) if resumed
              else build_engine(settings, lm_config(settings, len(vocab))))
    settings["lm"] = engine.config.to_dict()
    batches = {name: make_batches(sents, vocab, stream=config.stream, seed=config.seed,
                                  batch_size=config.batch_size, bptt_len=config.bptt_len,
                                  pad_multiple=engine.pad_multiple)
               for name, sents in (("train", splits.train), ("valid", splits.valid),
                                   ("test", splits.test)) if sents}
    unigram = unigram_loss_of_batches(batches["train"], batches["valid"], len(vocab))
    _report(config, splits, engine, vocab, batches["train"].n_tokens, unigram)
    out = Path(config.model_out)

    if resumed and resumed.optimizer:
        if resumed.config.get("optimizer") == config.optimizer:
            engine.set_optimizer_state(resumed.optimizer)
        else:
            print(f"note: the checkpoint was trained with {resumed.config.get('optimizer')}; "
                  f"{config.optimizer} starts from a fresh state", file=sys.stderr)

    def save(state: dict) -> None:
        save_checkpoint(out, Checkpoint(engine.get_params(), vocab, settings, state,
                                        engine.get_optimizer_state()))

    run_log = {"settings": settings, "parameters": count_params(engine),
               "vocab_size": len(vocab), "train_tokens": batches["train"].n_tokens,
               "unigram_valid_ppl": math.exp(unigram), "history": []}

    def write_log(history: list[dict]) -> None:
        if config.log_json:
            write_json(config.log_json, run_log | {"history": history})

    state = train_engine(engine, batches["train"], batches["valid"], batches.get("test"),
                         stream=config.stream,
                         epochs=config.epochs, lr_decay=config.lr_decay,
                         decay_after=config.decay_after, patience=config.patience,
                         state=resumed.state if resumed else None, save=save, stop=stop,
                         on_epoch=write_log)
    print(f"best held-out perplexity {math.exp(state['best_valid_loss']):.2f} "
          f"(unigram {math.exp(unigram):.2f}); model saved to {out}")
    run_log["best_valid_ppl"] = math.exp(state["best_valid_loss"])
    if "test" in batches:
        score = evaluate(engine, batches["test"], config.stream)
        print(f"test perplexity {score.perplexity:.2f} over {score.n_tokens:,.0f} tokens")
        save(state | {"test_loss": score.loss, "test_ppl": score.perplexity})
        run_log.update(test_ppl=score.perplexity, test_tokens=score.n_tokens)
    write_log(state["history"])
    return state


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
    probs = next_word_probs(model)
    for _ in range(config.num_sentences):
        words = generate_sentence(probs, ckpt.vocab, rng, prime=prime,
                                  temperature=config.temperature, min_length=config.min_length,
                                  max_length=config.max_length)
        if words is None:
            raise UserError(f"the model produced no sentence of {config.min_length} to "
                            f"{config.max_length} words in 1000 tries: train it longer or "
                            "relax --min-length/--max-length")
        print(detokenize(words))
    return 0


@user_errors
def evaluate_main(argv: list[str] | None = None) -> int:
    config = parse_config(EvaluateConfig, argv, "Score a trained model on a text: perplexity.")
    ckpt = load_checkpoint(config.model)
    model, vocab, saved = model_from_checkpoint(ckpt, impl="numpy"), ckpt.vocab, ckpt.config
    lowercase = not (saved.get("keep_case") or saved.get("stream"))
    sentences = corpus.load_sentences(config.data, config.format, lowercase)
    if is_engine(ckpt):
        batches = make_batches(sentences, vocab, stream=saved["stream"],
                               batch_size=config.batch_size, bptt_len=saved["bptt_len"],
                               pad_multiple=model.pad_multiple)
        score = evaluate(model, batches, saved["stream"])
        loss, n_tokens = score.loss, score.n_tokens
    else:
        pairs = vocab.training_pairs(sentences)
        loss, n_tokens = mean_loss(model, pairs), sum(len(y) for _, y in pairs)
    unknown = sum(w not in vocab for s in sentences for w in s) / max(1, sum(map(len, sentences)))
    print(f"{config.data}: perplexity {math.exp(loss):.2f} over {n_tokens:,.0f} predicted tokens "
          f"(cross-entropy {loss:.4f} nats per token); {unknown:.1%} of its words are outside "
          "the model's vocabulary and scored as its unknown token")
    return 0


@user_errors
def fill_blank_main(argv: list[str] | None = None) -> int:
    config = parse_config(FillBlankConfig, argv, "Predict the missing word of a sentence.")
    ckpt = load_checkpoint(config.model)
    model, vocab = model_from_checkpoint(ckpt, impl="numpy"), ckpt.vocab
    words = tokenize_words(config.text, lowercase=not ckpt.config.get("keep_case", False))
    if BLANK not in words:
        raise UserError(f"write the blank {BLANK} as a word of its own, with spaces around it")
    start, end = sentence_markers(vocab)
    ids = np.asarray([start, *map(vocab.id, words), end], dtype=np.int32)
    blank = words.index(BLANK) + 1  # position of the missing word in ids
    if isinstance(model, LMEngine):
        x, y = ids[:-1, None], ids[1:, None]  # (T, 1); y[blank-1] is the blank, never read
        log_p, _ = model.log_probs(x, y, np.ones(x.shape, np.float32), model.initial_state(1))
        probs = np.exp(log_p[blank - 1, 0].astype(np.float64))
    else:
        probs = next_word_probs(model)(ids[:blank])
    if not (isinstance(model, LMEngine) and model.config.bidirectional):
        print("note: a left-to-right model sees only the words before the blank",
              file=sys.stderr)
    probs[[vocab.unknown_id, start, end]] = 0.0  # candidates are words
    for i in np.argsort(-probs, kind="stable")[:config.top_k]:
        print(f"{vocab.words[i]:>20s}  {probs[i]:.4f}")
    return 0
