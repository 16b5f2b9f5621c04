"""Training curves: perplexity per epoch from the JSON logs of ``rnn-theano train --log-json``.

    python experiments/plot_curves.py docs/ptb/lstm.json docs/ptb/gru.json \
        --reference lstm=114.5 --out docs/ptb/curves.png

One panel per run, side by side with a shared y axis (log scale): training perplexity (measured
during the epoch, with dropout where the run had it), held-out and test perplexity after each
epoch, and the published test perplexity the run is compared with, when given.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from rnn_theano.errors import ArgumentParser, UserError, user_errors

LOG_HINT = "give the JSON written by rnn-theano train --log-json"


def load_run(path: str | Path) -> dict:
    """A ``--log-json`` file, checked to hold at least one epoch."""
    try:
        run = json.loads(Path(path).read_text(encoding="utf-8"))
        history = run["history"]
    except FileNotFoundError:
        raise UserError(f"{path}: no such file: {LOG_HINT}") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a training log: {LOG_HINT}") from None
    if not history:
        raise UserError(f"{path}: the log has no finished epoch yet: plot it after one")
    return run


def setting(run: dict, *names: str) -> Any:
    """The first of ``names`` in the log's settings, flat or grouped by section; else None."""
    settings = run.get("settings") or {}
    places = [settings, *(v for v in settings.values() if isinstance(v, dict))]
    for name in names:
        for place in places:
            if place.get(name) is not None:
                return place[name]
    return None


def run_title(run: dict) -> str:
    """'2x200 LSTM, sgd lr 20, 4.65M parameters' from the settings the log holds."""
    layers, hidden = setting(run, "layers") or 1, setting(run, "hidden_dim")
    model = f"{layers}x{hidden} " if hidden else ""
    model += str(setting(run, "arch", "cell") or "model").upper()
    model += ", tied" if setting(run, "tie_weights") else ""
    dropout = setting(run, "dropout")
    model += f", dropout {dropout:g}" if dropout else ""
    lr = setting(run, "learning_rate", "lr")
    training = f"{setting(run, 'optimizer') or 'sgd'}" + (f" lr {lr:g}" if lr else "")
    recurrent = setting(run, "recurrent_lr_scale")
    training += f" (Wh x{recurrent:g})" if recurrent not in (None, 1) else ""
    return f"{model}, {training}, {run.get('parameters', 0) / 1e6:.2f}M parameters"


def run_subtitle(run: dict) -> str:
    """'18 epochs, 45 min, averaged after epoch 7': how long it ran, and when averaged SGD
    (``--asgd``) began, which the curves show as a sudden drop."""
    rows = run["history"]
    text = f"{len(rows)} epochs, {rows[-1]['seconds'] / 60:.0f} min"
    started = [r["epoch"] for r in rows if r.get("averaging")]
    return text + (f", averaged after epoch {started[0]}" if started else "")


def plot_runs(runs: list[tuple[str, dict]], out: str | Path,
              references: dict[str, float] | None = None) -> None:
    """Write one PNG with a panel per ``(name, run)``; ``references`` maps a name to a test ppl."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    cols = min(len(runs), 3)  # rows of three: the recipes above their regularised versions
    rows_of_panels = -(-len(runs) // cols)
    fig, axes = plt.subplots(rows_of_panels, cols, figsize=(5.2 * cols, 4.6 * rows_of_panels),
                             sharey=True, squeeze=False)
    for ax in axes.flat[len(runs):]:
        ax.set_visible(False)
    for ax, (name, run) in zip(axes.flat, runs):
        rows = run["history"]
        epochs = [r["epoch"] for r in rows]
        for key, label, style in (("train_ppl", "train", "--"), ("valid_ppl", "valid", "-"),
                                  ("test_ppl", "test", ":")):
            if all(key in r for r in rows):
                ax.plot(epochs, [r[key] for r in rows], style, marker="o", ms=3, label=label)
        ref = (references or {}).get(name)
        if ref:
            ax.axhline(ref, color="black", lw=1, alpha=0.6)
            ax.text(epochs[0], ref, f" published test {ref:g}", va="bottom", fontsize=8)
        ax.set_title(f"{name}: {run_title(run)}\n{run_subtitle(run)}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("perplexity (per token, <eos> included)")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


@user_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description="Plot per-epoch perplexity from --log-json files, one "
                            "panel per file.")
    parser.add_argument("logs", nargs="+", metavar="LOG.json")
    parser.add_argument("--out", default="docs/ptb/curves.png", metavar="PATH")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=PPL",
                        help="draw a published test perplexity in panel NAME (the log's file "
                        "name without .json), e.g. lstm=114.5")
    args = parser.parse_args(argv)
    references = {}
    for item in args.reference:
        name, _, value = item.partition("=")
        try:
            references[name] = float(value)
        except ValueError:
            raise UserError(f"--reference {item!r}: write NAME=PPL, e.g. lstm=114.5") from None
        if not math.isfinite(references[name]) or references[name] <= 0:
            raise UserError(f"--reference {item!r}: the perplexity must be a positive number")
    runs = [(Path(p).stem, load_run(p)) for p in args.logs]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UserError("the plot needs matplotlib: pip install -e '.[plot]'") from None
    plot_runs(runs, args.out, references)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
