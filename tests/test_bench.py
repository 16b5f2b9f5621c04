"""The benchmark machinery (experiments/bench.py) on tiny models, without the PyTorch peer
(but for one test, skipped where no Python has torch); and every script of experiments/
starting from its folder."""

import argparse
import json
import subprocess
import sys

import numpy as np
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
    # The classifier: 6 x 2 directions x (300 + 150) 4 150 = 3.24 MFLOP (no per-word output).
    assert bench.flops_per_token(cfgs["e"]) == pytest.approx(3.24e6)
    # The translator, per target token: the decoder cell (256 + 512 + 512) 3 512, the query
    # 512 512, the deep output (512 + 512 + 256) 256, the output layer 256 8000; per source
    # token (0.96 of them): 2 directions x (256 + 256) 3 256 and the keys 512 512.
    decoder = 1280 * 3 * 512 + 512 * 512 + 1280 * 256 + 256 * 8000
    encoder = 2 * 512 * 3 * 256 + 512 * 512
    assert bench.flops_per_token(cfgs["f"]) == pytest.approx(6 * (decoder + 0.96 * encoder))


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--synthetic", "--no-peer", "--no-cold",
         "--configs", "a,c,e,f", "--reps", "1", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def test_bench_json_has_the_figures(tiny_results):
    results, stdout = tiny_results
    for key in ("date", "machine", "gemm_gflops", "gemm_gflops_by_threads", "configs", "memory"):
        assert key in results
    assert results["gemm_gflops"] > 0
    assert results["peer_python"] is None  # --no-peer
    assert set(results["configs"]) == {"a", "c", "e", "f"}
    impls = {name: [r["impl"] for r in c["results"]] for name, c in results["configs"].items()}
    # The engine once per backend (--mode defaults to NUMBA,JAX; jax is a test dependency).
    assert results["engine_modes"] == ["NUMBA", "JAX"]
    engine = ["engine-numba", "engine-jax"]
    assert impls == {"a": ["numpy", "rnn_theano"], "c": engine, "e": engine, "f": engine}
    # --synthetic: the classifier's sentences are the run's, with random labels; the
    # translator's pairs random ids.
    assert "random binary labels" in results["configs"]["e"]["corpus"]
    assert results["configs"]["f"]["corpus"] == "random ids"
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


@pytest.mark.parametrize("name", ["c", "e", "f"])
def test_bench_engine_rows_agree_across_backends(tiny_results, name):
    """The path experiments/gpu_check.sh takes on a GPU, here on CPU JAX: the same first loss,
    and the same words per pass (config f: under JAX, a function compiled for each of its two
    batch shapes)."""
    numba, jax = tiny_results[0]["configs"][name]["results"]
    assert jax["first_loss"] == pytest.approx(numba["first_loss"], rel=1e-5)
    assert jax["tokens_per_rep"] == numba["tokens_per_rep"]


@pytest.fixture(scope="module")
def peer_python():
    """A Python with torch for the PyTorch peer (.venv-torch), else the test is skipped."""
    bench = load("bench")
    python = bench.torch_python(argparse.Namespace(torch_python=None, make_torch_venv=False))
    if python is None:
        pytest.skip("no Python with torch: experiments/bench.py --make-torch-venv makes one")
    return python


def test_the_classifier_and_its_peer_are_the_same_model(tmp_path, peer_python):
    """Config e: the engine's worker and the PyTorch peer give the same first loss (at the
    initial parameters, without dropout) on batches whose rows all differ in length, so that
    the padding, where each row's backward direction starts and the max over the real steps
    only all matter, from initial weights enlarged so that the loss is far from ln 2 (then a
    peer that does not pack the batch, or pools over the padding, is off by 5e-4 to 5e-3).
    Both count the same real words. Needs a Python with torch (.venv-torch), else skipped."""
    from rnn_theano.data.labelled import Example
    bench = load("bench")
    rng = np.random.default_rng(1)
    examples = [Example(str(rng.integers(2)), [f"w{i}" for i in rng.integers(0, 30, n)])
                for n in rng.permutation(np.arange(1, 65))]
    cfg = bench.configs(tiny=True)["e"]
    path = bench.write_data("e", cfg, examples, 10**6, tmp_path)
    data = dict(np.load(path))
    assert [len(set(mask.sum(axis=0))) for mask in data["mask"]] == [32, 32]
    np.savez(path, **{k: v * (20 if k == "p_embed" else 4 if k.startswith("p_") else 1)
                      for k, v in data.items()})
    spec = {k: v for k, v in cfg.items() if k != "impls"} | dict(
        config="e", data=str(path), threads=[1], reps=1, warmup=0, mode="NUMBA", lock=None)
    engine = bench.run_subprocess(bench.WORKER, spec | dict(impl="engine"), tmp_path)
    peer = bench.run_subprocess([peer_python, str(bench.PEER)], spec | dict(impl="pytorch"),
                                tmp_path)
    assert "error" not in engine and "error" not in peer, (engine, peer)
    assert abs(engine["first_loss"] - np.log(2)) > 0.3
    assert peer["first_loss"] == pytest.approx(engine["first_loss"], rel=1e-5)
    words = [r["by_threads"]["1"]["tokens_per_rep"] for r in (engine, peer)]
    assert words == [data["mask"].sum()] * 2


def _translator_data(bench, cfg: dict, tmp_path) -> tuple[dict, dict]:
    """Config ``cfg`` (tiny f) on 128 random pairs, sources of 1 to 30 ids: two batches of
    two shapes whose rows have many lengths, the initial weights enlarged 4 times so that
    the loss is far from ln C (at the small initial weights every mistake about the padding
    changes it little). The worker's spec (NUMBA, one pass) and the data."""
    path = bench.write_data("f", cfg, bench.random_pairs(cfg["net"], 128, seed=1), 10**6,
                            tmp_path)
    data = {k: v * (4 if k.startswith("p_") else 1) for k, v in np.load(path).items()}
    np.savez(path, **data)
    assert [len(set(mask.sum(axis=0))) for mask in data["src_mask"]] == [16, 15]
    assert sorted(zip(data["src_lengths"], data["lengths"])) == [(16, 24), (32, 32)]
    spec = {k: v for k, v in cfg.items() if k != "impls"} | dict(
        config="f", data=str(path), threads=[1], reps=1, warmup=0, mode="NUMBA", lock=None)
    return spec, data


def test_the_translator_and_its_peer_are_the_same_model(tmp_path, peer_python):
    """Config f: the engine's worker and the PyTorch peer give the same first loss (at the
    initial parameters, without dropout or label smoothing) on batches whose rows differ in
    length, so that the source padding matters: a peer that runs the encoder over the
    padding unpacked, takes the initial state's mean over it or lets attention weigh it is
    off by 2e-3 to 1e-2. Both count the same real target tokens (EOS included)."""
    bench = load("bench")
    spec, data = _translator_data(bench, bench.configs(tiny=True)["f"], tmp_path)
    engine = bench.run_subprocess(bench.WORKER, spec | dict(impl="engine"), tmp_path)
    peer = bench.run_subprocess([peer_python, str(bench.PEER)], spec | dict(impl="pytorch"),
                                tmp_path)
    assert "error" not in engine and "error" not in peer, (engine, peer)
    assert abs(engine["first_loss"] - np.log(50)) > 0.3
    assert peer["first_loss"] == pytest.approx(engine["first_loss"], rel=1e-5)
    tokens = [r["by_threads"]["1"]["tokens_per_rep"] for r in (engine, peer)]
    assert tokens == [data["mask"].sum()] * 2


@pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")
def test_the_translator_peer_trains_on_the_engine_objective(tmp_path, peer_python):
    """Config f's training loss, which the first-loss check (plain cross-entropy) does not
    see: with dropout off, the peer's first training loss (PyTorch's label smoothing,
    averaged over the masked real target tokens) is the engine's objective per token."""
    import pytensor
    from rnn_theano.tasks.lm_graph import shared_params
    from rnn_theano.tasks.mt_graph import Seq2SeqConfig, build_mt
    bench = load("bench")
    cfg = bench.configs(tiny=True)["f"]
    cfg["net"]["dropout"] = 0.0
    spec, data = _translator_data(bench, cfg, tmp_path)
    code = ("import json, sys\n"
            f"sys.path.insert(0, {str(BENCH.parent)!r})\n"
            "import numpy as np, torch_peer\n"
            f"spec = json.loads({json.dumps(spec)!r})\n"
            "items, step, _ = torch_peer.mt_model(dict(np.load(spec['data'])), spec)\n"
            "print(step(*items[0])[0])\n")
    proc = subprocess.run([peer_python, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    params = {k[2:]: v for k, v in data.items() if k.startswith("p_")}
    graph = build_mt(Seq2SeqConfig(**(cfg["net"] | dict(vocab_size=40, target_vocab_size=50))),
                     shared_params(params))
    losses = pytensor.function([graph.src, graph.src_mask, graph.y_in, graph.y_out, graph.mask],
                               [graph.objective / graph.n_tokens, graph.cost / graph.n_tokens],
                               mode="FAST_COMPILE")(*bench.pair_arrays(data)[0])
    smoothed, plain = map(float, losses)
    assert smoothed - plain > 0.005  # the smoothing shows
    assert float(proc.stdout) == pytest.approx(smoothed, rel=1e-5)


def test_alone_runs_each_implementation_by_itself_in_alternating_order(monkeypatch, tmp_path):
    bench = load("bench")
    calls = []

    def fake(cmd, spec, workdir, env=None, timeout=900):
        calls.append((spec["impl"], spec["lock"]))
        return {"by_threads": {"1": {"words_per_sec": 100.0 * len(calls)}}, "compile_s": 1.0}

    monkeypatch.setattr(bench, "run_subprocess", fake)
    run = argparse.Namespace(args=argparse.Namespace(rounds=3), workdir=tmp_path)
    jobs = [(["engine"], {"impl": "engine", "lock": "turns.lock"}),
            (["peer"], {"impl": "pytorch", "lock": "turns.lock"})]
    engine, peer = bench.alone(run, jobs)
    assert [impl for impl, _ in calls] == ["engine", "pytorch", "pytorch", "engine", "engine",
                                           "pytorch"]
    assert {lock for _, lock in calls} == {None}  # alone: no lock to take turns with
    assert engine["rounds"] == [100.0, 400.0, 500.0] and peer["rounds"] == [200.0, 300.0, 600.0]
    assert engine["by_threads"]["1"]["words_per_sec"] == 400.0  # the median of the rounds


def test_a_finished_worker_keeps_its_turn_until_its_process_is_gone(tmp_path):
    """Its teardown must not run beside another worker's timed pass."""
    import fcntl
    lock = tmp_path / "turns.lock"
    code = (f"import sys\nsys.path.insert(0, {str(BENCH.parent)!r})\nimport bench\n"
            f"bench.keep_turn_to_exit({str(lock)!r})\nprint('held', flush=True)\n"
            "sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert child.stdout.readline().strip() == "held"
        with open(lock, "a") as fh:
            with pytest.raises(BlockingIOError):  # the child still holds it
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            child.communicate("\n", timeout=60)  # the child returns and exits
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the process
    finally:
        child.kill()
    assert child.returncode == 0


def test_merging_rounds_takes_medians_and_the_best_thread_count():
    bench = load("bench")
    rounds = [{"by_threads": {"1": {"words_per_sec": a}, "2": {"words_per_sec": b}},
               "compile_s": c} for a, b, c in ((10.0, 30.0, 1.0), (20.0, 10.0, 3.0),
                                               (30.0, 25.0, 2.0))]
    merged = bench.merge_rounds(rounds)
    assert merged["by_threads"]["1"]["words_per_sec"] == 20.0
    assert merged["by_threads"]["2"]["words_per_sec"] == 25.0
    assert bench.best(merged) == ("2", 25.0) and merged["rounds"] == [30.0, 10.0, 25.0]
    assert merged["compile_s"] == 2.0
    failed = {"error": "timed out after 900 s"}
    assert bench.merge_rounds([rounds[0], failed]) == failed
    r = {"ratio_rounds": [1.1, 0.9, 1.3]}
    assert bench._spread(r) == " (0.90-1.30)" and bench._spread({}) == ""


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


# --- experiments/bench_ctc.py -----------------------------------------------------------------


def _collapse(path) -> list[int]:
    return [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]


def _brute_force_ctc(data: dict) -> np.ndarray:
    """-log p(labels | z) of each row by summing every path of its frames that collapses to
    its labels (K^T of them): independent of any alpha recursion."""
    import itertools
    z = data["z"].astype(np.float64)
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    costs = []
    for b in range(z.shape[1]):
        T, labels = data["frame_lengths"][b], list(data["labels"][b, :data["label_lengths"][b]])
        p = probs[:T, b]
        costs.append(-np.log(sum(np.prod(p[np.arange(T), path])
                                 for path in itertools.product(range(p.shape[1]), repeat=T)
                                 if _collapse(path) == labels)))
    return np.array(costs)


@pytest.fixture(scope="module")
def ctc_bench():
    return load("bench_ctc")


@pytest.fixture(scope="module")
def tiny_ctc(ctc_bench):
    """A tiny batch of the benchmark's data (T=6 frames, 4 rows, K=3, up to 3 labels) and the
    brute-force loss of each row."""
    data = ctc_bench.make_data(6, 4, 3, 3, seed=3)
    return data, _brute_force_ctc(data)


def test_the_ctc_bench_data_and_its_numpy_reference(ctc_bench, tiny_ctc):
    """The random batch is what the masks say (frame lengths in [T/2, T] and long enough for
    the labels, labels in 1..K-1 then 0), and the script's float64 alpha recursion, the
    yardstick of its values check, is the sum over all alignments."""
    data, brute = tiny_ctc
    T, B = data["frame_mask"].shape
    assert (data["frame_mask"].sum(0) == data["frame_lengths"]).all()
    assert (data["label_mask"].sum(1) == data["label_lengths"]).all()
    assert ((3 <= data["frame_lengths"]) & (data["frame_lengths"] <= T)).all()
    for b in range(B):
        n = data["label_lengths"][b]
        assert 1 <= n <= 3 and set(data["labels"][b, :n]) <= {1, 2}
        assert not data["labels"][b, n:].any()
        assert data["frame_lengths"][b] >= ctc_bench.needed_frames(data["labels"][b, :n])
    assert len(set(data["frame_lengths"])) > 1 and len(set(data["label_lengths"])) > 1
    np.testing.assert_allclose(ctc_bench.reference_ctc(data), brute, rtol=1e-10)
    with pytest.raises(ValueError, match="cannot hold"):
        ctc_bench.make_data(2, 4, 2, 3, seed=0)  # K=2: every label a repeat of the last


@pytest.mark.parametrize("mode", ["JAX", "NUMBA"])
def test_the_ctc_bench_times_the_loss_and_its_gradient(ctc_bench, tiny_ctc, mode):
    """What the script compiles under each backend: the forward is the summed loss (the
    brute-force one, in float32), the forward + backward the same loss and its gradient
    w.r.t. the scores, which is zero on padded frames and sums to zero over the outputs of
    every frame (the gradient of a log_softmax input)."""
    data, brute = tiny_ctc
    forward, both = ctc_bench.compile_ours(mode, (*data["z"].shape, data["labels"].shape[1]))
    args = ctc_bench.inputs_of(data)
    loss = float(np.asarray(forward(*args)))
    assert loss == pytest.approx(brute.sum(), rel=1e-5)
    loss_fb, grad = (np.asarray(o) for o in both(*args))
    assert float(loss_fb) == pytest.approx(loss, rel=1e-6)
    assert grad.shape == data["z"].shape and grad.dtype == np.float32
    assert not grad[data["frame_mask"] == 0].any() and grad[data["frame_mask"] == 1].any()
    np.testing.assert_allclose(grad.sum(-1), 0, atol=1e-6)


def test_the_ctc_bench_runs_without_the_peer(tmp_path):
    """``--no-peer`` on a tiny ``--shape``: both backends' values checked against the numpy
    reference, a table, and the JSON with the machine and every figure."""
    out = tmp_path / "ctc.json"
    proc = subprocess.run(
        [sys.executable, str(script("bench_ctc")), "--no-peer", "--shape", "8,3,4,3",
         "--warmup", "1", "--reps", "3", "--json", str(out)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "T=8 frames, B=3 utterances, K=4 outputs, U=3 labels" in proc.stdout
    assert "all agree" in proc.stdout
    assert "| implementation | forward ms | fwd+bwd ms |" in proc.stdout
    assert "| ours-jax |" in proc.stdout and "| ours-numba |" in proc.stdout
    results = json.loads(out.read_text())
    assert results["shape"] == {"T": 8, "B": 3, "K": 4, "U": 3}
    assert results["peer_python"] is None and results["modes"] == ["JAX", "NUMBA"]
    for key in ("platform", "cores", "pytensor", "jax", "torch"):
        assert key in results["machine"]
    assert results["check"]["ok"] and set(results["check"]["rows"]) == {"ours-jax", "ours-numba"}
    reference = results["check"]["reference_loss"]
    for row in results["results"]:
        assert row["loss"] == pytest.approx(reference, rel=1e-5)
        assert len(row["forward_ms_all"]) == len(row["both_ms_all"]) == 3
        assert 0 < row["forward_ms"] and 0 < row["both_ms"] and row["compile_s"] > 0
        assert "forward_ratio" not in row  # no peer to compare with


def test_the_ctc_bench_peer_is_the_same_loss(ctc_bench, tiny_ctc, peer_python, tmp_path):
    """PyTorch's ``ctc_loss`` as the script runs it (a subprocess fed the .npz) gives the
    brute-force loss and ours' gradient. Needs a Python with torch (.venv-torch), else
    skipped."""
    data, brute = tiny_ctc
    path = tmp_path / "data.npz"
    np.savez(path, **data)
    peer = ctc_bench.run_peer(peer_python, path, warmup=1, reps=2, threads=1, timeout=120)
    assert "error" not in peer, peer
    assert peer["loss"] == pytest.approx(brute.sum(), rel=1e-5)
    assert peer["loss_fb"] == pytest.approx(peer["loss"], rel=1e-6)
    assert peer["torch_threads"] == 1 and len(peer["forward_ms"]) == len(peer["both_ms"]) == 2
    _, both = ctc_bench.compile_ours("JAX", (*data["z"].shape, data["labels"].shape[1]))
    grad = np.asarray(both(*ctc_bench.inputs_of(data))[1])
    np.testing.assert_allclose(peer["grad"], grad, atol=1e-5)
