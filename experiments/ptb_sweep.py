#!/usr/bin/env python3
"""Short Penn Treebank runs of one recipe with some settings changed, side by side, one table.

    python experiments/ptb_sweep.py --config configs/ptb-gru-vd.toml --epochs 3 \
        --run "lr5=--learning-rate 5" --run "lr10=--learning-rate 10" --out docs/ptb/sweep

Each ``--run NAME=FLAGS`` trains the recipe for ``--epochs`` epochs through the ``rnn-theano``
command with FLAGS added (any flag of ``rnn-theano train``), writing its JSON log and console
output to ``OUT/NAME.json`` and ``OUT/NAME.log``; ``--jobs`` runs go at once (the trainer uses
one BLAS thread, so two runs share two cores with little loss each). A run whose JSON log is
complete is not run again (``--force`` reruns it). Then it prints one Markdown row per run:
the epochs it ran, the best validation perplexity within them, the test perplexity at that
epoch, and the training speed (``--table``: only the table, of the logs there). The chosen
settings are then trained in full by the recipe; a short run only ranks settings by their
early progress, and says nothing of where a decay would take them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from classify_results import rnn_theano_command
from rnn_theano.errors import ArgumentParser, UserError, user_errors


def parse_run(text: str) -> tuple[str, list[str]]:
    name, sep, flags = text.partition("=")
    if not sep or not re.fullmatch(r"[\w.-]+", name):
        raise UserError(f"--run {text!r}: write it as NAME=FLAGS, e.g. \"lr5=--learning-rate 5\"")
    return name, shlex.split(flags)


def finished(log: Path, epochs: int) -> bool:
    try:
        return len(json.loads(log.read_text())["history"]) >= epochs
    except (OSError, ValueError, KeyError):
        return False


def start(args, name: str, flags: list[str]) -> subprocess.Popen:
    argv = [rnn_theano_command(), "train", "--config", args.config, "--epochs", str(args.epochs),
            "--log-json", str(args.out / f"{name}.json"),
            "--model-out", f"checkpoints/sweep-{name}.npz", *flags]
    print("$", shlex.join(argv[1:]), flush=True)
    # No progress bars in the log: it is read afterwards, where they are noise.
    return subprocess.Popen(argv, stdout=(args.out / f"{name}.log").open("w"),
                            stderr=subprocess.STDOUT, env={**os.environ, "TQDM_DISABLE": "1"})


def run_all(args, runs: dict[str, list[str]]) -> None:
    """Up to --jobs trainings at a time; any that fails stops the sweep with its log's name."""
    waiting = [name for name in runs
               if args.force or not finished(args.out / f"{name}.json", args.epochs)]
    running: dict[str, subprocess.Popen] = {}
    while waiting or running:
        while waiting and len(running) < args.jobs:
            name = waiting.pop(0)
            running[name] = start(args, name, runs[name])
        name, process = next(iter(running.items()))
        if process.wait() != 0:
            raise UserError(f"run {name} failed: see {args.out / (name + '.log')}")
        del running[name]


def table(args, runs: dict[str, list[str]]) -> str:
    rows = ["| run | settings | epochs | best valid ppl (epoch) | its test ppl | tokens/s |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name, flags in runs.items():
        log = args.out / f"{name}.json"
        if not log.is_file():
            raise UserError(f"no log {log}: run the sweep without --table first")
        history = json.loads(log.read_text())["history"]
        best = min(history, key=lambda h: h["valid_ppl"])
        speed = sum(h["tokens_per_second"] for h in history) / len(history)
        rows.append(f"| {name} | `{shlex.join(flags)}` | {len(history)} | {best['valid_ppl']:.2f} "
                    f"({best['epoch']}) | {best['test_ppl']:.2f} | {speed:,.0f} |")
    return "\n".join(rows)


@user_errors
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--config", required=True, help="the recipe, e.g. configs/ptb-gru-vd.toml")
    parser.add_argument("--run", action="append", required=True, metavar="NAME=FLAGS",
                        help="one setting to try (repeat)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--out", type=Path, default=Path("docs/ptb/sweep"))
    parser.add_argument("--force", action="store_true", help="rerun runs whose log is complete")
    parser.add_argument("--table", action="store_true",
                        help="run nothing: the table of the logs there (runs stopped early too)")
    args = parser.parse_args(argv)
    runs = dict(parse_run(text) for text in args.run)
    if not Path(args.config).is_file():
        raise UserError(f"no recipe {args.config}: name a file in configs/")
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        run_all(args, runs)
    print(table(args, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
