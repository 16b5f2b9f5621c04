"""The sentence classifier: its graph against an unbatched numpy forward pass, its gradient,
padding, class weights, its engine, and two synthetic tasks it must learn.

The checks of exact values run on tiny float64 models compiled with FAST_COMPILE (about a
second each, any batch shape); the learning checks train float32 models under JAX, one batch
shape each. Every graph is compiled once for the module.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytensor
import pytest

from lm_reference import _log_softmax, _stack
from rnn_theano import backends
from rnn_theano.data.batching import ClassBatches, padded_length
from rnn_theano.errors import SettingError, UserError
from rnn_theano.metrics import macro_f1
from rnn_theano.tasks.classify_engine import ClassifierEngine
from rnn_theano.tasks.classify_graph import (ClassifierConfig, build_classifier,
                                             check_classifier_params, init_classifier_params)
from rnn_theano.tasks.lm_graph import shared_params

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

C, K = 10, 3
# (cell, pooling, bidirectional, layers): every cell, every pooling, both directions.
MODELS = [("lstm", "final", True, 2), ("gru", "mean", True, 1), ("rnn", "max", True, 1),
          ("relu", "mean", False, 2), ("gru", "final", False, 1), ("lstm", "max", False, 1),
          ("gru", "attention", True, 2), ("rnn", "attention", False, 1)]
SENTENCES = [np.array(s, dtype=np.int32) for s in ([3, 1, 4, 1, 5], [9], [2, 6, 5],
                                                   [3, 5, 8, 9, 7, 9, 3])]
LABELS = np.array([0, 2, 1, 2], dtype=np.int32)


def small_config(cell: str, pooling: str, bidirectional: bool, layers: int,
                 **kwargs) -> ClassifierConfig:
    return ClassifierConfig(cell=cell, vocab_size=C, n_classes=K, embed_dim=3, hidden_dim=4,
                            layers=layers, bidirectional=bidirectional, pooling=pooling,
                            float32=False, seed=3, **kwargs)


class Model:
    """A float64 classifier compiled with FAST_COMPILE: f(x, mask, labels, weights) ->
    cost, n, weight, correct, log_probs and the cost's gradient for every parameter."""

    def __init__(self, config: ClassifierConfig) -> None:
        self.config = config
        self.params = shared_params(init_classifier_params(config))
        g = build_classifier(config, self.params)
        grads = pytensor.grad(g.cost, list(self.params.values()))
        self.f = pytensor.function([g.x, g.mask, g.labels, g.class_weights],
                                   [g.cost, g.n, g.weight, g.correct, g.log_probs, *grads],
                                   mode="FAST_COMPILE")

    def __call__(self, x, mask, labels, weights=None) -> dict:
        weights = np.ones(K) if weights is None else np.asarray(weights, dtype=float)
        cost, n, weight, correct, log_probs, *grads = self.f(x, mask, labels, weights)
        return {"cost": float(cost), "n": float(n), "weight": float(weight),
                "correct": float(correct), "log_probs": log_probs,
                "grads": dict(zip(self.params, grads))}

    def values(self) -> dict[str, np.ndarray]:
        return {k: p.get_value() for k, p in self.params.items()}


@pytest.fixture(scope="module", params=MODELS, ids=lambda m: "-".join(map(str, m)))
def model(request) -> Model:
    return Model(small_config(*request.param))


def padded(sentences: list[np.ndarray], T: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x, mask) with the sentences as rows; padding holds random words, which the model must
    never read (a zero id would hide a model that does)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, C, (T, len(sentences))).astype(np.int32)
    mask = np.zeros((T, len(sentences)))
    for b, s in enumerate(sentences):
        x[:len(s), b], mask[:len(s), b] = s, 1.0
    return x, mask


def reference_log_probs(config: ClassifierConfig, P: dict, sentences) -> np.ndarray:
    """(B, K) log-probabilities, one sentence at a time from the cell equations, no masks."""
    zeros = np.zeros((config.layers, 2, config.hidden_dim))
    rows = []
    for words in sentences:
        n = len(words)
        fwd, _ = _stack(config, P, "l", words, zeros)  # fwd[t]: after words 0..t
        steps, ends = [[h] for h in fwd], [fwd[-1]]
        if config.bidirectional:
            back, _ = _stack(config, P, "back", words[::-1], zeros)  # back[k]: words n-1-k..
            ends.append(back[-1])  # has read every word, the first one last
            for t in range(n):
                steps[t].append(back[n - 1 - t])  # has read words t..n-1
        states = np.array([np.concatenate(s) for s in steps])  # (n, R)
        if config.pooling == "attention":
            scores = np.tanh(states @ P["att_W"] + P["att_b"]) @ P["att_v"]  # (n,)
            weights = np.exp(scores) / np.exp(scores).sum()
        rep = {"final": lambda: np.concatenate(ends), "mean": lambda: states.mean(axis=0),
               "max": lambda: states.max(axis=0),
               "attention": lambda: weights @ states}[config.pooling]()
        rows.append(_log_softmax(rep @ P["out_W"] + P["out_b"]))
    return np.array(rows)


def test_config_refuses_impossible_settings() -> None:
    for field, value in [("cell", "tree"), ("n_classes", 1), ("pooling", "sum"),
                         ("dropout", 1.0), ("hidden_dim", 0), ("layers", 0),
                         ("recurrent_dropout", 1.0), ("variational_dropout", True),
                         ("adversarial", -0.1), ("adversarial", float("nan"))]:
        with pytest.raises(SettingError) as error:
            ClassifierConfig(**{field: value})
        assert error.value.setting == field


def test_parameters_are_named_and_shaped_like_the_language_model() -> None:
    config = ClassifierConfig(cell="gru", vocab_size=C, n_classes=K, embed_dim=5, hidden_dim=4,
                              bidirectional=True)
    params = init_classifier_params(config)
    assert {k: v.shape for k, v in params.items()} == {
        "embed": (C, 5), "l0_Wx": (5, 12), "l0_Wh": (4, 12), "l0_b": (12,),
        "back0_Wx": (5, 12), "back0_Wh": (4, 12), "back0_b": (12,),
        "out_W": (8, K), "out_b": (K,)}
    assert all(v.dtype == np.float32 for v in params.values())
    assert 0.9 < np.abs(params["embed"]).max() <= 1.0 and not params["out_b"].any()
    small = init_classifier_params(dataclasses.replace(config, embed_init=0.25))["embed"]
    assert 0.2 < np.abs(small).max() <= 0.25  # Uniform(+-embed_init)
    attending = init_classifier_params(dataclasses.replace(config, pooling="attention"))
    assert {k: v.shape for k, v in attending.items() if k.startswith("att_")} == {
        "att_W": (8, 8), "att_b": (8,), "att_v": (8,)}
    assert all(np.array_equal(attending[k], v) for k, v in params.items())  # drawn last
    check_classifier_params(config, params)
    with pytest.raises(UserError, match="out_W"):
        check_classifier_params(config, {**params, "out_W": np.zeros((4, K))})


def test_log_probs_match_the_unbatched_numpy_forward_pass(model: Model) -> None:
    """'final' reads each row's last real step and the backward stack's first word, 'mean',
    'max' and 'attention' pool over the real steps only: padding (random words here) is never
    read."""
    x, mask = padded(SENTENCES, T=9)
    out = model(x, mask, LABELS)
    expected = reference_log_probs(model.config, model.values(), SENTENCES)
    np.testing.assert_allclose(out["log_probs"], expected, rtol=1e-10, atol=1e-12)
    assert out["cost"] == pytest.approx(-expected[np.arange(4), LABELS].sum(), rel=1e-10)
    assert out["n"] == 4
    assert out["correct"] == (expected.argmax(axis=1) == LABELS).sum()


def test_padding_and_batching_change_no_sentence(model: Model) -> None:
    """Each sentence alone (no padding) gives the logits it gets in a batch padded beyond its
    longest row with an empty row among them, and the batch's gradient is the sum of theirs."""
    alone = [model(s[:, None], np.ones((len(s), 1)), LABELS[i:i + 1])
             for i, s in enumerate(SENTENCES)]
    order = [2, 0, 3, 1]
    x, mask = padded([SENTENCES[i] for i in order] + [np.zeros(0, np.int32)], T=11, seed=1)
    batch = model(x, mask, np.append(LABELS[order], 1).astype(np.int32))
    assert batch["n"] == 4  # the empty row is no example
    for row, i in enumerate(order):
        np.testing.assert_allclose(batch["log_probs"][row], alone[i]["log_probs"][0],
                                   rtol=1e-10)
    assert batch["cost"] == pytest.approx(sum(a["cost"] for a in alone), rel=1e-10)
    for name, grad in batch["grads"].items():
        np.testing.assert_allclose(grad, sum(a["grads"][name] for a in alone), rtol=1e-8,
                                   atol=1e-12, err_msg=name)


def test_gradient_matches_finite_differences(model: Model) -> None:
    x, mask = padded(SENTENCES, T=8, seed=2)
    weights = [0.5, 2.0, 1.5]
    grads = model(x, mask, LABELS, weights)["grads"]
    rng, eps = np.random.default_rng(4), 1e-6
    for name, p in model.params.items():
        value = p.get_value()
        for index in map(tuple, rng.integers(0, value.shape, size=(3, value.ndim))):
            costs = []
            for delta in (eps, -eps):
                moved = value.copy()
                moved[index] += delta
                p.set_value(moved)
                costs.append(model(x, mask, LABELS, weights)["cost"])
            p.set_value(value)
            numeric = (costs[0] - costs[1]) / (2 * eps)
            assert grads[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_class_weights_scale_each_row_by_its_label(model: Model) -> None:
    x, mask = padded(SENTENCES, T=7)
    weights = np.array([0.5, 2.0, 0.0])
    plain, weighted = model(x, mask, LABELS), model(x, mask, LABELS, weights)
    ce = -plain["log_probs"][np.arange(4), LABELS]
    assert weighted["cost"] == pytest.approx((weights[LABELS] * ce).sum(), rel=1e-10)
    assert weighted["weight"] == pytest.approx(weights[LABELS].sum())
    assert plain["weight"] == plain["n"] == 4
    # Rows of a zero-weight class (label 2) neither cost nor pull the parameters.
    kept = LABELS != 2
    only = model(x[:, kept], mask[:, kept], LABELS[kept], weights)
    assert only["cost"] == pytest.approx(weighted["cost"], rel=1e-10)
    np.testing.assert_allclose(only["grads"]["out_W"], weighted["grads"]["out_W"], atol=1e-12)


@pytest.fixture(scope="module")
def reference_model() -> Model:
    return Model(small_config(*MODELS[0]))


def test_engine_steps_on_the_weighted_mean_cross_entropy(reference_model: Model) -> None:
    """One SGD step moves every parameter by -lr * grad(cost) / sum of the rows' weights;
    evaluation and log-probabilities agree with the graph."""
    weights = np.array([0.5, 2.0, 1.5])
    engine = ClassifierEngine(reference_model.config, reference_model.values(),
                              class_weights=weights, mode="FAST_COMPILE", optimizer="sgd",
                              learning_rate=0.3)
    assert engine.pad_multiple == 1
    assert engine.n_params() == sum(v.size for v in reference_model.values().values())
    x, mask = padded(SENTENCES, T=8)
    expected = reference_model(x, mask, LABELS, weights)
    evaluated = engine.eval_step(x, mask, LABELS)
    assert evaluated.cost == pytest.approx(expected["cost"], rel=1e-10)
    assert (evaluated.n, evaluated.correct) == (4, expected["correct"])
    np.testing.assert_allclose(engine.log_probs(x, mask), expected["log_probs"], rtol=1e-10)
    before = engine.get_params()
    result = engine.train_step(x, mask, LABELS)
    assert result.cost == pytest.approx(expected["cost"], rel=1e-10)
    mean_grads = {k: g / expected["weight"] for k, g in expected["grads"].items()}
    assert result.grad_norm == pytest.approx(
        np.sqrt(sum((g**2).sum() for g in mean_grads.values())), rel=1e-8)
    for name, value in engine.get_params().items():
        np.testing.assert_allclose(value, before[name] - 0.3 * mean_grads[name], rtol=1e-8,
                                   atol=1e-12, err_msg=name)
    with pytest.raises(UserError, match="class weights"):
        ClassifierEngine(reference_model.config, class_weights=[1.0, -1.0, 1.0])


@pytest.mark.parametrize("change", [dict(recurrent_dropout=0.5), dict(embed_dropout=0.5),
                                    dict(dropout=0.5, variational_dropout=True)],
                         ids=["recurrent", "embedding", "variational"])
def test_the_language_models_dropouts_reach_the_classifier(change: dict) -> None:
    """Each of them alone makes every training step's cost its own (new masks each step) and
    leaves evaluation the model without dropout."""
    plain = small_config("lstm", "max", True, 2)
    params = init_classifier_params(plain)
    x, mask = padded(SENTENCES, T=8)
    expected = reference_log_probs(plain, params, SENTENCES)[np.arange(4), LABELS].sum()
    engine = ClassifierEngine(dataclasses.replace(plain, **change), params,
                              mode="FAST_COMPILE", optimizer="sgd", learning_rate=0.0)
    assert engine.eval_step(x, mask, LABELS).cost == pytest.approx(-expected, rel=1e-10)
    costs = {engine.train_step(x, mask, LABELS).cost for _ in range(3)}
    assert len(costs) == 3 and all(c != pytest.approx(-expected, rel=1e-6) for c in costs)


def adversarial_objective(config: ClassifierConfig, P: dict,
                          r: list | None = None) -> tuple[float, list]:
    """The numpy objective of an adversarial training step: each sentence's cross-entropy at
    its embedded words plus at those words moved by its ``r`` (n, E). Without ``r``, r is
    computed: central differences of the cross-entropy in every embedded coordinate give the
    gradient g, and r = adversarial * g / |g|. Returns (objective, the list of r)."""
    def ce(vectors: np.ndarray, label: int) -> float:
        # The sentence's positions as words 0..n-1 of an embedding holding its vectors.
        moved = {**P, "embed": vectors}
        return -reference_log_probs(config, moved, [np.arange(len(vectors))])[0, label]

    total, found = 0.0, []
    for b, words in enumerate(SENTENCES):
        e = P["embed"][words]
        if r is None:
            g, h = np.zeros_like(e), 1e-6
            for index in np.ndindex(*e.shape):
                up, down = e.copy(), e.copy()
                up[index] += h
                down[index] -= h
                g[index] = (ce(up, LABELS[b]) - ce(down, LABELS[b])) / (2 * h)
            found.append(config.adversarial * g / np.linalg.norm(g))
        total += ce(e, LABELS[b]) + ce(e + found[b] if r is None else e + r[b], LABELS[b])
    return total, found


def test_adversarial_training_adds_the_cost_uphill_of_each_sentence(
        reference_model: Model) -> None:
    """A training step's objective is each sentence's cross-entropy plus the one at its
    embedded words moved a distance ``adversarial`` along the gradient of its cross-entropy
    (the numpy reference, by central differences); the move is a constant to the step (the
    parameters' step is the finite-difference gradient with r held fixed). The step reports
    the plain cost, and evaluation has no adversarial term."""
    config = dataclasses.replace(reference_model.config, adversarial=0.3)
    params = reference_model.values()
    engine = ClassifierEngine(config, params, mode="FAST_COMPILE", optimizer="sgd",
                              learning_rate=0.5)
    x, mask = padded(SENTENCES, T=8)
    plain = reference_model(x, mask, LABELS)["cost"]
    assert engine.eval_step(x, mask, LABELS).cost == pytest.approx(plain, rel=1e-10)
    objective, r = adversarial_objective(config, params)
    assert objective > 2 * plain  # each move is uphill
    assert engine.train_step(x, mask, LABELS).cost == pytest.approx(plain, rel=1e-10)
    step = {k: (params[k] - v) / 0.5 * len(SENTENCES) for k, v in engine.get_params().items()}
    rng, h = np.random.default_rng(6), 1e-6
    for name in ("embed", "l0_Wh", "back0_Wx", "out_W"):
        for index in map(tuple, rng.integers(0, params[name].shape, (3, params[name].ndim))):
            costs = []
            for delta in (h, -h):
                moved = {k: v.copy() for k, v in params.items()}
                moved[name][index] += delta
                costs.append(adversarial_objective(config, moved, r)[0])
            numeric = (costs[0] - costs[1]) / (2 * h)
            assert step[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_class_batches_bucket_pad_and_keep_labels() -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, C, rng.integers(0, 12)) for _ in range(30)]
    labels = np.arange(30) % K
    batches = ClassBatches(sequences, labels, batch_size=4, seed=5, pad_multiple=8)
    expected = sorted((tuple(s), int(y)) for s, y in zip(sequences, labels) if len(s))
    assert batches.n_examples == len(expected) and len(batches) == -(-len(expected) // 4)

    def rows(batch) -> list:
        n = batch.mask.sum(axis=0).astype(int)
        assert batch.x.shape[0] == padded_length(int(n.max()), 8)
        assert batch.labels.dtype == np.int32
        assert all(batch.mask[:k, b].all() and not batch.mask[k:, b].any()
                   for b, k in enumerate(n))
        return [(tuple(batch.x[:k, b]), int(batch.labels[b])) for b, k in enumerate(n)]

    for epoch in (batches.epoch(0), batches.epoch(1), iter(batches)):
        assert sorted(r for b in epoch for r in rows(b)) == expected
    fingerprint = [b.x.tobytes() for b in batches.epoch(0)]
    assert fingerprint == [b.x.tobytes() for b in batches.epoch(0)]
    assert fingerprint != [b.x.tobytes() for b in batches.epoch(1)]
    with pytest.raises(UserError, match="labels"):
        ClassBatches(sequences, labels[:-1], batch_size=4)


# --- learning under JAX ------------------------------------------------------------------

TASK_C, TASK_K, TASK_T, TASK_B = 12, 3, 16, 32


def task(position: int, n: int, seed: int, batch_size: int = TASK_B) -> ClassBatches:
    """Sentences of 9 to 16 random words whose class is word ``position`` (0: the first, -1:
    the last) modulo 3; every other word is a distractor. All pad to 16 steps: one shape."""
    rng = np.random.default_rng(seed)
    sentences = [rng.integers(0, TASK_C, rng.integers(9, TASK_T + 1)) for _ in range(n)]
    labels = np.array([s[position] % TASK_K for s in sentences])
    return ClassBatches(sentences, labels, batch_size, seed=seed, pad_multiple=TASK_T)


def accuracy(engine: ClassifierEngine, batches: ClassBatches) -> float:
    results = [engine.eval_step(*batch) for batch in batches]
    return sum(r.correct for r in results) / sum(r.n for r in results)


@pytest.fixture(scope="module")
def jax_prepared() -> None:
    assert backends.prepare("JAX") == "JAX"


@pytest.mark.parametrize("cell,bidirectional,position", [
    ("gru", True, 0), ("gru", True, -1), ("lstm", True, 0), ("lstm", True, -1),
    ("gru", False, -1)])
def test_final_pooling_learns_the_deciding_word(jax_prepared, cell: str, bidirectional: bool,
                                                position: int) -> None:
    """A bidirectional model reads the first word at the end of its backward stack and the
    last at the end of its forward one; a left-to-right model has the last word at hand."""
    config = ClassifierConfig(cell=cell, vocab_size=TASK_C, n_classes=TASK_K, embed_dim=8,
                              hidden_dim=16, bidirectional=bidirectional, seed=1)
    engine = ClassifierEngine(config, mode="JAX", optimizer="adam", learning_rate=0.02)
    train, held_out = task(position, 256, seed=1), task(position, 256, seed=2)
    assert accuracy(engine, held_out) < 0.6  # chance is 1/3
    for k in range(25):  # 200 Adam steps
        for batch in train.epoch(k):
            engine.train_step(*batch)
    assert accuracy(engine, held_out) >= 0.95
    assert sorted(engine._functions) == [("eval", (TASK_T, TASK_B)), ("train", (TASK_T, TASK_B))]


def test_a_resumed_engine_continues_with_the_same_dropout_and_optimizer(jax_prepared) -> None:
    config = ClassifierConfig(cell="gru", vocab_size=TASK_C, n_classes=TASK_K, embed_dim=4,
                              hidden_dim=4, dropout=0.3, seed=2)
    batches = list(task(0, 24, seed=3, batch_size=8).epoch(0))  # three of one shape
    engine = ClassifierEngine(config, mode="JAX", optimizer="adam", learning_rate=0.01,
                              clip_norm=1.0)
    assert engine.pad_multiple == 8
    engine.train_step(*batches[0])
    saved = json.loads(json.dumps({"rng": engine.get_rng_state()}))["rng"]
    params, slots = engine.get_params(), engine.get_optimizer_state()
    assert {"adam_steps", "out_W_m", "l0_Wh_v"} <= set(slots)
    costs = [engine.train_step(*batch).cost for batch in batches[1:]]
    resumed = ClassifierEngine(config, params, mode="JAX", optimizer="adam",
                               learning_rate=0.01, clip_norm=1.0)
    resumed.set_optimizer_state(slots)
    resumed.set_rng_state(saved)
    assert [resumed.train_step(*batch).cost for batch in batches[1:]] == costs
    for name, value in engine.get_params().items():
        np.testing.assert_array_equal(resumed.get_params()[name], value, err_msg=name)


def test_macro_f1_by_hand() -> None:
    # labels 0 0 1 1 2, predictions 0 1 1 1 0: class 0 P 1/2 R 1/2 F1 1/2; class 1 P 2/3 R 1
    # F1 4/5; class 2 never predicted, missed once: F1 0.
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, ([0, 0, 1, 1, 2], [0, 1, 1, 1, 0]), 1)
    assert macro_f1(confusion) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1(np.diag([3, 0, 2])) == 1.0  # class 1, no label nor guess, is left out
