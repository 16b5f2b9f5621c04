"""Side-by-side training speed: the numpy reference, RNNTheano, the engine and a PyTorch peer.

    .venv/bin/python experiments/bench.py             # the full run (make bench)
    .venv/bin/python experiments/bench.py --quick     # 3 repetitions, no cold compile
    .venv/bin/python experiments/bench.py --alone --rounds 3 --configs c,d   # no turn-taking
    .venv/bin/python experiments/bench.py --no-peer   # without PyTorch

Configurations (the same model on the same data for every implementation of a row):

    a  the tutorial: vanilla RNN, H=100, C=8000, one sentence per SGD step, truncate 4
       (tutorial truncation), summed cross-entropy, lr 0.005: numpy reference, RNNTheano, peer
    b  the same size with minibatches of 32 sentences, on the *engine* (cell rnn, embedding
       and hidden 100, output bias, full BPTT, mean cross-entropy, SGD lr 1): engine, peer
    c  PTB "small": LSTM 2x200, C=10,000, batch 20, unroll 20, stream mode, SGD lr 20,
       clip 0.25 (Zaremba's lr 1 / clip 5 on a mean loss): engine, peer
    d  GRU 2x200, otherwise as c: engine, peer
    e  the sentence classifier of configs/classify-sst2.toml: a bidirectional LSTM (one layer,
       150 units each way) over embeddings of 300, max pooling over the real steps, dropout
       0.5 on the embeddings and the sentence vector, softmax over the classes, mean
       cross-entropy over the sentences, Adam lr 0.001, clip 5, 32 sentences a batch bucketed
       by length: engine, peer
    f  the translator of configs/mt-de-en.toml: an attention encoder-decoder, a bidirectional
       GRU encoder (256 units each way) over source embeddings of 256, a GRU decoder of 512
       fed the previous word's embedding and the context, additive attention of 512 over the
       real source positions, a deep output layer, BPE vocabularies of 8000 a side, dropout
       0.3 on both embeddings and the deep output, label smoothing 0.1, the mean over the real
       target tokens, Adam lr 0.001, clip 1, 64 pairs a batch bucketed by length and padded
       to multiples of 8 (two shapes, see ``mt_data``); speed in target tokens (EOS
       included) per second: engine, peer

The text is Penn Treebank's training file (``ptb/ptb.train.txt`` under ``--data-dir``, default
``$RNN_THEANO_DATA`` or ``./data``), one sentence a line, mapped to each configuration's
vocabulary; without it the built-in corpus (Python's documentation) is used; ``--synthetic``
uses random words (for tests). Config e trains on SST-2's training sentences
(``sentences/stsa.binary.train``, never downloaded here); without them, or with
``--synthetic``, on the sentences above with seeded random binary labels (the speed does not
depend on the labels). Its first loss is computed without dropout (see ``_classify_model``).
Config f trains on Multi30k's German-English training pairs (``multi30k/train.de.gz`` and
``train.en.gz``), cut into subwords by a sentencepiece BPE model of 8000 pieces trained on each
side's training lines, as the recipe does; without them, or with ``--synthetic`` or ``--tiny``,
on random ids (``random_pairs``). Its first loss is computed without dropout and without
label smoothing (see ``_mt_model``).

Each implementation runs in a subprocess of its own (so its peak RSS is its own); those of
one configuration run side by side and take turns through a lock file (see ``turn``), so
their passes alternate in time and never overlap. With ``--alone`` they run one after another
instead, each alone on the machine, ``--rounds`` times in alternating order: the median over
the rounds is reported, with the spread of the rounds' ratios to the peer (``alone``). Every subprocess tries each thread count
of ``--threads`` (BLAS threads through threadpoolctl, set after the first compiled call;
``torch.set_num_threads`` for the peer), each with warm-up repetitions and then ``--reps``
timed repetitions over the same batches; words/s is the median. The best thread count is
what the table shows.

The engine runs once per backend of ``--mode`` (default both): ``engine-jax`` under XLA, what
the command-line tools use when jax is installed (``--mode AUTO``), which keeps its own thread
pool over every core (thread column ``xla``), so its fair partner is the peer's best thread
count; and ``engine-numba`` under Numba, their backend without jax.

The PyTorch peer (``experiments/torch_peer.py``) runs with the first Python that imports torch:
``--torch-python``, this one, or ``.venv-torch/bin/python`` (created on demand with
``--make-torch-venv``: Python 3.11, ``pip install torch==2.13.0 numpy``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

import numpy as np

# Nothing from rnn_theano at import time: the PyTorch peer imports this module (for
# ``timed_reps``) in an environment of its own, where the package is not installed.

ROOT = Path(__file__).resolve().parents[1]
PEER = Path(__file__).resolve().parent / "torch_peer.py"
TORCH_VENV = ROOT / ".venv-torch"

# --- configurations ---------------------------------------------------------------------------


def configs(tiny: bool) -> dict[str, dict]:
    """The configurations; ``tiny`` shrinks every dimension (for the test)."""
    C8, C10, H1, H2 = (40, 50, 8, 8) if tiny else (8000, 10_000, 100, 200)
    E3, H3 = (8, 6) if tiny else (300, 150)
    # The translator's target vocabulary differs from its source's when tiny, so that a peer
    # mixing the two up fails.
    E4, H4, D4, A4, C4 = (8, 6, 10, 7, 50) if tiny else (256, 256, 512, 512, 8000)
    lm = lambda cell, C, E, H, L: dict(cell=cell, vocab_size=C, embed_dim=E,  # noqa: E731
                                       hidden_dim=H, layers=L)
    return {
        "a": dict(kind="tutorial", title=f"tutorial RNN H={H1} C={C8}, 1 sentence/step, truncate 4",
                  vocab_size=C8, hidden_dim=H1, bptt_truncate=4, learning_rate=0.005,
                  impls=["numpy", "rnn_theano", "pytorch"]),
        "b": dict(kind="lm", title=f"engine RNN H={H1} C={C8}, 32 sentences/step",
                  lm=lm("rnn", C8, H1, H1, 1), batch_size=32, stream=False,
                  learning_rate=1.0, clip_norm=None, impls=["engine", "pytorch"]),
        "c": dict(kind="lm", title=f"PTB small LSTM 2x{H2} C={C10}, batch 20, unroll 20",
                  lm=lm("lstm", C10, H2, H2, 2), batch_size=20, bptt_len=20, stream=True,
                  learning_rate=20.0, clip_norm=0.25, impls=["engine", "pytorch"]),
        "d": dict(kind="lm", title=f"GRU 2x{H2} C={C10}, batch 20, unroll 20",
                  lm=lm("gru", C10, H2, H2, 2), batch_size=20, bptt_len=20, stream=True,
                  learning_rate=20.0, clip_norm=0.25, impls=["engine", "pytorch"]),
        # configs/classify-sst2.toml; the vocabulary is the training words', up to 20,000.
        "e": dict(kind="classify",
                  title=f"BiLSTM classifier {H3}+{H3}, E={E3}, max pool, 32 sentences/step",
                  net=dict(cell="lstm", vocab_size=20_000, embed_dim=E3, hidden_dim=H3,
                           layers=1, bidirectional=True, pooling="max", dropout=0.5),
                  batch_size=32, learning_rate=0.001, clip_norm=5.0,
                  impls=["engine", "pytorch"]),
        # configs/mt-de-en.toml; the vocabularies are the subword models', 8000 pieces a side.
        "f": dict(kind="mt", title=f"attention encoder-decoder, BiGRU {H4}+{H4} -> GRU {D4}, "
                  f"A={A4}, E={E4}, 64 pairs/step",
                  net=dict(cell="gru", vocab_size=C8, embed_dim=E4, hidden_dim=H4, layers=1,
                           bidirectional=True, dropout=0.3, target_vocab_size=C4,
                           decoder_dim=D4, attention="additive", attention_dim=A4,
                           label_smoothing=0.1),
                  batch_size=64, shapes=2, learning_rate=0.001, clip_norm=1.0,
                  # Multi30k de->en in BPE pieces: 13.96 source pieces a pair, 14.52 target
                  # tokens (EOS included), for flops_per_token.
                  src_per_tgt=0.96, impls=["engine", "pytorch"]),
    }


GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def flops_per_token(cfg: dict) -> float:
    """FLOPs of one trained token: 6 x the multiply-adds of the forward matrix products.

    Forward: 2 FLOPs per multiply-add; backward: twice the forward (the gradients with
    respect to the inputs and to the weights). Gathers, elementwise work and the softmax's
    exponentials are not counted.

    tutorial: W s (H^2) + V s (H C)  [U x_t is a column gather, free]
    lm:       sum over layers of (D_i + H) G H  +  H C    [embedding gather free]
    classify: directions x sum over layers of (D_i + H) G H   [the output layer, 2H x K
              per sentence, not per word, is not counted]
    mt:       per target token (EOS included), with R = 2H the encoder's output size:
              the decoder cell (E + R + D) G D [input, context, recurrence], the attention's
              query D A, the deep output (D + R + E) E and the output layer E C; plus, per
              source token, times ``src_per_tgt`` (source tokens per target token of the
              corpus, a nominal ratio), the encoder's directions x sum over layers of
              (D_i + H) G H and the attention's keys R A. Not counted: the attention's scores
              and context sums, S (A + R) per target token for a source of S tokens (0.3% at
              S = 14), and the initial state, R D per sentence.
    """
    if cfg["kind"] == "tutorial":
        H, C = cfg["hidden_dim"], cfg["vocab_size"]
        return 6.0 * (H * H + H * C)
    if cfg["kind"] == "lm":
        lm = cfg["lm"]
        return 6.0 * (_stack_macs(lm) + lm["hidden_dim"] * lm["vocab_size"])
    net = cfg["net"]
    encoder = _stack_macs(net) * (2 if net["bidirectional"] else 1)
    if cfg["kind"] == "classify":
        return 6.0 * encoder
    E, R, D, A = (net["embed_dim"], net["hidden_dim"] * (2 if net["bidirectional"] else 1),
                  net["decoder_dim"], net["attention_dim"])
    decoder = ((E + R + D) * GATES[net["cell"]] * D + D * A + (D + R + E) * E
               + E * net["target_vocab_size"])
    return 6.0 * (decoder + cfg["src_per_tgt"] * (encoder + R * A))


def _stack_macs(net: dict) -> int:
    """Multiply-adds per token of one direction of a stack of cells: sum over the layers
    of (D_i + H) G H, D_i the layer's input size."""
    G, H = GATES[net["cell"]], net["hidden_dim"]
    return sum(((net["embed_dim"] if i == 0 else H) + H) * G * H for i in range(net["layers"]))


# --- data ---------------------------------------------------------------------------------------


def load_corpus(args) -> tuple[str, list[list[str]]]:
    """Tokenized training sentences and the name of their source."""
    if args.synthetic:
        rng = np.random.default_rng(0)
        words = [f"w{i}" for i in range(200)]
        p = 1.0 / np.arange(1, 201)
        p /= p.sum()
        return "synthetic", [list(rng.choice(words, size=rng.integers(5, 25), p=p))
                             for _ in range(2000)]
    from rnn_theano.data.corpus import load_sentences
    from rnn_theano.data.datasets import default_data_dir
    from rnn_theano.data.pydocs import builtin_sentences
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    path = data_dir / "ptb" / "ptb.train.txt"
    if path.is_file():
        return "ptb (ptb.train.txt)", load_sentences(path, fmt="lines", lowercase=False)
    return "built-in (Python docs)", builtin_sentences(cache_dir=data_dir)


def write_data(name: str, cfg: dict, sentences: list[list[str]], budget: int, workdir: Path,
               seed: int = 0) -> Path:
    """Write the data and the initial parameters of configuration ``name`` to an ``.npz``.

    ``budget``: trained tokens per repetition (whole sentences or windows, at least that many).
    """
    make = {"tutorial": tutorial_data, "lm": lm_data, "classify": classify_data,
            "mt": mt_data}[cfg["kind"]]
    path = workdir / f"data_{name}.npz"
    np.savez(path, **make(cfg, sentences, budget, seed))
    return path


def tutorial_data(cfg: dict, sentences: list[list[str]], budget: int,
                  seed: int) -> dict[str, np.ndarray]:
    """Whole sentences in a seeded order, concatenated with their offsets; U, V, W."""
    from rnn_theano.data.vocab import Vocabulary
    from rnn_theano.tutorial.numpy_rnn import init_params
    vocab = Vocabulary.build(sentences, cfg["vocab_size"])
    order = np.random.default_rng(seed).permutation(len(sentences))
    seqs, total = [], 0
    for i in order:
        seqs.append(vocab.encode(sentences[i]))
        total += len(seqs[-1]) - 1
        if total >= budget:
            break
    params = init_params(cfg["vocab_size"], cfg["hidden_dim"], np.random.default_rng(seed))
    return {"ids": np.concatenate(seqs).astype(np.int32),
            "offsets": np.cumsum([0] + [len(s) for s in seqs]).astype(np.int64), **params}


def lm_data(cfg: dict, sentences: list[list[str]], budget: int,
            seed: int) -> dict[str, np.ndarray]:
    """Batches padded to one length, stacked (N, T, B), with their lengths; ``p_``-prefixed
    initial parameters of the engine."""
    from rnn_theano.tasks.lm_graph import LMConfig, init_lm_params
    batches = (_stream_batches if cfg["stream"] else _sentence_batches)(cfg, sentences, budget,
                                                                        seed)
    params = init_lm_params(LMConfig(**cfg["lm"], float32=True, seed=seed))
    return {**_stacked(batches, x=np.int32, y=np.int32, mask=np.float32),
            **{f"p_{k}": v for k, v in params.items()}}


def _stacked(batches: list, lengths: str = "lengths", **fields) -> dict[str, np.ndarray]:
    """The time-major fields (name=dtype, all as long as the first) of ``batches`` padded to
    one length and stacked (N, T, B), and each batch's own length (named ``lengths``)."""
    own = [getattr(b, next(iter(fields))).shape[0] for b in batches]
    T = max(own)
    out = {name: np.stack([np.pad(getattr(b, name), ((0, T - t), (0, 0)))
                           for b, t in zip(batches, own)]).astype(dtype)
           for name, dtype in fields.items()}
    return out | {lengths: np.array(own, dtype=np.int64)}


def classify_data(cfg: dict, examples: list, budget: int, seed: int) -> dict[str, np.ndarray]:
    """Config e: the first full batches of epoch 0 of ``ClassBatches`` over the labelled
    ``examples`` (``Example``s), until ``budget`` words, stacked as ``lm_data`` stacks them,
    with their labels (N, B); ``p_``-prefixed initial parameters of the classifier."""
    from rnn_theano.data.batching import ClassBatches
    from rnn_theano.data.labelled import LabelSet
    from rnn_theano.data.vocab import Vocabulary
    from rnn_theano.tasks.classify import encode
    from rnn_theano.tasks.classify_graph import ClassifierConfig, init_classifier_params
    net, B = cfg["net"], cfg["batch_size"]
    vocab = Vocabulary.build([e.words for e in examples], net["vocab_size"])
    labels = LabelSet.of(examples)
    batches, total = [], 0
    # pad_multiple 1, as the recipe batches under Numba: every row of a batch has nearly the
    # same length, so no implementation computes much on padding.
    for batch in ClassBatches(encode(examples, vocab), labels.indices(examples), B,
                              seed=seed).epoch(0):
        if batch.x.shape[1] == B:
            batches.append(batch)
            total += batch.mask.sum()
            if total >= budget:
                break
    params = init_classifier_params(ClassifierConfig(**(net | dict(vocab_size=len(vocab))),
                                                     n_classes=len(labels), seed=seed))
    return {**_stacked(batches, x=np.int32, mask=np.float32),
            "labels": np.stack([b.labels for b in batches]).astype(np.int32),
            **{f"p_{k}": v for k, v in params.items()}}


def load_labelled_corpus(args, sentences: list[list[str]]) -> tuple[str, list]:
    """Config e's labelled sentences (``Example``s) and the name of their source: SST-2's
    training split from ``--data-dir``, else (or with ``--synthetic``) ``sentences`` with
    seeded random binary labels."""
    from rnn_theano.data.datasets import default_data_dir
    from rnn_theano.data.labelled import Example, load_labelled
    from rnn_theano.errors import UserError
    if not args.synthetic:
        data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
        try:  # never downloaded here: a benchmark does not reach the network
            train = load_labelled("sst2", data_dir=data_dir, download=False).train
            return f"sst2 (stsa.binary.train, {len(train):,} sentences)", train
        except UserError:
            pass
    labels = np.random.default_rng(0).integers(0, 2, len(sentences))
    return ("the corpus's sentences, random binary labels",
            [Example(str(label), words) for label, words in zip(labels, sentences)])


class Pairs(NamedTuple):
    """Config f's sentence pairs as ids, and the sizes of the two vocabularies."""

    src: list[np.ndarray]
    tgt: list[np.ndarray]
    src_size: int
    tgt_size: int


def load_pairs(args, net: dict) -> tuple[str, Pairs]:
    """Config f's sentence pairs and the name of their source: Multi30k's German-English
    training pairs from ``--data-dir`` in BPE pieces (a sentencepiece model per side, of
    ``net``'s vocabulary sizes, trained on that side's lines as the recipe does), else (or
    with ``--synthetic`` or ``--tiny``, whose vocabularies are too small for BPE) random ids."""
    from rnn_theano.data.datasets import default_data_dir
    from rnn_theano.data.parallel import Subwords, read_parallel
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    paths = [data_dir / "multi30k" / f"train.{lang}.gz" for lang in ("de", "en")]
    if args.synthetic or args.tiny or not all(p.is_file() for p in paths):
        return "random ids", random_pairs(net, 4000)
    lines = read_parallel(*paths)
    models = [Subwords.train(side, size, "bpe")
              for side, size in zip(lines, (net["vocab_size"], net["target_vocab_size"]))]
    src, tgt = ([model.encode(line) for line in side] for model, side in zip(models, lines))
    return (f"multi30k de-en (train.de.gz, train.en.gz, {len(src):,} pairs, BPE "
            f"{len(models[0])}/{len(models[1])})", Pairs(src, tgt, *map(len, models)))


def random_pairs(net: dict, n: int, seed: int = 0) -> Pairs:
    """``n`` pairs of random ids of ``net``'s vocabularies (never the reserved 0 to 2),
    sources of 1 to 30 ids and targets of about their length, as translations have."""
    rng = np.random.default_rng(seed)
    src_len = rng.integers(1, 31, n)
    tgt_len = np.maximum(1, src_len + rng.integers(-3, 4, n))
    ids = lambda size, k: rng.integers(3, size, k).astype(np.int32)  # noqa: E731
    return Pairs([ids(net["vocab_size"], k) for k in src_len],
                 [ids(net["target_vocab_size"], k) for k in tgt_len],
                 net["vocab_size"], net["target_vocab_size"])


def mt_data(cfg: dict, pairs: Pairs, budget: int, seed: int) -> dict[str, np.ndarray]:
    """Config f: full batches of epoch 0 of ``PairBatches`` over ``pairs``, lengths rounded
    up to multiples of 8 as the recipe batches under JAX (for every implementation, so all
    compute the same padding), of the ``cfg['shapes']`` most common (S, T) shapes only (JAX
    compiles one function per shape), one of each in turn until ``budget`` target tokens;
    stacked as ``lm_data`` stacks them, the sources' lengths in ``src_lengths``;
    ``p_``-prefixed initial parameters of the translator."""
    from collections import Counter
    from itertools import zip_longest
    from rnn_theano.data.parallel import PairBatches
    from rnn_theano.tasks.mt_graph import Seq2SeqConfig, init_mt_params
    B = cfg["batch_size"]
    shape = lambda b: (b.src.shape[0], b.y_in.shape[0])  # noqa: E731
    full = [b for b in PairBatches(pairs.src, pairs.tgt, B, seed=seed, pad_multiple=8).epoch(0)
            if b.src.shape[1] == B]
    common = [s for s, _ in Counter(map(shape, full)).most_common(cfg["shapes"])]
    batches, total = [], 0
    # A round takes one batch of each shape: the first covers them all, whatever the budget.
    for round_ in zip_longest(*[[b for b in full if shape(b) == s] for s in common]):
        kept = [b for b in round_ if b is not None]
        batches += kept
        total += sum(b.mask.sum() for b in kept)
        if total >= budget:
            break
    net = cfg["net"] | dict(vocab_size=pairs.src_size, target_vocab_size=pairs.tgt_size)
    params = init_mt_params(Seq2SeqConfig(**net, seed=seed))
    return {**_stacked(batches, "src_lengths", src=np.int32, src_mask=np.float32),
            **_stacked(batches, y_in=np.int32, y_out=np.int32, mask=np.float32),
            **{f"p_{k}": v for k, v in params.items()}}


def pair_arrays(data: dict[str, np.ndarray]) -> list[tuple[np.ndarray, ...]]:
    """Config f's batches from its ``.npz`` (``mt_data``), each cut to its own lengths:
    (src, src_mask, y_in, y_out, mask), in ``PairBatch``'s order. Numpy only: the PyTorch
    peer reads them too."""
    return [(data["src"][i, :S], data["src_mask"][i, :S], data["y_in"][i, :T],
             data["y_out"][i, :T], data["mask"][i, :T])
            for i, (S, T) in enumerate(zip(data["src_lengths"], data["lengths"]))]


def _stream_batches(cfg: dict, sentences: list[list[str]], budget: int, seed: int) -> list:
    """Full windows of the stream of the first sentences, until ``budget`` tokens."""
    from rnn_theano.data.batching import StreamBatches
    from rnn_theano.data.stream import build_stream_vocabulary, encode_stream
    B = cfg["batch_size"]
    vocab = build_stream_vocabulary(sentences, cfg["lm"]["vocab_size"])
    # Enough of the stream for the windows needed, cut into B columns.
    need = B * (budget // B + cfg["bptt_len"] * 4)
    head, n = [], 0
    for s in sentences:
        head.append(s)
        n += len(s) + 1
        if n >= need * 1.2:
            break
    batches = []
    for batch in StreamBatches(encode_stream(head, vocab), B, cfg["bptt_len"]):
        if batch.x.shape[0] < cfg["bptt_len"]:
            break
        batches.append(batch)
        if sum(b.mask.sum() for b in batches) >= budget:
            break
    return batches


def _sentence_batches(cfg: dict, sentences: list[list[str]], budget: int, seed: int) -> list:
    """Full batches of sentences of the first epoch's order, until ``budget`` tokens."""
    from rnn_theano.data.batching import SentenceBatches
    from rnn_theano.data.vocab import Vocabulary
    B = cfg["batch_size"]
    vocab = Vocabulary.build(sentences, cfg["lm"]["vocab_size"])
    batches, total = [], 0
    for batch in SentenceBatches.from_sentences(sentences, vocab, B, seed=seed).epoch(0):
        if batch.x.shape[1] != B:
            continue
        batches.append(batch)
        total += batch.mask.sum()
        if total >= budget:
            break
    return batches


# --- workers (one subprocess per implementation) ------------------------------------------------


TURN_SETTLE_S = 0.15  # after taking the lock, before the clock starts
TURN_YIELD_S = 0.05   # after releasing it, so that a waiting worker gets it first


@contextlib.contextmanager
def turn(lock_path: str | None):
    """Hold the machine alone: an exclusive lock that the workers of one config take in turns.

    The implementations of a configuration run as processes side by side, and each takes
    this lock for its setup (imports, compile) and for every pass over the data, so no two
    ever compute at once while their passes alternate in time: a slow minute of the machine
    (other virtual machines on the host) then slows every implementation alike instead of
    whichever ran in it, and the ratios stay put. After taking the lock a worker waits
    ``TURN_SETTLE_S`` before it starts its clock (the previous holder's BLAS or OpenMP threads
    spin for a while after their work); after releasing it, a short sleep lets a waiting
    worker in first.
    """
    if lock_path is None:
        yield
        return
    import fcntl
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            time.sleep(TURN_SETTLE_S)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    time.sleep(TURN_YIELD_S)


def keep_turn_to_exit(lock_path: str | None) -> None:
    """Take ``turn``'s lock for the rest of this worker's life, once its figures are in.

    A worker's teardown (freeing XLA's or Numba's state, its thread pools) takes a core for a
    while; outside the lock it ran during the last pass of whichever worker was still timing
    and slowed that pass alone (docs/benchmarks.md, "The last pass"). The descriptor is never
    closed: the kernel releases the lock when the process is gone.
    """
    if lock_path is None:
        return
    import fcntl
    fcntl.flock(os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), fcntl.LOCK_EX)


def timed_reps(items, step, threads_list, warmup, reps, set_threads, lock=None):
    """Warm-up then ``reps`` timed passes over ``items`` for each thread count.

    ``step(*item)`` trains on one item and returns its token count. Words/s is the median
    over the timed passes. A thread count whose warm-up pass runs more than 3 times slower
    than the best one so far (threads oversubscribing the cores) is abandoned after that
    pass, marked ``abandoned`` with its warm-up speed, so a pathological setting cannot
    stretch the run. Each pass runs in its ``turn`` of ``lock`` (None: no lock).
    """
    by_threads: dict = {}
    best_wps, sum_tokens = 0.0, 0.0
    for threads in threads_list:
        set_threads(threads)
        per_rep, abandoned = [], False
        for rep in range(warmup + reps):
            with turn(lock):
                tokens, start = 0.0, time.perf_counter()
                limit = 3.0 * sum_tokens / best_wps + 1.0 if best_wps else None
                for item in items:
                    tokens += step(*item)
                    if limit is not None and time.perf_counter() - start > limit:
                        abandoned = True
                        break
                elapsed = time.perf_counter() - start
            if abandoned:
                per_rep = [tokens / elapsed]
                break
            sum_tokens = tokens
            if rep >= warmup:
                per_rep.append(tokens / elapsed)
        entry = {"words_per_sec": statistics.median(per_rep), "reps": per_rep,
                 "tokens_per_rep": tokens if abandoned else sum_tokens}
        if abandoned:
            entry["abandoned"] = True
        else:
            best_wps = max(best_wps, entry["words_per_sec"])
        by_threads[str(threads)] = entry
    return by_threads


def _model(spec: dict):
    """Implementation ``spec['impl']`` on the spec's data: (items, step, first_call, check).

    ``step(*item)`` trains on one item and returns its token count; ``first_call(*item)``
    trains on it and returns its mean cross-entropy (the first loss of the table). ``check``
    is None, or ``check(*item)`` returns the first loss instead, computed at the initial
    parameters without dropout, after the timed passes (configs e and f train with dropout).
    """
    data = dict(np.load(spec["data"]))
    build = {"tutorial": _tutorial_model, "lm": _engine_model, "classify": _classify_model,
             "mt": _mt_model}
    return build[spec["kind"]](spec, data)


def initial_params(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The engine's initial parameters, stored ``p_``-prefixed in the ``.npz`` (numpy only:
    the PyTorch peer reads them too)."""
    return {k[2:]: v for k, v in data.items() if k.startswith("p_")}


def _adam_engine(engine_class, config, params: dict[str, np.ndarray], spec: dict):
    """``engine_class`` (a ``CompiledModel``) under the spec's backend with Adam, its learning
    rate and clipping, as the recipes of configs e and f build it."""
    from rnn_theano import backends
    return engine_class(config, params, mode=backends.prepare(spec.get("mode", "NUMBA")),
                        optimizer="adam", learning_rate=spec["learning_rate"],
                        clip_norm=spec["clip_norm"])


def _reset(engine, params: dict[str, np.ndarray]) -> None:
    """Put ``engine`` back at the initial ``params``: the first-loss check runs after the
    timed passes, which trained them."""
    for name, value in params.items():
        engine.params[name].set_value(value)


def _tutorial_model(spec: dict, data: dict[str, np.ndarray]):
    ids, offsets = data["ids"], data["offsets"]
    items = [(ids[offsets[i]:offsets[i + 1] - 1], ids[offsets[i] + 1:offsets[i + 1]])
             for i in range(len(offsets) - 1)]
    lr = spec["learning_rate"]
    params = {k: data[k] for k in ("U", "V", "W")}
    C, H, k = spec["vocab_size"], spec["hidden_dim"], spec["bptt_truncate"]
    if spec["impl"] == "numpy":
        from rnn_theano.tutorial.numpy_rnn import RNNNumpy
        model = RNNNumpy(C, H, k, params=params)
    else:
        from rnn_theano import backends
        from rnn_theano.tutorial.theano_rnn import RNNTheano
        # One sentence of any length per step: Numba, as the command line compiles it.
        model = RNNTheano(C, H, k, float32=True, params=params,
                          mode=backends.prepare("NUMBA", fixed_shapes=False))

    def step(x, y):
        return len(x) if model.sgd_step(x, y, lr) is not None else 0

    def first_call(x, y):
        return float(model.sgd_step(x, y, lr)) / len(x)
    return items, step, first_call, None


def _engine_model(spec: dict, data: dict[str, np.ndarray]):
    from rnn_theano import backends
    from rnn_theano.tasks.lm_engine import LMEngine
    from rnn_theano.tasks.lm_graph import LMConfig
    config = LMConfig(**spec["lm"], float32=True)
    params = initial_params(data)
    engine = LMEngine(config, params, mode=backends.prepare(spec.get("mode", "NUMBA")),
                      optimizer="sgd", learning_rate=spec["learning_rate"],
                      clip_norm=spec["clip_norm"])
    items = [(data["x"][i, :T], data["y"][i, :T], data["mask"][i, :T])
             for i, T in enumerate(data["lengths"])]
    carry = {"state": engine.initial_state(data["x"].shape[2])}
    stream = spec["stream"]

    def step(x, y, mask):
        start = carry["state"] if stream else engine.initial_state(x.shape[1])
        r = engine.train_step(x, y, mask, start)
        carry["state"] = r.state
        return r.n_tokens

    def first_call(x, y, mask):
        r = engine.train_step(x, y, mask, engine.initial_state(x.shape[1]))
        return r.cost / r.n_tokens
    return items, step, first_call, None


def _classify_model(spec: dict, data: dict[str, np.ndarray]):
    """Config e on the engine: ``ClassifierEngine`` with Adam, as the recipe builds it. Its
    training steps draw dropout masks that the peer cannot draw, so the first loss to compare
    (``check``) is the first batch's mean cross-entropy at the initial parameters, without
    dropout: the evaluation graph, run after the timed passes so that the compile times are
    the training graph's alone."""
    from rnn_theano.tasks.classify_engine import ClassifierEngine
    from rnn_theano.tasks.classify_graph import ClassifierConfig
    params = initial_params(data)
    config = ClassifierConfig(**(spec["net"] | dict(vocab_size=len(params["embed"]))),
                              n_classes=len(params["out_b"]), float32=True)
    engine = _adam_engine(ClassifierEngine, config, params, spec)
    items = [(data["x"][i, :T], data["mask"][i, :T], data["labels"][i])
             for i, T in enumerate(data["lengths"])]

    def step(x, mask, labels):
        engine.train_step(x, mask, labels)
        return float(mask.sum())  # real words, as the other configurations count

    def first_call(x, mask, labels):
        r = engine.train_step(x, mask, labels)
        return r.cost / r.n

    def check(x, mask, labels):
        _reset(engine, params)
        r = engine.eval_step(x, mask, labels)
        return r.cost / r.n
    return items, step, first_call, check


def _mt_model(spec: dict, data: dict[str, np.ndarray]):
    """Config f on the engine: ``MTEngine`` with Adam, as ``train-mt`` builds it, on the
    ``PairBatch``es of ``mt_data``. Its steps count the real target tokens (EOS included).
    Under JAX each batch shape compiles a function of its own, on its first use: the warm-up
    pass of ``timed_reps`` goes over every batch, so every shape, before any timed pass.
    As for config e, the first loss to compare (``check``) is the first batch's at the
    initial parameters without dropout, and here also without label smoothing (``eval_step``:
    the plain cross-entropy per real target token), run after the timed passes."""
    from rnn_theano.data.parallel import PairBatch
    from rnn_theano.tasks.mt_engine import MTEngine
    from rnn_theano.tasks.mt_graph import Seq2SeqConfig
    params = initial_params(data)
    config = Seq2SeqConfig(**(spec["net"] | dict(vocab_size=len(params["embed"]),
                                                 target_vocab_size=len(params["out_b"]))))
    engine = _adam_engine(MTEngine, config, params, spec)
    items = [(PairBatch(*arrays),) for arrays in pair_arrays(data)]

    def step(batch):
        return engine.train_step(batch)[1]

    def first_call(batch):
        cost, n, _ = engine.train_step(batch)
        return cost / n

    def check(batch):
        _reset(engine, params)
        cost, n = engine.eval_step(batch)
        return cost / n
    return items, step, first_call, check


def worker(spec: dict) -> dict:
    """Train implementation ``spec['impl']`` on the spec's data; the figures as a dict.

    ``compile_only``: time the first call and a second one (compile = first - second) and stop.
    ``lock``: the config's lock file (see ``turn``); the setup up to the steady-state calls
    takes one turn, every pass another.
    """
    from threadpoolctl import threadpool_limits
    impl = spec["impl"]
    result: dict = {"impl": impl}
    with turn(spec.get("lock")):
        items, step, first_call, check = _model(spec)
        # First call (compiles, for the PyTensor implementations), then a steady-state call.
        t0 = time.perf_counter()
        result["first_loss"] = first_call(*items[0])
        t1 = time.perf_counter()
        step(*items[0])
        t2 = time.perf_counter()
        step(*items[0])
        t3 = time.perf_counter()
    steady = min(t2 - t1, t3 - t2)
    result["first_call_s"] = t1 - t0
    result["compile_s"] = max(0.0, (t1 - t0) - steady) if impl != "numpy" else None
    if spec.get("compile_only"):
        return result

    if spec.get("mode") == "JAX":
        # XLA runs its own thread pool over every core; there is no BLAS setting to try.
        threads, set_threads = ["xla"], lambda n: None
    else:
        threads, set_threads = spec["threads"], lambda n: threadpool_limits(limits=n,
                                                                             user_api="blas")
    result["by_threads"] = timed_reps(items, step, threads, spec["warmup"], spec["reps"],
                                      set_threads, spec.get("lock"))
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if check is not None:
        with turn(spec.get("lock")):
            result["first_loss"] = check(*items[0])
    keep_turn_to_exit(spec.get("lock"))
    return result


def run_subprocess(cmd: list[str], spec: dict, workdir: Path, env: dict | None = None,
                   timeout: float = 900) -> dict:
    """Run a worker with ``spec``; its JSON result (or an ``error`` entry)."""
    unique = f"{os.getpid()}_{time.time_ns()}"
    spec_path = workdir / f"spec_{spec['config']}_{spec['impl']}_{unique}.json"
    spec_path.write_text(json.dumps(spec))
    try:
        proc = subprocess.run([*cmd, str(spec_path)], capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1],
                "returncode": proc.returncode}
    return json.loads(lines[-1])


# --- the machine ----------------------------------------------------------------------------------


def best_gflops(matmul, n: int, seconds: float) -> float:
    """Best GFLOP/s of ``matmul()`` (an n x n x n product) over ``seconds``, after one call."""
    matmul()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        matmul()
        best = max(best, 2.0 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def gemm_gflops(threads_list, n: int = 1024, seconds: float = 1.0) -> dict[str, float]:
    """Best float32 GEMM GFLOP/s of numpy (n x n x n) for each BLAS thread count."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    out = {}
    for threads in threads_list:
        with threadpool_limits(limits=threads, user_api="blas"):
            out[str(threads)] = best_gflops(lambda: np.matmul(a, b, out=c), n, seconds)
    return out


def jax_gemm_gflops(n: int = 8192, seconds: float = 1.0) -> tuple[float, str] | None:
    """Best full-float32 GEMM GFLOP/s of JAX's default device and its name; None on a CPU."""
    import jax
    import jax.numpy as jnp
    if jax.default_backend() == "cpu":
        return None
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(key_a, (n, n), jnp.float32)
    b = jax.random.normal(key_b, (n, n), jnp.float32)
    matmul = jax.jit(lambda a, b: jnp.matmul(a, b, precision="highest"))
    return (best_gflops(lambda: matmul(a, b).block_until_ready(), n, seconds),
            jax.devices()[0].device_kind)


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pytensor
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__,
            "pytensor": pytensor.__version__, "load_average": os.getloadavg()}


def torch_python(args) -> str | None:
    """A Python that imports torch, or None."""
    candidates = [args.torch_python] if args.torch_python else [sys.executable,
                                                                 str(TORCH_VENV / "bin" / "python")]
    for py in candidates:
        if py and shutil.which(py) or (py and Path(py).is_file()):
            ok = subprocess.run([py, "-c", "import torch, numpy"], capture_output=True)
            if ok.returncode == 0:
                return py
    if args.make_torch_venv and not args.torch_python:
        # Pinned, so that the peer's numbers compare across runs: Python 3.11, for which
        # torch 2.13.0 has a CPU wheel (on 3.12 a plain "pip install torch" pulls a
        # multi-gigabyte CUDA build).
        print(f"creating {TORCH_VENV} (Python 3.11, torch 2.13.0 CPU)", flush=True)
        env = dict(os.environ, PYENV_VERSION=os.environ.get("PYENV_VERSION", "3.11.7"))
        py = str(TORCH_VENV / "bin" / "python")
        try:
            subprocess.run(["python3.11", "-m", "venv", str(TORCH_VENV)], check=True, env=env)
            subprocess.run([py, "-m", "pip", "install", "-q", "torch==2.13.0", "numpy"],
                           check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            print(f"warning: could not create {TORCH_VENV}: {e}", file=sys.stderr)
            return None
        return py
    return None


# --- the run -------------------------------------------------------------------------------------

ENGINE_LABELS = {"NUMBA": "engine-numba", "JAX": "engine-jax"}


def engine_modes(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The engine's backends from ``--mode``; JAX is left out, with a warning, if not installed."""
    modes = [m.strip().upper() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in ENGINE_LABELS]
    if bad or not modes:
        parser.error(f"--mode: unknown backend {','.join(bad) if bad else repr(text)}: "
                     "use NUMBA, JAX or NUMBA,JAX")
    if "JAX" in modes:
        try:
            import jax  # noqa: F401
        except ImportError:
            if modes == ["JAX"]:
                parser.error("--mode JAX needs jax: pip install -e '.[jax]'")
            print("warning: jax is not installed (pip install -e '.[jax]'); the engine runs "
                  "under Numba only", file=sys.stderr)
            modes.remove("JAX")
    return modes


def best(entry: dict) -> tuple[str | None, float | None]:
    by = entry.get("by_threads") or {}
    if not by:
        return None, None
    t = max(by, key=lambda k: by[k]["words_per_sec"])
    return t, by[t]["words_per_sec"]


def fmt(v, spec="{:,.0f}", none="-"):
    return none if v is None else spec.format(v)


def _spread(r: dict) -> str:
    """The lowest and highest ratio of the rounds (``--alone``), if there were several."""
    ratios = r.get("ratio_rounds") or []
    return f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else ""


def table(results: dict) -> str:
    head = ("cfg", "implementation", "thr", "words/s", "vs peer", "1 vs 2 thr", "warm comp s",
            "cold comp s", "peak RSS MiB", "% GEMM", "first loss")
    rows = [head]
    for name, c in results["configs"].items():
        for r in c["results"]:
            by = r.get("by_threads") or {}
            rows.append((name, r["impl"], r.get("best_threads") or "-", fmt(r.get("words_per_sec")),
                         fmt(r.get("ratio_to_peer"), "{:.2f}x") + _spread(r),
                         "/".join(fmt(by[k]["words_per_sec"]) for k in sorted(by)) or "-",
                         fmt(r.get("compile_warm_s"), "{:.2f}"),
                         fmt(r.get("compile_cold_s"), "{:.1f}"),
                         fmt(r.get("peak_rss_mib"), "{:.0f}"),
                         fmt(r.get("gemm_fraction"), "{:.1%}"),
                         fmt(r.get("first_loss"), "{:.4f}") if "error" not in r
                         else r["error"][:60]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(str(v).ljust(w) for v, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="checkpoints/bench.json", help="JSON results file")
    p.add_argument("--configs", default="a,b,c,d,e,f",
                   help="comma-separated subset of a,b,c,d,e,f")
    p.add_argument("--quick", action="store_true",
                   help="3 repetitions (of passes as long as the full run's), no cold compile")
    p.add_argument("--tiny", action="store_true", help="tiny models (for the test)")
    p.add_argument("--synthetic", action="store_true", help="random sentences instead of PTB "
                   "(config f: random ids instead of Multi30k)")
    p.add_argument("--data-dir", default=None, help="directory holding ptb/ptb.train.txt, "
                   "sentences/stsa.binary.train and multi30k/train.{de,en}.gz (default: "
                   "$RNN_THEANO_DATA or ./data)")
    p.add_argument("--threads", default="1,2", help="thread counts to try (best is reported)")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5, quick 3)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--tokens", type=float, default=1.0, help="scale the tokens per repetition")
    p.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--alone", action="store_true",
                   help="run each implementation alone, one after another, instead of side by "
                   "side taking turns; --rounds times, reporting the median and each round")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds of --alone (default 3)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-compile measurement")
    p.add_argument("--cold-jobs", type=int, default=2,
                   help="cold compiles run side by side, after all timed runs (default 2)")
    p.add_argument("--torch-python", default=None, help="a Python with torch for the peer")
    p.add_argument("--make-torch-venv", action="store_true",
                   help="create .venv-torch (Python 3.11 + torch 2.13.0 CPU) if no torch is found")
    p.add_argument("--mode", default="NUMBA,JAX",
                   help="PyTensor backends of the engine (configs b to f), one row each: "
                   "NUMBA, JAX or both; JAX runs on a GPU when jax has one "
                   "(experiments/gpu_check.sh)")
    p.add_argument("--peer-device", default="cpu", choices=("cpu", "cuda"),
                   help="where the PyTorch peer runs (configs b to f)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


# Tokens per repetition of each configuration: (every implementation, the numpy reference).
# Config f's are target tokens, about 34 MFLOP each (flops_per_token): 4 batches of
# Multi30k (two of each shape).
BUDGETS = {"a": (3000, 300), "b": (12000, 0), "c": (6000, 0), "d": (6000, 0), "e": (12000, 0),
           "f": (4000, 0)}


@dataclass
class Run:
    """The settings of one benchmark run, shared by its configurations."""

    args: argparse.Namespace
    modes: list[str]
    threads: list[int]
    reps: int
    peer_py: str | None
    sentences: list[list[str]]
    workdir: Path
    started: float = field(default_factory=time.perf_counter)

    @property
    def scale(self) -> float:
        """Of the tokens per repetition (``BUDGETS``)."""
        return self.args.tokens * (0.05 if self.args.tiny else 1.0)

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:5.0f}s] {message}", flush=True)

    def corpus(self, cfg: dict) -> tuple[str | None, list | Pairs]:
        """Configuration ``cfg``'s sentences, and the name of their source when they are not
        the run's corpus (config e's labelled sentences, read on first use; config f's
        sentence pairs)."""
        if cfg["kind"] == "mt":
            return load_pairs(self.args, cfg["net"])
        return self.labelled if cfg["kind"] == "classify" else (None, self.sentences)

    @cached_property
    def labelled(self) -> tuple[str, list]:
        return load_labelled_corpus(self.args, self.sentences)


WORKER = [sys.executable, str(Path(__file__).resolve()), "--worker"]


def run_config(run: Run, name: str, cfg: dict) -> tuple[dict, list[tuple[dict, dict]]]:
    """Every implementation of configuration ``name``, side by side taking turns: its entry of
    the results, and the cold compiles to measure later (result to fill in, worker spec)."""
    budget, numpy_budget = BUDGETS[name]
    source, corpus = run.corpus(cfg)
    data = write_data(name, cfg, corpus, max(1, int(budget * run.scale)), run.workdir)
    data_np = (write_data(name + "_numpy", cfg, corpus,
                          max(1, int(numpy_budget * run.scale)), run.workdir)
               if "numpy" in cfg["impls"] else None)
    entry = {"title": cfg["title"], "flops_per_token": flops_per_token(cfg), "results": [],
             "spec": {k: v for k, v in cfg.items() if k != "impls"},
             **({"corpus": source} if source else {})}
    runs = [(impl, mode) for impl in cfg["impls"]
            for mode in (run.modes if impl == "engine" else ["NUMBA"])
            if impl != "pytorch" or run.peer_py is not None]
    labels = [ENGINE_LABELS[mode] if impl == "engine" else impl for impl, mode in runs]
    lock = run.workdir / f"turns_{name}.lock"  # the implementations take turns: see turn()
    jobs = []
    for (impl, mode), label in zip(runs, labels):
        spec = {k: v for k, v in cfg.items() if k != "impls"} | dict(
            impl=impl, label=label, config=name, threads=run.threads, reps=run.reps,
            warmup=run.args.warmup, data=str(data_np if impl == "numpy" else data),
            mode=mode, device=run.args.peer_device, lock=str(lock))
        jobs.append(([run.peer_py, str(PEER)] if impl == "pytorch" else WORKER, spec))
    how = (f"each alone, {run.args.rounds} rounds" if run.args.alone
           else "side by side, taking turns")
    run.log(f"{name}: {', '.join(labels)} ({how}" + (f"; {source})" if source else ")") + " ...")
    outcomes = alone(run, jobs) if run.args.alone else side_by_side(run, jobs)
    cold = []
    for (impl, _), label, (_, spec), r in zip(runs, labels, jobs, outcomes):
        if impl not in ("pytorch", "numpy") and "error" not in r:
            r["compile_warm_s"] = r.pop("compile_s")
            cold.append((r, dict(spec, compile_only=True, lock=None)))
        else:
            r.pop("compile_s", None)
        r["impl"] = label
        r["best_threads"], r["words_per_sec"] = best(r)
        r["tokens_per_rep"] = (r.get("by_threads") or {}).get(
            r.get("best_threads") or "", {}).get("tokens_per_rep")
        entry["results"].append(r)
    peer = next((r for r in entry["results"] if r["impl"] == "pytorch"
                 and r.get("words_per_sec")), None)
    for r in entry["results"]:
        r["ratio_to_peer"] = (r["words_per_sec"] / peer["words_per_sec"]
                              if peer and r.get("words_per_sec") else None)
        if r["ratio_to_peer"] and "rounds" in r:  # each round's ratio: neighbours in time
            r["ratio_rounds"] = [a / b for a, b in zip(r["rounds"], peer["rounds"])]
    return entry, cold


def side_by_side(run: Run, jobs: list[tuple[list[str], dict]]) -> list[dict]:
    """The implementations' workers started together, taking turns through their lock."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda job: run_subprocess(job[0], job[1], run.workdir), jobs))


def alone(run: Run, jobs: list[tuple[list[str], dict]]) -> list[dict]:
    """Each implementation's worker alone on the machine, one after another, ``--rounds``
    times, the order reversed every other round (so that no implementation always runs
    first); per implementation, the rounds merged (``merge_rounds``)."""
    rounds = []
    for i in range(run.args.rounds):
        order = range(len(jobs)) if i % 2 == 0 else reversed(range(len(jobs)))
        got = {j: run_subprocess(jobs[j][0], dict(jobs[j][1], lock=None), run.workdir)
               for j in order}
        rounds.append([got[j] for j in range(len(jobs))])
    return [merge_rounds([r[j] for r in rounds]) for j in range(len(jobs))]


def merge_rounds(results: list[dict]) -> dict:
    """One implementation's rounds as one result: the first round's figures, with the words/s
    of each thread count the median over the rounds (each round's under ``rounds``), and the
    best thread count's rounds at the top level; the first failed round if any failed."""
    failed = [r for r in results if "error" in r]
    if failed:
        return failed[0]
    merged = results[0]
    for threads, entry in merged["by_threads"].items():
        per_round = [r["by_threads"][threads]["words_per_sec"] for r in results]
        entry.update(words_per_sec=statistics.median(per_round), rounds=per_round)
    merged["rounds"] = merged["by_threads"][best(merged)[0]]["rounds"]
    if merged.get("compile_s") is not None:
        merged["compile_s"] = statistics.median(r["compile_s"] for r in results)
    return merged


def cold_compiles(run: Run, jobs: list[tuple[dict, dict]]) -> None:
    """Time each compiled implementation's first call in a fresh process with an empty
    PyTensor cache (``base_compiledir``), ``--cold-jobs`` at a time, after every timed run so
    that none runs beside one."""
    def cold_compile(job):
        r, spec = job
        cache = run.workdir / f"compiledir_{spec['config']}_{spec['label']}"
        flags = [os.environ.get("PYTENSOR_FLAGS", ""), f"base_compiledir={cache}"]
        env = dict(os.environ, PYTENSOR_FLAGS=",".join(f for f in flags if f))
        c = run_subprocess(WORKER, spec, run.workdir, env=env)
        r["compile_cold_s"] = c.get("compile_s")
        r["compile_cold_first_call_s"] = c.get("first_call_s")
        shutil.rmtree(cache, ignore_errors=True)

    run.log(f"cold compiles ({len(jobs)}, {run.args.cold_jobs} at a time) ...")
    with ThreadPoolExecutor(max_workers=run.args.cold_jobs) as pool:
        list(pool.map(cold_compile, jobs))


def add_ceiling(results: dict, run: Run) -> None:
    """The GEMM ceiling and each row's share of it (``gemm_fraction``).

    On the CPU, the best numpy rate of two measurements, before and after the runs (a
    neighbour's load during one of them lowers it); when the engine ran on a GPU, the GPU's.
    """
    gemm_start, gemm_end = results["gemm_gflops_start"], gemm_gflops(run.threads)
    gemm = {t: max(gemm_start[t], gemm_end[t]) for t in gemm_start}
    ceiling, where = max(gemm.values()), "CPU, numpy"
    accelerator = jax_gemm_gflops() if "JAX" in run.modes else None
    if accelerator:
        ceiling, where = accelerator[0], f"{accelerator[1]}, JAX"
        results["machine"]["accelerator"] = accelerator[1]
    results.update(gemm_gflops_end=gemm_end, gemm_gflops_by_threads=gemm, gemm_gflops=ceiling,
                   gemm_ceiling_device=where)
    for c in results["configs"].values():
        for r in c["results"]:
            if r.get("words_per_sec"):
                r["gemm_fraction"] = r["words_per_sec"] * c["flops_per_token"] / (ceiling * 1e9)


def start(args: argparse.Namespace, argv: list[str] | None, run: Run, source: str) -> dict:
    """The results' header: what ran where, before any measurement of the models."""
    command = [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    return {"engine_modes": run.modes, "peer_device": args.peer_device,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(command), "machine": machine_info(), "corpus": source,
            "quick": args.quick, "alone_rounds": args.rounds if args.alone else None,
            "threads_tried": run.threads, "reps": run.reps,
            "warmup": args.warmup, "gemm_gflops_start": gemm_gflops(run.threads),
            "peer_python": run.peer_py, "cold_compile_jobs_in_parallel": args.cold_jobs,
            "memory": "peak RSS of each worker subprocess (resource.getrusage ru_maxrss), "
                      "interpreter and imports included",
            "configs": {}}


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    p = _parser()
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(Path(args.worker).read_text()))))
        return 0
    modes = engine_modes(p, args.mode)
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: give at least 1")
    all_cfgs = configs(args.tiny)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    for n in names:
        if n not in all_cfgs:
            p.error(f"unknown configuration {n!r}: use a subset of {','.join(all_cfgs)}")
    peer_py = None if args.no_peer else torch_python(args)
    if not args.no_peer and peer_py is None:
        print("warning: no Python with torch found (give --torch-python, or --make-torch-venv); "
              "running without the PyTorch peer", file=sys.stderr)
    source, sentences = load_corpus(args)
    print(f"corpus: {source}, {len(sentences):,} sentences", flush=True)
    with tempfile.TemporaryDirectory(prefix="rnn-bench-") as tmp:
        run = Run(args, modes, [int(t) for t in args.threads.split(",")],
                  args.reps or (3 if args.quick else 5), peer_py, sentences, Path(tmp), started)
        print("measuring float32 GEMM ...", flush=True)
        results = start(args, argv, run, source)
        cold_jobs = []
        for name in names:
            results["configs"][name], cold = run_config(run, name, all_cfgs[name])
            cold_jobs += cold
        if cold_jobs and not (args.no_cold or args.quick):
            cold_compiles(run, cold_jobs)
    add_ceiling(results, run)
    results["total_seconds"] = time.perf_counter() - run.started
    results["machine"]["load_average_end"] = os.getloadavg()
    report(results, Path(args.out))
    return 0


def report(results: dict, out: Path) -> None:
    """Write the results to ``out`` and print the table and the machine's figures."""
    from rnn_theano.atomic import write_json
    write_json(out, results)
    gemm = results["gemm_gflops_by_threads"]
    print()
    print(table(results))
    print(f"\nfloat32 GEMM ceiling {results['gemm_gflops']:.0f} GFLOP/s "
          f"({results['gemm_ceiling_device']}; CPU threads: "
          + ", ".join(f"{k}: {v:.0f}" for k, v in gemm.items()) + f"); corpus {results['corpus']}"
          + "".join(f"; config {name}: {c['corpus']}" for name, c in results["configs"].items()
                    if "corpus" in c))
    print(f"load average at start {results['machine']['load_average'][0]:.2f}, "
          f"at end {results['machine']['load_average_end'][0]:.2f}; "
          f"{results['total_seconds']:.0f} s in all; results in {out}")


if __name__ == "__main__":
    sys.exit(main())
