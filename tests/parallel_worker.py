"""Train each task's engine for a few steps on one device and data-parallel over several, and
print how far apart they end, as JSON: ``python parallel_worker.py N``.

Run in a process of its own by ``test_parallel.py``, with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` so that the CPU shows N devices.
"""

import json
import sys

import numpy as np

from rnn_theano import backends
from rnn_theano.data.batching import ClassBatches
from rnn_theano.data.parallel import PairBatch
from rnn_theano.data.speech import UtteranceBatches
from rnn_theano.tasks.asr_engine import AsrEngine
from rnn_theano.tasks.asr_graph import RecogniserConfig
from rnn_theano.tasks.classify_engine import ClassifierEngine
from rnn_theano.tasks.classify_graph import ClassifierConfig
from rnn_theano.tasks.lm_engine import LMEngine
from rnn_theano.tasks.lm_graph import LMConfig
from rnn_theano.tasks.mt_engine import MTEngine
from rnn_theano.tasks.mt_graph import Seq2SeqConfig

SETTINGS = dict(mode="JAX", optimizer="adam", learning_rate=0.01, clip_norm=1.0)
RNG = np.random.default_rng(0)


def ids(shape, high):
    return RNG.integers(1, high, shape).astype(np.int32)


def lengths_mask(lengths, T):
    return (np.arange(T)[:, None] < np.asarray(lengths)[None, :]).astype(np.float32)


def lm_stream(engine):
    """Four windows of a stream (state carried), dropout on: every batch is whole."""
    state = engine.initial_state(8)
    for _ in range(4):
        x, y = ids((8, 8), 40), ids((8, 8), 40)
        state = engine.train_step(x, y, np.ones((8, 8), np.float32), state).state
    return state


def lm_sentences(engine):
    """Sentence batches of 8 rows, then a short batch of 3 (run whole, on one device)."""
    for rows in (8, 8, 3):
        lengths = RNG.integers(1, 9, rows)
        mask = lengths_mask(lengths, 8)
        x, y = ids((8, rows), 40) * mask.astype(np.int32), ids((8, rows), 40)
        engine.train_step(x, y * mask.astype(np.int32), mask, engine.initial_state(rows))
    return None


def classify(engine):
    sequences = [ids(RNG.integers(1, 9), 30) for _ in range(19)]
    batches = ClassBatches(sequences, RNG.integers(0, 3, 19).astype(np.int32), 8,
                           pad_multiple=8)
    for batch in batches.epoch(0):  # 8, 8 and 3 rows
        engine.train_step(*batch)


def translate(engine):
    for rows in (4, 4):
        src_len, tgt_len = RNG.integers(1, 7, rows), RNG.integers(1, 7, rows)
        src_mask, mask = lengths_mask(src_len, 8), lengths_mask(tgt_len, 8)
        src = ids((8, rows), 30) * src_mask.astype(np.int32)
        y_out = ids((8, rows), 30) * mask.astype(np.int32)
        y_in = np.vstack([np.ones((1, rows), np.int32), y_out[:-1]])
        engine.train_step(PairBatch(src, src_mask, y_in, y_out, mask))


def recognise(engine):
    features = [RNG.normal(size=(RNG.integers(8, 30), 5)).astype(np.float32) for _ in range(6)]
    labels = [list(RNG.integers(1, 11, RNG.integers(1, 3))) for _ in range(6)]
    batches = UtteranceBatches(features, labels, 4, pad_multiple=8, label_multiple=4, fill=True)
    for batch in batches.epoch(0):
        engine.train_step(batch)


CASES = {
    "lm_stream": (LMEngine, LMConfig(cell="lstm", vocab_size=40, embed_dim=8, hidden_dim=8,
                                     layers=2, dropout=0.3), lm_stream),
    "lm_sentences": (LMEngine, LMConfig(cell="lstm", vocab_size=40, embed_dim=8, hidden_dim=8,
                                        layers=2, dropout=0.3), lm_sentences),
    "classifier": (ClassifierEngine, ClassifierConfig(cell="gru", vocab_size=30, n_classes=3,
                                                      embed_dim=6, hidden_dim=5,
                                                      bidirectional=True, dropout=0.3),
                   classify),
    "translation": (MTEngine, Seq2SeqConfig(cell="gru", vocab_size=30, embed_dim=6,
                                            hidden_dim=5, target_vocab_size=30, decoder_dim=8,
                                            attention_dim=6, bidirectional=True), translate),
    "speech": (AsrEngine, RecogniserConfig(n_features=5, proj_dim=6, hidden_dim=4, layers=2,
                                           subsample=1), recognise),
}


def trained(name, mesh):
    """The parameters, optimizer state and last output of case ``name`` after its steps from
    a fixed seed, and whether its step over ``mesh`` compiled with an all-reduce (of the
    gradient: the batch is split, not computed whole on every device)."""
    global RNG
    RNG = np.random.default_rng(0)
    engine_class, config, steps = CASES[name]
    engine = engine_class(config, **SETTINGS)
    if mesh is not None:
        engine.distribute(mesh)
    out = steps(engine)
    split = [f for f in engine._functions.values() if isinstance(f, backends.DataParallel)]
    reduces = bool(split) and all("all-reduce" in f._compiled.as_text() for f in split)
    return engine.get_params(), engine.get_optimizer_state(), out, reduces


def relative_gap(a, b, floor=1e-12):
    """max |a - b| over max |a|; ``floor`` keeps values that are rounding noise around zero
    (Adam's moments of a weight whose gradient vanishes) from counting as large gaps."""
    return float(np.abs(a - b).max() / max(np.abs(a).max(), floor))


def gaps(alone, spread):
    """How far a run over several devices ends from the run on one, by what is compared."""
    (params, slots, out, _), (params_n, slots_n, out_n, reduces) = alone, spread
    found = {"params": max(relative_gap(params[k], params_n[k]) for k in params),
             "optimizer": max(relative_gap(slots[k], slots_n[k], 1e-6) for k in slots),
             "all_reduce": reduces}
    if out is not None:
        found["state"] = relative_gap(out, out_n)
    return found


def main(most: int) -> None:
    """The language model over 2 and ``most`` devices, every other task over ``most``."""
    backends.prepare("JAX")
    found = {}
    for name in CASES:
        alone = trained(name, None)
        for n in sorted({2, most}) if name.startswith("lm") else [most]:
            mesh = backends.device_mesh(str(n), 8, timeout=0)
            found[f"{name} {n}"] = gaps(alone, trained(name, mesh))
    print(json.dumps(found))


if __name__ == "__main__":
    main(int(sys.argv[1]))
