"""The speech recipes' results: the speaker-independent runs, docs/speech.md's tables and the
picture of CTC's spikes.

    .venv/bin/python experiments/speech_results.py speakers   # six train-asr runs, one per
                                                              # held-out speaker (resumable)
    .venv/bin/python experiments/speech_results.py tables docs/speech/asr-digits.json \\
        docs/speech/speaker-*.json                            # markdown tables from the logs
    .venv/bin/python experiments/speech_results.py figure --model checkpoints/asr-digits.npz

``speakers`` trains ``configs/asr-speakers.toml`` once per speaker of FSDD with
``--test-speaker``, each log in ``--out`` (``speaker-NAME.json``); a speaker whose log already
has its test results is skipped, so an interrupted sweep goes on where it stopped. ``tables``
prints the results of the official split and one row per held-out speaker with their mean.
``figure`` makes a test string of five digits from the official test recordings (seeded),
transcribes it and draws its features and the per-frame label posteriors.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from rnn_theano.data.speech import SPEAKERS

ROOT = Path(__file__).resolve().parents[1]


def run_speakers(args: argparse.Namespace, extra: list[str]) -> int:
    from rnn_theano.cli import train_asr_main
    args.out.mkdir(parents=True, exist_ok=True)
    for speaker in args.speakers:
        log = args.out / f"speaker-{speaker}.json"
        if log.exists() and "test_beam1" in json.loads(log.read_text()):
            print(f"{speaker}: done already ({log})")
            continue
        print(f"--- held-out speaker {speaker}", flush=True)
        code = train_asr_main(["--config", str(args.config), "--test-speaker", speaker,
                               "--model-out", str(args.checkpoints / f"asr-{speaker}.npz"),
                               "--log-json", str(log), *extra])
        if code:
            return code
    return 0


def _beam(log: dict) -> int:
    return max(int(k[len("test_beam"):]) for k in log if k.startswith("test_beam"))


def _percent(report: dict, key: str) -> str:
    return f"{100 * report[key]:.2f}" if key in report else "-"


def official_row(log: dict) -> str:
    history, k = log["history"], _beam(log)
    kept = min(history, key=lambda r: r["valid_error_rate"])  # the first of equals, as kept
    g, b = log["test_beam1"], log[f"test_beam{k}"]
    return (f"| official | {log['parameters'] / 1e3:.0f}k | {kept['epoch']} of "
            f"{history[-1]['epoch']} | {history[-1]['seconds'] / 60:.0f} min | "
            f"{_percent(g, 'isolated_accuracy')} / {_percent(b, 'isolated_accuracy')} | "
            f"{_percent(g, '5_digits_error_rate')} / {_percent(b, '5_digits_error_rate')} | "
            f"{_percent(b, 'strings_error_rate')} | {100 * b['strings_accuracy']:.1f} |")


def speaker_rows(logs: list[dict]) -> list[str]:
    rows, means = [], []
    for log in logs:
        k = _beam(log)
        g, b = log["test_beam1"], log[f"test_beam{k}"]
        values = [100 * g["isolated_accuracy"], 100 * b["isolated_accuracy"],
                  100 * b.get("5_digits_error_rate", np.nan), 100 * b["strings_error_rate"]]
        means.append(values)
        rows.append(f"| {log['settings']['data']['test_speaker']} | "
                    f"{log['history'][-1]['seconds'] / 60:.0f} min | "
                    + " | ".join(f"{v:.2f}" for v in values) + " |")
    mean = np.mean(means, axis=0)
    rows.append("| **mean** | | " + " | ".join(f"**{v:.2f}**" for v in mean) + " |")
    return rows


def tables(args: argparse.Namespace) -> int:
    logs = []
    for path in args.logs:
        log = json.loads(path.read_text())
        if "test_beam1" in log:
            logs.append(log)
        else:
            print(f"note: {path} has no test results yet (a run still going?): left out",
                  file=sys.stderr)
    official = [log for log in logs if not log["settings"]["data"]["test_speaker"]]
    speakers = sorted((log for log in logs if log["settings"]["data"]["test_speaker"]),
                      key=lambda log: log["settings"]["data"]["test_speaker"])
    if official:
        print("| split | parameters | best epoch | time | isolated digits %, greedy / beam | "
              "5-digit strings: digit error rate %, greedy / beam | all strings: digit error "
              "rate % | strings exact % |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for log in official:
            print(official_row(log))
        print()
    if speakers:
        print("| held-out speaker | time | isolated digits %, greedy | isolated digits %, beam "
              "| 5-digit strings: digit error rate % | all strings: digit error rate % |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        print("\n".join(speaker_rows(speakers)))
    return 0


def figure(args: argparse.Namespace) -> int:
    import soundfile
    from rnn_theano.checkpoint import load_checkpoint
    from rnn_theano.data.audio import AudioReader
    from rnn_theano.data.datasets import recordings_dir
    from rnn_theano.data.speech import DigitStrings, fsdd_clips, split_clips
    from rnn_theano.tasks.asr import Transcriber, plot_posteriors
    ckpt = load_checkpoint(args.model, "asr")
    clips = split_clips(fsdd_clips(recordings_dir("fsdd")), None)["test"]
    clips = [c for c in clips if c.speaker == args.speaker]
    reader = AudioReader(ckpt.settings.model.sample_rate)
    audio = {c.path: reader(c.path) for c in clips}
    string = DigitStrings(ckpt.settings.model.sample_rate).make(
        clips, audio, [5], np.random.default_rng(args.seed))[0]
    transcriber = Transcriber(ckpt)
    transcriber.adapt([c.path for c in clips])  # under --normalise speaker: the voice's
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "string.wav"
        soundfile.write(wav, string.samples, ckpt.settings.model.sample_rate)
        frames, log_probs = transcriber.posteriors(wav)
        heard = transcriber.transcribe(wav, beam=1)
    plot_posteriors(frames, log_probs, transcriber.engine.config.stride,
                    f"spoken: {string.text}  |  heard: {heard}", str(args.out))
    print(f"{args.out}: spoken {string.text!r}, heard {heard!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser("speakers", help="one train-asr run per held-out speaker "
                                "(other flags go to train-asr)")
    sweep.add_argument("--config", type=Path, default=ROOT / "configs" / "asr-speakers.toml")
    sweep.add_argument("--out", type=Path, default=ROOT / "docs" / "speech")
    sweep.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    sweep.add_argument("--speakers", nargs="+", default=SPEAKERS, choices=SPEAKERS)
    table = commands.add_parser("tables", help="markdown tables from train-asr logs")
    table.add_argument("logs", nargs="+", type=Path)
    picture = commands.add_parser("figure", help="a test string's CTC posteriors as a PNG")
    picture.add_argument("--model", type=Path, default=Path("checkpoints/asr-digits.npz"))
    picture.add_argument("--out", type=Path, default=ROOT / "docs" / "speech" / "posteriors.png")
    picture.add_argument("--speaker", default="theo", choices=SPEAKERS)
    picture.add_argument("--seed", type=int, default=5)
    args, extra = parser.parse_known_args(argv)
    if args.command != "speakers" and extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return {"speakers": lambda: run_speakers(args, extra), "tables": lambda: tables(args),
            "figure": lambda: figure(args)}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
