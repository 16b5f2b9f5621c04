"""The trainer: one loop for every model.

It drives a ``Trainable`` (a model with its data: ``tasks.lm`` and ``tasks.classify`` build
them) through epochs:
each epoch runs the task's update steps with a progress bar, then scores the held-out data,
records one row of history, adapts the learning rate by its ``Schedule``, saves a checkpoint
and decides whether to go on. Guards: a NaN or infinite training loss stops at once, the
checkpoint untouched; Ctrl-C (through ``interrupt.StopFlag``) stops between two steps and
leaves a checkpoint; ``patience`` evaluations without a better held-out ``monitor`` (loss,
or a classifier's accuracy) stop early. A run resumes from the ``state`` its checkpoint holds.

History rows (one schema for every model): ``epoch``, ``learning_rate`` (the rate the epoch
trained with), ``train_loss``/``train_ppl``, ``valid_loss``/``valid_ppl``, optional
``test_loss``/``test_ppl``, ``*_accuracy`` for a classifier, ``valid_bleu`` for a
translation model, ``tokens_per_second`` (tokens or
sentences, the task's ``unit``; 0 for the untrained row) and ``seconds`` since the run
started. Losses are mean cross-entropy in nats per predicted token, or per classified
sentence (``metrics``).
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from tqdm import tqdm

from .errors import UserError
from .interrupt import StopFlag
from .metrics import Score


class Step(NamedTuple):
    """One update: the summed cross-entropy of its batch, the tokens (or sentences) it
    predicted, and for a classifier how many it got right."""

    cost: float
    n_tokens: float
    correct: float | None = None


class Trainable(Protocol):
    """What the trainer drives: a model and its data.

    ``evaluate(split)`` scores ``"train"``, ``"valid"`` or ``"test"`` without changing the
    model; ``snapshot``/``restore`` copy what a checkpoint holds (parameters, optimizer state,
    random generators) so the trainer can go back to the best epoch.
    """

    n_train_tokens: int
    has_test: bool
    unit: str  # what n_train_tokens counts: "tokens", or "sentences" for a classifier

    def train_steps(self, epoch: int) -> Iterator[Step]: ...
    def evaluate(self, split: str) -> Score: ...
    def set_learning_rate(self, lr: float) -> None: ...
    def snapshot(self) -> Any: ...
    def restore(self, snapshot: Any) -> None: ...
    def start_averaging(self) -> None: ...
    def averaged(self) -> contextlib.AbstractContextManager: ...


@dataclass(frozen=True)
class Schedule:
    """How the learning rate changes after each evaluation.

    * ``tutorial``: halved when the training loss rose since the previous evaluation (the
      tutorial's rule; the training loss is then scored afresh at each evaluation, and the
      untrained model is scored first, as the first point of comparison);
    * ``plateau``: halved when the held-out loss is not the best so far;
    * ``decay``: multiplied by ``factor`` after each epoch from ``after`` on.
    """

    rule: str = "plateau"
    factor: float = 0.5
    after: int = 0

    @property
    def watches_training_loss(self) -> bool:
        return self.rule == "tutorial"

    def next_lr(self, lr: float, epoch: int, history: list[dict], improved: bool,
                log: Callable[[str], None]) -> float:
        if self.rule == "decay":
            return lr * self.factor if epoch >= self.after else lr
        if self.rule == "tutorial":
            if len(history) > 1 and history[-1]["train_loss"] > history[-2]["train_loss"]:
                log(f"training loss rose ({history[-2]['train_loss']:.4f} -> "
                    f"{history[-1]['train_loss']:.4f}): learning rate halved to {lr * 0.5:g}")
                return lr * 0.5
            return lr
        return lr if improved else lr * 0.5


@dataclass(frozen=True)
class TrainerOptions:
    """``keep_best``: the checkpoint holds the best model by the held-out ``monitor`` (``loss``;
    for a classifier, ``accuracy``; for a translation model, ``bleu``; for a recogniser,
    ``error_rate``), else the last one evaluated, as the tutorial saves
    it; ``eval_every``: epochs between evaluations."""

    epochs: int
    lr: float
    schedule: Schedule = Schedule()
    keep_best: bool = True
    patience: int = 0
    eval_every: int = 1
    monitor: str = "loss"
    test_each_evaluation: bool = True  # False: the test set is scored once, after training
    asgd: int = 0  # NT-ASGD's non-monotone interval (``averaging_due``); 0: no averaging

    def criterion(self, score: Score) -> float:
        """What the best model minimises."""
        if self.monitor == "bleu":
            return -score.bleu
        if self.monitor == "error_rate":
            return score.error_rate
        return -score.accuracy if self.monitor == "accuracy" else score.loss


@dataclass
class _Run:
    """The trainer's bookkeeping: what a checkpoint's ``state`` holds, and the best snapshot."""

    epoch: int
    lr: float
    history: list[dict]
    best: float
    best_snapshot: Any = None
    since_best: int = 0
    started: float = 0.0
    saved: bool = False
    last: float = math.inf  # the criterion of the last evaluation

    def state(self, **extra: Any) -> dict[str, Any]:
        return {"epoch": self.epoch, "learning_rate": self.lr, "history": self.history,
                "best": self.best, "since_best": self.since_best, **extra}


def train(task: Trainable, options: TrainerOptions, *, state: dict[str, Any] | None,
          save: Callable[[dict[str, Any]], None], stop: StopFlag | None = None,
          log: Callable[[str], None] = print,
          on_epoch: Callable[[list[dict]], None] | None = None) -> dict[str, Any]:
    """Train ``task`` for ``options.epochs`` more epochs; returns the final state.

    ``save(state)`` is called with the task holding the parameters to keep. On return the task
    holds the best parameters (``keep_best``) or the last ones. ``on_epoch(history)`` sees the
    rows after every evaluation (a log file).
    """
    state = dict(state or {})
    run = _Run(int(state.get("epoch", 0)), float(state.get("learning_rate", options.lr)),
               list(state.get("history", [])),
               float(state.get("best", state.get("best_valid_loss", math.inf))),
               since_best=int(state.get("since_best", 0)), started=time.perf_counter())
    if run.history:
        run.best_snapshot = task.snapshot()
    try:
        if not run.history and options.schedule.watches_training_loss:
            _evaluate(task, run, None, 0.0, log, options)  # untrained: its loss is near ln C
        _epochs(task, options, run, save, stop, log, on_epoch)
    except KeyboardInterrupt:
        log(f"interrupted after {run.epoch} complete epoch(s): "
            + ("the checkpoint keeps the best model so far" if options.keep_best
               else "saving the model as it is"))
        _finish(task, options, run, save, interrupted=True)
        return run.state(interrupted=True)
    _finish(task, options, run, save)
    return run.state()


def _epochs(task: Trainable, options: TrainerOptions, run: _Run,
            save: Callable[[dict[str, Any]], None], stop: StopFlag | None,
            log: Callable[[str], None], on_epoch: Callable[[list[dict]], None] | None) -> None:
    last = run.epoch + options.epochs
    for epoch in range(run.epoch + 1, last + 1):
        task.set_learning_rate(run.lr)
        running, tps = _train_epoch(task, epoch, stop)
        run.epoch = epoch
        if epoch % options.eval_every and epoch != last:
            continue
        improved = _evaluate(task, run, running, tps, log, options)
        if options.asgd and averaging_due(run.history, options.asgd):
            task.start_averaging()
            run.history[-1]["averaging"] = True
            log(f"held-out loss worse than the best before the last {options.asgd} "
                "evaluation(s): averaging the parameters from the next step on (NT-ASGD)")
        if on_epoch:
            on_epoch(run.history)
        run.lr = options.schedule.next_lr(run.lr, epoch, run.history, improved, log)
        if improved:
            run.best, run.since_best = run.last, 0
            run.best_snapshot = task.snapshot()
        else:
            run.since_best += 1
        if improved or not options.keep_best:
            save(run.state())  # as soon as it is known: a crash later loses nothing
            run.saved = True
        if options.patience and run.since_best >= options.patience:
            log(f"no better held-out {options.monitor} for {options.patience} evaluations: "
                "stopping early")
            break


def _train_epoch(task: Trainable, epoch: int, stop: StopFlag | None) -> tuple[Score, float]:
    """One pass of updates; returns the running training score and tokens per second.

    The speed leaves out the first step, which pays for compilation on a first run.
    """
    total, tokens, skipped, start, correct = 0.0, 0.0, 0.0, 0.0, None
    with tqdm(total=task.n_train_tokens, unit=task.unit.rstrip("s"), unit_scale=True,
              desc=f"epoch {epoch}",
              file=sys.stderr, dynamic_ncols=True, mininterval=0.5) as bar:
        for step in task.train_steps(epoch):
            if not math.isfinite(step.cost):
                raise UserError(f"the training loss became NaN or infinite in epoch {epoch}: "
                                "stopped, the checkpoint is kept; lower --learning-rate or set "
                                "--clip-norm")
            if not start:
                start, skipped = time.perf_counter(), step.n_tokens
            total, tokens = total + step.cost, tokens + step.n_tokens
            if step.correct is not None:
                correct = (correct or 0.0) + step.correct
            bar.update(int(step.n_tokens))
            bar.set_postfix(loss=f"{total / tokens:.3f}", refresh=False)
            if stop:
                stop.check()
    seconds = time.perf_counter() - start
    return Score(total, tokens, correct), (tokens - skipped) / seconds if seconds > 0 else math.nan


def _evaluate(task: Trainable, run: _Run, running: Score | None, tps: float,
              log: Callable[[str], None], options: TrainerOptions) -> bool:
    """Score the model, append the history row, log it; returns whether it is the best."""
    fresh_train = options.schedule.watches_training_loss or running is None
    with task.averaged():  # the averages, once averaged SGD has started
        scores = {"train": task.evaluate("train") if fresh_train else running,
                  "valid": task.evaluate("valid")}
        if task.has_test and run.epoch > 0 and options.test_each_evaluation:
            scores["test"] = task.evaluate("test")
    row = {"epoch": run.epoch, "learning_rate": run.lr}
    for split, score in scores.items():
        row.update({f"{split}_loss": score.loss, f"{split}_ppl": score.perplexity})
        if score.accuracy is not None:
            row[f"{split}_accuracy"] = score.accuracy
        if score.macro_f1 is not None:
            row[f"{split}_macro_f1"] = score.macro_f1
        if score.bleu is not None:
            row[f"{split}_bleu"] = score.bleu
        if score.error_rate is not None:
            row[f"{split}_error_rate"] = score.error_rate
    row.update(tokens_per_second=tps, seconds=time.perf_counter() - run.started)
    run.history.append(row)
    run.last = options.criterion(scores["valid"])
    improved = run.last < run.best
    log(_describe(row, task.unit) + ("  (best)" if improved and run.epoch > 0 and options.keep_best
                          else ""))
    return improved


def averaging_due(history: list[dict], interval: int) -> bool:
    """NT-ASGD's trigger (Merity et al. 2017): averaging has not started, and the last
    held-out loss is worse than the best of those before the last ``interval``."""
    losses = [row["valid_loss"] for row in history]
    started = any(row.get("averaging") for row in history)
    return not started and len(losses) > interval and losses[-1] > min(losses[:-interval])


def _describe(row: dict, unit: str) -> str:
    """A row as one log line: perplexity for a language model, accuracy for a classifier."""
    def measure(split: str) -> str:
        if f"{split}_accuracy" in row:
            return f"accuracy {100 * row[f'{split}_accuracy']:6.2f}%"
        return f"perplexity {row[f'{split}_ppl']:8.2f}"
    tps = row["tokens_per_second"]
    bleu = f"  BLEU {row['valid_bleu']:.2f}" if "valid_bleu" in row else ""
    if "valid_error_rate" in row:
        bleu = f"  error rate {100 * row['valid_error_rate']:.2f}%"
    return (f"epoch {row['epoch']:3d}  train loss {row['train_loss']:.4f}  held-out loss "
            f"{row['valid_loss']:.4f}  {measure('valid')}{bleu}"
            + (f"  test {measure('test').split(' ', 1)[1]}" if "test_loss" in row else "")
            + f"  lr {row['learning_rate']:g}" + (f"  {tps:,.0f} {unit}/s" if tps else ""))


def _finish(task: Trainable, options: TrainerOptions, run: _Run,
            save: Callable[[dict[str, Any]], None], **extra: Any) -> None:
    """Leave the task holding the parameters to keep, and a checkpoint that says so.

    With ``keep_best`` that is the best snapshot, saved again with the state the run ended in
    (so the checkpoint's epoch count, learning rate and history follow the run, and a resumed
    run goes on from there); without, the last one, saved at its evaluation, or now if the run
    was stopped between two.
    """
    if options.keep_best and run.best_snapshot is not None:
        task.restore(run.best_snapshot)
    if options.keep_best or extra.get("interrupted") or not run.saved:
        save(run.state(**extra))
