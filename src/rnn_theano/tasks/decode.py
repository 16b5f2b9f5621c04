"""Greedy and beam-search decoding, batched over sentences (and beams).

Both drive a ``Decoder``: ``encode(src, mask)`` runs the encoder once per batch and returns an
encoded batch (``mt_engine.EncodedBatch``: one column per sentence, the decoder's states among
its fields), and ``step(y_prev, encoded)`` gives the log-probabilities (N, C) of the next word
for N columns, their new states and attention weights. Beam search keeps K hypotheses per
sentence as K columns (``encoded.take`` repeats each sentence K times), and after each step
moves the decoder states to the columns of the hypotheses that extend them.

Scores are sums of the model's log-probabilities of every word chosen, the end of sentence
(EOS) included. Beam search ranks finished hypotheses by the score divided by
``length ** length_penalty`` (length counting EOS): 0 ranks by the raw log-probability,
which favours short outputs; 1 by the mean log-probability per word.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np

from ..data.parallel import BOS, EOS


class Decoder(Protocol):
    def encode(self, src: np.ndarray, src_mask: np.ndarray) -> Any: ...
    def step(self, y_prev: np.ndarray, encoded: Any) -> tuple[np.ndarray, list, np.ndarray]: ...


class Hypothesis(NamedTuple):
    """One output: its ids (EOS left out), the sum of their log-probabilities (EOS's
    included), and the length-normalised score beam search ranks by."""

    ids: list[int]
    log_prob: float
    score: float


def greedy(model: Decoder, src: np.ndarray, src_mask: np.ndarray,
           max_len: Sequence[int]) -> list[Hypothesis]:
    """The most probable next word at every step, for each column of the batch, until EOS or
    ``max_len[b]`` words."""
    enc = model.encode(src, src_mask)
    B = src.shape[1]
    y, done = np.full(B, BOS, np.int32), np.zeros(B, bool)
    out, log_prob = [[] for _ in range(B)], np.zeros(B)
    for _ in range(max(max_len)):
        log_probs, states, _ = model.step(y, enc)
        enc = enc._replace(states=states)
        y = log_probs.argmax(axis=1).astype(np.int32)
        for b in np.flatnonzero(~done):
            log_prob[b] += log_probs[b, y[b]]
            if y[b] == EOS:
                done[b] = True
            else:
                out[b].append(int(y[b]))
                done[b] = len(out[b]) >= max_len[b]
        if done.all():
            break
    return [Hypothesis(ids, float(lp), float(lp)) for ids, lp in zip(out, log_prob)]


def beam_search(model: Decoder, src: np.ndarray, src_mask: np.ndarray, max_len: Sequence[int],
                beam: int, length_penalty: float = 1.0) -> list[list[Hypothesis]]:
    """The ``beam`` best finished hypotheses of each column, best first.

    A hypothesis finishes when it chooses EOS, or reaches ``max_len[b]`` words; a sentence is
    done when ``beam`` hypotheses have finished. Each step extends every live hypothesis by
    every word; of the ``2 * beam`` best extensions of a sentence, those among the first
    ``beam`` that end are finished, and the best ``beam`` that do not end live on.
    """
    B, K = src.shape[1], beam
    enc = model.encode(src, src_mask).take(np.repeat(np.arange(B), K))
    scores = np.full((B, K), -np.inf)
    scores[:, 0] = 0.0  # all K columns start equal: only one may extend, or the beam repeats
    hyps: list[list[list[int]]] = [[[] for _ in range(K)] for _ in range(B)]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    y = np.full(B * K, BOS, np.int32)
    for _ in range(max(max_len)):
        log_probs, states, _ = model.step(y, enc)
        C = log_probs.shape[1]
        candidates = (scores[:, :, None] + log_probs.reshape(B, K, C)).reshape(B, K * C)
        best = _top(candidates, 2 * K)
        origin = np.repeat(np.arange(B) * K, K)  # a dead column copies the sentence's first
        for b in range(B):
            alive = _extend(candidates[b], best[b], hyps[b], finished[b], K, C, max_len[b],
                            length_penalty)
            scores[b] = -np.inf
            for k, (score, parent, word) in enumerate(alive):
                scores[b, k], origin[b * K + k], y[b * K + k] = score, b * K + parent, word
            hyps[b] = [hyps[b][p] + [w] for _, p, w in alive] + [[]] * (K - len(alive))
        if all(len(f) >= K or not np.isfinite(s).any() for f, s in zip(finished, scores)):
            break
        # A column's source never changes (a dead one copies its own sentence's first), so
        # only the decoder states move.
        enc = enc._replace(states=[s[origin] for s in states])
    return [sorted(f, key=lambda h: -h.score)[:K] for f in finished]


def _top(candidates: np.ndarray, n: int) -> np.ndarray:
    """Column indices of the ``n`` largest entries of each row, largest first."""
    n = min(n, candidates.shape[1])
    part = np.argpartition(-candidates, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(candidates, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def _extend(candidates: np.ndarray, best: np.ndarray, hyps: list[list[int]],
            finished: list[Hypothesis], K: int, C: int, max_len: int,
            length_penalty: float) -> list[tuple[float, int, int]]:
    """One sentence's step: move the best candidates that end into ``finished`` and return
    up to K live ones as (score, parent column, word)."""
    alive: list[tuple[float, int, int]] = []
    if len(finished) >= K:
        return alive
    for rank, j in enumerate(best):
        score = float(candidates[j])
        if not np.isfinite(score):
            break
        parent, word = divmod(int(j), C)
        ids = hyps[parent] + ([] if word == EOS else [word])
        if word == EOS or len(ids) >= max_len:
            if rank >= K:  # an ending outside the K best is not among the beam's choices
                continue
            length = len(ids) + (word == EOS)
            finished.append(Hypothesis(ids, score, score / length ** length_penalty))
            if len(finished) >= K:
                break
        elif len(alive) < K:
            alive.append((score, parent, word))
    return alive
