"""The tutorial's RNN as a PyTensor graph: ``scan`` unrolls time, ``grad`` does BPTT.

    s_t = f(U[:, x_t] + W s_{t-1}),   o_t = softmax(V s_t),   s_{-1} = 0

U (H, C), V (C, H) and W (H, H) are shared variables, the same at every step. Autodiff of the
scanned graph *is* backpropagation through time; how far back it goes is the truncation:

* ``truncation="tutorial"`` (default): the tutorial's numpy definition. Every output's error
  flows back ``bptt_truncate`` steps past its own, and every output contributes to dV. Built
  by recomputing, for all outputs at once, the last K+1 steps of the recurrence from a state
  the gradient cannot pass (``disconnected_grad``).
* ``truncation="scan"``: the original Theano code, ``scan(..., truncate_gradient=K)`` with the
  softmax inside the step. PyTensor then runs the backward pass over the last K steps of the
  sequence only: earlier outputs contribute nothing, not even to V.

With ``bptt_truncate < 0`` both are full BPTT. Function names are the tutorial's:
``forward_propagation``, ``predict``, ``ce_error``, ``bptt``, ``sgd_step``; each is compiled
on first use, so a model that only predicts never pays for the gradient graph.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad

from .numpy_rnn import init_params

ACTIVATIONS = {"tanh": pt.tanh, "relu": lambda a: pt.maximum(a, 0.0)}


class RNNTheano:
    """The tutorial's ``RNNTheano(word_dim, hidden_dim=100, bptt_truncate=4)``, on PyTensor."""

    def __init__(self, word_dim: int, hidden_dim: int = 100, bptt_truncate: int = 4, *,
                 truncation: str = "tutorial", activation: str = "tanh", mode: str = "NUMBA",
                 float32: bool = False, seed: int = 0,
                 params: dict[str, np.ndarray] | None = None) -> None:
        if truncation not in ("tutorial", "scan"):
            raise ValueError(f"truncation must be 'tutorial' or 'scan', not {truncation!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, not {activation!r}")
        self.word_dim, self.hidden_dim = word_dim, hidden_dim
        self.bptt_truncate, self.truncation, self.activation = bptt_truncate, truncation, activation
        self.mode, self.float32 = mode, float32
        self.dtype = "float32" if float32 else "float64"
        if params is None:
            params = init_params(word_dim, hidden_dim, np.random.default_rng(seed))
        self.U, self.V, self.W = (pytensor.shared(np.asarray(params[k], dtype=self.dtype), name=k)
                                  for k in ("U", "V", "W"))
        self._build()

    # --- the graph -------------------------------------------------------------------------

    def _build(self) -> None:
        """Symbolic inputs, outputs and gradients; compiled lazily by the properties below."""
        U, V, W = self.U, self.V, self.W
        f = ACTIVATIONS[self.activation]
        x, y = pt.ivector("x"), pt.ivector("y")  # (T,) word ids: inputs and next-word targets
        k = self.bptt_truncate

        lr = pt.scalar("learning_rate", dtype=self.dtype)
        if self.truncation == "scan" and k >= 0:
            # The original tutorial's graph, step for step (softmax inside the loop).
            def _step(x_t, s_prev, U, V, W):
                s_t = f(U[:, x_t] + W.dot(s_prev))
                return pt.special.softmax(V.dot(s_t)), s_t

            o, s = pytensor.scan(_step, sequences=x,
                                 outputs_info=[None, pt.zeros(self.hidden_dim, dtype=self.dtype)],
                                 non_sequences=[U, V, W], truncate_gradient=k,
                                 return_updates=False)
            log_o = pt.log(o)
            cost = -log_o[pt.arange(y.shape[0]), y].sum()
            grads = pytensor.grad(cost, [U, V, W])
            updates = [(p, p - lr * g) for p, g in zip((U, V, W), grads)]
        else:
            xU = U.T[x]  # (T, H): the columns U[:, x_t], gathered once for all steps
            s = self._recurrence(xU, f)  # (T, H)
            if k >= 0:
                s = self._truncated_states(xU, disconnected_grad(s), f, k)
            log_o = pt.special.log_softmax(s.dot(V.T), axis=-1)  # (T, C)
            o = pt.exp(log_o)
            cost = -log_o[pt.arange(y.shape[0]), y].sum()  # summed cross-entropy, as the tutorial
            grads = pytensor.grad(cost, [U, V, W])
            # dU is zero outside the T columns the sentence used: SGD updates only those
            # (repeated words accumulate), instead of writing all of U (H, C) every step.
            d_xU, dV, dW = pytensor.grad(cost, [xU, V, W])
            updates = [(U, pt.inc_subtensor(U[:, x], -lr * d_xU.T)),
                       (V, V - lr * dV), (W, W - lr * dW)]

        self._x, self._y, self._lr = x, y, lr
        self._o, self._cost, self._grads, self._updates = o, cost, grads, updates

    def _recurrence(self, xU: pt.TensorVariable, f) -> pt.TensorVariable:
        """All hidden states (T, H) from the input columns ``xU`` = U[:, x_t] (T, H).

        Only the recurrence is inside ``scan``: the input gather happened before it and the
        output layer is applied after it, as matrix products over all steps.
        """
        def _step(xu_t, s_prev, W):
            return f(xu_t + W.dot(s_prev))

        return pytensor.scan(_step, sequences=xU,
                             outputs_info=pt.zeros(self.hidden_dim, dtype=self.dtype),
                             non_sequences=[self.W], return_updates=False)

    def _truncated_states(self, xU: pt.TensorVariable, s_stop: pt.TensorVariable, f,
                          k: int) -> pt.TensorVariable:
        """The states s_t again, recomputed so each one's gradient reaches back exactly k steps.

        Row t of the batch starts from s_{t-n} (zero before the sentence), a value the gradient
        cannot pass, and replays the n = min(k+1, T) steps t-n+1 .. t. All T rows advance
        together, so the replayed steps are matrix products, not T separate loops.
        """
        T, H = xU.shape[0], self.hidden_dim
        n = pt.minimum(k + 1, T)
        zeros = pt.zeros((n, H), dtype=self.dtype)
        h0 = pt.concatenate([zeros, s_stop])[:T]                  # (T, H): s_{t-n}
        pos = pt.arange(n)[:, None] + pt.arange(T)[None, :] - n + 1  # (n, T): step t-n+1+j
        xU_windows = pt.concatenate([zeros, xU])[pos + n]          # (n, T, H)
        valid = pt.cast(pos >= 0, self.dtype)[:, :, None]          # (n, T, 1)

        def _step(xu_j, valid_j, h, W):
            # Before the sentence starts the row keeps its zero state.
            return valid_j * f(xu_j + h.dot(W.T)) + (1 - valid_j) * h

        return pytensor.scan(_step, sequences=[xU_windows, valid], outputs_info=h0,
                             non_sequences=[self.W], return_updates=False)[-1]

    def _compile(self, inputs, outputs, updates=None):
        # allow_input_downcast: a Python float learning rate feeds a float32 graph.
        return pytensor.function(inputs, outputs, updates=updates, mode=self.mode,
                                 on_unused_input="ignore", allow_input_downcast=True)

    # --- the tutorial's compiled functions ----------------------------------------------------

    @cached_property
    def forward_propagation(self):
        """``forward_propagation(x)`` -> o (T, C): next-word distributions after each word."""
        return self._compile([self._x], self._o)

    @cached_property
    def predict(self):
        """``predict(x)`` -> (T,) the most probable next word after each word."""
        return self._compile([self._x], pt.argmax(self._o, axis=1))

    @cached_property
    def ce_error(self):
        """``ce_error(x, y)`` -> the sentence's summed cross-entropy in nats."""
        return self._compile([self._x, self._y], self._cost)

    @cached_property
    def bptt(self):
        """``bptt(x, y)`` -> [dU, dV, dW], the gradient of ``ce_error`` (truncated as configured)."""
        return self._compile([self._x, self._y], self._grads)

    @cached_property
    def sgd_step(self):
        """``sgd_step(x, y, learning_rate)``: one SGD update of U, V, W in place.

        Returns the sentence's summed cross-entropy before the update (free to compute, and
        the training loop shows it).
        """
        return self._compile([self._x, self._y, self._lr], self._cost, updates=self._updates)

    # --- the tutorial's helpers -------------------------------------------------------------

    def calculate_total_loss(self, X, Y) -> float:
        """Summed cross-entropy over sentences ``X`` with targets ``Y``."""
        return float(sum(self.ce_error(x, y) for x, y in zip(X, Y)))

    def calculate_loss(self, X, Y) -> float:
        """Mean cross-entropy per predicted word, in nats (perplexity is its exp)."""
        return self.calculate_total_loss(X, Y) / sum(len(y) for y in Y)

    def params(self) -> dict[str, np.ndarray]:
        """Current U, V, W as numpy arrays (copies), shaped as in the tutorial."""
        return {p.name: np.array(p.get_value()) for p in (self.U, self.V, self.W)}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Replace U, V, W (e.g. with an earlier ``params()``)."""
        for p in (self.U, self.V, self.W):
            p.set_value(np.asarray(params[p.name], dtype=self.dtype))
