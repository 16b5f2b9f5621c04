"""The tutorial's numpy RNN language model, with backpropagation through time written by hand.

This is the reference implementation that the PyTensor models are checked against. The model
(WildML RNN tutorial, parts 1-3)::

    s_t = f(U[:, x_t] + W s_{t-1})      s_{-1} = 0, f = tanh (default) or relu
    o_t = softmax(V s_t)                 no biases anywhere

with U (H, C), V (C, H), W (H, H) for a vocabulary of C words and H hidden units. A sentence
is a pair of equally long id sequences: ``x`` (the input words) and ``y`` (the next words);
the loss of a sentence is the summed cross-entropy ``-sum_t log o_t[y_t]``.

Truncated BPTT has two meanings in this project, chosen with ``truncation=``; both use
``bptt_truncate = k`` and both give the full gradient when ``k`` is negative (the default
of neither; the tutorial's default is 4):

``"tutorial"``
    The tutorial's numpy ``bptt``: *every* output's error flows back through its own step and
    ``k`` more steps, i.e. output t updates U and W at steps ``max(0, t - k) .. t``, with the
    state entering that window held constant. Every output contributes to dV. Equal to the
    full gradient when ``k >= T - 1``.

``"scan"``
    What ``pytensor.scan(..., truncate_gradient=k)`` computes for the tutorial's Theano graph
    (softmax computed inside the scan step). Measured against PyTensor 3.3.8 (tanh and relu,
    C = 8 and 12, H = 5 and 6, T = 7 and 10, k in {1, 2, 4, T-1, T, T+3, -1}; every gradient
    agreed to 2e-13 or better): the backward pass runs over the **last k steps of the
    sequence only**, ``t = T-k .. T-1``, as one ordinary BPTT recursion that starts with no
    incoming gradient at step T-1. Outputs before T-k contribute nothing at all, not even to
    dV. Step T-k's dW term *does* include ``outer(delta_{T-k}, s_{T-k-1})``: the state
    entering the window is an input of the step, held constant. Equivalently: the exact
    gradient of the loss of the last k outputs with s_{T-k-1} frozen. ``k >= T`` is the full
    gradient. ``k = 0`` makes PyTensor fail while building the gradient ("DimShuffle:
    Attempting to squeeze axes with size not equal to one"), so it is rejected here.

The gradient of the loss equals finite differences of the loss only when the truncation is
inactive; ``gradient_check`` therefore refuses to run with an active truncation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

TRUNCATIONS = ("tutorial", "scan")

# Each activation with its derivative written in terms of the activation's *output* s = f(a):
# the backward pass has the states s_t at hand, never the pre-activations.
_ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray],
                              Callable[[np.ndarray], np.ndarray]]] = {
    "tanh": (np.tanh, lambda s: 1.0 - s**2),
    # relu'(a) = 1 where a > 0, which is exactly where s = relu(a) > 0.
    "relu": (lambda a: np.maximum(a, 0.0), lambda s: (s > 0.0).astype(s.dtype)),
}
ACTIVATIONS = tuple(_ACTIVATIONS)

_PARAM_NAMES = ("U", "V", "W")


def init_params(word_dim: int, hidden_dim: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The tutorial's initialisation, as float64 arrays drawn from ``rng`` in the order U, V, W.

    Each matrix is uniform in ``±1/sqrt(n)`` where n is the number of its incoming
    connections: C for U (a one-hot word), H for V and W (the hidden state).
    """
    C, H = word_dim, hidden_dim
    return {
        "U": rng.uniform(-np.sqrt(1.0 / C), np.sqrt(1.0 / C), (H, C)),
        "V": rng.uniform(-np.sqrt(1.0 / H), np.sqrt(1.0 / H), (C, H)),
        "W": rng.uniform(-np.sqrt(1.0 / H), np.sqrt(1.0 / H), (H, H)),
    }


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax; shifting by the row maximum keeps exp from overflowing."""
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class RNNNumpy:
    """The tutorial's RNN language model in plain numpy (float64), trained by hand-written BPTT.

    ``bptt_truncate`` is the number of extra steps a gradient flows back (negative: full
    BPTT); ``truncation`` picks which of the two meanings of truncation applies (see the
    module docstring). ``params`` (a dict with U, V, W) replaces the random initialisation,
    in which case ``seed`` is unused; the arrays are copied, never shared.
    """

    def __init__(self, word_dim: int, hidden_dim: int = 100, bptt_truncate: int = 4, *,
                 truncation: str = "tutorial", activation: str = "tanh", seed: int = 0,
                 params: dict[str, np.ndarray] | None = None) -> None:
        if truncation not in TRUNCATIONS:
            raise ValueError(f"unknown truncation {truncation!r}; choose one of {TRUNCATIONS}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        if word_dim < 1 or hidden_dim < 1:
            raise ValueError("word_dim and hidden_dim must be positive, "
                             f"got {word_dim}, {hidden_dim}")
        if truncation == "scan" and bptt_truncate == 0:
            raise ValueError("bptt_truncate=0 has no meaning for truncation='scan' (PyTensor's "
                             "scan cannot differentiate with truncate_gradient=0); use k >= 1, "
                             "or a negative value for full BPTT")
        self.word_dim = word_dim
        self.hidden_dim = hidden_dim
        self.bptt_truncate = bptt_truncate
        self.truncation = truncation
        self.activation = activation
        self._f, self._f_prime = _ACTIVATIONS[activation]

        if params is None:
            params = init_params(word_dim, hidden_dim, np.random.default_rng(seed))
        expected = {"U": (hidden_dim, word_dim), "V": (word_dim, hidden_dim),
                    "W": (hidden_dim, hidden_dim)}
        for name, shape in expected.items():
            # Copy: sgd_step and gradient_check update the arrays in place.
            value = np.array(params[name], dtype=np.float64)
            if value.shape != shape:
                raise ValueError(f"parameter {name} has shape {value.shape}, expected {shape} "
                                 f"for word_dim={word_dim}, hidden_dim={hidden_dim}")
            setattr(self, name, value)

    def params(self) -> dict[str, np.ndarray]:
        """The parameter arrays themselves (not copies), keyed "U", "V", "W"."""
        return {name: getattr(self, name) for name in _PARAM_NAMES}

    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Replace U, V, W with copies of ``params`` (e.g. an earlier ``params()``)."""
        for name in _PARAM_NAMES:
            setattr(self, name, np.array(params[name], dtype=np.float64))

    # ----- forward pass -------------------------------------------------------------------

    def _states(self, x: np.ndarray) -> np.ndarray:
        """Hidden states, (T+1, H). Row T stays zero so that ``s[t - 1]`` at t = 0 is s_{-1}."""
        s = np.zeros((len(x) + 1, self.hidden_dim))
        for t, word in enumerate(x):
            s[t] = self._f(self.U[:, word] + self.W @ s[t - 1])
        return s

    def _log_probs(self, s: np.ndarray) -> np.ndarray:
        """log o_t for every step, (T, C); the softmax is independent per step, so one matmul."""
        return _log_softmax(s[:-1] @ self.V.T)  # (T, H) @ (H, C) -> (T, C)

    def forward_propagation(self, x: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run one sentence: ``(o, s)`` with o (T, C) the output distributions and s (T+1, H)
        the hidden states, whose last row is the zero initial state, as in the tutorial."""
        s = self._states(np.asarray(x))
        return np.exp(self._log_probs(s)), s

    def predict(self, x: Sequence[int] | np.ndarray) -> np.ndarray:
        """The most probable next word at every step, (T,)."""
        o, _ = self.forward_propagation(x)
        return np.argmax(o, axis=1)

    # ----- loss ---------------------------------------------------------------------------

    def calculate_total_loss(self, X: Sequence[Sequence[int]], Y: Sequence[Sequence[int]]) -> float:
        """Cross-entropy summed over every target word of every sentence."""
        total = 0.0
        for x, y in zip(X, Y, strict=True):
            x, y = _check_pair(x, y)
            log_o = self._log_probs(self._states(x))
            total -= log_o[np.arange(len(y)), y].sum()
        return float(total)

    def calculate_loss(self, X: Sequence[Sequence[int]], Y: Sequence[Sequence[int]]) -> float:
        """Mean cross-entropy per target word (the tutorial's loss; about ln C at init)."""
        num_words = sum(len(y) for y in Y)
        if num_words == 0:
            raise ValueError("no target words: the mean loss of an empty data set is undefined")
        return self.calculate_total_loss(X, Y) / num_words

    # ----- backward pass ------------------------------------------------------------------

    def bptt(self, x: Sequence[int] | np.ndarray,
             y: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """``[dU, dV, dW]``: the gradient of one sentence's *summed* cross-entropy, truncated
        as ``bptt_truncate`` and ``truncation`` say (see the module docstring)."""
        return self._loss_and_bptt(x, y)[1]

    def _loss_and_bptt(self, x: Sequence[int] | np.ndarray, y: Sequence[int] | np.ndarray
                       ) -> tuple[float, list[np.ndarray]]:
        """The sentence's summed cross-entropy and its gradient, from one forward pass."""
        x, y = _check_pair(x, y)
        T = len(y)
        o, s = self.forward_propagation(x)
        loss = float(-np.log(o[np.arange(T), y]).sum())
        # d loss / d (V s_t) for the softmax + cross-entropy pair: o_t - onehot(y_t).
        delta_o = o
        delta_o[np.arange(T), y] -= 1.0  # (T, C)
        k = self.bptt_truncate if self.bptt_truncate >= 0 else T
        backward = self._bptt_tutorial if self.truncation == "tutorial" else self._bptt_scan
        return loss, backward(x, s, delta_o, k)

    def _bptt_tutorial(self, x: np.ndarray, s: np.ndarray, delta_o: np.ndarray,
                       k: int) -> list[np.ndarray]:
        """The tutorial's loop, kept literally: each output backpropagates on its own for
        its step and k more. O(T k H^2) for the recurrence, fine at tutorial sizes."""
        dU, dV, dW = np.zeros_like(self.U), np.zeros_like(self.V), np.zeros_like(self.W)
        for t in reversed(range(len(x))):
            dV += np.outer(delta_o[t], s[t])
            # Gradient w.r.t. the pre-activation of step t, from output t alone.
            delta_t = (self.V.T @ delta_o[t]) * self._f_prime(s[t])  # (H,)
            for step in range(t, max(0, t - k) - 1, -1):
                dW += np.outer(delta_t, s[step - 1])  # s[-1] is the zero initial state
                dU[:, x[step]] += delta_t
                delta_t = (self.W.T @ delta_t) * self._f_prime(s[step - 1])
        return [dU, dV, dW]

    def _bptt_scan(self, x: np.ndarray, s: np.ndarray, delta_o: np.ndarray,
                   k: int) -> list[np.ndarray]:
        """PyTensor's ``truncate_gradient=k``: one BPTT recursion over the last k steps only."""
        dU, dV, dW = np.zeros_like(self.U), np.zeros_like(self.V), np.zeros_like(self.W)
        first = max(0, len(x) - k)
        # dV from the window's outputs only: (C, w) @ (w, H) -> (C, H).
        dV += delta_o[first:].T @ s[first:-1]
        from_future = np.zeros(self.hidden_dim)  # d loss / d s_t through s_{t+1}; none at T-1
        for t in reversed(range(first, len(x))):
            delta_t = (self.V.T @ delta_o[t] + from_future) * self._f_prime(s[t])  # (H,)
            dW += np.outer(delta_t, s[t - 1])  # includes s_{first-1}, held constant
            dU[:, x[t]] += delta_t
            from_future = self.W.T @ delta_t
        return [dU, dV, dW]

    def sgd_step(self, x: Sequence[int] | np.ndarray, y: Sequence[int] | np.ndarray,
                 learning_rate: float) -> float:
        """One plain SGD step on one sentence (the tutorial's training step), in place.

        Returns the sentence's summed cross-entropy before the step (the training loop shows
        it; ``RNNTheano.sgd_step`` returns the same)."""
        loss, grads = self._loss_and_bptt(x, y)
        for param, grad in zip((self.U, self.V, self.W), grads):
            param -= learning_rate * grad
        return loss

    # ----- checking -----------------------------------------------------------------------

    def _truncation_is_active(self, T: int) -> bool:
        """Whether truncation drops any term of the gradient for a T-word sentence."""
        k = self.bptt_truncate
        full_from = T - 1 if self.truncation == "tutorial" else T
        return 0 <= k < full_from

    def gradient_check(self, x: Sequence[int] | np.ndarray, y: Sequence[int] | np.ndarray,
                       h: float = 0.001, error_threshold: float = 0.01) -> float:
        """Compare ``bptt`` with central finite differences of the summed loss, for every
        entry of U, V and W of *this* model; return the largest relative error.

        Finite differences measure the full gradient, so this refuses (ValueError) to run
        while the truncation drops terms: build the model with ``bptt_truncate=-1`` to check
        it. Raises AssertionError naming the parameter and entry whose relative error
        ``|b - e| / (|b| + |e|)`` exceeds ``error_threshold``. Each perturbed entry is
        restored, so the model is unchanged afterwards. Use float64 and a tiny model: the
        loss is evaluated twice per parameter. With relu, a pre-activation within about h of
        0 puts a kink inside the finite difference, which then averages the two one-sided
        slopes and fails the check although ``bptt`` is right; pick a model without one.
        """
        x, y = _check_pair(x, y)
        if self._truncation_is_active(len(x)):
            raise ValueError(
                f"bptt_truncate={self.bptt_truncate} (truncation={self.truncation!r}) drops "
                f"gradient terms for a {len(x)}-word sentence, so finite differences cannot "
                "match it; run the check on a model with bptt_truncate=-1 (full BPTT)")
        bptt_gradients = self.bptt(x, y)
        max_error = 0.0
        for name, backprop in zip(_PARAM_NAMES, bptt_gradients):
            param = getattr(self, name)
            for ix in np.ndindex(param.shape):
                original = param[ix]
                param[ix] = original + h
                loss_plus = self.calculate_total_loss([x], [y])
                param[ix] = original - h
                loss_minus = self.calculate_total_loss([x], [y])
                param[ix] = original
                estimated = (loss_plus - loss_minus) / (2 * h)
                scale = abs(backprop[ix]) + abs(estimated)
                # Both exactly zero (e.g. a U column of a word not in x) is agreement.
                error = abs(backprop[ix] - estimated) / scale if scale > 0 else 0.0
                if error > error_threshold:
                    raise AssertionError(
                        f"gradient check failed for {name}{list(ix)}: backprop {backprop[ix]:.6g}, "
                        f"finite differences {estimated:.6g}, relative error {error:.3g} "
                        f"> {error_threshold}")
                max_error = max(max_error, error)
        return max_error


def _check_pair(x: Sequence[int] | np.ndarray,
                y: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One sentence as two integer arrays of equal length."""
    x, y = np.asarray(x, dtype=np.intp), np.asarray(y, dtype=np.intp)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and equally long, got shapes {x.shape}, {y.shape}")
    return x, y
