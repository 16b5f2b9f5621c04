"""An independent numpy forward pass of ``rnn_theano.lm``, one sentence and one step at a time.

Written from the equations in the ``cells`` and ``lm`` docstrings, not from their code: plain
loops over batch rows and time steps, vectors instead of batches, no masks (each row is cut to
its real length instead) and the bidirectional shift written out as "the backward state of the
words after the next one".
"""

from __future__ import annotations

import numpy as np


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _step(cell: str, P: dict, name: str, v: np.ndarray, h: np.ndarray, c: np.ndarray):
    """One step of layer ``name`` on input vector v from state (h, c); returns the new (h, c)."""
    Wx, Wh = P[f"{name}_Wx"], P[f"{name}_Wh"]
    b = P.get(f"{name}_b", 0.0)
    if cell == "rnn":
        return np.tanh(v @ Wx + b + h @ Wh), c
    if cell == "relu":
        return np.maximum(0.0, v @ Wx + b + h @ Wh), c
    if cell == "gru":
        xr, xz, xn = np.split(v @ Wx + b, 3)
        hr, hz, hn = np.split(h @ Wh, 3)
        r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        return (1 - z) * n + z * h, c
    if cell == "lstm":
        i, f, g, o = np.split(v @ Wx + b + h @ Wh, 4)
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c), c
    raise ValueError(cell)


def _stack(cfg, P: dict, prefix: str, words, h0: np.ndarray):
    """Top-layer h after each word, and every layer's final (h, c); h0 is (L, S, H)."""
    seq = [P["embed"][w] for w in words]
    finals = []
    for layer in range(cfg.layers):
        h = h0[layer, 0]
        c = h0[layer, 1] if cfg.cell == "lstm" else np.zeros_like(h)
        outputs = []
        for v in seq:
            h, c = _step(cfg.cell, P, f"{prefix}{layer}", v, h, c)
            outputs.append(h)
        finals.append((h, c))
        seq = outputs
    return seq, finals


def reference_cost(cfg, P: dict, x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                   state: np.ndarray):
    """Summed cross-entropy and the forward stack's final state (L, S, B, H).

    Rows are right-padded: row b's real tokens are its first ``mask[:, b].sum()``.
    """
    out_W = P["embed"].T if cfg.tie_weights else P["out_W"]
    if "proj_W" in P:  # tied embeddings of another size than the top state
        out_W = P["proj_W"] @ out_W
    total, final = 0.0, np.array(state, dtype=float)
    H = cfg.hidden_dim
    for b in range(x.shape[1]):
        n = int(mask[:, b].sum())
        fwd, finals = _stack(cfg, P, "l", x[:n, b], state[:, :, b])
        for layer, (h, c) in enumerate(finals):
            final[layer, 0, b] = h
            if cfg.cell == "lstm":
                final[layer, 1, b] = c
        if cfg.bidirectional:
            # after[k] has read y[n-1], ..., y[n-1-k] (k+1 words, right to left).
            after, _ = _stack(cfg, P, "back", y[:n, b][::-1], np.zeros((cfg.layers, 2, H)))
            # Predicting y[t] may use the words y[t+1:], i.e. after[n-2-t] (zero for t = n-1).
            tops = [np.concatenate([fwd[t], after[n - 2 - t] if t < n - 1 else np.zeros(H)])
                    for t in range(n)]
        else:
            tops = fwd
        for t in range(n):
            total -= _log_prob(cfg, P, out_W, tops[t], int(y[t, b]))
    return total, final


def _log_softmax(a: np.ndarray) -> np.ndarray:
    m = a.max()
    return a - m - np.log(np.exp(a - m).sum())


def _log_prob(cfg, P: dict, out_W: np.ndarray, top: np.ndarray, word: int) -> float:
    """log p(word | top): full softmax, or class k = word // M then the word within it."""
    if not cfg.softmax_classes:
        return float(_log_softmax(top @ out_W + P["out_b"])[word])
    M = cfg.class_size
    k, members = word // M, slice(word // M * M, min(word // M * M + M, cfg.vocab_size))
    class_lp = _log_softmax(top @ P["class_W"] + P["class_b"])[k]
    return float(class_lp + _log_softmax(top @ out_W[:, members] + P["out_b"][members])[word % M])
