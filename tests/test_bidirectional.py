"""The seed's bidirectional task: a word that only its right context determines.

Sentences ``w c w`` (``w`` one of three words, ``c`` one of two fillers): the first ``w`` is
unpredictable from the left (cross-entropy ln 3 at best) but given by the words after it. A
bidirectional model, predicting each word from the forward state before it and the backward
state after it, learns it; a left-to-right model of the same size cannot. Tiny models trained
with the Python linker (a few seconds, no Numba compilation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pytensor.compile.mode import Mode

from rnn_theano.data.batching import SentenceBatches
from rnn_theano.tasks.lm_engine import LMEngine, run_batches
from rnn_theano.tasks.lm_graph import LMConfig
from rnn_theano.data.vocab import Vocabulary

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

PY_MODE = Mode(linker="py", optimizer="fast_compile")
VOCAB = Vocabulary(("UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "p", "q", "r", "c", "d"))


def _sentences(n: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [[w, str(rng.choice(["c", "d"])), w] for w in rng.choice(["p", "q", "r"], size=n)]


def _first_word_loss(bidirectional: bool) -> float:
    """Mean cross-entropy of the first word of held-out sentences after a short training."""
    config = LMConfig(cell="gru", vocab_size=len(VOCAB), embed_dim=8, hidden_dim=8,
                      bidirectional=bidirectional, float32=False, seed=0)
    engine = LMEngine(config, mode=PY_MODE, optimizer="adam", learning_rate=0.05)
    train = SentenceBatches.from_sentences(_sentences(320, seed=1), VOCAB, batch_size=16)
    for k in range(8):
        run_batches(engine.train_step, train.epoch(k), carry_state=False,
                    initial_state=engine.initial_state(16))
    test = SentenceBatches.from_sentences(_sentences(60, seed=2), VOCAB, batch_size=60)
    x, y, mask = next(iter(test))
    log_probs, _ = engine.log_probs(x, y, mask, engine.initial_state(60))
    return float(-np.mean(log_probs[0, np.arange(60), y[0]]))  # position 0: the first word


def test_bidirectional_model_uses_the_right_context() -> None:
    left_to_right, bidirectional = _first_word_loss(False), _first_word_loss(True)
    assert left_to_right > 0.9 * math.log(3)  # nothing on the left tells the word
    assert bidirectional < 0.2
