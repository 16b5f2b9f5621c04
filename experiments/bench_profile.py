"""Where the engine's training time goes, for the benchmark's config c (LSTM 2x200, C=10k).

    .venv/bin/python experiments/bench_profile.py [--mode NUMBA|JAX] [--cell lstm]
                                                  [--threads 1] [--dprint FILE]
    # config b's shapes (about 25 words per sentence):
    .venv/bin/python experiments/bench_profile.py --cell rnn --layers 1 --hidden 100 \
        --vocab 8000 --batch 32 --steps 25

Times, with random word ids of the benchmark's shapes (default: batch 20, unroll 20), each of:

* the whole training step and the evaluation step (forward only) of ``LMEngine``;
* the output layer alone (projection, log-softmax, cross-entropy; forward and gradient);
* the recurrent stack alone (embedding, 2 layers of scan; forward and gradient);
* the log-softmax of a (T*B, C) matrix, compiled (Numba or JAX) and in numpy;
* the matrix products of the step, in numpy, for the GEMM share of the time;
* with ``--mode JAX --cell lstm``, the same training step written directly in JAX
  (``native_jax_lstm_step``): how close the graph PyTensor hands to XLA comes to it;

and writes the optimized graph of the training function (``pytensor.dprint`` with types)
to ``--dprint``, counting its float64 variables and its scans.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable
from io import StringIO

import numpy as np
import pytensor
import pytensor.tensor as pt
from threadpoolctl import threadpool_limits

from rnn_theano import backends
from rnn_theano.nn.cells import CELLS, project_inputs, run_cell
from rnn_theano.tasks.lm_engine import LMEngine
from rnn_theano.tasks.lm_graph import LMConfig, _target_log_prob


def _ready(out):
    """Wait for the result: JAX returns before its computation ends (asynchronous dispatch)."""
    for o in out if isinstance(out, (list, tuple)) else [out]:
        np.asarray(o)


def timeit(f, n: int = 15) -> float:
    _ready(f())
    times = []
    for _ in range(n):
        t = time.perf_counter()
        _ready(f())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def native_jax_lstm_step(T: int, B: int, C: int, H: int, L: int, rng: np.random.Generator,
                         keep_updates: bool = False):
    """Config c's training step written directly in JAX, the yardstick for the engine's graph.

    Embedding, L LSTM layers (``lax.scan``, input projection before it), output layer, mean
    cross-entropy, gradient by ``jax.value_and_grad``, global-norm clip 0.25 and SGD lr 20:
    what the engine compiles, without PyTensor in between and without the mask (every word
    counts). Returns a zero-argument step; with ``keep_updates`` False every call starts
    from the same parameters (the same work each time), with True each trains on.
    """
    import jax
    import jax.numpy as jnp

    def u(*shape):
        return jnp.asarray(rng.uniform(-0.07, 0.07, shape).astype(np.float32))

    params = {"E": u(C, H), "W": u(H, C), "b": jnp.zeros(C, jnp.float32)}
    for i in range(L):
        params |= {f"Wx{i}": u(H, 4 * H), f"Wh{i}": u(H, 4 * H), f"b{i}": u(4 * H)}

    def loss(p, x, y):
        h = p["E"][x]                                           # (T, B, H)
        for i in range(L):
            xp = h @ p[f"Wx{i}"] + p[f"b{i}"]                   # (T, B, 4H), before the loop
            Wh = p[f"Wh{i}"]

            def step(carry, xp_t, Wh=Wh):
                h_prev, c_prev = carry
                gi, gf, gg, go = jnp.split(xp_t + h_prev @ Wh, 4, axis=-1)
                c = jax.nn.sigmoid(gf) * c_prev + jax.nn.sigmoid(gi) * jnp.tanh(gg)
                h_t = jax.nn.sigmoid(go) * jnp.tanh(c)
                return (h_t, c), h_t

            zero = jnp.zeros((B, H), jnp.float32)
            _, h = jax.lax.scan(step, (zero, zero), xp)
        z = h.reshape(T * B, H) @ p["W"] + p["b"]                # (T*B, C)
        target = jnp.take_along_axis(z, y.reshape(-1, 1), axis=1)[:, 0]
        return (jax.nn.logsumexp(z, axis=-1) - target).mean()

    @jax.jit
    def train(p, x, y):
        value, grads = jax.value_and_grad(loss)(p, x, y)
        norm = jnp.sqrt(sum((g * g).sum() for g in jax.tree.leaves(grads)))
        scale = 20.0 * jnp.minimum(1.0, 0.25 / norm)
        return value, jax.tree.map(lambda w, g: w - scale * g, p, grads)

    x = jnp.asarray(rng.integers(0, C, (T, B)).astype(np.int32))
    y = jnp.asarray(rng.integers(0, C, (T, B)).astype(np.int32))

    def run():
        nonlocal params
        value, updated = train(params, x, y)
        jax.block_until_ready(updated)  # the updates too, not only the loss
        if keep_updates:
            params = updated
        return value
    return run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", default="lstm", choices=sorted(CELLS))
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--steps", type=int, default=20, help="time steps per batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--dprint", default=None, help="write the optimized training graph here")
    p.add_argument("--mode", default="NUMBA", choices=["NUMBA", "JAX"],
                   help="PyTensor backend of every compiled function (JAX: XLA on the CPU)")
    return p.parse_args(argv)


F32 = "float32"


class Shapes:
    """The benchmark's shapes and the random inputs of that size every timing uses."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.cell, self.mode = args.cell, args.mode
        self.T, self.B, self.C, self.H, self.L = (args.steps, args.batch, args.vocab,
                                                  args.hidden, args.layers)
        self.rng = np.random.default_rng(0)
        T, B, C, H = self.T, self.B, self.C, self.H
        self.x = self.rng.integers(0, C, (T, B)).astype(np.int32)
        self.y = self.rng.integers(0, C, (T, B)).astype(np.int32)
        self.mask = np.ones((T, B), np.float32)
        self.top = self.rng.standard_normal((T * B, H)).astype(F32)
        self.z = self.rng.standard_normal((T * B, C)).astype(F32)

    def uniform(self, *shape: int, scale: float = 0.07) -> np.ndarray:
        return self.rng.uniform(-scale, scale, shape).astype(F32)


def engine_rows(s: Shapes) -> tuple[LMEngine, list[tuple[str, Callable]]]:
    """The engine's whole training and evaluation steps."""
    cfg = LMConfig(cell=s.cell, vocab_size=s.C, embed_dim=s.H, hidden_dim=s.H, layers=s.L)
    eng = LMEngine(cfg, mode=s.mode, optimizer="sgd", learning_rate=20.0, clip_norm=0.25)
    state = eng.initial_state(s.B)
    return eng, [
        ("train_step (engine, whole step)", lambda: eng.train_step(s.x, s.y, s.mask, state)),
        ("eval_step (engine, forward only)", lambda: eng.eval_step(s.x, s.y, s.mask, state))]


def output_layer_rows(s: Shapes) -> list[tuple[str, Callable]]:
    """The output layer alone, (T*B, H) -> logits -> cross-entropy, and its softmax pieces."""
    T, B, C, H, mode = s.T, s.B, s.C, s.H, s.mode
    top = pt.tensor("top", dtype=F32, shape=(T * B, H))  # static shapes: JAX needs them
    W = pytensor.shared(s.uniform(H, C))
    b = pytensor.shared(np.zeros(C, F32))
    yy = pt.tensor("y", dtype="int32", shape=(T * B,))
    cost = -_target_log_prob(top.dot(W) + b, yy).sum()  # as the engine computes it
    out_fwd = pytensor.function([top, yy], cost, mode=mode)
    out_grad = pytensor.function([top, yy], [cost, *pytensor.grad(cost, [top, W, b])], mode=mode)
    z = pt.tensor("z", dtype=F32, shape=(T * B, C))
    lsm = pytensor.function([z], pt.special.log_softmax(z, axis=-1), mode=mode)
    ex = pytensor.function([z], pt.exp(z), mode=mode)
    Wv, yv, zv, topv = W.get_value(), s.y.ravel(), s.z, s.top

    def np_lsm():
        shifted = zv - zv.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def gemms():  # the products of one training step (forward + both backward products)
        logits = topv @ Wv
        return logits @ Wv.T, topv.T @ logits

    return [("output layer: forward", lambda: out_fwd(topv, yv)),
            ("output layer: forward + gradient", lambda: out_grad(topv, yv)),
            ("output layer: the 3 GEMMs in numpy", gemms),
            (f"log_softmax ({T * B}, {C}) {mode}", lambda: lsm(zv)),
            (f"log_softmax ({T * B}, {C}) numpy", np_lsm),
            (f"exp ({T * B}, {C}) {mode}", lambda: ex(zv)),
            (f"exp ({T * B}, {C}) numpy", lambda: np.exp(zv))]


def recurrent_rows(s: Shapes) -> list[tuple[str, Callable]]:
    """The recurrent stack alone: embedding + L scans, cost = <h_top, R>, and its gradient."""
    T, B, C, H, L, cell = s.T, s.B, s.C, s.H, s.L, CELLS[s.cell]
    G = cell.gates
    emb = pytensor.shared(s.uniform(C, H, scale=0.1))
    Wx = [pytensor.shared(s.uniform(H, G * H)) for _ in range(L)]
    Wh = [pytensor.shared(s.uniform(H, G * H), shape=(H, G * H)) for _ in range(L)]
    bb = [pytensor.shared(np.zeros(G * H, F32)) for _ in range(L)]
    xs = pt.tensor("x", dtype="int32", shape=(T, B))
    ms = pt.tensor("m", dtype=F32, shape=(T, B))
    h = emb[xs]
    for i in range(L):
        xp = project_inputs(h, Wx[i], bb[i])
        h = run_cell(cell, xp, ms, [pt.zeros((B, H), F32)] * cell.states, Wh[i])[0]
    rc = (h * s.rng.standard_normal((T, B, H)).astype(F32)).sum()
    rnn_fwd = pytensor.function([xs, ms], rc, mode=s.mode)
    rnn_grad = pytensor.function([xs, ms], [rc, *pytensor.grad(rc, [emb, *Wx, *Wh, *bb])],
                                 mode=s.mode)
    return [("recurrent stack: forward", lambda: rnn_fwd(s.x, s.mask)),
            ("recurrent stack: forward + gradient", lambda: rnn_grad(s.x, s.mask))]


def graph_summary(eng: LMEngine, x: np.ndarray) -> tuple[str, str]:
    """The optimized training graph (``pytensor.dprint`` with types) and a line counting its
    float64 variables and its scans."""
    buf = StringIO()
    pytensor.dprint(eng._function("train", x), file=buf, print_type=True)
    text = buf.getvalue()
    n_f64 = len(re.findall(r"float64", text))
    # Arrays typed float64 (Vector(float64, ...), Matrix(...), ...) would be float64 leaking
    # into the float32 graph. Not counted as such: float32 sums with a float64 accumulator
    # (acc=float64), and 0-d float64 values (Scalar(float64, shape=()) tensors, bare float64
    # inside a fused scalar op), counted apart: the clipping factor is one.
    n_f64_arrays = len(re.findall(r"<(?!Scalar)\w+\(float64", text))
    n_f64_0d = len(re.findall(r"<Scalar\(float64|<float64>", text))
    scans = set(re.findall(r"Scan\{(\w+)[^}]*\}(?:\.\d+)? \[id (\w+)\]", text))
    forward = sum(1 for fn, _ in scans if fn == "scan_fn")
    return text, (f"training graph: {len(text.splitlines())} lines, {n_f64} float64 mentions "
                  f"({n_f64_arrays} arrays, {n_f64_0d} 0-d), {forward} forward and "
                  f"{len(scans) - forward} backward scans (one of each per layer)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.mode = backends.prepare(args.mode)  # under JAX: the reduction fix, before compiling
    s = Shapes(args)
    eng, rows = engine_rows(s)
    rows += output_layer_rows(s) + recurrent_rows(s)
    for _, f in rows:
        f()  # compile
    if args.mode == "JAX" and args.cell == "lstm":
        rows.insert(1, ("the same step written in JAX directly",
                        native_jax_lstm_step(s.T, s.B, s.C, s.H, s.L, s.rng)))
    threadpool_limits(limits=args.threads, user_api="blas")
    print(f"cell {args.cell}, T={s.T} B={s.B} H={s.H} L={s.L} C={s.C}, "
          f"BLAS threads {args.threads}")
    for name, f in rows:
        t = timeit(f)
        print(f"{name:42s} {t * 1e3:8.2f} ms   {s.T * s.B / t:10,.0f} words/s")
    text, summary = graph_summary(eng, s.x)
    print(summary)
    if args.dprint:
        with open(args.dprint, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
