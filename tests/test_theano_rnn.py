"""RNNTheano: its autodiff BPTT against the hand-written numpy BPTT, and learning on real text.

Each PyTensor graph is compiled once per session (the ``theano_model`` cache) because a cold
Numba compile costs tens of seconds.
"""

import math

import numpy as np
import pytest

from rnn_theano.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from rnn_theano.config import ModelSettings, TrainConfig
from rnn_theano.data.corpus import load_sentences
from rnn_theano.tasks.lm import model_from_checkpoint
from rnn_theano.tutorial.numpy_rnn import RNNNumpy, init_params
from rnn_theano.tutorial.theano_rnn import RNNTheano
from rnn_theano.data.vocab import Vocabulary

C, H, T = 12, 6, 9

_models: dict[tuple, RNNTheano] = {}


def theano_model(bptt_truncate: int, truncation: str = "tutorial", activation: str = "tanh",
                 word_dim: int = C, hidden_dim: int = H) -> RNNTheano:
    """One compiled model per graph for the whole session; parameters reset by the caller."""
    key = (bptt_truncate, truncation, activation, word_dim, hidden_dim)
    if key not in _models:
        _models[key] = RNNTheano(word_dim, hidden_dim, bptt_truncate, truncation=truncation,
                                 activation=activation)
    return _models[key]


def set_params(model: RNNTheano, params: dict[str, np.ndarray]) -> None:
    for name, value in params.items():
        getattr(model, name).set_value(value.copy())


@pytest.fixture(scope="module")
def sentence():
    rng = np.random.default_rng(7)
    # 3x the tutorial's scale so the recurrence matters and truncation visibly changes dW.
    params = {k: 3 * v for k, v in init_params(C, H, rng).items()}
    x = rng.integers(0, C, T).astype(np.int32)
    y = rng.integers(0, C, T).astype(np.int32)
    return params, x, y


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def test_tutorial_truncation_zero_still_learns_w(sentence):
    """k = 0: each output's error reaches only its own step, where dW gets
    outer(delta_t, s_{t-1}); the graph agrees with the numpy twin and dW is not zero."""
    params, x, y = sentence
    model = RNNTheano(C, H, 0, truncation="tutorial", mode="FAST_COMPILE", params=params)
    reference = RNNNumpy(C, H, 0, truncation="tutorial", params=params).bptt(x, y)
    got = model.bptt(x, y)
    for name, g, want in zip("UVW", got, reference):
        assert relative_error(g, want) < 1e-6, name
    assert np.abs(got[2]).max() > 1e-3


@pytest.mark.parametrize("truncation", ["tutorial", "scan"])
@pytest.mark.parametrize("bptt_truncate", [1, 4, -1])
def test_pytensor_gradients_equal_numpy_bptt(sentence, truncation, bptt_truncate):
    params, x, y = sentence
    model = theano_model(bptt_truncate, truncation)
    set_params(model, params)
    reference = RNNNumpy(C, H, bptt_truncate, truncation=truncation, params=params)
    full = RNNNumpy(C, H, -1, params=params).bptt(x, y)
    for name, got, want, untruncated in zip("UVW", model.bptt(x, y), reference.bptt(x, y), full):
        assert relative_error(got, want) < 1e-6, name
        if bptt_truncate == 1 and name == "W":  # the check is not vacuous: truncation matters
            assert relative_error(got, untruncated) > 1e-2


def test_relu_gradients_equal_numpy_bptt(sentence):
    params, x, y = sentence
    model = theano_model(-1, activation="relu")
    set_params(model, params)
    reference = RNNNumpy(C, H, -1, activation="relu", params=params)
    for name, got, want in zip("UVW", model.bptt(x, y), reference.bptt(x, y)):
        assert relative_error(got, want) < 1e-6, name


def test_forward_loss_and_predict_equal_numpy(sentence):
    params, x, y = sentence
    model = theano_model(4)
    set_params(model, params)
    reference = RNNNumpy(C, H, 4, params=params)
    o_ref, _ = reference.forward_propagation(x)
    np.testing.assert_allclose(model.forward_propagation(x), o_ref, rtol=1e-10)
    np.testing.assert_array_equal(model.predict(x), reference.predict(x))
    assert model.ce_error(x, y) == pytest.approx(reference.calculate_total_loss([x], [y]), rel=1e-10)


def test_sgd_step_equals_numpy_sgd_step(sentence):
    params, x, y = sentence
    model = theano_model(4)
    set_params(model, params)
    reference = RNNNumpy(C, H, 4, params=params)
    loss_theano = model.sgd_step(x, y, 0.1)
    loss_numpy = reference.sgd_step(x, y, 0.1)
    assert loss_theano == pytest.approx(loss_numpy, rel=1e-10)
    for name, value in model.params().items():
        np.testing.assert_allclose(value, reference.params()[name], rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def ptb_pairs(shared_data):
    """PTB sentences under the tutorial's 8,000-word vocabulary."""
    sentences = load_sentences(shared_data / "ptb" / "ptb.train.txt")
    vocab = Vocabulary.build(sentences, 8000)
    return vocab, vocab.training_pairs(sentences[:1000])


def test_initial_loss_is_ln_vocabulary_size_on_real_text(ptb_pairs):
    vocab, pairs = ptb_pairs
    assert len(vocab) == 8000
    model = RNNTheano(len(vocab), 100, 4, seed=0)
    X, Y = zip(*pairs[:1000])
    assert model.calculate_loss(X, Y) == pytest.approx(math.log(8000), abs=0.1)


def test_overfits_100_sentences_in_10_epochs(ptb_pairs):
    """The tutorial's sanity check: a small set of sentences must be learnable."""
    vocab, pairs = ptb_pairs
    model = RNNTheano(len(vocab), 100, 4, seed=0)
    X, Y = zip(*pairs[:100])
    before = model.calculate_loss(X, Y)
    losses = []
    for _ in range(10):
        for x, y in pairs[:100]:
            model.sgd_step(x, y, 0.005)
        losses.append(model.calculate_loss(X, Y))
    assert before == pytest.approx(math.log(8000), abs=0.1)
    assert losses[-1] < before - 2.0  # clearly down from ln C
    assert all(b < a for a, b in zip(losses, losses[1:]))  # and falling every epoch


def test_checkpoint_round_trip_gives_identical_predictions(tmp_path, sentence):
    params, x, y = sentence
    model = theano_model(4)
    set_params(model, params)
    model.sgd_step(x, y, 0.05)  # trained values, not the initial ones
    vocab = Vocabulary(("UNKNOWN_TOKEN",) + tuple(f"w{i}" for i in range(C - 1)))
    config = TrainConfig(model=ModelSettings(arch="tutorial", hidden_dim=H, bptt_truncate=4))
    path = tmp_path / "model.npz"
    save_checkpoint(path, Checkpoint(model.params(), vocab, config, {"epoch": 3}))

    with np.load(path) as npz:  # the tutorial's arrays, readable with numpy alone
        assert npz["U"].shape == (H, C) and npz["V"].shape == (C, H) and npz["W"].shape == (H, H)
    ckpt = load_checkpoint(path)
    assert ckpt.vocab == vocab and ckpt.state == {"epoch": 3} and ckpt.settings == config
    as_numpy = model_from_checkpoint(ckpt, impl="numpy")
    as_theano = model_from_checkpoint(ckpt)
    set_params(model, ckpt.params)  # reuse the compiled graph for the reloaded values
    np.testing.assert_array_equal(as_numpy.predict(x), model.predict(x))
    np.testing.assert_allclose(as_numpy.forward_propagation(x)[0], model.forward_propagation(x),
                               rtol=1e-10)
    assert isinstance(as_theano, RNNTheano)
    for name, value in as_theano.params().items():
        np.testing.assert_array_equal(value, model.params()[name])
