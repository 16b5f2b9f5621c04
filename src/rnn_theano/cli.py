"""The command line: ``rnn-theano train|generate|evaluate|fill-blank|train-classifier|classify|
train-mt|translate|train-asr|transcribe`` (and ``scripts/``).

Each ``*_main`` returns an exit status. A ``UserError`` anywhere becomes one line on stderr
and status 2 (a ``SettingError`` under its flag's name); nothing is written before the inputs
have been checked.

Training settings come in layers, each overriding the one before: the defaults of
``config.py``, a recipe (``--config FILE.toml``, keys named as the flags), the checkpoint of
``--resume``, and the flags given on the command line. A resumed run keeps what defines it
(the network, the text and its split, the seed: ``FREE_ON_RESUME`` lists what may change);
a flag that would change it is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import backends
from .atomic import write_json
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import (BLANK, AsrConfig, ClassifyConfig, ClassifyTextConfig, EvaluateConfig,
                     FillBlankConfig, GenerateConfig, MTConfig, RunConfig, TrainConfig,
                     TranscribeConfig, TranslateConfig)
from .data import corpus
from .data.parallel import read_lines, split_lines
from .data.splits import Splits, load_splits
from .data.tokenize import tokenize_words
from .errors import ArgumentParser, SettingError, UserError, user_errors
from .interrupt import StopFlag
from .sampling import detokenize, generate_sentence, sentence_markers
from .tasks import asr, classify, lm, mt
from .tasks.engine import continue_from
from .tasks.lm_engine import LMEngine
from .metrics import Score
from .train import TrainerOptions, train

COMMANDS = {"train": "train a language model (the tutorial's RNN, or the engine: --arch)",
            "generate": "sample sentences from a trained model",
            "evaluate": "score a trained model on a text: perplexity",
            "fill-blank": "predict the missing word of a sentence",
            "train-classifier": "train a sentence classifier (the many-to-one RNN)",
            "classify": "classify sentences with a trained classifier",
            "train-mt": "train a translation model (attention encoder-decoder)",
            "translate": "translate sentences with a trained translation model",
            "train-asr": "train a speech recogniser (deep bidirectional RNN, CTC)",
            "transcribe": "transcribe WAV files with a trained speech recogniser"}


def _add_flags(parser: argparse.ArgumentParser, kind: type, given_only: bool) -> None:
    """One flag per field of ``kind``; with ``given_only``, absent flags stay out of the result."""
    for f in dataclasses.fields(kind):
        meta, name = f.metadata, "--" + f.name.replace("_", "-")
        if f.name in ("text", "file", "files"):  # positional: fill-blank, classify, transcribe
            nargs = {"text": None, "file": "?", "files": "+"}[f.name]
            parser.add_argument(f.name, help=meta["help"], nargs=nargs, default=f.default,
                                metavar=meta["metavar"])
            continue
        default = argparse.SUPPRESS if given_only else f.default
        if f.type in (bool, "bool"):
            # --no-NAME as well, to turn off what a recipe turned on
            action = argparse.BooleanOptionalAction if given_only else "store_true"
            parser.add_argument(name, action=action, default=default, help=meta["help"])
            continue
        kind_ = type(f.default) if f.default is not None else meta["type"]
        shown = "" if f.default is None else f" (default: {f.default})"
        parser.add_argument(name, type=kind_, default=default, help=meta["help"] + shown,
                            choices=meta["choices"], metavar=meta["metavar"])


def _parse(cls: type, argv: list[str] | None, prog: str) -> Any:
    """Generate, evaluate and fill-blank: flags straight into ``cls``."""
    parser = ArgumentParser(prog=f"rnn-theano {prog}", description=COMMANDS[prog])
    _add_flags(parser, cls, given_only=False)
    return cls(**vars(parser.parse_args(argv)))


# --- train ----------------------------------------------------------------------------------

def _train_parser(kind: type[RunConfig], command: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"rnn-theano {command}", description=COMMANDS[command]
                            + ". Settings: the defaults shown, then --config, then --resume's "
                            "checkpoint, then flags.")
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="a recipe: a TOML file of settings keyed by flag name "
                        "(see configs/); flags given here override it")
    for title, kind in kind.sections().items():
        _add_flags(parser.add_argument_group(f"{title} settings"), kind, given_only=True)
    return parser


def read_recipe(path: str, kind: type[RunConfig] = TrainConfig) -> dict[str, Any]:
    """A recipe's settings, keys normalised to field names; unknown keys are an error."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"recipe {path} not found: give the path of a .toml file "
                        "(see configs/)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, IsADirectoryError) as e:
        raise UserError(f"recipe {path} is not valid TOML ({e}): fix the file") from None
    known = {f.name for section in kind.sections().values()
             for f in dataclasses.fields(section)}
    recipe = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(key for key in raw if key.replace("-", "_") not in known)
    if unknown:
        raise UserError(f"recipe {path} has unknown settings {', '.join(unknown)}: keys are "
                        "the flags' names without the dashes, e.g. hidden-dim = 200")
    return recipe


def train_config(argv: list[str] | None, kind: type[RunConfig] = TrainConfig,
                 command: str = "train") -> tuple[Any, Checkpoint | None]:
    """The run's settings, layered as the module docstring says, and the resumed checkpoint."""
    given = vars(_train_parser(kind, command).parse_args(argv))
    recipe_path = given.pop("config", None)
    recipe = read_recipe(recipe_path, kind) if recipe_path else {}
    resume = given.get("resume", recipe.get("resume"))
    resumed = load_checkpoint(resume, kind.task) if resume else None
    sections = {}
    for name, section in kind.sections().items():
        names = {f.name for f in dataclasses.fields(section)}
        values = {k: v for k, v in recipe.items() if k in names}
        flags = {k: v for k, v in given.items() if k in names}
        if resumed:
            values, flags = values | _resumed_values(name, getattr(resumed.settings, name),
                                                     flags, resume), {}
        sections[name] = section(**values | flags)
    config = kind(**sections)
    config.model.check_backend()
    config.check_devices()
    t = config.train
    backends.join_processes(t.coordinator, t.num_processes, t.process_id, t.peer_timeout)
    for name in ("model_out", "log_json"):
        path = getattr(config.train, name)
        if recipe_path and path and Path(path).resolve() == Path(recipe_path).resolve():
            raise SettingError(name, f"{path} is the recipe: writing it would destroy it")
    if resumed and {"learning_rate", "optimizer"} & set(given):
        resumed.state["learning_rate"] = config.lr  # a new rate (or rule) starts now
    return config, resumed


# What a resumed run may change. It keeps the rest from its checkpoint whatever the flags say:
# the network, the text and how it was split into training, dev and test, and the seed that
# split it and orders the epochs; only how the network is computed and batched may change,
# and every training setting but the seed and what ranks the epochs (a translation model's
# monitor and how its validation set is decoded): the best score must stay comparable.
KEPT_TRAIN_SETTINGS = {"seed", "monitor", "valid_beam", "length_penalty"}
# Where a run computes is the command's own: a resumed run does not inherit them.
PER_RUN_SETTINGS = {"devices", "coordinator", "num_processes", "process_id", "peer_timeout"}
FREE_ON_RESUME = {"model": {"mode", "impl", "float32"},
                  "data": {"batch_size", "bptt_len", "data_dir", "feature_cache"}}


def _resumed_values(section: str, saved: Any, given: dict[str, Any],
                    resume: str) -> dict[str, Any]:
    """A resumed run's ``section``: the checkpoint's, with the given settings that may change
    (``FREE_ON_RESUME``); it goes on writing to the file it resumes, for ``--epochs`` more."""
    values = dataclasses.asdict(saved)
    free = FREE_ON_RESUME.get(section) or set(values) - KEPT_TRAIN_SETTINGS
    if section == "train":
        values.pop("epochs")  # how many more: the flag, or its default
        values.update(model_out=resume, log_json=None)  # never someone else's files
        values.update({f.name: f.default for f in dataclasses.fields(saved)
                       if f.name in PER_RUN_SETTINGS})
    if section == "model":
        values["mode"] = backends.loadable(values["mode"])
    for name in sorted(given.keys() - free):
        if given[name] != values.get(name):
            raise SettingError(name, f"{given[name]} cannot change when resuming: the run "
                               f"goes on with the checkpoint's {values.get(name)} (the same "
                               "network on the same split of the same text); drop the flag, "
                               "or train a new model")
    return values | {k: v for k, v in given.items() if k in free}


def _splits(config: TrainConfig) -> Splits:
    d = config.data
    return load_splits(data=d.data, corpus_name=d.corpus, fmt=d.format, data_dir=d.data_dir,
                       lowercase=config.model.lowercase, max_sentences=d.max_sentences,
                       valid_fraction=d.valid_fraction, valid=d.valid, test=d.test,
                       seed=config.train.seed)


@user_errors
def train_main(argv: list[str] | None = None) -> int:
    config, resumed = train_config(argv)
    _check_outputs(config)
    lm.check_model(config)
    splits = _splits(config)
    backends.limit_blas_threads(config.train.blas_threads)
    vocab = resumed.vocab if resumed else lm.build_vocabulary(config.model, splits.train)
    model = (lm.model_from_checkpoint(resumed, config=config) if resumed
             else lm.build_model(config, len(vocab)))
    task = lm.make_task(config, splits, vocab, model)
    if resumed and isinstance(model, LMEngine):
        continue_from(model, resumed, config.train.optimizer)
    unigram = task.unigram_loss()
    _report(config, splits, model, len(vocab), task.n_train_tokens, unigram)
    run_log = {"parameters": lm.count_params(model), "vocab_size": len(vocab),
               "train_tokens": task.n_train_tokens, "unigram_valid_ppl": math.exp(unigram)}
    return run_trainer(config, task, lm.trainer_options(config), resumed, run_log,
                       f"unigram {math.exp(unigram):.2f}")


def run_trainer(config: RunConfig, task: Any, options: TrainerOptions,
                resumed: Checkpoint | None, run_log: dict, baseline: str,
                test_extra: Callable[[], dict] | None = None) -> int:
    """Train ``task`` with the one trainer: checkpoint, log file, Ctrl-C, final scores
    (``test_extra()``: more test results to print, save and log, e.g. BLEU)."""
    out = Path(config.train.model_out)
    run_log = {"settings": config.to_dict(), **run_log, "history": []}
    mesh = backends.device_mesh(config.train.devices, config.data.batch_size,
                                config.train.peer_timeout)
    if mesh is not None:
        task.engine.distribute(mesh)
        _check_processes_agree(config, task)
        index, count = backends.processes()
        print(f"data-parallel over {mesh.size} devices, {config.data.batch_size // mesh.size} "
              "rows of each batch on each" + (f"; this is process {index} of {count}"
                                              if count > 1 else ""))
    primary = backends.process_index() == 0  # the one process that writes files

    def write_log(history: list[dict], **extra: Any) -> None:
        if config.train.log_json and primary:
            write_json(config.train.log_json, run_log | {"history": history} | extra)

    def save(state: dict) -> None:
        if primary:
            save_checkpoint(out, task.checkpoint(config, state))

    with StopFlag() as stop:
        state = train(task, options, state=resumed.state if resumed else None, save=save,
                      stop=stop, on_epoch=write_log)
        _final_scores(task, options, state, f"{baseline}); model saved to {out}"
                     + ("" if primary else " by process 0"), save,
                      write_log, test_extra)
    return 130 if state.get("interrupted") else 0


def _check_processes_agree(config: RunConfig, task: Any) -> None:
    """Refuse a run whose processes were given different settings or read different data
    (the files each writes or resumes may differ: only process 0's are used)."""
    settings = _run_settings(config)
    for name in ("model_out", "log_json", "resume"):
        settings["train"].pop(name)
    backends.check_same(json.dumps([settings, task.n_train_tokens], sort_keys=True),
                        "their settings or training data")


def _check_outputs(config: RunConfig) -> None:
    """Refuse, before any work, outputs that cannot be written or would destroy a file."""
    for name, path in (("model_out", config.train.model_out), ("log_json", config.train.log_json)):
        if path is None:
            continue
        target = Path(path)
        parent = next((p for p in target.absolute().parents if p.exists()), None)
        if target.is_dir() or (parent is not None and not parent.is_dir()):
            raise SettingError(name, f"{path} cannot be written: a folder is in the way")
        if parent is not None and not os.access(parent, os.W_OK):
            raise SettingError(name, f"{path} cannot be written: {parent} is not writable")
    _check_replaceable(config)


def _check_replaceable(config: RunConfig) -> None:
    """An existing output is replaced only by its own kind: a checkpoint of the same task, a
    JSON log. Anything else there (a corpus, a recipe, another task's model) is refused."""
    out, log = Path(config.train.model_out), config.train.log_json
    if out.is_file():
        try:
            kind = load_checkpoint(out).settings.task if zipfile.is_zipfile(out) else None
        except UserError:
            kind = None
        if kind != config.task:
            raise SettingError("model_out", f"{out} exists and is not an rnn-theano "
                               f"{config.task} checkpoint: choose another path, or remove it")
    if log and Path(log).is_file():
        try:
            json.loads(Path(log).read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise SettingError("log_json", f"{log} exists and is not a JSON log: choose "
                               "another path, or remove it") from None


def _report(config: TrainConfig, splits: Splits, model: lm.Model, vocab_size: int,
            n_train: int, unigram: float) -> None:
    print(f"corpus: {splits.source}\n"
          f"  {len(splits.train):,} training sentences ({n_train:,} predicted tokens), "
          f"{len(splits.valid):,} held out" + (f", {len(splits.test):,} test" if splits.test else "")
          + f"\nmodel: {lm.describe(model, config)}, vocabulary {vocab_size:,}, "
          f"{lm.count_params(model):,} parameters\n"
          f"loss = cross-entropy per predicted token in nats (ln C = {math.log(vocab_size):.3f}); "
          f"held-out perplexity of a unigram model: {math.exp(unigram):.2f}")


def _final_scores(task: Any, options: TrainerOptions, state: dict, saved: str,
                  save: Callable[[dict], None], write_log: Callable[..., None],
                  test_extra: Callable[[], dict] | None = None) -> None:
    """The kept model's held-out score, and its test score when there is a test set."""
    history = state["history"]
    if not history:
        return
    kept = (min(history, key=lambda row: options.criterion(_row_score(row, "valid")))
            if options.keep_best else history[-1])
    print(f"held-out {_measure(_row_score(kept, 'valid'))} (epoch {kept['epoch']}; {saved}")
    extra = {"best_valid_ppl": kept["valid_ppl"]} | {
        f"best_{name}": kept[name] for name in ("valid_accuracy", "valid_bleu",
                                                "valid_error_rate") if name in kept}
    if task.has_test and not state.get("interrupted"):
        score = task.evaluate("test")
        print(f"test {_measure(score)} over {score.n_tokens:,.0f} {task.unit}"
              if score.error_rate is not None else f"test {_measure(score)} over "
              f"{score.n_tokens:,.0f} " + ("sentences" if score.accuracy is not None
                                           else "tokens"))
        scores = {"test_loss": score.loss, "test_ppl": score.perplexity}
        if score.confusion is not None:
            scores |= {"test_accuracy": score.accuracy, "test_macro_f1": score.macro_f1,
                       "test_confusion": score.confusion.tolist()}
        if score.error_rate is not None:
            scores |= {"test_error_rate": score.error_rate, "test_accuracy": score.accuracy}
        if test_extra:
            scores |= test_extra()
        save(state | scores)
        extra.update(scores, test_tokens=score.n_tokens)
    write_log(history, **extra)


def _row_score(row: dict, split: str) -> Score:
    """A history row's scores of ``split`` as a ``Score`` over one unit."""
    accuracy = row.get(f"{split}_accuracy")
    return Score(row[f"{split}_loss"], 1.0, accuracy, bleu=row.get(f"{split}_bleu"),
                 error_rate=row.get(f"{split}_error_rate"))


def _measure(score: Score) -> str:
    if score.error_rate is not None:
        return (f"digit error rate {100 * score.error_rate:.2f}%, exact transcripts "
                f"{100 * score.accuracy:.2f}%")
    if score.bleu is not None:
        return f"perplexity {score.perplexity:.2f}, BLEU {score.bleu:.2f}"
    if score.macro_f1 is not None:
        return f"accuracy {100 * score.accuracy:.2f}%, macro F1 {100 * score.macro_f1:.2f}"
    if score.accuracy is not None:
        return f"accuracy {100 * score.accuracy:.2f}%"
    return f"perplexity {score.perplexity:.2f}"


# --- using a trained model --------------------------------------------------------------------

def _trained(path: str) -> tuple[Checkpoint, lm.Model]:
    """A checkpoint and its model, the tutorial's as the numpy twin: generating and scoring
    need only forward passes, which numpy runs with no compilation at all."""
    ckpt = load_checkpoint(path, TrainConfig.task)
    numpy = {"impl": "numpy"} if ckpt.settings.model.is_tutorial else {}
    return ckpt, lm.model_from_checkpoint(ckpt, **numpy)


@user_errors
def generate_main(argv: list[str] | None = None) -> int:
    config = _parse(GenerateConfig, argv, "generate")
    ckpt, model = _trained(config.model)
    prime = tokenize_words(config.prime, lowercase=ckpt.settings.model.lowercase) \
        if config.prime else []
    unknown = [w for w in prime if w not in ckpt.vocab]
    if unknown:
        print(f"note: not in the model's vocabulary, read as the unknown word: "
              f"{' '.join(unknown)}", file=sys.stderr)
    rng = np.random.default_rng(config.seed)
    probs = lm.next_word_probs(model)
    for _ in range(config.num_sentences):
        words = generate_sentence(probs, ckpt.vocab, rng, prime=prime,
                                  temperature=config.temperature, min_length=config.min_length,
                                  max_length=config.max_length)
        if words is None:
            raise UserError(f"the model produced no sentence of {config.min_length} to "
                            f"{config.max_length} words in 1000 tries: train it longer or "
                            "relax --min-length/--max-length")
        print(detokenize(words))
    return 0


@user_errors
def evaluate_main(argv: list[str] | None = None) -> int:
    config = _parse(EvaluateConfig, argv, "evaluate")
    ckpt, model = _trained(config.model)
    sentences = corpus.load_sentences(config.data, config.format, ckpt.settings.model.lowercase)
    score = lm.score_sentences(model, sentences, ckpt.vocab, ckpt.settings, config.batch_size)
    words = [w for s in sentences for w in s]
    unknown = sum(w not in ckpt.vocab for w in words) / max(1, len(words))
    print(f"{config.data}: perplexity {score.perplexity:.2f} over {score.n_tokens:,.0f} "
          f"predicted tokens (cross-entropy {score.loss:.4f} nats per token); {unknown:.1%} of "
          "its words are outside the model's vocabulary and scored as its unknown token")
    return 0


@user_errors
def fill_blank_main(argv: list[str] | None = None) -> int:
    config = _parse(FillBlankConfig, argv, "fill-blank")
    ckpt, model = _trained(config.model)
    vocab = ckpt.vocab
    words = tokenize_words(config.text, lowercase=ckpt.settings.model.lowercase)
    if BLANK not in words:
        raise UserError(f"write the blank {BLANK} as a word of its own, with spaces around it")
    start, end = sentence_markers(vocab)
    ids = np.asarray([start, *map(vocab.id, words), end], dtype=np.int32)
    blank = words.index(BLANK) + 1  # position of the missing word in ids
    if isinstance(model, LMEngine):
        x, y = ids[:-1, None], ids[1:, None]  # (T, 1); y[blank-1] is the blank, never read
        log_p, _ = model.log_probs(x, y, np.ones(x.shape, np.float32), model.initial_state(1))
        probs = np.exp(log_p[blank - 1, 0].astype(np.float64))
    else:
        probs = lm.next_word_probs(model)(ids[:blank])
    if not (isinstance(model, LMEngine) and model.config.bidirectional):
        print("note: a left-to-right model sees only the words before the blank",
              file=sys.stderr)
    probs[[vocab.unknown_id, start, end]] = 0.0  # candidates are words
    for i in np.argsort(-probs, kind="stable")[:config.top_k]:
        print(f"{vocab.words[i]:>20s}  {probs[i]:.4f}")
    return 0


@user_errors
def train_classifier_main(argv: list[str] | None = None) -> int:
    config, resumed = train_config(argv, ClassifyConfig, "train-classifier")
    if config.data.cross_validate:
        return _cross_validate(config)
    _check_outputs(config)
    return _train_classifier(config, resumed)


def _cross_validate(config: ClassifyConfig) -> int:
    """Train and test once per fold, then the mean and spread of the folds' test scores."""
    if backends.processes()[1] > 1:
        raise SettingError("cross_validate", "runs in one process (it reads each fold's "
                           "checkpoint back): train the folds one by one with --fold K")
    runs = classify.fold_runs(config)
    for run in [config, *runs]:  # the summary log is config's
        _check_outputs(run)
    scores = []
    for run in runs:
        print(f"--- cross-validation: fold {run.data.fold} of {len(runs)} is the test set ---")
        state = _finished_fold(run)
        if state is None:
            code = _train_classifier(run, None)
            if code:
                print("cross-validation stopped: the same command continues it, keeping the "
                      "finished folds", file=sys.stderr)
                return code
            state = load_checkpoint(run.train.model_out, config.task).state
        scores.append([state["test_accuracy"], state["test_macro_f1"]])
    accuracy, f1 = np.array(scores).T
    print(f"{len(runs)}-fold cross-validation: test accuracy {100 * accuracy.mean():.2f}% "
          f"(standard deviation {100 * accuracy.std(ddof=1):.2f}), macro F1 "
          f"{100 * f1.mean():.2f} ({100 * f1.std(ddof=1):.2f}); models in "
          f"{Path(runs[0].train.model_out).parent}")
    if config.train.log_json:
        write_json(config.train.log_json, {"settings": config.to_dict(),
                                           "folds": [run.train.model_out for run in runs],
                                           "test_accuracy": accuracy.tolist(),
                                           "test_macro_f1": f1.tolist()})
    return 0


def _finished_fold(run: ClassifyConfig) -> dict | None:
    """The state of the fold's checkpoint when it already holds the test scores of a run with
    these very settings (a cross-validation run again after an interruption); else None."""
    path = Path(run.train.model_out)
    if not (path.is_file() and zipfile.is_zipfile(path)):
        return None
    ckpt = load_checkpoint(path, run.task)
    if _run_settings(ckpt.settings) != _run_settings(run) or "test_accuracy" not in ckpt.state:
        return None
    print(f"kept: {path} holds this fold's finished run")
    return ckpt.state


def _run_settings(config: RunConfig) -> dict:
    """What makes two runs the same run: their settings but where they computed."""
    settings = config.to_dict()
    settings["train"] = {k: v for k, v in settings["train"].items()
                         if k not in PER_RUN_SETTINGS}
    return settings


def _train_classifier(config: ClassifyConfig, resumed: Checkpoint | None) -> int:
    classify.check_model(config)
    splits = classify.load_data(config)
    backends.limit_blas_threads(config.train.blas_threads)
    task = classify.make_task(config, splits, resumed)
    majority = classify.majority_accuracy(splits)
    print(f"data: {splits.source}\n  {len(splits.train):,} training"
          + (" phrases" if config.data.phrases else "") + f", {len(splits.dev):,} dev "
          f"({splits.dev_source})" + (f", {len(splits.test):,} test" if splits.test else "")
          + f" sentences; {len(splits.labels)} classes: {', '.join(splits.labels.labels)}"
          + (f"; {splits.skipped} empty lines skipped" if splits.skipped else "")
          + f"\nmodel: {classify.describe(task.engine)}, vocabulary {len(task.vocab):,}"
          + (" BPE pieces" if task.subwords else "") + f", {task.engine.n_params():,} parameters\n"
          + (f"embeddings: {task.pretrained.describe()}\n" if task.pretrained else "")
          + f"dev accuracy of always answering the most frequent class: {100 * majority:.2f}%")
    run_log = {"parameters": task.engine.n_params(), "vocab_size": len(task.vocab),
               "labels": list(splits.labels.labels), "majority_dev_accuracy": majority}
    if task.pretrained:
        run_log["embeddings_found"] = len(task.pretrained.ids)
    return run_trainer(config, task, classify.trainer_options(config), resumed, run_log,
                       f"majority class {100 * majority:.2f}%")


@user_errors
def classify_main(argv: list[str] | None = None) -> int:
    config = _parse(ClassifyTextConfig, argv, "classify")
    ckpt = load_checkpoint(config.model, ClassifyConfig.task)
    model = classify.Predictor(ckpt)
    lines = (classify.read_sentences(config.file) if config.file
             else [line for line in sys.stdin.read().splitlines() if line.strip()])
    for line in lines:
        explained = model.explain(line) if config.explain else None
        probs = explained.probs if explained else model(line)
        best = np.argsort(-probs, kind="stable")[:config.top_k]
        print("\t".join(f"{ckpt.labels[i]}\t{probs[i]:.4f}" for i in best))
        if explained:  # indented, so that grep -v '^  ' keeps only the label lines
            for word, drop in zip(explained.words, explained.drops):
                print(f"  {word}\t{drop:+.4f}")
    return 0


def _prepared(config: RunConfig, resumed: Checkpoint | None, module: Any) -> tuple[Any, Any]:
    """A task module's data and task (translation, speech), after checking what would stop
    the run later: its outputs, then its network, before any data is read."""
    _check_outputs(config)
    module.check_model(config)
    data = module.load_data(config)
    backends.limit_blas_threads(config.train.blas_threads)
    return data, module.make_task(config, data, resumed)


@user_errors
def train_mt_main(argv: list[str] | None = None) -> int:
    config, resumed = train_config(argv, MTConfig, "train-mt")
    data, task = _prepared(config, resumed, mt)
    train_pairs, kept = len(data.train[0]), len(task.batches["train"].src)
    print(f"data: {data.source}\n  {train_pairs:,} training pairs ({kept:,} kept: both sides "
          f"1 to {config.data.max_length} subwords), {len(data.valid[0]):,} validation"
          + (f", {len(data.test[0]):,} test" if data.test else "")
          + f"; {task.n_train_tokens:,} target tokens per epoch (subwords and sentence ends)"
          f"\nmodel: {mt.describe(task.engine, task.subwords)}, "
          f"{task.engine.n_params():,} parameters\n"
          "loss = cross-entropy per target token in nats; BLEU = sacreBLEU on the validation "
          f"set, {'greedy' if config.train.valid_beam == 1 else f'beam {config.train.valid_beam}'}")
    run_log = {"parameters": task.engine.n_params(), "train_pairs": kept,
               "vocab_sizes": [len(task.subwords[0]), len(task.subwords[1])],
               "train_tokens": task.n_train_tokens}
    return run_trainer(config, task, mt.trainer_options(config), resumed, run_log,
                       f"best by validation {config.train.monitor}",
                       lambda: _test_bleu(config, task))


def _test_bleu(config: MTConfig, task: mt.MTTask) -> dict[str, Any]:
    """BLEU of the kept model's test translations, greedy and with ``--beam``."""
    source, refs = task.references["test"]
    results = {}
    for beam in sorted({1, config.train.beam}):
        out = task.translator.translate(source, beam=beam,
                                        length_penalty=config.train.length_penalty)
        report = mt.bleu_report([o[0].text for o in out], refs)
        name = "greedy" if beam == 1 else f"beam {beam}"
        print(f"test BLEU, {name}: {report['bleu']:.2f} cased, {report['bleu_lowercase']:.2f} "
              f"lowercased ({report['bleu_signature']})")
        results[f"test_beam{beam}"] = report
    return results


@user_errors
def translate_main(argv: list[str] | None = None) -> int:
    config = _parse(TranslateConfig, argv, "translate")
    lines = read_lines(config.file) if config.file else split_lines(sys.stdin.read())
    refs = read_lines(config.reference) if config.reference else None
    if refs is not None and len(refs) != len(lines):
        raise UserError(f"{config.reference} has {len(refs):,} lines but the input has "
                        f"{len(lines):,}: give one reference per input line")
    first = next((i for i, line in enumerate(lines) if line), None)
    if config.show_attention and first is None:
        raise UserError("--show-attention needs a sentence: the input has none")
    translator = mt.Translator.from_checkpoint(load_checkpoint(config.model, MTConfig.task))
    out = translator.translate(lines, beam=config.beam, nbest=config.nbest,
                               length_penalty=config.length_penalty, max_ratio=config.max_ratio,
                               batch_size=config.batch_size, refuse_long=config.refuse_long)
    for i, hyps in enumerate(out):
        for h in hyps:
            print(h.text if config.nbest == 1 else f"{i}\t{h.log_prob:.4f}\t{h.text}")
    if refs is not None:
        report = mt.bleu_report([h[0].text for h in out], refs)
        print(f"BLEU {report['bleu']:.2f} cased ({report['bleu_signature']}), "
              f"{report['bleu_lowercase']:.2f} lowercased", file=sys.stderr)
    if config.show_attention:
        mt.plot_attention(*translator.attention(lines[first], out[first][0]),
                          config.show_attention)
    return 0


@user_errors
def train_asr_main(argv: list[str] | None = None) -> int:
    config, resumed = train_config(argv, AsrConfig, "train-asr")
    data, task = _prepared(config, resumed, asr)
    d, n_held = config.data, {k: len(v) for k, v in data.held_out.items()}
    print(f"data: {data.source}\n  {len(data.clips['train']):,} training recordings and "
          f"{d.strings_per_epoch:,} fresh strings of 2 to {d.max_digits} digits per epoch; "
          f"validation {n_held['valid']:,} and test {n_held['test']:,} utterances (every "
          f"recording of the split, and {d.eval_strings} strings of each length 3 to "
          f"{d.max_digits})\nmodel: {asr.describe(task.engine, config)}, "
          f"{task.engine.n_params():,} parameters\n"
          "loss = CTC cost per utterance in nats; error rate = digit error rate (edit "
          "distance over digit words), greedy decoding")
    run_log = {"parameters": task.engine.n_params(),
               "train_recordings": len(data.clips["train"]), "held_out": n_held}
    return run_trainer(config, task, asr.trainer_options(config), resumed, run_log,
                       "best by validation digit error rate", lambda: _test_asr(config, task))


def _test_asr(config: AsrConfig, task: asr.AsrTask) -> dict[str, Any]:
    """The kept model's test transcriptions, greedy and with ``--beam``, by kind."""
    results = {}
    for beam in sorted({1, config.train.beam}):
        r = asr.test_report(task, beam)
        lengths = [k.split("_")[0] for k in r if k.endswith("_digits_error_rate")]
        print(f"test, {'greedy' if beam == 1 else f'beam {beam}'}: isolated digits "
              f"{100 * r['isolated_accuracy']:.2f}% correct; strings: digit error rate "
              f"{100 * r['strings_error_rate']:.2f}%, "
              f"{100 * r['strings_accuracy']:.2f}% exact (by length: " + ", ".join(
                  f"{n}: {100 * r[f'{n}_digits_error_rate']:.2f}%" for n in lengths) + ")")
        results[f"test_beam{beam}"] = r
    return results


@user_errors
def transcribe_main(argv: list[str] | None = None) -> int:
    config = _parse(TranscribeConfig, argv, "transcribe")
    paths = []
    for name in config.files:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav")
            if not found:
                raise UserError(f"{path} holds no .wav file: give WAV files or a folder of "
                                "them")
            paths += found
        elif path.exists():
            paths.append(path)
        else:
            raise UserError(f"{path} not found: give WAV files or a folder of them")
    transcriber = asr.Transcriber(load_checkpoint(config.model, AsrConfig.task))
    if heard := transcriber.adapt(paths):
        print(f"speaker normalisation: the voice's statistics from {heard} files", file=sys.stderr)
    failed, first = 0, None
    for path in paths:
        try:
            frames, log_probs = transcriber.posteriors(path)
        except UserError as error:  # one bad file: said, and the others still transcribed
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        text = asr.transcript(log_probs, config.beam)
        print(f"{path}\t{text}", flush=True)
        if first is None and len(frames):
            first = (frames, log_probs, f"{path.name}: {text}")
    if config.plot:
        if first is None:
            raise UserError("--plot needs a file with sound: every file failed or is silent")
        asr.plot_posteriors(*first[:2], transcriber.engine.config.stride, first[2], config.plot)
    return 1 if failed else 0


MAINS = {"train": train_main, "generate": generate_main, "evaluate": evaluate_main,
         "fill-blank": fill_blank_main, "train-classifier": train_classifier_main,
         "classify": classify_main, "train-mt": train_mt_main, "translate": translate_main,
         "train-asr": train_asr_main, "transcribe": transcribe_main}


def main(argv: list[str] | None = None) -> int:
    """``rnn-theano COMMAND [flags]``: the console entry point."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rnn-theano {" + ",".join(COMMANDS) + "} [flags]\n\ncommands:\n"
              + "\n".join(f"  {name:<11} {text}" for name, text in COMMANDS.items())
              + "\n\nrnn-theano COMMAND --help lists a command's flags.",
              file=sys.stdout if argv else sys.stderr)  # no command: a usage error
        return 0 if argv else 2
    if argv[0] not in MAINS:
        print(f"error: unknown command {argv[0]!r}: use one of {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    return MAINS[argv[0]](argv[1:])
