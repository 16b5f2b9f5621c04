"""Connectionist Temporal Classification (Graves et al. 2006) as a PyTensor graph.

CTC scores a label sequence l (length U) against T frames of label posteriors without an
alignment: it sums the probability of every frame-level path that reads l once repeats are
merged and blanks dropped. The paths are walked over the blank-extended sequence
l' = (blank, l_1, blank, l_2, ..., l_U, blank) of S = 2U + 1 positions::

    alpha_t(s) = (alpha_{t-1}(s) + alpha_{t-1}(s-1)
                  [+ alpha_{t-1}(s-2) if l'_s is not blank and l'_s != l'_{s-2}]) y_t(l'_s)
    p(l | x) = alpha_{T-1}(S-1) + alpha_{T-1}(S-2)

Here the recursion runs in log space (a log-sum-exp of the three terms) as one ``scan`` over
time for a whole batch, and PyTensor's autodiff of that scan is the CTC gradient: nothing is
derived by hand. Details that make it batchable:

* the scan starts from a virtual step before the first frame, alpha(0) = log 1 and every other
  position log 0, so the first frame needs no special case;
* a padded frame (``frame_mask`` 0) leaves alpha as it was, and a row's answer is read at its
  own last two positions (2 U_b and 2 U_b - 1): positions past them only ever feed positions
  further on, so padded labels change nothing;
* log 0 is ``NEG``, a large finite negative number, never -inf: -inf - -inf is NaN in the
  gradient. A row whose labels cannot fit its frames (U plus the repeats that need a blank
  between them exceeds T) gets a huge finite cost instead of an infinite one.
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad

Tensor = pt.TensorVariable
BLANK = 0   # the blank's index among the outputs
NEG = -1e9  # log 0


def ctc_cost(log_probs: Tensor, frame_mask: Tensor, labels: Tensor,
             label_mask: Tensor) -> Tensor:
    """-log p(labels | frames) of each row, (B,).

    ``log_probs`` (T, B, K): log-posteriors of the K outputs per frame (index ``BLANK`` the
    blank); ``frame_mask`` (T, B): 1 for a real frame; ``labels`` (B, U) int32 ids in 1..K-1;
    ``label_mask`` (B, U): 1 for a real label (a row's real labels come first).
    """
    dtype = log_probs.dtype
    neg = np.asarray(NEG, dtype=dtype)
    B, U = labels.shape[0], labels.shape[1]
    extended = _extend(labels)                                     # (B, S)
    S = 2 * U + 1
    onehot = pt.eq(extended[:, :, None], pt.arange(log_probs.shape[2])).astype(dtype)
    emit = pt.einsum("tbk,bsk->tbs", log_probs, onehot)            # (T, B, S): log y_t(l'_s)
    # s-2 -> s is allowed into a label that differs from the label two positions back.
    skip = pt.zeros((B, S), dtype=dtype)
    skip = pt.set_subtensor(skip[:, 2:], pt.switch(
        pt.eq(extended[:, 2:], extended[:, :-2]) | pt.eq(extended[:, 2:], BLANK), neg, 0.0))
    start = pt.set_subtensor(pt.full((B, S), neg, dtype=dtype)[:, 0], 0.0)
    alphas = pytensor.scan(_alpha_step, sequences=[emit, frame_mask.astype(dtype)],
                           outputs_info=[start], non_sequences=[skip],
                           return_updates=False)
    last = alphas[-1]                                              # (B, S)
    n_labels = label_mask.sum(axis=1).astype("int32")              # (B,)
    rows = pt.arange(B)
    end = last[rows, 2 * n_labels]
    before = pt.switch(n_labels > 0, last[rows, pt.maximum(2 * n_labels - 1, 0)], neg)
    return -_logaddexp(end, before)


def _extend(labels: Tensor) -> Tensor:
    """(B, U) labels -> (B, 2U + 1) with a blank before, between and after them."""
    B, U = labels.shape[0], labels.shape[1]
    extended = pt.full((B, 2 * U + 1), BLANK, dtype="int32")
    return pt.set_subtensor(extended[:, 1::2], labels)


def _alpha_step(emit_t: Tensor, m_t: Tensor, alpha: Tensor, skip: Tensor) -> Tensor:
    """alpha_t from alpha_{t-1} (B, S); a padded frame (m_t = 0) keeps alpha_{t-1}."""
    neg = np.asarray(NEG, dtype=alpha.dtype)
    B = alpha.shape[0]
    one_back = pt.concatenate([pt.full((B, 1), neg, dtype=alpha.dtype), alpha[:, :-1]], axis=1)
    two_back = pt.concatenate([pt.full((B, 2), neg, dtype=alpha.dtype), alpha[:, :-2]],
                              axis=1) + skip
    new = _logsumexp3(alpha, one_back, two_back) + emit_t
    m = m_t[:, None]
    return m * new + (1 - m) * alpha


def _logsumexp3(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    # The shift is a constant to the gradient: the gradient of log(sum exp) is the same for
    # any shift, and cutting it out of the graph spares the max's own (zero) contribution.
    top = disconnected_grad(pt.maximum(pt.maximum(a, b), c))
    return top + pt.log(pt.exp(a - top) + pt.exp(b - top) + pt.exp(c - top))


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    top = disconnected_grad(pt.maximum(a, b))
    return top + pt.log(pt.exp(a - top) + pt.exp(b - top))
