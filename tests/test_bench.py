"""The benchmark machinery (experiments/bench.py) on tiny models, without the PyTorch peer;
and every script of experiments/ starting from its folder."""

import json
import subprocess
import sys

import pytest

from experiments_loader import EXPERIMENTS, load, script

ROOT = EXPERIMENTS.parent
BENCH = script("bench")


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("*.py")))
def test_every_experiment_runs_as_a_script(name, tmp_path):
    """``python experiments/NAME.py --help`` from any folder: its imports resolve (the package,
    its neighbours) and its options parse, with torch or without."""
    proc = subprocess.run([sys.executable, str(script(name)), "--help"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: "), proc.stdout


def test_the_hand_written_jax_yardstick_trains():
    """bench_profile.py's LSTM step written in JAX: at its small initial weights the mean
    cross-entropy is about ln C (as the engine's first loss is), every timed call repeats the
    same work, and keeping its updates (gradient, clipping, SGD) lowers the loss."""
    import numpy as np
    profile = load("bench_profile")
    shapes = dict(T=5, B=3, C=50, H=8, L=2)
    step = profile.native_jax_lstm_step(**shapes, rng=np.random.default_rng(0))
    first = float(step())
    assert first == pytest.approx(np.log(50), rel=0.02)
    assert float(step()) == pytest.approx(first, rel=1e-6)
    training = profile.native_jax_lstm_step(**shapes, rng=np.random.default_rng(0),
                                            keep_updates=True)
    losses = [float(training()) for _ in range(20)]
    assert losses[0] == pytest.approx(first, rel=1e-6) and losses[-1] < losses[0] - 0.5


def test_flops_per_token_formula():
    bench = load("bench")
    cfgs = bench.configs(tiny=False)
    # Tutorial: 6 (H^2 + H C) with H = 100, C = 8000.
    assert bench.flops_per_token(cfgs["a"]) == 6 * (100 * 100 + 100 * 8000)
    # PTB small LSTM: 6 [2 (200 + 200) 4 200 + 200 * 10000] = 15.84 MFLOP.
    assert bench.flops_per_token(cfgs["c"]) == pytest.approx(15.84e6)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--synthetic", "--no-peer", "--no-cold",
         "--configs", "a,c", "--reps", "1", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_bench_json_has_the_figures(tiny_results):
    results, stdout = tiny_results
    for key in ("date", "machine", "gemm_gflops", "gemm_gflops_by_threads", "configs", "memory"):
        assert key in results
    assert results["gemm_gflops"] > 0
    assert results["peer_python"] is None  # --no-peer
    assert set(results["configs"]) == {"a", "c"}
    impls = {name: [r["impl"] for r in c["results"]] for name, c in results["configs"].items()}
    # The engine once per backend (--mode defaults to NUMBA,JAX; jax is a test dependency).
    assert results["engine_modes"] == ["NUMBA", "JAX"]
    assert impls == {"a": ["numpy", "rnn_theano"], "c": ["engine-numba", "engine-jax"]}
    for c in results["configs"].values():
        assert c["flops_per_token"] > 0
        for r in c["results"]:
            assert "error" not in r, r
            assert r["words_per_sec"] > 0
            assert r["best_threads"] == ("xla" if r["impl"] == "engine-jax" else "1")
            assert r["peak_rss_mib"] > 0 and 0 < r["gemm_fraction"] < 1
            assert r["ratio_to_peer"] is None  # no peer to compare with
            if r["impl"] != "numpy":
                assert r["compile_warm_s"] >= 0
    # The same model from the same initialisation: the first losses agree.
    a = results["configs"]["a"]["results"]
    assert a[0]["first_loss"] == pytest.approx(a[1]["first_loss"], rel=1e-4)
    assert "| a   | numpy" in stdout and "GEMM ceiling" in stdout


def test_bench_engine_rows_agree_across_backends(tiny_results):
    """The path experiments/gpu_check.sh takes on a GPU, here on CPU JAX: the same first loss."""
    numba, jax = tiny_results[0]["configs"]["c"]["results"]
    assert jax["first_loss"] == pytest.approx(numba["first_loss"], rel=1e-5)


def test_bench_rejects_an_unknown_backend():
    proc = subprocess.run([sys.executable, str(BENCH), "--mode", "NUMBA,CUDA", "--no-peer"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and "unknown backend CUDA" in proc.stderr


def test_the_peer_can_import_bench_without_the_package():
    """torch_peer.py imports bench.py in .venv-torch, where rnn_theano is not installed."""
    code = ("import builtins, sys\n"
            "real = builtins.__import__\n"
            "def guard(name, *a, **k):\n"
            "    if name.split('.')[0] == 'rnn_theano':\n"
            "        raise ImportError('rnn_theano is not installed here')\n"
            "    return real(name, *a, **k)\n"
            "builtins.__import__ = guard\n"
            f"sys.path.insert(0, {str(BENCH.parent)!r})\n"
            "import bench\n"
            "print(bench.timed_reps.__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "timed_reps"
