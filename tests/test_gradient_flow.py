"""dL_t/ds_{t-k} from autodiff (experiments/gradient_flow.py) against hand-written BPTT and
finite differences, the decay properties the figure relies on, and the command end to end.

Tiny sizes and one compiled function per cell (FAST_COMPILE: these graphs are too small for
Numba's compile time to pay off).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments_loader import load
from rnn_theano.errors import UserError
from rnn_theano.tasks.lm_graph import LMConfig, init_lm_params

gradient_flow = load("gradient_flow")
StateGradients, measure, pick_positions = (gradient_flow.StateGradients, gradient_flow.measure,
                                           gradient_flow.pick_positions)

C, E, H = 12, 5, 4
X = [3, 1, 4, 1, 5, 9, 2]  # x_0 .. x_t, t = 6
Y_T = 6                    # the word after x_t


def config(cell: str, **kw) -> LMConfig:
    return LMConfig(cell=cell, vocab_size=C, embed_dim=E, hidden_dim=H, float32=False,
                    seed=3, **kw)


@pytest.fixture(scope="module")
def grad_fns():
    return {cell: StateGradients(config(cell), mode="FAST_COMPILE")
            for cell in ("rnn", "relu", "lstm")}


def numpy_tanh_bptt(p, x, y_t):
    """||dL_t/ds_{t-k}|| for every k, written out by hand for the tanh cell.

    s_j = tanh(e_j Wx + b + s_{j-1} Wh);  L_t = -log softmax(s_t out_W + out_b)[y_t]
    dL/ds_t = (softmax - onehot(y_t)) out_W^T;  dL/ds_{j-1} = (dL/ds_j * (1 - s_j^2)) Wh^T
    """
    s, states = np.zeros(H), []
    for w in x:
        s = np.tanh(p["embed"][w] @ p["l0_Wx"] + p["l0_b"] + s @ p["l0_Wh"])
        states.append(s)
    z = states[-1] @ p["out_W"] + p["out_b"]
    prob = np.exp(z - z.max())
    prob /= prob.sum()
    delta = prob.copy()
    delta[y_t] -= 1
    g = p["out_W"] @ delta  # dL/ds_t
    grads = [g]
    for j in range(len(x) - 1, 0, -1):
        g = p["l0_Wh"] @ (g * (1 - states[j] ** 2))
        grads.append(g)
    return np.array(grads)  # k-indexed: row k is dL/ds_{t-k}


def test_tanh_autodiff_equals_hand_written_bptt(grad_fns):
    p = init_lm_params(config("rnn"))
    p["l0_b"] = np.random.default_rng(0).normal(0, 0.3, H)  # a nonzero bias is exercised too
    got = grad_fns["rnn"](p, X, Y_T)
    want = numpy_tanh_bptt(p, X, Y_T)
    t = len(X) - 1
    for k in (0, 1, 2):
        np.testing.assert_allclose(got.state_grads[0][t - k], want[k], rtol=1e-10, atol=1e-14)
        assert got.norms[k] == pytest.approx(np.linalg.norm(want[k]), rel=1e-10)
    np.testing.assert_allclose(got.norms, np.linalg.norm(want, axis=1), rtol=1e-10)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_state_gradient_equals_finite_differences(grad_fns, cell):
    """Perturbing s_{t-k} (the eps input) changes L_t by the computed gradient."""
    p = init_lm_params(config(cell))
    fn, t, h = grad_fns[cell], len(X) - 1, 1e-6
    got = fn(p, X, Y_T)
    rng = np.random.default_rng(1)
    for k in (0, 1, 2):
        for state in range(fn.cell.states):  # h, and c for the LSTM
            unit = int(rng.integers(H))
            eps = [np.zeros((len(X), 1, H)) for _ in range(fn.cell.states)]
            eps[state][t - k, 0, unit] = h
            plus = fn(p, X, Y_T, eps).loss
            eps[state][t - k, 0, unit] = -h
            minus = fn(p, X, Y_T, eps).loss
            fd = (plus - minus) / (2 * h)
            assert got.state_grads[state][t - k, unit] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_small_weight_tanh_gradient_decays_monotonically(grad_fns):
    """With ||Wh||_2 < 1 every step back multiplies by Wh diag(1 - s^2), which shrinks."""
    p = init_lm_params(config("rnn"))
    p["l0_Wh"] = 0.3 * p["l0_Wh"]
    x = list(np.random.default_rng(2).integers(C, size=15))
    norms = grad_fns["rnn"](p, x, Y_T).norms
    assert np.all(np.diff(norms) < 0)
    sigma = np.linalg.norm(p["l0_Wh"], 2)
    assert sigma < 1
    assert np.all(norms <= norms[0] * sigma ** np.arange(len(norms)) * (1 + 1e-12))


def test_relu_identity_with_zero_input_weights_keeps_the_norm(grad_fns):
    """Wx = 0, b > 0, Wh = I: s_j = (j + 1) b > 0, every unit active, so every step's Jacobian
    is the identity and ||dL_t/ds_{t-k}|| is the same for every k."""
    p = init_lm_params(config("relu", identity_init=True))
    assert np.array_equal(p["l0_Wh"], np.eye(H))
    p["l0_Wx"] = np.zeros_like(p["l0_Wx"])
    p["l0_b"] = np.full(H, 0.1)
    norms = grad_fns["relu"](p, X, Y_T).norms
    assert norms[0] > 0
    np.testing.assert_allclose(norms, norms[0], rtol=1e-12)
    # and a contracting recurrent matrix breaks it: the test can tell the difference
    p["l0_Wh"] = 0.5 * np.eye(H)
    assert grad_fns["relu"](p, X, Y_T).norms[-1] < 0.1 * norms[0]


def test_measure_averages_log_norms_and_clipping_only_shifts(grad_fns):
    p = init_lm_params(config("rnn"))
    rng = np.random.default_rng(4)
    sequences = [rng.integers(C, size=n).astype(np.int32) for n in (4, 9, 12, 10)]
    positions = pick_positions([len(s) - 1 for s in sequences], max_k=5, n=10, seed=0)
    assert [i for i, _ in positions] == [1, 2, 3]  # the first sentence is too short
    assert all(5 <= t < len(sequences[i]) - 1 for i, t in positions)
    curve = measure(grad_fns["rnn"], p, sequences, positions, 5, clip_norm=1e-3,
                    name="x", cell="rnn", trained=False)
    logs = [np.log10(grad_fns["rnn"](p, sequences[i][:t + 1], sequences[i][t + 1]).norms[:6])
            for i, t in positions]
    np.testing.assert_allclose(curve.mean_log10, np.mean(logs, axis=0), rtol=1e-12)
    shift = np.array(curve.clipped_mean_log10) - np.array(curve.mean_log10)
    assert curve.clipped_fraction == 1.0 and np.all(shift < 0)
    np.testing.assert_allclose(shift, shift[0], rtol=1e-9)  # the same factor for every k
    with pytest.raises(UserError, match="--max-k"):
        measure(grad_fns["rnn"], p, sequences, [], 5, 1.0, name="x", cell="rnn", trained=False)


def test_the_command_writes_the_curves_and_the_figure(small_text, tmp_path):
    """One cell, trained two steps: its untrained and trained curves, in JSON and as a PNG."""
    out = tmp_path / "flow.png"
    assert gradient_flow.main(
        ["--data", str(small_text), "--cells", "rnn", "--mode", "FAST_COMPILE", "--max-k", "3",
         "--sentences", "5", "--train-steps", "2", "--batch-size", "4", "--hidden-dim", "4",
         "--vocab-size", "30", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["settings"]["cells"] == ["rnn"] and data["settings"]["positions"] == 5
    curves = data["curves"]
    assert [(c["name"], c["trained"]) for c in curves] == [("rnn untrained", False),
                                                          ("rnn trained", True)]
    for c in curves:
        assert c["k"] == [0, 1, 2, 3] and c["n_positions"] == 5
        assert all(np.isfinite(c["mean_log10"])) and c["mean_loss"] > 0
    assert curves[1]["info"]["steps"] == 2 and curves[1]["info"]["hidden_dim"] == 4


@pytest.mark.parametrize("flags, message", [
    (["--max-k", "0"], "--max-k must be at least 1"),
    (["--cells", "rnn,cnn"], "--cells rnn,cnn: give a subset"),
    (["--model", "lstm"], "write CELL=PATH"),
    (["--out", "flow.svg"], "should name a .png"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--max-k", "60", "--train-steps", "0"], "no held-out sentence has 61 words"),
])
def test_bad_input_is_one_line_and_status_2(small_text, capsys, flags, message):
    assert gradient_flow.main(["--data", str(small_text), *flags]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after any progress lines
    assert last.startswith("error: ") and message in last


def train_checkpoint(small_text: Path, out: Path, *flags: str) -> Path:
    """A tiny model trained one epoch by the project's own command."""
    train = Path(__file__).resolve().parents[1] / "scripts" / "train_lm.py"
    subprocess.run([sys.executable, str(train), "--data", str(small_text), "--hidden-dim", "4",
                    "--vocab-size", "30", "--epochs", "1", "--mode", "FAST_COMPILE",
                    "--model-out", str(out), *flags], check=True, capture_output=True)
    return out


def test_a_trained_checkpoint_is_measured_as_it_is(small_text, tmp_path, capsys):
    gru = train_checkpoint(small_text, tmp_path / "gru.npz", "--arch", "gru",
                           "--batch-size", "16")
    tutorial = train_checkpoint(small_text, tmp_path / "tutorial.npz")
    out = tmp_path / "flow.png"
    common = ["--data", str(small_text), "--mode", "FAST_COMPILE", "--max-k", "3",
              "--sentences", "4", "--train-steps", "0", "--out", str(out)]
    assert gradient_flow.main([*common, "--cells", "gru", "--model", f"gru={gru}"]) == 0
    untrained, trained = json.loads(out.with_suffix(".json").read_text())["curves"]
    assert trained["trained"] and trained["info"]["checkpoint"] == str(gru)
    assert trained["info"]["hidden_dim"] == 4  # the checkpoint's size, not --hidden-dim's 64
    assert untrained["info"]["hidden_dim"] == 4 and not untrained["trained"]
    capsys.readouterr()
    for model, message in ((f"lstm={gru}", "holds a gru model, not lstm"),
                           (f"rnn={tutorial}", "is a tutorial-model checkpoint")):
        assert gradient_flow.main([*common, "--model", model]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
