#!/usr/bin/env python3
"""Training step time of the language model data-parallel over 1, 2, 4... devices.

The model is the benchmark's config c (``experiments/bench.py``): an LSTM of 2 layers of 200
units over a vocabulary of 10,000, SGD with clipping, batches of 20 stream windows of 20
steps (``--batch-size`` and ``--shape`` change it), the state carried from step to step.
The batches are random ids: the step's cost does not depend on the words.

Each device count runs in a process of its own (XLA fixes its devices when it starts). With
``--simulate`` the devices are the CPU split into N by
``XLA_FLAGS=--xla_force_host_platform_device_count=N``: they share this machine's cores, so
the figures show what the collectives and the split cost, not a speed-up. Without it the
devices are the accelerators JAX finds (several GPUs). Per count: the median seconds of
``--steps`` timed steps after ``--warmup`` (the first compiles), and words (tokens) per
second; the global batch is the same for every count.

    .venv/bin/python experiments/scaling.py --simulate --devices 1,2,4 --json docs/scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time


def worker(devices: int, batch: int, bptt: int, steps: int, warmup: int) -> dict:
    """Time ``steps`` training steps over ``devices`` devices (in this process)."""
    import jax
    import numpy as np

    from rnn_theano import backends
    from rnn_theano.tasks.lm_engine import LMEngine
    from rnn_theano.tasks.lm_graph import LMConfig

    backends.prepare("JAX")
    config = LMConfig(cell="lstm", vocab_size=10_000, embed_dim=200, hidden_dim=200, layers=2)
    engine = LMEngine(config, mode="JAX", optimizer="sgd", learning_rate=20.0, clip_norm=0.25)
    mesh = backends.device_mesh(str(devices), batch, timeout=0)
    if mesh is not None:
        engine.distribute(mesh)
    rng = np.random.default_rng(0)
    state, times = engine.initial_state(batch), []
    for i in range(warmup + steps):
        x, y = (rng.integers(0, 10_000, (bptt, batch)).astype(np.int32) for _ in "xy")
        start = time.perf_counter()
        state = engine.train_step(x, y, np.ones((bptt, batch), np.float32), state).state
        if i >= warmup:
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    return {"devices": devices, "platform": jax.devices()[0].platform, "batch": batch,
            "bptt_len": bptt, "median_step_s": step, "words_per_s": batch * bptt / step,
            "steps": steps}


def run(devices: int, args: argparse.Namespace) -> dict:
    """``worker`` in a process of its own, with ``devices`` simulated CPU devices if asked."""
    env = dict(os.environ)
    if args.simulate:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import scaling; "
            "print(json.dumps(scaling.worker(*map(int, sys.argv[2:]))))")
    proc = subprocess.run([sys.executable, "-c", code, os.path.dirname(__file__), str(devices),
                           str(args.batch_size), str(args.bptt_len), str(args.steps),
                           str(args.warmup)], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"error: the run over {devices} devices failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1,2,4", help="device counts, comma-separated")
    parser.add_argument("--simulate", action="store_true",
                        help="split the CPU into N devices (XLA_FLAGS)")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--bptt-len", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.devices.split(",")]
    rows = []
    print(f"{'devices':>7}  {'step ms':>8}  {'words/s':>8}  vs 1")
    for n in counts:
        rows.append(run(n, args))
        r = rows[-1]
        ratio = r["words_per_s"] / rows[0]["words_per_s"]
        print(f"{n:>7}  {1000 * r['median_step_s']:>8.1f}  {r['words_per_s']:>8,.0f}  "
              f"{ratio:.2f}x", flush=True)
    if args.json:
        from rnn_theano.atomic import write_json
        write_json(args.json, {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                               "simulated": args.simulate, "command": " ".join(sys.argv),
                               "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
