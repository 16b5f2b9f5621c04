"""The engine's training loop: minibatches, a learning-rate schedule, early stopping.

Every epoch trains on all batches, then scores the held-out data with the standard
perplexity (exp of the mean cross-entropy over every predicted token; padding excluded, one
``<eos>`` per line included in stream mode). The learning rate either follows a schedule
(``lr_decay < 1``: multiplied by ``lr_decay`` each epoch after ``decay_after``) or the
tutorial's rule on held-out loss (halved when it rises). The checkpoint always holds the best
model by held-out loss; ``patience`` epochs without improvement stop training. A NaN or
infinite loss stops training at once, the best checkpoint untouched.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

from tqdm import tqdm

from .batching import SentenceBatches, StreamBatches
from .engine import LMEngine, Score, StepResult, run_batches
from .errors import UserError
from .interrupt import StopFlag

Batches = SentenceBatches | StreamBatches


def evaluate(engine: LMEngine, batches: Batches, stream: bool) -> Score:
    """Summed cross-entropy and token count of ``batches``, state carried in stream mode."""
    return run_batches(engine.eval_step, batches, carry_state=stream,
                       initial_state=engine.initial_state(batches.batch_size))


def train_epoch(engine: LMEngine, batches: Batches, epoch: int, stream: bool,
                stop: StopFlag | None = None) -> tuple[Score, float]:
    """One pass of updates; returns the training score and trained tokens per second.

    The speed leaves out the first batch, which pays for compilation on a first run.
    """
    with tqdm(total=batches.n_tokens, unit="tok", unit_scale=True, desc=f"epoch {epoch}",
              file=sys.stderr, dynamic_ncols=True, mininterval=0.5) as bar:
        running = [0.0, 0.0]
        timer = {"start": 0.0, "skipped": 0.0}

        def progress(result: StepResult) -> None:
            if stop:
                stop.check()
            if not math.isfinite(result.cost):
                raise FloatingPointError
            if not timer["start"]:
                timer["start"], timer["skipped"] = time.perf_counter(), result.n_tokens
            running[0] += result.cost
            running[1] += result.n_tokens
            bar.update(int(result.n_tokens))
            bar.set_postfix(ppl=f"{math.exp(min(running[0] / running[1], 50)):.1f}",
                            refresh=False)

        score = run_batches(engine.train_step, batches.epoch(epoch), carry_state=stream,
                            initial_state=engine.initial_state(batches.batch_size),
                            callback=progress)
    seconds = time.perf_counter() - timer["start"]
    return score, (score.n_tokens - timer["skipped"]) / seconds if seconds > 0 else math.nan


def train_engine(engine: LMEngine, train: Batches, valid: Batches, test: Batches | None = None,
                 *, stream: bool,
                 epochs: int, lr_decay: float, decay_after: int, patience: int,
                 state: dict[str, Any] | None, save: Callable[[dict[str, Any]], None],
                 stop: StopFlag | None = None,
                 log: Callable[[str], None] = print,
                 on_epoch: Callable[[list[dict[str, Any]]], None] | None = None
                 ) -> dict[str, Any]:
    """Train for ``epochs`` epochs (continuing ``state``); returns the final state.

    ``save(state)`` is called whenever the held-out loss improves, with the engine holding
    the improved parameters. On return the engine holds the best parameters seen. ``test``,
    if given, is scored every epoch for the log only; it never steers training.
    ``on_epoch(history)`` is called after every epoch with the rows so far.
    """
    state = dict(state or {})
    history: list[dict[str, Any]] = list(state.get("history", []))
    first = int(state.get("epoch", 0))
    best = float(state.get("best_valid_loss", math.inf))
    best_params = engine.get_params() if history else None
    best_optimizer = engine.get_optimizer_state()
    lr = float(state.get("learning_rate", engine.learning_rate.get_value()))
    since_best, saved = 0, False
    started = time.perf_counter()
    epoch = first
    try:
        for epoch in range(first + 1, first + epochs + 1):
            engine.set_learning_rate(lr)
            try:
                train_score, tps = train_epoch(engine, train, epoch, stream, stop)
            except FloatingPointError:
                raise UserError(f"the training loss became NaN or infinite in epoch {epoch}: "
                                "stopped, the best checkpoint is kept; lower --learning-rate or "
                                "set --clip-norm") from None
            valid_score = evaluate(engine, valid, stream)
            row = {"epoch": epoch, "learning_rate": lr, "train_loss": train_score.loss,
                   "train_ppl": train_score.perplexity, "valid_loss": valid_score.loss,
                   "valid_ppl": valid_score.perplexity, "tokens_per_second": tps,
                   "seconds": time.perf_counter() - started}
            if test is not None:
                test_score = evaluate(engine, test, stream)
                row.update(test_loss=test_score.loss, test_ppl=test_score.perplexity)
            history.append(row)
            if on_epoch:
                on_epoch(history)
            improved = valid_score.loss < best
            log(f"epoch {epoch:3d}  train ppl {train_score.perplexity:8.2f}  held-out ppl "
                f"{valid_score.perplexity:8.2f}"
                + (f"  test ppl {row['test_ppl']:8.2f}" if test is not None else "")
                + f"  lr {lr:g}  {tps:,.0f} tokens/s"
                + ("  (best, saved)" if improved else ""))
            if lr_decay < 1.0:
                if epoch >= decay_after:
                    lr *= lr_decay
            elif not improved:
                lr *= 0.5
            if improved:
                best, best_params, since_best = valid_score.loss, engine.get_params(), 0
                best_optimizer = engine.get_optimizer_state()
                save({"epoch": epoch, "learning_rate": lr, "history": history,
                      "best_valid_loss": best})
                saved = True
            else:
                since_best += 1
                if patience and since_best >= patience:
                    log(f"no better held-out loss for {patience} epochs: stopping early")
                    break
    except KeyboardInterrupt:
        log(f"interrupted in epoch {epoch}: the checkpoint keeps the best model so far")
        state["interrupted"] = True
    if best_params is not None:  # the engine ends holding the best parameters seen
        for name, value in best_params.items():
            engine.params[name].set_value(value)
        engine.set_optimizer_state(best_optimizer)  # and the optimizer state that went with them
    state.update(epoch=epoch, learning_rate=lr, history=history, best_valid_loss=best)
    if not saved:  # nothing improved (or no epoch ended): still leave a checkpoint behind
        save(state)
    return state
