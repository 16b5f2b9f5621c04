"""``--resume`` continues a run exactly: two epochs in one run give what one epoch, then
``--resume`` for one more, gives: the same parameters, optimizer state, generator state and
history (but for the time each row took).

Each case is a tiny model. The engine runs under JAX, whose compiles are quick; dropout also
under Numba, where the generator is a numpy one (under JAX it is the key each compiled
function carries: ``test_jax.py``).
"""

from pathlib import Path

import numpy as np
import pytest

from rnn_theano.checkpoint import Checkpoint, load_checkpoint
from rnn_theano.cli import train_main
from test_cli import TIME_FIELDS

TINY = ["--hidden-dim", "8", "--vocab-size", "50"]
CASES = {
    # shuffled batches of sentences, Adam's moments and step count
    "sentences": ["--arch", "gru", "--mode", "JAX", *TINY, "--batch-size", "4",
                  "--optimizer", "adam", "--learning-rate", "0.01"],
    # the dropout generator; under Numba, the graph of test_engine.py's engine
    **{f"dropout-{mode.lower()}": ["--arch", "lstm", "--mode", mode, *TINY, "--batch-size", "4",
                                    "--dropout", "0.1", "--optimizer", "adam",
                                    "--learning-rate", "0.02", "--clip-norm", "1.0"]
       for mode in ("JAX", "NUMBA")},
    # the tutorial's model: its per-epoch order and its learning-rate schedule
    "tutorial": ["--impl", "numpy", *TINY, "--learning-rate", "0.05"],
}


def without_time(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIME_FIELDS}


def largest_change(a: Checkpoint, b: Checkpoint) -> float:
    return max(float(np.abs(a.params[name] - b.params[name]).max()) for name in a.params)


def straight_and_resumed(common: list[str], folder: Path) -> tuple[Checkpoint, ...]:
    """Two epochs in one run; one epoch; that one resumed for a second."""
    straight, half, resumed = (folder / f"{name}.npz" for name in ("straight", "half", "resumed"))
    assert train_main([*common, "--epochs", "2", "--model-out", str(straight)]) == 0
    assert train_main([*common, "--epochs", "1", "--model-out", str(half)]) == 0
    assert train_main([*common, "--epochs", "1", "--resume", str(half),
                       "--model-out", str(resumed)]) == 0
    return load_checkpoint(straight), load_checkpoint(half), load_checkpoint(resumed)


def check_same_training(straight: Checkpoint, half: Checkpoint, resumed: Checkpoint) -> None:
    # The second epoch did something (so two copies of the first could not pass) ...
    assert largest_change(straight, half) > 1e-3
    assert straight.state["epoch"] == resumed.state["epoch"] == 2
    # ... and the same thing, whether resumed or not.
    for name, value in straight.params.items():
        np.testing.assert_allclose(resumed.params[name], value, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    assert straight.optimizer.keys() == resumed.optimizer.keys()
    for name, value in straight.optimizer.items():
        np.testing.assert_allclose(resumed.optimizer[name], value, rtol=1e-6, atol=1e-7,
                                   err_msg=name)
    rows = [[without_time(row) for row in ckpt.state["history"]] for ckpt in (straight, resumed)]
    assert len(rows[0]) == len(rows[1])
    for row, expected in zip(rows[1], rows[0]):
        assert row == pytest.approx(expected, rel=1e-6)
    for key in ("learning_rate", "best"):
        assert resumed.state[key] == pytest.approx(straight.state[key], rel=1e-6)
    assert resumed.state.get("dropout_rng") == straight.state.get("dropout_rng")


@pytest.mark.parametrize("case", CASES)
def test_resume_continues_exactly(case, small_text, tmp_path):
    straight, half, resumed = straight_and_resumed(["--data", str(small_text), *CASES[case]],
                                                   tmp_path)
    check_same_training(straight, half, resumed)
    if case == "tutorial":
        assert [row["epoch"] for row in straight.state["history"]] == [0, 1, 2]
    else:
        assert [row["epoch"] for row in straight.state["history"]] == [1, 2]
    if case.startswith("dropout"):  # the generator moved on in the second epoch, and was saved
        assert half.state["dropout_rng"] != straight.state["dropout_rng"]
    if case == "sentences":
        assert half.optimizer["adam_steps"] < straight.optimizer["adam_steps"]


def test_resume_continues_a_stream_on_ptb_exactly(shared_data, tmp_path):
    """The same on real text in stream mode, the state carried across windows."""
    ptb = shared_data / "ptb"
    common = ["--data", str(ptb / "ptb.valid.txt"), "--valid", str(ptb / "ptb.test.txt"),
              "--max-sentences", "300", "--stream", "--arch", "gru", "--hidden-dim", "16",
              "--batch-size", "8", "--bptt-len", "10", "--vocab-size", "400",
              "--optimizer", "adam", "--learning-rate", "0.01"]
    straight, half, resumed = straight_and_resumed(common, tmp_path)
    check_same_training(straight, half, resumed)
    saved = half.optimizer
    assert saved["adam_steps"] > 0 and "l0_Wh_m" in saved and "l0_Wh_v" in saved
    assert resumed.optimizer["adam_steps"] == straight.optimizer["adam_steps"] > saved["adam_steps"]
