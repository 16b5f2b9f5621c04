"""The translation graph: against an independent numpy forward pass (training cost, attention,
the decoding step), its gradient against finite differences, and what padding must not change.

Tiny float64 models compiled with FAST_COMPILE (any batch shape), each once for the module.
The numpy reference is written from the equations of the ``mt_graph`` docstring: one sentence
at a time, vectors instead of batches, no masks (each sentence is cut to its real length).
"""

from __future__ import annotations

import numpy as np
import pytensor
import pytest

from lm_reference import _log_softmax, _stack, _step
from rnn_theano.data.parallel import BOS, EOS, pair_batch
from rnn_theano.errors import SettingError
from rnn_theano.tasks.lm_graph import shared_params
from rnn_theano.tasks.mt_engine import MTEngine
from rnn_theano.tasks.mt_graph import Seq2SeqConfig, build_mt, check_mt_params, init_mt_params

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS")

CS, CT = 11, 9  # source and target vocabulary sizes
# (cell, attention, init_state, bidirectional, layers, tie, smoothing): every attention, both
# cells, both initial states, one and two directions and layers, tying, label smoothing.
MODELS = [("gru", "additive", "mean", True, 1, False, 0.0),
          ("lstm", "general", "final", True, 2, False, 0.1),
          ("gru", "dot", "final", False, 1, True, 0.2),
          ("lstm", "additive", "mean", False, 1, False, 0.0)]
PAIRS = [([3, 4, 5, 6], [5, 3, 7]), ([7], [4, 4, 8, 3, 6]), ([9, 10, 3, 4, 5, 6, 8], [6]),
         ([5, 5], [3, 8])]


def small_config(cell, attention, init_state, bidirectional, layers, tie, smoothing):
    H = 4
    top = H * (2 if bidirectional else 1)
    return Seq2SeqConfig(cell=cell, vocab_size=CS, embed_dim=3, hidden_dim=H, layers=layers,
                         bidirectional=bidirectional, target_vocab_size=CT,
                         decoder_dim=top if attention == "dot" else 5, attention=attention,
                         attention_dim=4, init_state=init_state, tie_embeddings=tie,
                         label_smoothing=smoothing, float32=False, seed=7)


class Model:
    """A float64 graph: f(batch) -> cost, objective, alpha and the gradients of both."""

    def __init__(self, config: Seq2SeqConfig) -> None:
        self.config = config
        self.params = shared_params(init_mt_params(config))
        g = build_mt(config, self.params)
        params = list(self.params.values())
        grads = pytensor.grad(g.cost, params) + pytensor.grad(g.objective, params)
        self.f = pytensor.function([g.src, g.src_mask, g.y_in, g.y_out, g.mask],
                                   [g.cost, g.objective, g.n_tokens, g.alpha, *grads],
                                   mode="FAST_COMPILE")

    def __call__(self, batch) -> dict:
        cost, objective, n, alpha, *grads = self.f(*batch)
        k = len(self.params)
        return {"cost": float(cost), "objective": float(objective), "n": float(n),
                "alpha": alpha, "grads": dict(zip(self.params, grads[:k])),
                "objective_grads": dict(zip(self.params, grads[k:]))}

    def values(self) -> dict[str, np.ndarray]:
        return {k: p.get_value() for k, p in self.params.items()}


@pytest.fixture(scope="module", params=MODELS, ids=lambda m: "-".join(map(str, m)))
def model(request) -> Model:
    return Model(small_config(*request.param))


def batch_of(pairs, S: int | None = None, T: int | None = None, seed: int = 0):
    """The pairs as a batch, padded to S source and T target steps with random ids (which the
    model must never read: zeros would hide a model that does)."""
    batch = pair_batch([np.array(s) for s, _ in pairs], [np.array(t) for _, t in pairs])
    rng = np.random.default_rng(seed)
    arrays = []
    for array, length in zip(batch, (S, S, T, T, T)):
        length = length or array.shape[0]
        grown = np.zeros((length, array.shape[1]), array.dtype)
        grown[:array.shape[0]] = array
        arrays.append(grown)
    src, src_mask, y_in, y_out, mask = arrays
    for ids, m, C in ((src, src_mask, CS), (y_in, mask, CT), (y_out, mask, CT)):
        ids[m == 0] = rng.integers(0, C, int((m == 0).sum()))
    return type(batch)(src, src_mask, y_in, y_out, mask)


# --- the numpy reference ----------------------------------------------------------------------

def _softmax(a):
    e = np.exp(a - a.max())
    return e / e.sum()


def ref_encode(cfg, P, src):
    """Encoder states (S, R) and the decoder's initial state."""
    zeros = np.zeros((cfg.layers, 2, cfg.hidden_dim))
    fwd, _ = _stack(cfg, P, "l", src, zeros)
    tops = [fwd]
    if cfg.bidirectional:
        back, _ = _stack(cfg, P, "back", src[::-1], zeros)
        tops.append(back[::-1])
    h = np.array([np.concatenate([t[j] for t in tops]) for j in range(len(src))])
    if cfg.init_state == "mean":
        summary = h.mean(axis=0)
    else:  # forward after the last word, backward after reading back to the first
        summary = np.concatenate([fwd[-1]] + ([tops[1][0]] if cfg.bidirectional else []))
    return h, np.tanh(summary @ P["init_W"] + P["init_b"])


def ref_scores(cfg, P, s, h):
    if cfg.attention == "additive":
        return np.tanh(h @ P["att_Wh"] + s @ P["att_Ws"]) @ P["att_v"]
    return (h @ P["att_W"]) @ s if cfg.attention == "general" else h @ s


def ref_decode(cfg, P, src, y_in):
    """Log-probabilities of every next word after each of ``y_in``, and the attention."""
    h, s = ref_encode(cfg, P, src)
    c = np.zeros_like(s)
    # The cell's input is [e; context]: its input weights are Wx over Wc.
    cell = {"d_Wx": np.vstack([P["dec_Wx"], P["dec_Wc"]]), "d_Wh": P["dec_Wh"],
            "d_b": P["dec_b"]}
    out_W = P["dec_embed"].T if cfg.tie_embeddings else P["out_W"]
    log_probs, alphas = [], []
    for word in y_in:
        e = P["dec_embed"][word]
        alpha = _softmax(ref_scores(cfg, P, s, h))
        context = alpha @ h
        s, c = _step(cfg.cell, cell, "d", np.concatenate([e, context]), s, c)
        o = np.tanh(s @ P["read_Ws"] + context @ P["read_Wc"] + e @ P["read_We"] + P["read_b"])
        log_probs.append(_log_softmax(o @ out_W + P["out_b"]))
        alphas.append(alpha)
    return np.array(log_probs), alphas


def ref_costs(cfg, P, pairs):
    """Summed cross-entropy and label-smoothed objective over the pairs."""
    cost = objective = 0.0
    eps = cfg.label_smoothing
    for src, tgt in pairs:
        lp, _ = ref_decode(cfg, P, src, [BOS, *tgt])
        for t, y in enumerate([*tgt, EOS]):
            cost -= lp[t, y]
            objective -= (1 - eps) * lp[t, y] + eps * lp[t].mean()
    return cost, objective


# --- tests ------------------------------------------------------------------------------------

def test_cost_and_attention_match_numpy(model):
    cfg, P = model.config, model.values()
    out = model(batch_of(PAIRS, S=9, T=7))
    cost, objective = ref_costs(cfg, P, PAIRS)
    assert out["cost"] == pytest.approx(cost, rel=1e-10)
    assert out["objective"] == pytest.approx(objective, rel=1e-10)
    assert out["n"] == sum(len(t) + 1 for _, t in PAIRS)
    for b, (src, tgt) in enumerate(PAIRS):
        _, alphas = ref_decode(cfg, P, src, [BOS, *tgt])
        for t, alpha in enumerate(alphas):
            np.testing.assert_allclose(out["alpha"][t, b, :len(src)], alpha, rtol=1e-10)


def test_attention_is_a_distribution_over_real_source_words(model):
    batch = batch_of(PAIRS, S=10, T=8, seed=1)
    alpha = model(batch)["alpha"]  # (T, B, S)
    np.testing.assert_allclose(alpha.sum(axis=2), 1.0, rtol=1e-12)
    padding = np.broadcast_to(batch.src_mask.T[None] == 0, alpha.shape)
    assert (alpha[padding] == 0.0).all() and (alpha[~padding] > 0).all()


def test_padding_changes_neither_cost_nor_gradient(model):
    tight, loose = model(batch_of(PAIRS)), model(batch_of(PAIRS, S=12, T=9, seed=2))
    assert loose["cost"] == pytest.approx(tight["cost"], rel=1e-12)
    for name, grad in tight["grads"].items():
        np.testing.assert_allclose(loose["grads"][name], grad, rtol=1e-9, atol=1e-13,
                                   err_msg=name)


@pytest.mark.parametrize("loss", ["cost", "objective"])
def test_gradient_matches_finite_differences(model, loss):
    """The cross-entropy's gradient, and the label-smoothed objective's, which trains."""
    batch = batch_of(PAIRS[:2], S=8, T=6, seed=3)
    grads = model(batch)["grads" if loss == "cost" else "objective_grads"]
    rng = np.random.default_rng(0)
    for name, shared in model.params.items():
        value = shared.get_value()
        for _ in range(2):
            index = tuple(rng.integers(0, n) for n in value.shape)
            costs = []
            for delta in (1e-6, -1e-6):
                bumped = value.copy()
                bumped[index] += delta
                shared.set_value(bumped)
                costs.append(model(batch)[loss])
            shared.set_value(value)
            numeric = (costs[0] - costs[1]) / 2e-6
            assert grads[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_the_decoding_step_matches_numpy(model):
    """The compiled encoder and one-step decoder, fed the reference's words one at a time,
    give its log-probabilities at every step."""
    cfg, P = model.config, model.values()
    engine = MTEngine(cfg, P, mode="FAST_COMPILE")
    batch = batch_of(PAIRS, S=9, seed=4)
    enc = engine.encode(batch.src, batch.src_mask)
    steps = max(len(t) for _, t in PAIRS) + 1
    y = np.full(len(PAIRS), BOS, np.int32)
    refs = [ref_decode(cfg, P, src, [BOS, *tgt]) for src, tgt in PAIRS]
    for t in range(steps):
        log_probs, states, alpha = engine.step(y, enc)
        enc = enc._replace(states=states)
        for b, (src, tgt) in enumerate(PAIRS):
            if t <= len(tgt):
                np.testing.assert_allclose(log_probs[b], refs[b][0][t], rtol=1e-9)
                np.testing.assert_allclose(alpha[b, :len(src)], refs[b][1][t], rtol=1e-9)
                assert (alpha[b, len(src):] == 0).all()
        y = np.array([tgt[t] if t < len(tgt) else EOS for _, tgt in PAIRS], np.int32)


def test_parameters_are_checked():
    cfg = small_config(*MODELS[0])
    params = init_mt_params(cfg)
    check_mt_params(cfg, params)
    del params["att_v"]
    with pytest.raises(Exception, match="att_v"):
        check_mt_params(cfg, params)


def test_the_recurrent_rate_reaches_the_recurrences_not_the_attention():
    """``--recurrent-lr-scale`` names the matrices it scales: each encoder layer's and
    direction's Wh and the decoder's, not the attention's att_Wh (a projection of the source)."""
    names = init_mt_params(small_config("gru", "additive", "mean", True, 2, False, 0.0))
    assert "att_Wh" in names
    assert sorted(n for n in names if MTEngine._recurrent.fullmatch(n)) == [
        "back0_Wh", "back1_Wh", "dec_Wh", "l0_Wh", "l1_Wh"]


def test_dot_attention_needs_matching_sizes():
    with pytest.raises(SettingError, match="decoder-dim 8"):
        Seq2SeqConfig(hidden_dim=4, bidirectional=True, decoder_dim=5, attention="dot")
