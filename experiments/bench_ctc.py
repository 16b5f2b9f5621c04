#!/usr/bin/env python3
"""Speed of the CTC loss and its gradient: ours (``nn.ctc.ctc_cost``) beside PyTorch's.

What is timed, per batch: the *forward*, the CTC loss of every row summed over the batch,
from unnormalised scores z (T, B, K) through ``log_softmax``; and the *forward + backward*,
that loss and its gradient with respect to z. Ours is the PyTensor graph of ``ctc_cost`` (a
``scan`` over the frames, differentiated by PyTensor), compiled once under each backend of
``--mode`` (default both: JAX, i.e. XLA, and NUMBA); the peer is PyTorch's built-in
``torch.nn.functional.ctc_loss`` (``reduction="sum"``, ``blank=0``, on ``log_softmax``
inputs; its forward under ``torch.no_grad``, its backward by ``loss.backward()``).

Shapes: by default the ASR recipe's (``configs/asr-digits.toml``), B = 32 utterances of
T = 150 output frames (after the model's stride 2), K = 11 outputs (the blank, index 0, and
10 digits), padded to U = 7 labels. ``--shape T,B,K,U`` overrides them. The data are random,
drawn with numpy from ``--seed`` here and handed to the peer in an ``.npz``: scores from a
standard normal, label lengths uniform in 1..U, labels uniform in 1..K-1, frame lengths
uniform in [ceil(T/2), T] (raised where a row's labels need more frames).

The peer runs first, in a subprocess of its own: its values (the summed loss, the gradient),
then its timing. Then ours, in this process, one backend after the other: compiled, its
values checked against a float64 numpy alpha recursion (``reference_ctc``) and against the
peer's (the summed loss to rtol 1e-4, every side computing in float32; the gradient to
1e-3, see ``GRAD_ATOL``), and only if all agree, timed; a mismatch ends the run before
ours is timed (exit status 1). Each side calls its function ``--warmup`` times and then
``--reps`` timed times (``--quick``: fewer); the figure is the median milliseconds per
batch, and ``peer / ours`` the peer's median divided by ours (above 1: ours is faster). No
two sides compute at once, but their timings are minutes apart at most, not interleaved.

Threads: the peer runs once with ``torch.set_num_threads(1)`` and once with one thread per
core, and the faster forward + backward is its figure (``--peer-threads N``: only N); XLA keeps its own thread pool (over every core), which this script
does not set; the Numba-compiled graph runs on one thread but for the BLAS calls it makes
(left at the library's default). On a machine where another job occupies a core, a peer on
every core can be many times slower than on one (``experiments/bench.py`` saw 2 threads
collapse 10-100 times): measure on a quiet machine.

The peer runs with the first Python that imports torch: ``--torch-python``, this one, or
``.venv-torch/bin/python`` (``experiments/bench.py --make-torch-venv`` creates it).

    .venv/bin/python experiments/bench_ctc.py --json docs/ctc_bench.json
    .venv/bin/python experiments/bench_ctc.py --quick --shape 50,8,6,4 --no-peer
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# Nothing from rnn_theano, pytensor or torch at import time: the peer runs this file
# (``--peer-worker``) in an environment with torch and without the package.

DEFAULT_SHAPE = (150, 32, 11, 7)  # T, B, K, U: the ASR recipe's batch after the stride of 2
RTOL = 1e-4                        # the summed losses agree to this in float32
# The gradients (each in [-1, 1]) agree to this. In float32 they are less exact than the
# losses: at the default shape and seed PyTorch's is 2.3e-4 off a float64 PyTorch gradient
# at worst, ours 3.7e-5.
GRAD_ATOL = 1e-3
MODES = ("JAX", "NUMBA")


# --- the data -------------------------------------------------------------------------------


def needed_frames(labels) -> int:
    """The fewest frames that can emit ``labels``: one per label, one blank between repeats."""
    labels = list(labels)
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


def make_data(T: int, B: int, K: int, U: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A random batch: scores z (T, B, K) float32, frame_mask (T, B), labels (B, U) int32
    (0 past a row's end), label_mask (B, U), and the lengths of both."""
    if K < 2 or U < 1 or T < 1 or B < 1:
        raise ValueError(f"shape T={T}, B={B}, K={K}, U={U}: need T, B, U >= 1 and K >= 2")
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((T, B, K)).astype(np.float32)
    label_lengths = rng.integers(1, U + 1, B).astype(np.int32)
    labels = np.zeros((B, U), np.int32)
    for b, n in enumerate(label_lengths):
        labels[b, :n] = rng.integers(1, K, n)
    frame_lengths = rng.integers(math.ceil(T / 2), T + 1, B).astype(np.int32)
    for b, n in enumerate(label_lengths):
        need = needed_frames(labels[b, :n])
        if need > T:
            raise ValueError(f"T={T} frames cannot hold row {b}'s {n} labels "
                             f"{labels[b, :n].tolist()} (it needs {need})")
        frame_lengths[b] = max(frame_lengths[b], need)
    frame_mask = (np.arange(T)[:, None] < frame_lengths[None, :]).astype(np.float32)
    label_mask = (np.arange(U)[None, :] < label_lengths[:, None]).astype(np.float32)
    return dict(z=z, frame_mask=frame_mask, labels=labels, label_mask=label_mask,
                frame_lengths=frame_lengths, label_lengths=label_lengths)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    top = z.max(-1, keepdims=True)
    return z - top - np.log(np.exp(z - top).sum(-1, keepdims=True))


def reference_ctc(data: dict[str, np.ndarray]) -> np.ndarray:
    """-log p(labels | z) of each row, (B,), by the alpha recursion in float64 numpy, one row
    at a time over its own frames and labels (no masks, no padding)."""
    log_probs = log_softmax(data["z"])
    costs = []
    for b in range(log_probs.shape[1]):
        lp = log_probs[:data["frame_lengths"][b], b]
        ext = np.zeros(2 * data["label_lengths"][b] + 1, np.int64)
        ext[1::2] = data["labels"][b, :data["label_lengths"][b]]
        S = len(ext)
        skip = np.zeros(S, bool)
        skip[2:] = (ext[2:] != 0) & (ext[2:] != ext[:-2])
        alpha = np.full(S, -np.inf)
        alpha[:2] = lp[0, ext[:2]]
        for t in range(1, len(lp)):
            prev = alpha.copy()
            prev[1:] = np.logaddexp(prev[1:], alpha[:-1])
            prev[2:] = np.where(skip[2:], np.logaddexp(prev[2:], alpha[:-2]), prev[2:])
            alpha = prev + lp[t, ext]
        costs.append(-np.logaddexp(alpha[-1], alpha[-2]) if S > 1 else -alpha[-1])
    return np.array(costs)


# --- ours -----------------------------------------------------------------------------------


def compile_ours(mode: str, shape: tuple[int, int, int, int]):
    """Our forward (summed loss) and forward + backward (summed loss, d loss / dz), compiled
    under the PyTensor backend ``mode`` for inputs of ``shape`` (T, B, K, U); each takes
    (z, frame_mask, labels, label_mask). As in the engine, the input shapes are part of the
    graph under JAX (XLA needs them) and left open under Numba."""
    import pytensor
    import pytensor.tensor as pt

    from rnn_theano import backends
    from rnn_theano.nn.ctc import ctc_cost

    mode = backends.prepare(mode, fixed_shapes=True)
    T, B, K, U = shape if mode == "JAX" else (None,) * 4
    z = pt.tensor("z", dtype="float32", shape=(T, B, K))
    frame_mask = pt.tensor("frame_mask", dtype="float32", shape=(T, B))
    labels = pt.tensor("labels", dtype="int32", shape=(B, U))
    label_mask = pt.tensor("label_mask", dtype="float32", shape=(B, U))
    loss = ctc_cost(pt.special.log_softmax(z, axis=-1), frame_mask, labels, label_mask).sum()
    inputs = [z, frame_mask, labels, label_mask]
    forward = pytensor.function(inputs, loss, mode=mode)
    both = pytensor.function(inputs, [loss, pytensor.grad(loss, z)], mode=mode)
    return forward, both


def inputs_of(data: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return data["z"], data["frame_mask"], data["labels"], data["label_mask"]


def timed(call, warmup: int, reps: int) -> list[float]:
    """Milliseconds of each of ``reps`` calls of ``call()``, after ``warmup`` untimed ones.
    A call must return when its results are computed: ours converts a JAX function's
    outputs (computed asynchronously) to numpy arrays, which waits for them."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def run_ours(mode: str, data: dict[str, np.ndarray]) -> tuple[dict, callable, callable]:
    """Compile under ``mode`` and compute the values (untimed): a result row, the functions."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        # PyTensor's JAX translation warns of the Split inside log_softmax's gradient (its
        # sizes are static here) and of the broadcast Asserts it drops: the values check
        # below is what tells whether the translation holds.
        warnings.filterwarnings("ignore", "Split node does not have constant split")
        warnings.filterwarnings("ignore", "Skipping Assert")
        forward, both = compile_ours(mode, (*data["z"].shape, data["labels"].shape[1]))
        args = inputs_of(data)
        loss = float(forward(*args))
        loss_fb, grad = both(*args)
    compile_s = time.perf_counter() - start  # both graphs built, compiled and called once
    return (dict(impl=f"ours-{mode.lower()}", mode=mode, loss=loss, loss_fb=float(loss_fb),
                 grad=np.asarray(grad), compile_s=compile_s), forward, both)


# --- the PyTorch peer -------------------------------------------------------------------------


def peer_worker(data_path: str, out_path: str, warmup: int, reps: int, threads: int) -> dict:
    """Run in the peer's Python: PyTorch's values (gradient to ``out_path``) and times, on
    ``threads`` threads (0: one per core)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads or os.cpu_count() or 1)
    data = dict(np.load(data_path))
    z = torch.from_numpy(data["z"])
    targets = torch.from_numpy(data["labels"]).long()
    frame_lengths = torch.from_numpy(data["frame_lengths"]).long()
    label_lengths = torch.from_numpy(data["label_lengths"]).long()

    def loss_of(scores):
        return F.ctc_loss(F.log_softmax(scores, dim=-1), targets, frame_lengths, label_lengths,
                          blank=0, reduction="sum")

    def forward():
        with torch.no_grad():
            return loss_of(z)

    leaf = z.clone().requires_grad_(True)

    def both():
        leaf.grad = None
        loss = loss_of(leaf)
        loss.backward()
        return loss

    loss = float(forward())
    loss_fb = float(both())
    np.save(out_path, leaf.grad.numpy())
    return dict(impl="pytorch", loss=loss, loss_fb=loss_fb, torch=torch.__version__,
                torch_threads=torch.get_num_threads(), python=platform.python_version(),
                forward_ms=timed(forward, warmup, reps), both_ms=timed(both, warmup, reps))


def run_peer(python: str, data_path: Path, warmup: int, reps: int, threads: int = 0,
             timeout: float = 600) -> dict:
    """``peer_worker`` in ``python`` (a subprocess); its result, the gradient loaded, or an
    ``error`` entry."""
    grad_path = data_path.with_name("peer_grad.npy")
    cmd = [python, str(Path(__file__).resolve()), "--peer-worker", str(data_path),
           str(grad_path), "--warmup", str(warmup), "--reps", str(reps),
           "--peer-threads", str(threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"impl": "pytorch", "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"impl": "pytorch", "returncode": proc.returncode,
                "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
    result = json.loads(lines[-1])
    result["grad"] = np.load(grad_path)
    return result


def find_torch_python(choice: str | None) -> str | None:
    import bench  # experiments/bench.py: the peer's Python, found as make bench finds it
    return bench.torch_python(argparse.Namespace(torch_python=choice, make_torch_venv=False))


# --- the checks, the table --------------------------------------------------------------------


def agree(a: float, b: float, rtol: float = RTOL) -> bool:
    return abs(a - b) <= rtol * abs(b)


def check(rows: list[dict], reference: float, peer: dict | None) -> dict:
    """Every row's summed loss against the numpy reference and the peer's, its gradient
    against the peer's (and the peer's loss against the reference)."""
    out = {"rtol": RTOL, "grad_atol": GRAD_ATOL, "reference_loss": reference, "rows": {}}
    for row in rows:
        entry = {"loss": row["loss"], "vs_reference": agree(row["loss"], reference),
                 "forward_equals_backward_pass": agree(row["loss_fb"], row["loss"])}
        if peer is not None:
            diff = float(np.abs(row["grad"] - peer["grad"]).max())
            entry.update(vs_peer=agree(row["loss"], peer["loss"]), grad_max_abs_diff=diff,
                         grad_vs_peer=diff <= GRAD_ATOL)
        out["rows"][row["impl"]] = entry
    if peer is not None:
        out["rows"]["pytorch"] = {"loss": peer["loss"], "vs_reference":
                                  agree(peer["loss"], reference)}
    out["ok"] = all(v for e in out["rows"].values() for k, v in e.items()
                    if isinstance(v, bool))
    return out


def fmt(v, spec="{:.3f}"):
    return "-" if v is None else spec.format(v)


def table(rows: list[dict]) -> str:
    lines = ["| implementation | forward ms | fwd+bwd ms | fwd: peer/ours | fwd+bwd: peer/ours "
             "| compile s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['impl']} | {fmt(r['forward_ms'])} | {fmt(r['both_ms'])} | "
                     f"{fmt(r.get('forward_ratio'), '{:.2f}x')} | "
                     f"{fmt(r.get('both_ratio'), '{:.2f}x')} | "
                     f"{fmt(r.get('compile_s'), '{:.1f}')} |")
    return "\n".join(lines)


def machine_info(peer: dict | None) -> dict:
    import bench
    info = bench.machine_info()
    try:
        import jax
        info["jax"] = jax.__version__
    except ImportError:
        info["jax"] = None
    info["torch"] = peer.get("torch") if peer else None
    info["torch_python"] = peer.get("python") if peer else None
    return info


# --- the run --------------------------------------------------------------------------------


def parse_shape(parser: argparse.ArgumentParser, text: str) -> tuple[int, int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 4 or min(shape) < 1 or shape[2] < 2:
        parser.error(f"--shape {text!r}: give T,B,K,U, positive, K >= 2 (e.g. 150,32,11,7)")
    return shape


def parse_modes(parser: argparse.ArgumentParser, text: str) -> list[str]:
    modes = [m.strip().upper() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        parser.error(f"--mode: unknown backend {','.join(bad) or repr(text)}: "
                     "use JAX, NUMBA or JAX,NUMBA")
    if "JAX" in modes:
        from rnn_theano import backends
        if not backends.has_jax():
            if modes == ["JAX"]:
                parser.error("--mode JAX needs jax: pip install -e '.[jax]'")
            print("warning: jax is not installed; ours runs under Numba only", file=sys.stderr)
            modes.remove("JAX")
    return modes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", default="JAX,NUMBA",
                   help="PyTensor backends of ours, one row each: JAX, NUMBA or both")
    p.add_argument("--shape", default=",".join(map(str, DEFAULT_SHAPE)),
                   help="T,B,K,U: frames, utterances, outputs (blank included), labels "
                   "(default %(default)s, the ASR recipe's)")
    p.add_argument("--seed", type=int, default=0, help="of the random data")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (warm-up 2, 10)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls (default 5)")
    p.add_argument("--reps", type=int, default=None, help="timed calls (default 50)")
    p.add_argument("--no-peer", action="store_true", help="skip the PyTorch peer")
    p.add_argument("--torch-python", default=None, help="a Python with torch for the peer")
    p.add_argument("--peer-threads", type=int, default=0,
                   help="torch.set_num_threads of the peer (default 0: 1, then one per "
                   "core, the faster kept)")
    p.add_argument("--json", default=None, metavar="PATH", help="JSON file for the figures")
    p.add_argument("--peer-worker", nargs=2, default=None, metavar=("DATA", "GRAD"),
                   help=argparse.SUPPRESS)
    return p


def best_peer(args: argparse.Namespace, data: dict, warmup: int, reps: int) -> dict | None:
    """The peer's values and times on each thread count of ``--peer-threads`` (default: one
    thread, then one per core), the fastest forward + backward kept; None without torch."""
    python = find_torch_python(args.torch_python)
    if python is None:
        print("warning: no Python with torch (experiments/bench.py --make-torch-venv makes "
              ".venv-torch); no peer", file=sys.stderr)
        return None
    counts = [args.peer_threads] if args.peer_threads else sorted({1, os.cpu_count() or 1})
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench_ctc_") as tmp:
        path = Path(tmp) / "data.npz"
        np.savez(path, **data)
        for threads in counts:
            peer = run_peer(python, path, warmup, reps, threads)
            if "error" in peer:
                raise SystemExit(f"error: the PyTorch peer failed: {peer['error']}")
            runs.append(peer)
    peer = min(runs, key=lambda r: statistics.median(r["both_ms"]))
    # The peer's Python as the repository's relative path when it is the project's .venv-torch.
    root = Path(__file__).resolve().parents[1]
    path = Path(python).absolute()
    peer["python_path"] = str(path.relative_to(root)) if path.is_relative_to(root) else python
    print(f"peer: PyTorch {peer['torch']} (Python {peer['python']}), best of "
          f"{', '.join(str(r['torch_threads']) for r in runs)} threads: "
          f"{peer['torch_threads']}", flush=True)
    return peer


def report_check(checked: dict, reference: float, peer: dict | None) -> None:
    for name, e in checked["rows"].items():
        parts = [f"{name}: summed loss {e['loss']:.6f}", f"numpy reference {reference:.6f} "
                 f"{'agrees' if e['vs_reference'] else 'DIFFERS'}"]
        if "vs_peer" in e:
            parts.append(f"peer {peer['loss']:.6f} {'agrees' if e['vs_peer'] else 'DIFFERS'}")
            parts.append(f"gradient max |diff| vs peer {e['grad_max_abs_diff']:.2e}")
        print(", ".join(parts), flush=True)
    print(f"values check (loss rtol {RTOL:g}, gradient atol {GRAD_ATOL:g}): "
          f"{'all agree' if checked['ok'] else 'MISMATCH, nothing of ours timed'}", flush=True)


def timed_rows(ours: list, peer: dict | None, data: dict, warmup: int, reps: int) -> list[dict]:
    """Ours timed (forward, forward + backward) and the peer's times, with their medians
    and the ratios peer / ours."""
    rows, inputs = [], inputs_of(data)
    for row, forward, both in ours:
        row = {k: v for k, v in row.items() if k != "grad"}
        row["forward_ms_all"] = timed(lambda: np.asarray(forward(*inputs)), warmup, reps)
        row["both_ms_all"] = timed(lambda: [np.asarray(o) for o in both(*inputs)], warmup, reps)
        rows.append(row)
    if peer is not None:
        rows.append({k: v for k, v in peer.items() if k not in ("grad", "forward_ms", "both_ms")}
                    | {"forward_ms_all": peer["forward_ms"], "both_ms_all": peer["both_ms"]})
    for r in rows:
        r["forward_ms"] = statistics.median(r["forward_ms_all"])
        r["both_ms"] = statistics.median(r["both_ms_all"])
    if peer is not None:
        for r in rows:
            r["forward_ratio"] = rows[-1]["forward_ms"] / r["forward_ms"]
            r["both_ratio"] = rows[-1]["both_ms"] / r["both_ms"]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    reps = args.reps if args.reps is not None else (10 if args.quick else 50)
    if args.peer_worker:
        print(json.dumps(peer_worker(*args.peer_worker, warmup, reps, args.peer_threads)))
        return 0
    T, B, K, U = parse_shape(parser, args.shape)
    modes = parse_modes(parser, args.mode)
    started = time.perf_counter()
    data = make_data(T, B, K, U, args.seed)
    reference = float(reference_ctc(data).sum())
    print(f"CTC loss, T={T} frames, B={B} utterances, K={K} outputs, U={U} labels "
          f"(seed {args.seed}); median of {reps} calls after {warmup} warm-up calls",
          flush=True)
    peer = None if args.no_peer else best_peer(args, data, warmup, reps)
    ours = [run_ours(mode, data) for mode in modes]
    checked = check([row for row, _, _ in ours], reference, peer)
    report_check(checked, reference, peer)
    rows = timed_rows(ours, peer, data, warmup, reps) if checked["ok"] else []
    if rows:
        print(table(rows), flush=True)
    if args.json:
        from rnn_theano.atomic import write_json
        write_json(args.json, {
            "what": "CTC loss summed over the batch (forward) and with its gradient w.r.t. the "
                    "unnormalised scores (forward + backward), float32, milliseconds per batch",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "shape": {"T": T, "B": B, "K": K, "U": U}, "seed": args.seed,
            "frame_lengths": data["frame_lengths"].tolist(),
            "label_lengths": data["label_lengths"].tolist(), "warmup": warmup, "reps": reps,
            "modes": modes, "peer_python": peer and peer.get("python_path"),
            "machine": machine_info(peer), "check": checked, "results": rows,
            "wall_s": time.perf_counter() - started})
    return 0 if checked["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
