"""The CTC loss of ``nn.ctc`` against brute force, finite differences and its masks; the
decoders of ``tasks.asr_decode`` on hand-made posteriors."""

import itertools

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from rnn_theano.nn.ctc import ctc_cost
from rnn_theano.tasks.asr_decode import greedy, prefix_beam_search


@pytest.fixture(scope="module")
def ctc():
    """CTC cost of each row, and its gradient w.r.t. the unnormalised scores, in float64."""
    z = pt.tensor3("z", dtype="float64")
    frame_mask = pt.matrix("frame_mask", dtype="float64")
    labels = pt.imatrix("labels")
    label_mask = pt.matrix("label_mask", dtype="float64")
    cost = ctc_cost(pt.special.log_softmax(z, axis=-1), frame_mask, labels, label_mask)
    grad = pytensor.grad(cost.sum(), z)
    return pytensor.function([z, frame_mask, labels, label_mask], [cost, grad])


def collapse(path) -> list[int]:
    return [k for i, k in enumerate(path) if k != 0 and (i == 0 or path[i - 1] != k)]


def brute_force(probs: np.ndarray, labels) -> float:
    """-log of the summed probability of every path that collapses to ``labels``."""
    T, K = probs.shape
    total = sum(np.prod(probs[np.arange(T), path])
                for path in itertools.product(range(K), repeat=T)
                if collapse(path) == list(labels))
    return -np.log(total)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def batch(rows, K=4, seed=0):
    """A padded batch of (T_b, labels_b) rows with random scores: z, masks, labels."""
    rng = np.random.default_rng(seed)
    T, U = max(t for t, _ in rows), max(1, max(len(l) for _, l in rows))
    z = rng.normal(size=(T, len(rows), K)) * 2
    frame_mask = np.zeros((T, len(rows)))
    labels = np.zeros((len(rows), U), np.int32)
    label_mask = np.zeros((len(rows), U))
    for b, (t, l) in enumerate(rows):
        frame_mask[:t, b] = 1
        labels[b, :len(l)], label_mask[b, :len(l)] = l, 1
    return z, frame_mask, labels, label_mask


CASES = [(3, [1, 2, 3]),        # T = U
         (4, [1, 1]),           # a repeat needs a blank between: 3 frames at least
         (5, [2, 1, 2]),
         (8, [3]),              # T much larger than U
         (6, []),               # nothing but blanks
         (7, [1, 1, 2, 2])]


def test_ctc_equals_the_sum_over_all_alignments(ctc):
    z, fm, labels, lm = batch(CASES)
    cost, _ = ctc(z, fm, labels, lm)
    expected = [brute_force(softmax(z[:t, b]), l) for b, (t, l) in enumerate(CASES)]
    np.testing.assert_allclose(cost, expected, rtol=1e-10)


def test_ctc_gradient_matches_finite_differences(ctc):
    z, fm, labels, lm = batch(CASES[:4], seed=1)
    _, grad = ctc(z, fm, labels, lm)
    eps, rng = 1e-6, np.random.default_rng(2)
    for _ in range(12):
        i = tuple(rng.integers(s) for s in z.shape)
        up, down = z.copy(), z.copy()
        up[i] += eps
        down[i] -= eps
        numeric = (ctc(up, fm, labels, lm)[0].sum() - ctc(down, fm, labels, lm)[0].sum()) / (2 * eps)
        assert grad[i] == pytest.approx(numeric, rel=1e-5, abs=1e-8)
    # Padded frames get no gradient at all.
    assert np.all(grad[fm == 0] == 0)


def test_padding_of_frames_and_labels_changes_nothing(ctc):
    z, fm, labels, lm = batch(CASES, seed=3)
    cost, _ = ctc(z, fm, labels, lm)
    for b, (t, l) in enumerate(CASES):
        alone, _ = ctc(z[:t, b:b + 1], np.ones((t, 1)), np.array([l or [0]], np.int32),
                       np.array([[1.0] * len(l) or [0.0]]))
        assert cost[b] == pytest.approx(alone[0], rel=1e-12)
    # Garbage in the padding: other scores past a row's frames, other ids past its labels.
    z2, labels2 = z.copy(), labels.copy()
    z2[fm == 0] = 50.0
    labels2[lm == 0] = 3
    np.testing.assert_allclose(ctc(z2, fm, labels2, lm)[0], cost, rtol=1e-12)


def test_an_impossible_alignment_costs_a_lot_but_stays_finite(ctc):
    # Two repeated labels need three frames; two frames cannot hold them.
    z, fm, labels, lm = batch([(2, [1, 1]), (2, [1, 2, 3])], seed=4)
    cost, grad = ctc(z, fm, labels, lm)
    assert np.all(np.isfinite(cost)) and np.all(cost > 1e6)
    assert np.all(np.isfinite(grad))


def test_ctc_in_float32_agrees_with_float64():
    z, fm, labels, lm = batch(CASES, seed=5)
    inputs = [pt.tensor3("z", dtype="float32"), pt.matrix("fm", dtype="float32"),
              pt.imatrix("labels"), pt.matrix("lm", dtype="float32")]
    cost = ctc_cost(pt.special.log_softmax(inputs[0], axis=-1), *inputs[1:])
    f = pytensor.function(inputs, cost)
    expected = [brute_force(softmax(z[:t, b]), l) for b, (t, l) in enumerate(CASES)]
    np.testing.assert_allclose(f(z.astype(np.float32), fm.astype(np.float32), labels,
                                 lm.astype(np.float32)), expected, rtol=1e-4)


# --- decoding --------------------------------------------------------------------------------

def log(p) -> np.ndarray:
    return np.log(np.asarray(p, dtype=float))


def test_greedy_merges_repeats_and_drops_blanks():
    # Frames' best outputs: 1 1 0 1 2 2 0 0 3 -> labels 1 1 2 3.
    best = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    posteriors = np.full((len(best), 4), 0.1)
    posteriors[np.arange(len(best)), best] = 0.7
    assert greedy(log(posteriors)) == [1, 1, 2, 3]
    assert greedy(log([[0.9, 0.1]] * 3)) == []


def test_beam_of_one_follows_greedy_on_confident_frames():
    rng = np.random.default_rng(6)
    for _ in range(20):
        best = rng.integers(0, 4, size=12)
        posteriors = np.full((12, 4), 0.05)
        posteriors[np.arange(12), best] = 0.85
        assert prefix_beam_search(log(posteriors), beam=1) == greedy(log(posteriors))


def test_beam_search_finds_the_labelling_the_best_path_misses():
    # Each frame: blank 0.6, label 0.4. The best path is blank-blank (empty, p = 0.36), but
    # "1" is read by 1-1, 1-blank and blank-1: p = 0.16 + 0.24 + 0.24 = 0.64.
    frames = log([[0.6, 0.4], [0.6, 0.4]])
    assert greedy(frames) == []
    assert prefix_beam_search(frames, beam=4) == [1]


def test_a_wide_beam_finds_the_most_probable_labelling():
    rng = np.random.default_rng(7)
    for _ in range(5):
        probs = softmax(rng.normal(size=(5, 3)))
        labellings = {tuple(collapse(p)) for p in itertools.product(range(3), repeat=5)}
        best = min(labellings, key=lambda l: brute_force(probs, l))
        assert tuple(prefix_beam_search(np.log(probs), beam=50)) == best
