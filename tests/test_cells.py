"""The recurrent cells on their own: initialisation, and what masking does to the state."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

from rnn_theano.nn.cells import CELLS, init_cell_params, project_inputs, run_cell

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

PY_MODE = Mode(linker="py", optimizer="fast_compile")
D, H = 3, 4


def test_init_shapes_and_biases() -> None:
    rng = np.random.default_rng(0)
    for cell in CELLS.values():
        p = init_cell_params(cell, D, H, rng)
        G = cell.gates
        assert p["Wx"].shape == (D, G * H) and p["Wh"].shape == (H, G * H)
        assert p["b"].shape == (G * H,)
        assert np.abs(p["Wh"]).max() <= 1 / np.sqrt(H)
    b = init_cell_params(CELLS["lstm"], D, H, rng, forget_bias=2.5)["b"]
    # Gate order i, f, g, o: only the second block starts at the forget bias.
    np.testing.assert_array_equal(b, np.r_[np.zeros(H), np.full(H, 2.5), np.zeros(2 * H)])
    assert "b" not in init_cell_params(CELLS["rnn"], D, H, rng, bias=False)
    relu = init_cell_params(CELLS["relu"], D, H, rng, identity_init=True)
    np.testing.assert_array_equal(relu["Wh"], np.eye(H))
    with pytest.raises(ValueError, match="one-gate"):
        init_cell_params(CELLS["gru"], D, H, rng, identity_init=True)


@pytest.mark.parametrize("name", list(CELLS))
def test_padding_keeps_the_state(name: str) -> None:
    cell = CELLS[name]
    params = init_cell_params(cell, D, H, np.random.default_rng(1))
    x, mask = pt.tensor3("x"), pt.matrix("mask")
    initial = [pt.matrix(f"s{i}") for i in range(cell.states)]
    xp = project_inputs(x, pt.constant(params["Wx"]), pt.constant(params["b"]))
    states = run_cell(cell, xp, mask, initial, pt.constant(params["Wh"]))
    fn = pytensor.function([x, mask, *initial], states, mode=PY_MODE)

    rng = np.random.default_rng(2)
    T, B = 5, 3
    xs = rng.normal(size=(T, B, D))
    s0 = [rng.normal(size=(B, H)) for _ in range(cell.states)]
    mask_np = np.ones((T, B))
    mask_np[3:, 1] = 0   # row 1: two padding steps at the end
    mask_np[:2, 2] = 0   # row 2: two padding steps at the start (a reversed sentence)
    out = fn(xs, mask_np, *s0)
    for seq, start in zip(out, s0):
        np.testing.assert_array_equal(seq[3:, 1], np.stack([seq[2, 1]] * 2))
        np.testing.assert_array_equal(seq[:2, 2], np.stack([start[2]] * 2))
    # Padding at the start is invisible: row 2 ends as if run on its 3 real steps only.
    short = fn(xs[2:, 2:3], np.ones((3, 1)), *[s[2:3] for s in s0])
    for seq, ref in zip(out, short):
        np.testing.assert_allclose(seq[-1, 2], ref[-1, 0], rtol=1e-12)
