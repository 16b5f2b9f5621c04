#!/usr/bin/env python3
"""Training speed of the class-based softmax against the full softmax, side by side.

The model of benchmark config (c), an LSTM 2x200 in stream mode (batch 20, unroll 20, SGD),
with a C-word output layer, full or factorised into K = round(sqrt(C)) classes; random words.
For each C the two engines alternate over the same windows (the median of --reps timed
passes after one warm-up pass), so a busy machine slows both alike. Prints words/s and the
speed-up; ``--out`` writes the figures as JSON.

    .venv/bin/python experiments/bench_softmax.py --vocab 10000,50000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from rnn_theano import backends
from rnn_theano.atomic import write_json
from rnn_theano.tasks.lm_engine import LMEngine
from rnn_theano.tasks.lm_graph import LMConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vocab", default="10000,50000", help="comma-separated vocabulary sizes")
    p.add_argument("--windows", type=int, default=20, help="windows per timed pass")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--blas-threads", type=int, default=1)
    p.add_argument("--mode", default="NUMBA", choices=("NUMBA", "JAX"),
                   help="PyTensor backend of both engines")
    p.add_argument("--out", default=None, help="JSON file for the figures")
    args = p.parse_args(argv)
    backends.limit_blas_threads(args.blas_threads)
    mode = backends.prepare(args.mode)
    T, B, rows = 20, 20, []
    for C in (int(v) for v in args.vocab.split(",")):
        rng = np.random.default_rng(0)
        windows = [(rng.integers(0, C, (T, B)).astype(np.int32),
                    rng.integers(0, C, (T, B)).astype(np.int32)) for _ in range(args.windows)]
        mask = np.ones((T, B), np.float32)
        engines = {}
        for K in (0, round(C ** 0.5)):
            config = LMConfig(cell="lstm", vocab_size=C, embed_dim=200, hidden_dim=200,
                              layers=2, softmax_classes=K)
            engines[K] = LMEngine(config, mode=mode, learning_rate=1.0, clip_norm=0.25)
        times: dict[int, list[float]] = {K: [] for K in engines}
        for rep in range(args.reps + 1):
            for K, engine in engines.items():
                state = engine.initial_state(B)
                start = time.perf_counter()
                for x, y in windows:
                    state = engine.train_step(x, y, mask, state).state
                if rep:  # the first pass compiles and warms up
                    times[K].append(time.perf_counter() - start)
        words = len(windows) * T * B
        full, cls = (words / statistics.median(times[K]) for K in engines)
        K = max(engines)
        rows.append({"vocab_size": C, "classes": K, "class_size": -(-C // K),
                     "full_words_per_sec": full, "class_words_per_sec": cls,
                     "speedup": cls / full})
        print(f"C={C:,}: full softmax {full:,.0f} words/s, {K} classes {cls:,.0f} words/s, "
              f"speed-up {cls / full:.2f}x", flush=True)
    if args.out:
        write_json(args.out, {"model": "LSTM 2x200, batch 20, unroll 20, SGD, float32",
                              "mode": mode, "blas_threads": args.blas_threads,
                              "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
