"""Sentence classification results: each recipe over several seeds, one table, TREC's confusion.

    python experiments/classify_results.py --seeds 0 1 2 --out docs/classification
    make classify-results

For every dataset it runs the recipe ``configs/classify-NAME.toml`` once per seed (MR's
recipe cross-validates: 10 trainings), through the ``rnn-theano`` command, writing the run's
JSON log to ``OUT/NAME-seedS.json``; a run whose log already holds its test scores is not run
again (``--force`` reruns it). Then it writes ``OUT/results.json`` (every run's test accuracy,
macro F1 and wall time), prints the results as a Markdown table (mean and standard deviation
over the seeds; for MR each seed's figure is its mean over the folds), and draws TREC's test
confusion matrix, summed over the seeds, to ``OUT/trec-confusion.png``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from rnn_theano.errors import ArgumentParser, UserError, user_errors

DATASETS = {"sst2": "SST-2", "sst5": "SST-5", "sst5-phrases": "SST-5, trained on phrases",
            "trec": "TREC", "mr": "MR (10-fold)"}
# Kim trained on SST's phrases as well, so his SST numbers are the phrase recipe's anchor too.
KIM_CNN_RAND = {"sst2": 82.7, "sst5": 45.0, "sst5-phrases": 45.0, "trec": 91.2, "mr": 76.1}
# The coarse classes of the TREC files, whose labels are the numbers 0-5.
TREC_CLASSES = {"0": "DESC", "1": "ENTY", "2": "ABBR", "3": "HUM", "4": "LOC", "5": "NUM"}


def rnn_theano_command() -> str:
    """The ``rnn-theano`` installed beside this Python (its venv's), else the one on PATH."""
    return shutil.which("rnn-theano", path=str(Path(sys.executable).parent)) or "rnn-theano"


def train(name: str, seed: int, log: Path, extra: list[str]) -> float:
    """Run one recipe with one seed; its wall time in seconds."""
    argv = [rnn_theano_command(), "train-classifier", "--config", f"configs/classify-{name}.toml",
            "--seed", str(seed), "--log-json", str(log),
            "--model-out", f"checkpoints/classify-{name}-seed{seed}.npz", *extra]
    print("$", " ".join(argv[1:]), flush=True)
    started = time.perf_counter()
    if subprocess.run(argv).returncode:
        raise UserError(f"the {name} recipe failed with seed {seed} (its messages are above)")
    return time.perf_counter() - started


def finished(log: Path) -> bool:
    """Whether the log is a finished run's (an interrupted one has no test scores)."""
    try:
        return "test_accuracy" in json.loads(log.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def scores(log: Path) -> tuple[float, float]:
    """(test accuracy, macro F1) in percent of a run's log; a cross-validation's fold means."""
    run = json.loads(log.read_text(encoding="utf-8"))
    return 100 * float(np.mean(run["test_accuracy"])), 100 * float(np.mean(run["test_macro_f1"]))


def confusion(logs: list[Path]) -> np.ndarray:
    """The test confusion matrices of single (not cross-validated) runs, summed."""
    return sum(np.array(json.loads(p.read_text(encoding="utf-8"))["test_confusion"])
               for p in logs)


def table(results: dict) -> str:
    """Markdown: one row per dataset, mean and standard deviation over the seeds."""
    rows = ["| dataset | test accuracy | macro F1 | seeds | Kim CNN-rand | wall time per run |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, runs in results.items():
        acc, f1, wall = (np.array([r[k] for r in runs]) for k in ("accuracy", "macro_f1", "wall"))
        spread = (lambda v: f" ± {v.std(ddof=1):.2f}") if len(runs) > 1 else (lambda v: "")
        rows.append(f"| {DATASETS[name]} | {acc.mean():.2f}{spread(acc)} | {f1.mean():.2f}"
                    f"{spread(f1)} | {len(runs)} | {KIM_CNN_RAND[name]} | "
                    f"{wall.mean() / 60:.1f} min |")
    return "\n".join(rows)


def plot_confusion(matrix: np.ndarray, labels: list[str], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if share[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("TREC test questions: counts, shaded by share of the true class", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


@user_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="docs/classification", help="folder for the results")
    parser.add_argument("--force", action="store_true", help="rerun runs whose log exists")
    args, extra = parser.parse_known_args(argv)  # the rest goes to every train-classifier
    try:
        import matplotlib  # noqa: F401  (needed at the end: say so before hours of training)
    except ImportError:
        raise UserError("the confusion matrix needs matplotlib: pip install -e '.[plot]'")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = _previous(out)
    for name in args.datasets:
        results[name] = []
        for seed in args.seeds:
            log = out / f"{name}-seed{seed}.json"
            wall = train(name, seed, log, extra) if args.force or not finished(log) else None
            accuracy, f1 = scores(log)
            results[name].append({"seed": seed, "accuracy": accuracy, "macro_f1": f1,
                                  "log": log.name, "wall": wall or _logged_wall(out, log)})
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))
    if "trec" in results:
        logs = [out / r["log"] for r in results["trec"]]
        labels = json.loads(logs[0].read_text(encoding="utf-8"))["labels"]
        plot_confusion(confusion(logs), [TREC_CLASSES.get(k, k) for k in labels],
                       out / "trec-confusion.png")
    return 0


def _previous(out: Path) -> dict[str, list[dict]]:
    """The results an earlier invocation wrote (other datasets are kept in the table)."""
    path = out / "results.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _logged_wall(out: Path, log: Path) -> float:
    """A finished run's wall time as an earlier invocation of this script recorded it."""
    for runs in _previous(out).values():
        for run in runs:
            if run["log"] == log.name:
                return run["wall"]
    return float("nan")


if __name__ == "__main__":
    sys.exit(main())
