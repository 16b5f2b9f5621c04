"""The results table of docs/translation.md from the logs of the translation recipes.

    .venv/bin/python experiments/mt_table.py docs/translation/de-en.json docs/translation/en-de.json

Each log is what ``rnn-theano train-mt --log-json`` writes (``make mt-de-en`` and ``make
mt-en-de`` write them there): the settings, the per-epoch history and, after training, the
test BLEU of the kept model greedy and with the recipe's beam.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def beams(log: dict) -> list[int]:
    """The beam sizes the log has test BLEU for (1: greedy)."""
    return sorted(int(k[len("test_beam"):]) for k in log if k.startswith("test_beam"))


def row(log: dict) -> str:
    """One markdown table row: direction, parameters, epochs, time, speed, perplexities and
    the test BLEU of every decoding the log holds."""
    data, history = log["settings"]["data"], log["history"]
    kept = max(history, key=lambda r: r["valid_bleu"])
    bleu = " | ".join(f"{log[f'test_beam{k}']['bleu']:.2f} / "
                      f"{log[f'test_beam{k}']['bleu_lowercase']:.2f}" for k in beams(log))
    speed = statistics.median(r["tokens_per_second"] for r in history[1:]) if len(
        history) > 1 else history[0]["tokens_per_second"]
    return (f"| {data['src_lang']}->{data['tgt_lang']} | {log['parameters'] / 1e6:.1f}M | "
            f"{kept['epoch']} of {history[-1]['epoch']} | {history[-1]['seconds'] / 60:.0f} min"
            f" | {speed:,.0f} | {kept['valid_ppl']:.2f} | {log['test_ppl']:.2f} | "
            f"{kept['valid_bleu']:.2f} | {bleu} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logs", nargs="+", type=Path, help="train-mt --log-json files")
    args = parser.parse_args(argv)
    logs = [json.loads(path.read_text()) for path in args.logs]
    sizes = beams(logs[0])
    names = " | ".join(f"test BLEU, {'greedy' if k == 1 else f'beam {k}'}" for k in sizes)
    print(f"| direction | parameters | best epoch | time | target tokens/s | valid ppl | "
          f"test ppl | valid BLEU, greedy | {names} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" + " ---: |" * len(sizes))
    for log in logs:
        print(row(log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
