"""Recurrent cells for a minibatch, as ``scan`` step functions, and their parameters.

Every cell has the same three parameters and the same split of work:

* ``Wx`` (D, G*H): the input weights of all G gates side by side, applied to every time step
  at once *before* the loop (one big matrix product), together with the bias ``b`` (G*H,);
* ``Wh`` (H, G*H): the recurrent weights of all gates side by side, the only matrix product
  inside the loop (one per step).

So a step receives ``xp_t = x_t Wx + b`` (B, G*H) for its batch of B rows and adds
``h_{t-1} Wh``; gate k is column block ``[k*H, (k+1)*H)``. Rows are batch elements, so all
products are ``row vector @ matrix`` (the transposes of the usual ``W x`` notation).

Cells (sigma is the logistic function, * the elementwise product)::

    rnn   (G=1)  h_t = tanh(xp_t + h_{t-1} Wh)
    relu  (G=1)  h_t = max(0, xp_t + h_{t-1} Wh)
    gru   (G=3)  gates r, z, n:   a = h_{t-1} Wh
                 r = sigma(xp_r + a_r)      z = sigma(xp_z + a_z)
                 n = tanh(xp_n + r * a_n)
                 h_t = (1 - z) * n + z * h_{t-1}
    lstm  (G=4)  gates i, f, g, o:   a = xp_t + h_{t-1} Wh
                 i = sigma(a_i)  f = sigma(a_f)  g = tanh(a_g)  o = sigma(a_o)
                 c_t = f * c_{t-1} + i * g
                 h_t = o * tanh(c_t)

The GRU applies the reset gate to the recurrent product (``r * (h Wh_n)``, the "reset after"
form of cuDNN and PyTorch without a separate recurrent bias) rather than to the state before
the product (``(r * h) Wh_n``, Cho et al. 2014): that is what lets all three gates share one
recurrent matrix product per step.

Masking: each step also gets ``m_t`` (B,), 1 for a real token and 0 for padding. A padded row
keeps its state: ``h_t = m_t * h_new + (1 - m_t) * h_{t-1}`` (and the same for the LSTM's
``c_t``), so padding at the end of a sentence leaves its final state, and padding before it
(a reversed sequence) leaves the initial state, exactly as if the padding were not there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt

Tensor = pt.TensorVariable


def _keep_padding(m_t: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where the row is a real token (m_t = 1), ``old`` where it is padding."""
    m = m_t[:, None]  # (B, 1): broadcast over the H units
    return m * new + (1 - m) * old


def _tanh(a: Tensor) -> Tensor:
    """tanh(a), written as 2 sigmoid(2a) - 1.

    The same function, but Numba compiles ``tanh`` to a scalar library call per element (pip's
    llvmlite has no SVML), several times slower than this form inside every step of the loop
    and of its gradient (docs/backends.md).
    """
    return 2.0 * pt.sigmoid(2.0 * a) - 1.0


def _units(Wh: Tensor) -> int | Tensor:
    """H, from the static shape when the type has one (JAX needs slice bounds it can see)."""
    return Wh.type.shape[0] if Wh.type.shape[0] is not None else Wh.shape[0]


def _gate(a: Tensor, k: int, H: int | Tensor) -> Tensor:
    """Column block k (gate k) of a fused (B, G*H) pre-activation."""
    return a[:, k * H:(k + 1) * H]


def _recurrent(h_prev: Tensor, Wh: Tensor, keep: Tensor | None) -> Tensor:
    """h_{t-1} Wh, with the recurrent dropout mask ``keep`` (B, H) on h_{t-1} when given: the
    same mask at every step of the sequence (Gal & Ghahramani 2016)."""
    return (h_prev if keep is None else h_prev * keep).dot(Wh)


def _rnn_step(xp_t: Tensor, m_t: Tensor, h_prev: Tensor, Wh: Tensor,
              keep: Tensor | None = None) -> Tensor:
    return _keep_padding(m_t, _tanh(xp_t + _recurrent(h_prev, Wh, keep)), h_prev)


def _relu_step(xp_t: Tensor, m_t: Tensor, h_prev: Tensor, Wh: Tensor,
               keep: Tensor | None = None) -> Tensor:
    return _keep_padding(m_t, pt.maximum(xp_t + _recurrent(h_prev, Wh, keep), 0.0), h_prev)


def _gru_step(xp_t: Tensor, m_t: Tensor, h_prev: Tensor, Wh: Tensor,
              keep: Tensor | None = None) -> Tensor:
    H = _units(Wh)
    a = _recurrent(h_prev, Wh, keep)  # (B, 3H): the one recurrent product
    r = pt.sigmoid(_gate(xp_t, 0, H) + _gate(a, 0, H))
    z = pt.sigmoid(_gate(xp_t, 1, H) + _gate(a, 1, H))
    n = _tanh(_gate(xp_t, 2, H) + r * _gate(a, 2, H))
    return _keep_padding(m_t, (1 - z) * n + z * h_prev, h_prev)


def _lstm_step(xp_t: Tensor, m_t: Tensor, h_prev: Tensor, c_prev: Tensor,
               Wh: Tensor, keep: Tensor | None = None) -> list[Tensor]:
    H = _units(Wh)
    a = xp_t + _recurrent(h_prev, Wh, keep)  # (B, 4H): the one recurrent product
    i = pt.sigmoid(_gate(a, 0, H))
    f = pt.sigmoid(_gate(a, 1, H))
    g = _tanh(_gate(a, 2, H))
    o = pt.sigmoid(_gate(a, 3, H))
    c = f * c_prev + i * g
    h = o * _tanh(c)
    return [_keep_padding(m_t, h, h_prev), _keep_padding(m_t, c, c_prev)]


@dataclass(frozen=True)
class Cell:
    """A recurrent cell: its gate count G, its state count (h, or h and c) and its step.

    ``step(xp_t, m_t, *states_prev, Wh)`` returns the new state (a list of them for the LSTM),
    in the argument order ``scan`` uses: sequences, previous states, non-sequences.
    """

    name: str
    gates: int
    states: int
    step: Callable[..., Tensor | list[Tensor]]


CELLS: dict[str, Cell] = {
    "rnn": Cell("rnn", 1, 1, _rnn_step),
    "relu": Cell("relu", 1, 1, _relu_step),
    "gru": Cell("gru", 3, 1, _gru_step),
    "lstm": Cell("lstm", 4, 2, _lstm_step),
}

# The LSTM's forget gate is gate 1 (order i, f, g, o).
_LSTM_FORGET_GATE = 1


def init_cell_params(cell: Cell, input_dim: int, hidden_dim: int, rng: np.random.Generator, *,
                     bias: bool = True, forget_bias: float = 1.0,
                     identity_init: bool = False) -> dict[str, np.ndarray]:
    """Fresh ``Wx`` (D, G*H), ``Wh`` (H, G*H) and (with ``bias``) ``b`` (G*H,) in float64.

    Weights are Uniform(+-1/sqrt(H)) (the tutorial's scale for W, and PyTorch's default);
    biases are zero except the LSTM forget gate's, ``forget_bias`` (1.0 by default: a fresh
    LSTM then remembers rather than forgets, Jozefowicz et al. 2015). ``identity_init`` sets
    ``Wh`` to the identity (Le et al. 2015, for the ReLU cell, which has one gate).
    """
    H, G = hidden_dim, cell.gates
    scale = 1.0 / np.sqrt(H)
    params = {"Wx": rng.uniform(-scale, scale, (input_dim, G * H)),
              "Wh": rng.uniform(-scale, scale, (H, G * H))}
    if identity_init:
        if G != 1:
            raise ValueError(f"identity initialisation needs a one-gate cell, not {cell.name}")
        params["Wh"] = np.eye(H)
    if bias:
        b = np.zeros(G * H)
        if cell.name == "lstm":
            b[_LSTM_FORGET_GATE * H:(_LSTM_FORGET_GATE + 1) * H] = forget_bias
        params["b"] = b
    return params


def project_inputs(x: Tensor, Wx: Tensor, b: Tensor | None) -> Tensor:
    """``x Wx + b`` for every time step at once: (T, B, D) -> (T, B, G*H).

    The hoisted input projection: one (T*B, D) x (D, G*H) product instead of T small ones.
    """
    T, B = x.shape[0], x.shape[1]
    xp = x.reshape((T * B, x.shape[2])).dot(Wx)  # (T*B, G*H)
    if b is not None:
        xp = xp + b
    return xp.reshape((T, B, Wx.shape[1]))


def run_cell(cell: Cell, xp: Tensor, mask: Tensor, initial: Sequence[Tensor],
             Wh: Tensor, keep: Tensor | None = None) -> list[Tensor]:
    """Scan ``cell`` over time: every state at every step, each (T, B, H).

    ``xp`` (T, B, G*H) is the projected input (``project_inputs``), ``mask`` (T, B) marks real
    tokens, ``initial`` holds the ``cell.states`` initial states (B, H). The last row of each
    output is the final state (padding keeps it, see the module docstring). ``keep`` (B, H),
    if given, is a recurrent dropout mask (``_recurrent``).
    """
    outputs = pytensor.scan(cell.step, sequences=[xp, mask], outputs_info=list(initial),
                            non_sequences=[Wh] + ([] if keep is None else [keep]),
                            strict=True, return_updates=False)
    return list(outputs) if cell.states > 1 else [outputs]
