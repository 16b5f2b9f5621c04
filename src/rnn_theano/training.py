"""The tutorial's training loop: SGD, one sentence per step, learning rate halved on a rise.

Losses are mean cross-entropy per predicted word in nats: every target of every sentence
counts, ``SENTENCE_END`` included, ``SENTENCE_START`` never (it is only ever an input).
Perplexity is ``exp(loss)``. A unigram model (word frequencies of the training targets) is
scored on the same held-out sentences: the baseline a language model must beat.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .interrupt import StopFlag

Pairs = Sequence[tuple[np.ndarray, np.ndarray]]

# The training loss the halving rule watches is measured on at most this many training
# sentences (the tutorial's notebook also checked its loss on 1,000 examples): a full pass
# over a large corpus would cost a third of an epoch at every evaluation.
TRAIN_EVAL_SENTENCES = 2000


@dataclass
class Evaluation:
    """One row of the training log."""

    epoch: int
    learning_rate: float
    train_loss: float
    valid_loss: float
    valid_ppl: float
    seconds: float
    words_per_second: float


def limit_blas_threads(threads: int) -> None:
    """Cap the BLAS thread pools (0: leave the library's default).

    At these matrix sizes extra threads gain little, and when the cores are shared their
    spinning slowed training several-fold (measured: 267 vs 1,949 words/s with another job
    running on the 2 cores). Numba-compiled graphs call SciPy's BLAS, so it is loaded first
    for the limit to reach it.
    """
    if threads > 0:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library to be limited)

        threadpool_limits(limits=threads, user_api="blas")


def mean_loss(model, pairs: Pairs) -> float:
    """Mean cross-entropy per predicted word over ``pairs``, in nats."""
    return model.calculate_loss([x for x, _ in pairs], [y for _, y in pairs])


def unigram_loss(train: Pairs, valid: Pairs, vocab_size: int) -> float:
    """Per-word cross-entropy on ``valid`` of add-one-smoothed training word frequencies."""
    counts = np.ones(vocab_size)
    for _, y in train:
        np.add.at(counts, y, 1.0)
    logp = np.log(counts / counts.sum())
    return float(-np.mean(np.concatenate([logp[y] for _, y in valid])))


def run_epoch(model, pairs: Pairs, order: np.ndarray, learning_rate: float, desc: str,
              stop: StopFlag | None = None) -> float:
    """One pass of SGD over ``pairs`` in ``order``; returns trained words per second."""
    n_words = sum(len(pairs[i][1]) for i in order)
    start = time.perf_counter()
    with tqdm(total=n_words, unit="word", unit_scale=True, desc=desc, file=sys.stderr,
              dynamic_ncols=True, mininterval=0.5) as bar:
        total_cost, seen = 0.0, 0
        for step, i in enumerate(order, 1):
            x, y = pairs[i]
            total_cost += float(model.sgd_step(x, y, learning_rate))
            if stop:
                stop.check()
            seen += len(y)
            bar.update(len(y))
            if step % 50 == 0:  # the running loss of this epoch, per word
                bar.set_postfix(loss=f"{total_cost / seen:.3f}", lr=f"{learning_rate:g}")
    return n_words / (time.perf_counter() - start)


def train(model, train_pairs: Pairs, valid_pairs: Pairs, *, epochs: int, learning_rate: float,
          eval_every: int, seed: int, state: dict[str, Any] | None = None,
          stop: StopFlag | None = None,
          save: Callable[[dict[str, Any]], None], log: Callable[[str], None] = print,
          ) -> dict[str, Any]:
    """Train ``model`` in place for ``epochs`` epochs and return the final training state.

    Every ``eval_every`` epochs (and after the last) it scores the training loss on a fixed
    sample and the held-out loss, halves the learning rate if the training loss went up (the
    tutorial's rule), and calls ``save(state)``. ``state`` from a checkpoint resumes the epoch
    count, learning rate and history. Ctrl-C (``stop`` raised, or a KeyboardInterrupt) saves
    and returns with ``state["interrupted"]``.
    """
    state = dict(state or {})
    history: list[dict[str, Any]] = list(state.get("history", []))
    lr = float(state.get("learning_rate", learning_rate))
    first = int(state.get("epoch", 0))
    rng = np.random.default_rng(seed)
    train_sample = [train_pairs[i] for i in
                    rng.permutation(len(train_pairs))[:TRAIN_EVAL_SENTENCES]]

    def evaluate(epoch: int, seconds: float, wps: float) -> None:
        nonlocal lr
        train_loss = mean_loss(model, train_sample)
        if history and train_loss > history[-1]["train_loss"]:
            lr *= 0.5
            log(f"training loss rose ({history[-1]['train_loss']:.4f} -> {train_loss:.4f}): "
                f"learning rate halved to {lr:g}")
        valid_loss = mean_loss(model, valid_pairs)
        row = Evaluation(epoch, lr, train_loss, valid_loss, math.exp(valid_loss), seconds, wps)
        history.append(asdict(row))
        log(f"epoch {epoch:3d}  train loss {train_loss:.4f}  held-out loss {valid_loss:.4f}  "
            f"perplexity {row.valid_ppl:8.2f}  lr {lr:g}"
            + (f"  {wps:,.0f} words/s" if wps else ""))

    def snapshot(epoch: int, **extra: Any) -> dict[str, Any]:
        return {"epoch": epoch, "learning_rate": lr, "history": history, **extra}

    done, started = first, time.perf_counter()  # done: the last epoch completed
    try:
        log("compiling the graphs if needed (a first run takes under a minute; later runs "
            "reuse the cache)")
        if not history:  # the untrained model: its loss should be close to ln(C)
            evaluate(0, 0.0, 0.0)
        # A step with learning rate 0 changes nothing but compiles the training graph now,
        # so compilation time does not pollute the first epoch's words per second.
        model.sgd_step(*train_pairs[0], 0.0)
        if stop:
            stop.check()
        for epoch in range(first + 1, first + epochs + 1):
            # Seeded by epoch, so a resumed run visits sentences in the same order.
            order = np.random.default_rng([seed, epoch]).permutation(len(train_pairs))
            wps = run_epoch(model, train_pairs, order, lr, f"epoch {epoch}", stop)
            done = epoch
            if epoch % eval_every == 0 or epoch == first + epochs:
                evaluate(epoch, time.perf_counter() - started, wps)
                save(snapshot(epoch))
    except KeyboardInterrupt:
        log(f"interrupted after {done} complete epoch(s): saving the model as it is")
        state = snapshot(done, interrupted=True)
        save(state)
        return state
    return snapshot(done)
