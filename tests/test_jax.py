"""The engine under PyTensor's JAX backend (the GPU route), run here on CPU JAX.

JAX needs static shapes: the engine compiles one function per batch shape. These tests check
that the JAX functions compute what the Numba ones do, that parameters stay float32 through
JAX updates, and that training from the command line works with ``--mode JAX``. The engine
expects ``backends.prepare("JAX")`` before it compiles, as ``tasks.lm`` does.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rnn_theano import backends
from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import train_main
from rnn_theano.tasks.lm_engine import LMEngine
from rnn_theano.tasks.lm_graph import LMConfig, init_lm_params
from rnn_theano.tasks.lm import next_word_probs

import jax  # noqa: F401  (a test dependency: missing jax is a failure, not a skip)


@pytest.fixture(scope="module", autouse=True)
def jax_prepared() -> None:
    assert backends.prepare("JAX") == "JAX"


def batches(rng: np.random.Generator, C: int) -> list[tuple[np.ndarray, ...]]:
    """Three batches of two shapes, one with padding."""
    out = []
    for T, B in ((6, 3), (4, 2), (6, 3)):
        x = rng.integers(0, C, (T, B)).astype(np.int32)
        y = rng.integers(0, C, (T, B)).astype(np.int32)
        mask = np.ones((T, B), np.float32)
        mask[T - 2:, 0] = 0.0
        out.append((x, y, mask))
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_jax_training_equals_numba(cell):
    config = LMConfig(cell=cell, vocab_size=40, embed_dim=8, hidden_dim=8, layers=2)
    params = init_lm_params(config)
    engines = {mode: LMEngine(config, params, mode=mode, optimizer="adam", learning_rate=0.01,
                              clip_norm=1.0) for mode in ("NUMBA", "JAX")}
    data = batches(np.random.default_rng(0), config.vocab_size)
    costs = {mode: [] for mode in engines}
    for mode, engine in engines.items():
        for x, y, mask in data:
            result = engine.train_step(x, y, mask, engine.initial_state(x.shape[1]))
            costs[mode].append((result.cost, result.grad_norm))
        x, y, mask = data[0]
        costs[mode].append((engine.eval_step(x, y, mask, engine.initial_state(3)).cost, 0.0))
    np.testing.assert_allclose(costs["JAX"], costs["NUMBA"], rtol=1e-4)
    jax_params, numba_params = engines["JAX"].get_params(), engines["NUMBA"].get_params()
    for name, value in numba_params.items():
        assert jax_params[name].dtype == np.float32, name  # no float64 leaking out of JAX
        np.testing.assert_allclose(jax_params[name], value, atol=1e-5, err_msg=name)
    # one compiled function per (kind, shape): two training shapes, one evaluation shape
    assert sorted(k for k in engines["JAX"]._functions) == [
        ("eval", (6, 3)), ("train", (4, 2)), ("train", (6, 3))]


def test_generating_compiles_one_shape():
    """Each sampled word is one (1, 1) step from the carried state: one compile under JAX,
    not one per prefix length."""
    config = LMConfig(cell="gru", vocab_size=30, embed_dim=8, hidden_dim=8)
    engine = LMEngine(config, mode="JAX")
    probs = next_word_probs(engine)
    ids = np.arange(1, 11, dtype=np.int32)
    for n in range(1, 11):
        assert probs(ids[:n]).sum() == pytest.approx(1.0, rel=1e-5)
    assert list(engine._functions) == [("log_probs", (1, 1))]


def test_the_dropout_streams_are_saved_and_continued_under_jax():
    """PyTensor's JAX backend updates a private copy of a shared generator inside each compiled
    function (one per batch shape), never the shared variable; ``get_rng_state`` must still
    say where training is, and ``set_rng_state`` continue from there."""
    config = LMConfig(cell="gru", vocab_size=30, embed_dim=8, hidden_dim=8, dropout=0.5)
    params = init_lm_params(config)

    def engine(rng_state=None) -> LMEngine:  # learning rate 0: only the masks change a cost
        e = LMEngine(config, params, mode="JAX", learning_rate=0.0)
        e.set_rng_state(json.loads(json.dumps(rng_state)))  # as a checkpoint stores it
        return e

    def step(e: LMEngine, T: int) -> float:
        x = (np.arange(2 * T, dtype=np.int32) % config.vocab_size).reshape(T, 2)
        return e.train_step(x, x, np.ones((T, 2), np.float32), e.initial_state(2)).cost

    a = engine()
    states, costs = [a.get_rng_state()], []
    for T in (4, 4, 3, 4):  # two batch shapes, interleaved
        costs.append(step(a, T))
        states.append(a.get_rng_state())
    assert len({json.dumps(s, sort_keys=True) for s in states}) == 5  # it moves at every step
    assert costs[0] != costs[1]  # new masks, same parameters
    assert step(engine(states[1]), 4) == costs[1]  # continued from a saved state
    assert step(engine(states[3]), 4) == costs[3]  # ... past a step of another shape
    a.set_rng_state(states[1])  # after compiling, too
    assert step(a, 4) == costs[1]


def test_jax_trains_from_the_command_line_with_dropout(shared_data, tmp_path):
    ptb = shared_data / "ptb"
    out = tmp_path / "jax.npz"
    assert train_main(["--data", str(ptb / "ptb.valid.txt"), "--valid", str(ptb / "ptb.test.txt"),
                       "--max-sentences", "300", "--stream", "--mode", "JAX", "--arch", "lstm",
                       "--hidden-dim", "16", "--batch-size", "8", "--bptt-len", "10",
                       "--vocab-size", "500", "--dropout", "0.2", "--clip-norm", "0.25",
                       "--learning-rate", "5", "--epochs", "2", "--model-out", str(out)]) == 0
    history = load_checkpoint(out).state["history"]
    assert len(history) == 2 and history[1]["train_ppl"] < history[0]["train_ppl"] < 500


def test_xla_executables_are_cached_in_the_pytensor_compile_directory(tmp_path):
    """A second process finds the first one's XLA executables under base_compiledir."""
    code = ("import numpy as np\n"
            "from rnn_theano import backends\n"
            "from rnn_theano.tasks.lm_engine import LMEngine\n"
            "from rnn_theano.tasks.lm_graph import LMConfig\n"
            "backends.prepare('JAX')\n"
            "e = LMEngine(LMConfig(cell='gru', vocab_size=30, embed_dim=4, hidden_dim=4), "
            "mode='JAX')\n"
            "x = np.ones((3, 2), np.int32)\n"
            "e.train_step(x, x, np.ones((3, 2), np.float32), e.initial_state(2))\n"
            "print(backends.jax_cache_dir())\n")
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path}"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    cache = proc.stdout.strip().splitlines()[-1]
    assert cache.startswith(str(tmp_path))
    assert any(name.startswith("jit_") for name in os.listdir(cache))
