"""The vanishing gradient (tutorial part 3), measured: ||dL_t/ds_{t-k}|| as a function of k.

    python experiments/gradient_flow.py --out docs/gradient_flow.png

For one sentence (word ids ``x_0 .. x_t``) and the loss at its position t,

    L_t = -log p(y_t | x_0 .. x_t),

this script computes the gradient of L_t with respect to every earlier hidden state s_{t-k},
k = 0 .. t, with PyTensor's autodiff, for the engine's cells exactly as they are trained
(``CELLS`` steps over ``init_lm_params`` parameters, one layer).

How a hidden state becomes something to differentiate by: the recurrence is run by ``scan``
with one extra input per step, a perturbation ``eps_j`` added to the state the step produces,
``s_j = step(x_j, s_{j-1}) + eps_j``. The inputs are zeros, so the states are the model's own,
and ``dL_t/d eps_j`` is the *total* derivative ``dL_t/ds_j`` (every path from s_j to L_t,
through all later steps). One backward pass gives all k at once. For the LSTM the state is
the pair (h, c); both are perturbed and the norm is that of the pair's gradient
``[dL/dh_{t-k}, dL/dc_{t-k}]``.

The same compiled function also returns ``||dL_t/d theta||``, the norm of the loss's gradient
with respect to all parameters: global-norm clipping at c (Pascanu et al. 2013) multiplies the
whole backward pass by ``min(1, c / ||dL_t/d theta||)``, so the gradient that reaches s_{t-k}
after clipping is the unclipped one times that one factor, the same for every k.

``measure`` averages over sentences in log space: for each k the mean of ``log10`` of the
norms (its power of ten is the geometric mean), with quartiles. Models for the "trained"
curves are trained briefly here (or read from ``--model`` checkpoints); the figure and its
curves (``.json`` beside it) are written to ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from rnn_theano import atomic, backends
from rnn_theano.data.vocab import Vocabulary
from rnn_theano.errors import ArgumentParser, UserError, user_errors
from rnn_theano.nn.cells import CELLS, project_inputs
from rnn_theano.tasks.lm_graph import LMConfig, init_lm_params

# The curves of the figure, in this order, and their labels.
CELL_LABELS = {"rnn": "tanh RNN", "relu": "ReLU RNN, identity init", "gru": "GRU",
               "lstm": "LSTM"}
DTYPE = "float64"


class StateGradients:
    """The compiled ``dL_t/ds_j`` function of one cell (one layer, one sentence).

    Parameters are *inputs* of the compiled function, not shared variables, so one
    compilation serves every model of this cell (trained, untrained, any sizes). Call it with
    a parameter dict (``init_lm_params`` names) and the word ids ``x_0 .. x_t`` and the
    target ``y_t``.
    """

    def __init__(self, config: LMConfig, mode: str = "NUMBA") -> None:
        check_supported(config)
        # Each position t has its own length: shapes vary, so this is not a graph for JAX.
        mode = backends.prepare(mode, fixed_shapes=False)
        self.cell = CELLS[config.cell]
        self.tied, self.bias, self.mode = config.tie_weights, not config.no_bias, mode

    @property
    def param_names(self) -> list[str]:
        names = ["embed", "l0_Wx", "l0_Wh"] + (["l0_b"] if self.bias else [])
        return names + ([] if self.tied else ["out_W"]) + ["out_b"]

    @cached_property
    def _fn(self):
        cell = self.cell
        p = {n: pt.tensor(n, dtype=DTYPE, shape=(None,) * (1 if n.endswith("_b") else 2))
             for n in self.param_names}
        x = pt.ivector("x")          # (t+1,) input words x_0 .. x_t
        target = pt.iscalar("y_t")  # the word after x_t
        T = x.shape[0]
        H = p["l0_Wh"].shape[0]
        e = p["embed"][x][:, None, :]                            # (T, 1, E): a batch of one
        xp = project_inputs(e, p["l0_Wx"], p.get("l0_b"))        # (T, 1, G*H)
        mask = pt.ones((T, 1), dtype=DTYPE)
        eps = [pt.tensor(f"eps{i}", dtype=DTYPE, shape=(None, 1, None))
               for i in range(cell.states)]                      # (T, 1, H) zeros

        def step(xp_t, m_t, *rest):
            eps_t, prev, Wh = rest[:cell.states], rest[cell.states:-1], rest[-1]
            new = cell.step(xp_t, m_t, *prev, Wh)
            new = list(new) if cell.states > 1 else [new]
            out = [s + d for s, d in zip(new, eps_t)]
            return out if cell.states > 1 else out[0]

        zeros = pt.zeros((1, H), dtype=DTYPE)
        states = pytensor.scan(step, sequences=[xp, mask, *eps],
                               outputs_info=[zeros] * cell.states, non_sequences=[p["l0_Wh"]],
                               strict=True, return_updates=False)
        h = (states[0] if cell.states > 1 else states)[-1, 0]  # (H,) the state s_t
        out_W = p["embed"].T if self.tied else p["out_W"]
        log_p = pt.special.log_softmax(h.dot(out_W) + p["out_b"])
        loss = -log_p[target]
        grads = pytensor.grad(loss, [*eps, *p.values()])
        state_grads, param_grads = grads[:cell.states], grads[cell.states:]
        # (T,): ||dL_t/ds_j|| for j = 0 .. t, the LSTM's h and c taken together.
        norms = pt.sqrt(sum((g[:, 0, :] ** 2).sum(axis=1) for g in state_grads))
        param_norm = pt.sqrt(sum((g ** 2).sum() for g in param_grads))
        return pytensor.function([x, target, *eps, *p.values()],
                                 [loss, norms, param_norm, *[g[:, 0, :] for g in state_grads]],
                                 mode=self.mode, on_unused_input="ignore")

    def __call__(self, params: dict[str, np.ndarray], x: Sequence[int], y_t: int,
                 eps: Sequence[np.ndarray] | None = None) -> Gradients:
        x = np.asarray(x, dtype=np.int32)
        H = params["l0_Wh"].shape[0]
        if eps is None:
            eps = [np.zeros((len(x), 1, H))] * self.cell.states
        args = [np.asarray(params[n], dtype=DTYPE) for n in self.param_names]
        loss, norms, param_norm, *state_grads = self._fn(x, np.int32(y_t), *eps, *args)
        return Gradients(float(loss), norms[::-1].copy(), float(param_norm), state_grads)


@dataclass
class Gradients:
    """One sentence position's gradients."""

    loss: float                     # L_t in nats
    norms: np.ndarray               # (t+1,): ||dL_t/ds_{t-k}|| for k = 0 .. t (k-indexed)
    param_norm: float               # ||dL_t/d theta|| over all parameters
    state_grads: list[np.ndarray]   # (t+1, H) per state (h; and c for the LSTM), j-indexed


def check_supported(config: LMConfig) -> None:
    """The measurement follows one left-to-right recurrence: one layer, one direction."""
    if config.layers != 1 or config.bidirectional:
        kind = f"{config.layers} layer(s){' bidirectional' if config.bidirectional else ''}"
        raise UserError(f"the gradient-flow measurement takes a one-layer left-to-right model, "
                        f"not {kind}: give a checkpoint trained with --layers 1")


# --- averaging over sentences ------------------------------------------------------------

@dataclass
class Curve:
    """||dL_t/ds_{t-k}|| for k = 0 .. max_k over n sentence positions, averaged in log10."""

    name: str
    cell: str
    trained: bool
    k: list[int]
    mean_log10: list[float]          # mean over positions of log10 ||dL_t/ds_{t-k}||
    q25_log10: list[float]
    q75_log10: list[float]
    clipped_mean_log10: list[float]  # the same after global-norm clipping at clip_norm
    clip_norm: float
    clipped_fraction: float          # share of positions whose ||dL_t/d theta|| > clip_norm
    median_param_norm: float
    mean_loss: float                 # mean L_t over the positions, nats
    n_positions: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def geometric_mean(self) -> np.ndarray:
        return 10.0 ** np.asarray(self.mean_log10)


def pick_positions(lengths: Sequence[int], max_k: int, n: int, seed: int) -> list[tuple[int, int]]:
    """(sentence index, position t) pairs: up to ``n`` sentences whose x has at least
    ``max_k + 1`` words (so t - max_k >= 0), in a seeded random order, each with one position
    t drawn uniformly from ``max_k .. len(x) - 1``."""
    rng = np.random.default_rng(seed)
    eligible = [i for i, L in enumerate(lengths) if L >= max_k + 1]
    chosen = sorted(rng.permutation(eligible)[:n].tolist()) if eligible else []
    return [(i, int(rng.integers(max_k, lengths[i]))) for i in chosen]


def measure(grad_fn: StateGradients, params: dict[str, np.ndarray], sequences: Sequence[np.ndarray],
            positions: Sequence[tuple[int, int]], max_k: int, clip_norm: float, *,
            name: str, cell: str, trained: bool) -> Curve:
    """The curve of one model over ``positions`` of the encoded ``sequences``.

    ``sequences[i]`` is an encoded sentence (START, words, END); position t predicts
    ``ids[t+1]`` from ``ids[0 .. t]``.
    """
    if not positions:
        raise UserError(f"no sentence has the {max_k + 1} words --max-k {max_k} needs: "
                        "lower --max-k or give longer sentences")
    logs, clipped, losses, pnorms = [], [], [], []
    for i, t in positions:
        ids = sequences[i]
        g = grad_fn(params, ids[:t + 1], int(ids[t + 1]))
        with np.errstate(divide="ignore"):
            lg = np.log10(g.norms[:max_k + 1])
        scale = min(1.0, clip_norm / max(g.param_norm, 1e-300))
        logs.append(lg)
        clipped.append(lg + math.log10(scale))
        losses.append(g.loss)
        pnorms.append(g.param_norm)
    # An exactly zero gradient (every ReLU unit on the path inactive) has log10 = -inf: the
    # mean at that k is then -inf (null in the JSON, no point in the plot) and counted here.
    logs, clipped = np.array(logs), np.array(clipped)
    return Curve(name=name, cell=cell, trained=trained, k=list(range(max_k + 1)),
                 mean_log10=_floats(logs.mean(axis=0)),
                 q25_log10=_floats(np.percentile(logs, 25, axis=0)),
                 q75_log10=_floats(np.percentile(logs, 75, axis=0)),
                 clipped_mean_log10=_floats(clipped.mean(axis=0)), clip_norm=clip_norm,
                 clipped_fraction=float(np.mean(np.array(pnorms) > clip_norm)),
                 median_param_norm=float(np.median(pnorms)),
                 mean_loss=float(np.mean(losses)), n_positions=len(positions),
                 info={"zero_gradients": int(np.isneginf(logs).sum())})


def _floats(a: np.ndarray) -> list[float]:
    """JSON-safe floats (-inf, from an exactly zero gradient, becomes None)."""
    return [float(v) if np.isfinite(v) else None for v in a]


# --- short training -------------------------------------------------------------------------

def train_briefly(config: LMConfig, sentences: Sequence[Sequence[str]], vocab: Vocabulary, *,
                  steps: int, batch_size: int, learning_rate: float, clip_norm: float,
                  seed: int, log: Callable[[str], None], mode: str = "NUMBA"
                  ) -> tuple[dict[str, np.ndarray], dict]:
    """Train ``config`` for ``steps`` minibatches of sentences with Adam; its parameters and
    a summary (mean training loss over the first and the last 20 steps, seconds)."""
    from rnn_theano.data.batching import SentenceBatches
    from rnn_theano.tasks.lm_engine import LMEngine

    # Sentence batches have many lengths: not JAX, which compiles one function per length.
    engine = LMEngine(config, mode=backends.prepare(mode, fixed_shapes=False), optimizer="adam",
                      learning_rate=learning_rate, clip_norm=clip_norm or None)
    batches = SentenceBatches.from_sentences(sentences, vocab, batch_size, seed=seed)
    losses: list[float] = []
    start = time.perf_counter()
    epoch = 0
    while len(losses) < steps:
        for x, y, mask in batches.epoch(epoch):
            r = engine.train_step(x, y, mask, engine.initial_state(x.shape[1]))
            if not math.isfinite(r.cost):
                raise UserError(f"training the {config.cell} cell diverged (loss {r.cost}): "
                                "lower --learning-rate or --train-steps")
            losses.append(r.cost / r.n_tokens)
            if len(losses) % 50 == 0 or len(losses) == steps:
                log(f"  {config.cell}: step {len(losses)}/{steps}  "
                    f"loss {np.mean(losses[-20:]):.3f}  ({time.perf_counter() - start:.0f} s)")
            if len(losses) >= steps:
                break
        epoch += 1
    summary = {"steps": steps, "batch_size": batch_size, "optimizer": "adam",
               "learning_rate": learning_rate, "train_clip_norm": clip_norm,
               "first_loss": float(np.mean(losses[:20])),
               "last_loss": float(np.mean(losses[-20:])),
               "epochs_seen": round(steps / len(batches), 3),
               "seconds": round(time.perf_counter() - start, 1)}
    return engine.get_params(), summary


# --- the figure -----------------------------------------------------------------------------

COLORS = {"rnn": "tab:red", "relu": "tab:orange", "gru": "tab:blue", "lstm": "tab:green"}
MARKERS = {"rnn": "o", "relu": "s", "gru": "^", "lstm": "D"}


def plot(curves: Sequence[Curve], out: Path, *, truncate: int, clip_norm: float,
         subtitle: str) -> None:
    """One PNG: untrained, trained, trained with clipping; log10 y, truncation marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 5.6), sharey=True)
    panels = [("untrained (initialisation)", False, False),
              ("trained", True, False),
              (f"trained, global-norm clipping at c = {clip_norm:g}", True, True)]
    for ax, (title, trained, clipped) in zip(axes, panels):
        for c in curves:
            if c.trained == trained:
                _draw_curve(ax, c, clipped)
        _frame_panel(ax, title, truncate, max(max(c.k) for c in curves))
    axes[0].set_ylabel(r"$\|\partial L_t / \partial s_{t-k}\|$  (geometric mean over sentences)")
    fig.suptitle("The vanishing gradient: how much the loss at word t depends on the state "
                 "k steps earlier", fontsize=13)
    fig.text(0.5, 0.005, subtitle, ha="center", va="bottom", fontsize=8.5, wrap=True)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _draw_curve(ax, c: Curve, clipped: bool) -> None:
    """One model's curve: mean and quartile band, or (clipped) the rescaled mean over a faint
    unclipped one."""
    k = np.asarray(c.k)
    mean = 10.0 ** _array(c.mean_log10)
    color, marker = COLORS.get(c.cell), MARKERS.get(c.cell, "o")
    label = CELL_LABELS.get(c.cell, c.cell)
    if clipped:
        ax.plot(k, mean, color=color, lw=1, alpha=0.35)
        ax.plot(k, 10.0 ** _array(c.clipped_mean_log10), color=color, lw=2, ls="--",
                marker=marker, ms=4, mfc="none",
                label=f"{label} (clipped at {100 * c.clipped_fraction:.0f}% of positions)")
    else:
        ax.fill_between(k, 10.0 ** _array(c.q25_log10), 10.0 ** _array(c.q75_log10),
                        color=color, alpha=0.08, lw=0)
        ax.plot(k, mean, color=color, lw=2, marker=marker, ms=4, mfc="none", label=label)


def _frame_panel(ax, title: str, truncate: int, max_k: int) -> None:
    """Axes, title, legend, and the range of k that ``--bptt-truncate`` drops, shaded."""
    from matplotlib.ticker import MaxNLocator

    ax.axvline(truncate, color="black", ls=":", lw=1.2)
    ax.axvspan(truncate, max_k + 0.5, color="grey", alpha=0.08)
    ax.text(truncate + 0.3, 0.98, f"k > {truncate}: dropped by\n--bptt-truncate {truncate}",
            transform=ax.get_xaxis_transform(), fontsize=8, va="top")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.5, max_k + 0.5)
    ax.set_title(title, fontsize=11)
    ax.set_xlabel("k (steps back from the loss's position t)")
    ax.grid(True, which="major", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # the trained panels are empty with --train-steps 0
        ax.legend(fontsize=8, loc="lower left")


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def write_json(path: Path, curves: Sequence[Curve], settings: dict[str, Any]) -> None:
    data = {"what": "||dL_t/ds_{t-k}|| for k = 0..max_k: for each model, the mean over "
                    "sentence positions of log10 of the norm (10**mean is the geometric mean), "
                    "its quartiles, and the same after global-norm clipping of the position's "
                    "parameter gradient at clip_norm",
            "settings": settings,
            "curves": [c.__dict__ for c in curves]}
    atomic.write_json(path, data)


def log_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the command ----------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(description="Plot ||dL_t/ds_{t-k}|| against k for trained and "
                            "untrained tanh, ReLU (identity init), GRU and LSTM language models.")
    add = parser.add_argument
    add("--out", default="docs/gradient_flow.png", metavar="PATH.png",
        help="the figure; the curves go to the same name with .json")
    add("--max-k", type=int, default=20, metavar="K",
        help="largest k (sentences need at least K+1 input words)")
    add("--sentences", type=int, default=200, metavar="N",
        help="held-out sentences measured (one position each)")
    add("--train-steps", type=int, default=1000, metavar="N",
        help="Adam steps of --batch-size sentences for each trained model "
        "(0: untrained curves only)")
    add("--batch-size", type=int, default=32, metavar="B")
    add("--learning-rate", type=float, default=0.002, metavar="LR")
    add("--train-clip-norm", type=float, default=1.0, metavar="C",
        help="global-norm clipping while training (0: off)")
    add("--hidden-dim", type=int, default=64, metavar="H",
        help="hidden and embedding size of the models trained here")
    add("--vocab-size", type=int, default=2000, metavar="N")
    add("--clip-norm", type=float, default=5.0, metavar="C",
        help="the clipping threshold the third panel applies to each position's parameter "
        "gradient (5: Zaremba et al.'s, here on one word's loss)")
    add("--bptt-truncate", type=int, default=4, metavar="K",
        help="the truncation marked on the figure (the tutorial's 4)")
    add("--data", metavar="PATH", help="text to read sentences from, as `rnn-theano train "
        "--data` (default: the built-in corpus)")
    add("--data-dir", metavar="DIR", help="cache of the built-in corpus "
        "(default: $RNN_THEANO_DATA or ./data)")
    add("--cells", default=",".join(CELL_LABELS), metavar="CELL,...",
        help=f"the cells measured, a subset of {','.join(CELL_LABELS)} (default: all)")
    add("--model", action="append", default=[], metavar="CELL=PATH",
        help="use this engine checkpoint as the trained model of CELL (rnn, relu, gru, lstm) "
        "instead of training one; repeatable")
    add("--mode", default="NUMBA", choices=("NUMBA", "CVM", "FAST_COMPILE"),
        help="PyTensor backend of the measurement and the training (not JAX: every position "
        "and every batch of sentences has its own length, and JAX compiles one per length)")
    add("--seed", type=int, default=0, metavar="N")
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = _parser().parse_args(argv)
    for name in ("max_k", "sentences", "batch_size", "hidden_dim"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.train_steps < 0 or args.clip_norm <= 0 or args.vocab_size < 3:
        raise UserError("--train-steps must be >= 0, --clip-norm > 0 and --vocab-size >= 3")
    if not args.out.endswith(".png"):
        raise UserError(f"--out {args.out} should name a .png file")
    cells = {c.strip() for c in args.cells.split(",") if c.strip()}
    if not cells or not cells <= set(CELL_LABELS):
        raise UserError(f"--cells {args.cells}: give a subset of {','.join(CELL_LABELS)}")
    args.cells = [c for c in CELL_LABELS if c in cells]
    return args


@dataclass
class _Trained:
    """A ``--model`` checkpoint: its architecture, vocabulary and parameters."""

    config: LMConfig
    vocab: Vocabulary
    params: dict[str, np.ndarray]
    path: Path


def load_models(specs: list[str], cells: Sequence[str]) -> dict[str, _Trained]:
    """The ``--model CELL=PATH`` checkpoints, each checked to hold a measurable CELL model."""
    if not specs:
        return {}
    from rnn_theano.checkpoint import load_checkpoint
    from rnn_theano.tasks.lm import model_from_checkpoint
    from rnn_theano.tasks.lm_engine import LMEngine

    models = {}
    for spec in specs:
        cell, sep, path = spec.partition("=")
        if not sep or cell not in cells:
            raise UserError(f"--model {spec}: write CELL=PATH with CELL one of the measured "
                            f"cells ({', '.join(cells)})")
        ckpt = load_checkpoint(path)
        model = model_from_checkpoint(ckpt)  # builds the engine; compiles nothing
        if not isinstance(model, LMEngine):
            raise UserError(f"{path} is a tutorial-model checkpoint: --model takes an engine "
                            "checkpoint (rnn-theano train --arch rnn|relu|gru|lstm)")
        if model.config.cell != cell:
            raise UserError(f"{path} holds a {model.config.cell} model, not {cell}")
        check_supported(model.config)
        models[cell] = _Trained(model.config, ckpt.vocab, model.get_params(), Path(path))
    return models


@dataclass
class _Setup:
    """What every cell's measurement shares."""

    args: argparse.Namespace
    train: list[list[str]]
    held_out: list[list[str]]
    vocab: Vocabulary
    positions: list[tuple[int, int]]
    source: str
    loaded: dict[str, _Trained]


def setup(args: argparse.Namespace) -> _Setup:
    """The corpus split, the vocabulary of models trained here, and the measured positions."""
    from rnn_theano.data.splits import load_splits

    loaded = load_models(args.model, args.cells)
    splits = load_splits(data=args.data, data_dir=args.data_dir, seed=args.seed)
    vocab = Vocabulary.build(splits.train, args.vocab_size)
    # x = START + words, so a sentence of n words has n + 1 inputs and n + 1 positions.
    positions = pick_positions([len(s) + 1 for s in splits.valid], args.max_k, args.sentences,
                               args.seed)
    log_stderr(f"{splits.source}: {len(splits.train):,} training sentences, "
               f"{len(splits.valid):,} held out; measuring {len(positions)} held-out "
               f"sentences with at least {args.max_k + 1} input words")
    if not positions:
        raise UserError(f"no held-out sentence has {args.max_k + 1} words: lower --max-k")
    return _Setup(args, splits.train, splits.valid, vocab, positions, splits.source, loaded)


def cell_curves(cell: str, s: _Setup) -> list[Curve]:
    """The untrained curve of ``cell`` and, when there is a trained model, the trained one."""
    args = s.args
    if cell in s.loaded:
        lm, vocab = s.loaded[cell].config, s.loaded[cell].vocab
        trained_params, info = s.loaded[cell].params, {"checkpoint": str(s.loaded[cell].path)}
    else:
        lm = LMConfig(cell=cell, vocab_size=len(s.vocab), embed_dim=args.hidden_dim,
                      hidden_dim=args.hidden_dim, identity_init=(cell == "relu"),
                      seed=args.seed)
        vocab, trained_params, info = s.vocab, None, {}
    measure_with = functools.partial(
        measure, StateGradients(lm, args.mode), sequences=[vocab.encode(x) for x in s.held_out],
        positions=s.positions, max_k=args.max_k, clip_norm=args.clip_norm, cell=cell)
    arch = {"hidden_dim": lm.hidden_dim, "embed_dim": lm.embed_dim,
            "vocab_size": lm.vocab_size, "identity_init": lm.identity_init,
            "forget_bias": lm.forget_bias}
    t0 = time.perf_counter()
    log_stderr(f"{cell}: compiling and measuring the untrained model")
    curves = [measure_with(init_lm_params(lm), name=f"{cell} untrained", trained=False)]
    curves[0].info.update(arch)
    log_stderr(f"{cell}: untrained measured in {time.perf_counter() - t0:.0f} s")
    if trained_params is None and args.train_steps > 0:
        log_stderr(f"{cell}: training {args.train_steps} steps")
        trained_params, info = train_briefly(
            lm, s.train, s.vocab, steps=args.train_steps, batch_size=args.batch_size,
            learning_rate=args.learning_rate, clip_norm=args.train_clip_norm,
            seed=args.seed, log=log_stderr, mode=args.mode)
    if trained_params is not None:
        c = measure_with(trained_params, name=f"{cell} trained", trained=True)
        c.info.update(arch | info)
        curves.append(c)
        log_stderr(f"{cell}: trained: ||dL/ds_t|| {c.geometric_mean[0]:.3g}, "
                   f"k={args.max_k}: {c.geometric_mean[-1]:.3g}")
    return curves


def subtitle(s: _Setup, curves: Sequence[Curve]) -> str:
    """The figure's caption: what was measured on which models."""
    args = s.args
    trained_here = any(c.trained for c in curves) and not s.loaded
    return (f"{len(s.positions)} held-out sentences of {s.source}, one position t each; curve: "
            f"geometric mean over positions of ||dL_t/ds_{{t-k}}||, band: quartiles. "
            f"Models: hidden {args.hidden_dim}, vocabulary {len(s.vocab):,}, one layer"
            + (f"; trained {args.train_steps} Adam steps of {args.batch_size} sentences"
               if trained_here else "")
            + f". Right: each position's gradient rescaled as global-norm clipping at "
            f"c = {args.clip_norm:g} would (factor min(1, c/||dL_t/dθ||), θ all parameters); "
            "faint: unclipped. Clipping shifts a curve down, never changes its slope.")


@user_errors
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    wall = time.perf_counter()
    out = Path(args.out)
    json_path = out.with_suffix(".json")
    s = setup(args)
    curves = [c for cell in args.cells for c in cell_curves(cell, s)]
    seconds = time.perf_counter() - wall
    settings = vars(args) | {
        "source": s.source, "positions": len(s.positions), "wall_seconds": round(seconds, 1),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "averaged": "one position t per held-out sentence with at least max_k+1 input words, "
                    "t uniform in [max_k, len(x)-1] (seeded); L_t is that position's "
                    "cross-entropy; for each k the mean over positions of log10 ||dL_t/ds_{t-k}||"}
    write_json(json_path, curves, settings)
    log_stderr(f"wrote {json_path} ({seconds:.0f} s)")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError(f"the figure needs matplotlib (the curves are in {json_path}): "
                        "pip install -e '.[plot]'") from None
    plot(curves, out, truncate=args.bptt_truncate, clip_norm=args.clip_norm,
         subtitle=subtitle(s, curves))
    log_stderr(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
