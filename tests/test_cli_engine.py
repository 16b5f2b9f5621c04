"""The engine through the command line: sentence and stream training, evaluate, generate,
fill in the blank, and the flag combinations that make no sense."""

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import evaluate_main, fill_blank_main, generate_main, train_main, user_errors
from rnn_theano.config import backend
from rnn_theano.curves import main as curves_main
from rnn_theano.tasks.lm import model_from_checkpoint
from test_cli import check_user_error

plot_curves = user_errors(curves_main)

SMALL_LSTM = ["--cell", "lstm", "--hidden-dim", "16", "--batch-size", "8", "--vocab-size", "300",
              "--optimizer", "adam", "--learning-rate", "0.01"]


@pytest.fixture(scope="module")
def reddit(shared_data) -> Path:
    return shared_data / "reddit" / "reddit-comments-2015-08-sample.csv"


@pytest.fixture(scope="module")
def sentence_model(reddit, tmp_path_factory, shared_data):
    out = tmp_path_factory.mktemp("engine") / "lstm.npz"
    with pytest.warns(UserWarning, match="cut off"):
        assert train_main(["--data", str(reddit), *SMALL_LSTM, "--epochs", "2",
                           "--test", str(reddit), "--model-out", str(out)]) == 0
    return out


def test_sentence_mode_checkpoint_records_the_architecture(sentence_model):
    ckpt = load_checkpoint(sentence_model)
    assert ckpt.config["family"] == "engine"
    assert ckpt.config["lm"]["cell"] == "lstm" and ckpt.config["lm"]["hidden_dim"] == 16
    assert ckpt.params["l0_Wh"].shape == (16, 4 * 16)  # fused gates i, f, g, o
    assert ckpt.config["lm"]["forget_bias"] == 1.0 and ckpt.config["lm"]["bias"]
    history = ckpt.state["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[-1]["valid_ppl"] < history[0]["train_ppl"]
    assert ckpt.state["best_valid_loss"] == min(row["valid_loss"] for row in history)
    assert all(math.isfinite(row["test_ppl"]) for row in history)  # --test: scored every epoch


def test_evaluate_agrees_with_the_test_score_of_training(sentence_model, reddit, capsys):
    """evaluate.py on the --test file gives the perplexity training reported for it."""
    with pytest.warns(UserWarning):
        assert evaluate_main(["--model", str(sentence_model), "--data", str(reddit),
                              "--batch-size", "8"]) == 0
    reported = float(re.search(r"perplexity ([\d.]+)", capsys.readouterr().out).group(1))
    assert reported == pytest.approx(load_checkpoint(sentence_model).state["test_ppl"], rel=1e-3)


def test_generate_works_with_an_engine_model(sentence_model, capsys):
    assert generate_main(["--model", str(sentence_model), "--num-sentences", "2",
                          "--min-length", "2", "--seed", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "UNKNOWN_TOKEN" not in " ".join(lines)


def test_stream_mode_trains_on_ptb_with_eos_vocabulary(shared_data, tmp_path, capsys):
    out, log = tmp_path / "gru.npz", tmp_path / "gru.json"
    ptb = shared_data / "ptb"
    assert train_main(["--data", str(ptb / "ptb.valid.txt"), "--valid", str(ptb / "ptb.test.txt"),
                       "--max-sentences", "800", "--stream", "--cell", "gru", "--layers", "2",
                       "--hidden-dim", "16", "--batch-size", "10", "--bptt-len", "10",
                       "--vocab-size", "2000", "--clip-norm", "0.25", "--learning-rate", "5",
                       "--lr-decay", "0.5", "--decay-after", "1", "--epochs", "2",
                       "--model-out", str(out), "--log-json", str(log)]) == 0
    ckpt = load_checkpoint(out)
    assert "<eos>" in ckpt.vocab and "<unk>" == ckpt.vocab.words[0]
    assert "SENTENCE_START" not in ckpt.vocab and "N" in ckpt.vocab  # case kept in stream mode
    assert [row["learning_rate"] for row in ckpt.state["history"]] == [5.0, 2.5]
    run = json.loads(log.read_text())  # --log-json: every epoch, the settings, the outcome
    assert run["history"] == ckpt.state["history"]
    assert run["settings"]["cell"] == "gru" and run["vocab_size"] == len(ckpt.vocab)
    assert run["parameters"] == sum(p.size for p in ckpt.params.values())
    assert run["best_valid_ppl"] == pytest.approx(min(r["valid_ppl"] for r in run["history"]))
    assert plot_curves(["--reference", "gru=120", str(log), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert generate_main(["--model", str(out), "--num-sentences", "1", "--min-length", "1"]) == 0
    assert capsys.readouterr().out.strip()


def right_context_corpus(path: Path) -> Path:
    """Sentences whose first word only the last one tells: 'alpha x x one', 'beta x x two'."""
    rng = np.random.default_rng(0)
    fillers = ["red", "green", "blue", "big", "small"]
    lines = []
    for _ in range(400):
        first, last = [("alpha", "one"), ("beta", "two")][rng.integers(2)]
        lines.append(" ".join([first, *rng.choice(fillers, 2), last]))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fill_blank_uses_the_right_context(tmp_path, capsys):
    data = right_context_corpus(tmp_path / "pairs.txt")
    model = tmp_path / "birnn.npz"
    assert train_main(["--data", str(data), "--format", "lines", "--cell", "gru",
                       "--bidirectional", "--hidden-dim", "16", "--batch-size", "16",
                       "--optimizer", "adam", "--learning-rate", "0.02", "--epochs", "6",
                       "--model-out", str(model)]) == 0
    capsys.readouterr()
    for last, expected in (("one", "alpha"), ("two", "beta")):
        assert fill_blank_main(["--model", str(model), "--top-k", "2",
                                f"___ red blue {last}"]) == 0
        first_line = capsys.readouterr().out.splitlines()[0].split()
        assert first_line[0] == expected and float(first_line[1]) > 0.8
    check_user_error(generate_main, ["--model", str(model)], capsys, "fill_blank")


def test_divergence_stops_with_a_clear_message_and_keeps_the_checkpoint(reddit, tmp_path, capsys):
    out = tmp_path / "diverged.npz"
    out.write_bytes(b"previous work")
    with pytest.warns(UserWarning):
        check_user_error(train_main, ["--data", str(reddit), *SMALL_LSTM[:-4],
                                      "--learning-rate", "1e38", "--model-out", str(out)],
                         capsys, "NaN or infinite", after_progress=True)
    assert out.read_bytes() == b"previous work"


@pytest.mark.parametrize("flags, needle", [
    (["--stream", "--bidirectional"], "--stream"),
    (["--cell", "lstm", "--activation", "relu"], "--activation"),
    (["--cell", "gru", "--bptt-truncate", "8"], "--bptt-truncate"),
    (["--tie-weights", "--embed-dim", "10", "--hidden-dim", "20"], "tied"),
    (["--dropout", "1.5", "--cell", "lstm"], "--dropout"),
    (["--lr-decay", "0"], "--lr-decay"),
    (["--layers", "0"], "--layers"),
    (["--batch-size", "0"], "--batch-size"),
    (["--optimizer", "lbfgs"], "--optimizer"),
    (["--softmax-classes", "1", "--cell", "gru"], "--softmax-classes"),
    (["--cell", "gru", "--identity-init"], "identity"),
])
def test_bad_engine_flags(flags, needle, tmp_path, capsys, reddit):
    check_user_error(train_main, ["--data", str(reddit), *flags,
                                  "--model-out", str(tmp_path / "m.npz")], capsys, needle)
    assert not (tmp_path / "m.npz").exists()


def hide_jax(monkeypatch) -> None:
    """From here on the test sees a Python without jax (without the [jax] extra)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else find_spec(name, *a))


def test_jax_mode_without_jax_names_the_install(tmp_path, capsys, reddit, monkeypatch):
    hide_jax(monkeypatch)
    check_user_error(train_main, ["--data", str(reddit), "--cell", "gru", "--mode", "JAX",
                                  "--model-out", str(tmp_path / "m.npz")], capsys, "[jax]")
    assert not (tmp_path / "m.npz").exists()


def test_the_engine_runs_under_jax_by_default_and_numba_without_it(sentence_model, monkeypatch):
    """--mode AUTO (the default): XLA for the engine when jax is installed (it is a test
    dependency), Numba without it, and Numba for the tutorial's model either way."""
    ckpt = load_checkpoint(sentence_model)
    assert ckpt.config["mode"] == "AUTO"  # resolved when loaded, so the file stays portable
    assert model_from_checkpoint(ckpt).mode == "JAX"
    assert backend("AUTO", engine=False) == "NUMBA" and backend("CVM", engine=True) == "CVM"
    hide_jax(monkeypatch)
    assert model_from_checkpoint(ckpt).mode == "NUMBA"
    # A file trained with --mode JAX (the Penn Treebank targets) loads too, under Numba.
    ckpt.config["mode"] = "JAX"
    assert model_from_checkpoint(ckpt).mode == "NUMBA"


def test_bad_evaluate_and_fill_blank_input(sentence_model, capsys):
    check_user_error(evaluate_main, ["--model", str(sentence_model)], capsys, "--data")
    check_user_error(fill_blank_main, ["--model", str(sentence_model), "no blank here"], capsys,
                     "___")
    check_user_error(fill_blank_main, ["--model", str(sentence_model), "two ___ ___"], capsys,
                     "exactly one")


def test_resume_keeps_the_engine_and_its_settings(sentence_model, reddit, tmp_path):
    out = tmp_path / "more.npz"
    with pytest.warns(UserWarning):
        assert train_main(["--data", str(reddit), "--resume", str(sentence_model),
                           "--model-out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.config["family"] == "engine" and ckpt.config["batch_size"] == 8
    assert ckpt.config["optimizer"] == "adam" and ckpt.state["epoch"] == 3
    assert len(ckpt.state["history"]) == 3


def test_plot_curves_refuses_what_is_not_a_training_log(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text('{"settings": {}, "history": []}')
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff\xfe not json")
    check_user_error(plot_curves, [str(tmp_path / "missing.json")], capsys, "no such file")
    check_user_error(plot_curves, [str(garbage)], capsys, "not a training log")
    check_user_error(plot_curves, [str(empty)], capsys, "no finished epoch")
    check_user_error(plot_curves, [str(empty), "--reference", "x=abc"], capsys, "NAME=PPL")


def test_class_softmax_trains_and_evaluates(shared_data, tmp_path, capsys):
    ptb = shared_data / "ptb"
    out = tmp_path / "classes.npz"
    assert train_main(["--data", str(ptb / "ptb.valid.txt"), "--valid", str(ptb / "ptb.test.txt"),
                       "--test", str(ptb / "ptb.test.txt"), "--max-sentences", "600", "--stream",
                       "--cell", "gru", "--hidden-dim", "16", "--batch-size", "10",
                       "--vocab-size", "500", "--softmax-classes", "22", "--clip-norm", "0.25",
                       "--learning-rate", "5", "--epochs", "2", "--model-out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.params["class_W"].shape == (16, 22) and ckpt.params["out_W"].shape == (16, 22 * 23)
    history = ckpt.state["history"]
    assert history[1]["valid_ppl"] < history[0]["valid_ppl"] < 500  # it learns
    capsys.readouterr()
    # Scoring the same stream in the same columns reproduces the training's test perplexity.
    assert evaluate_main(["--model", str(out), "--data", str(ptb / "ptb.test.txt"),
                          "--batch-size", "10"]) == 0
    reported = float(re.search(r"perplexity ([\d.]+)", capsys.readouterr().out).group(1))
    assert reported == pytest.approx(ckpt.state["test_ppl"], rel=1e-3)
    assert generate_main(["--model", str(out), "--num-sentences", "1", "--min-length", "1"]) == 0


def test_resume_continues_adam_exactly(shared_data, tmp_path):
    """Two epochs in one run == one epoch, then --resume for one more: Adam's moments and
    step count travel in the checkpoint."""
    ptb = shared_data / "ptb"
    common = ["--data", str(ptb / "ptb.valid.txt"), "--valid", str(ptb / "ptb.test.txt"),
              "--max-sentences", "300", "--stream", "--cell", "gru", "--hidden-dim", "16",
              "--batch-size", "8", "--bptt-len", "10", "--vocab-size", "400",
              "--optimizer", "adam", "--learning-rate", "0.01"]
    straight, half = tmp_path / "straight.npz", tmp_path / "half.npz"
    assert train_main([*common, "--epochs", "2", "--model-out", str(straight)]) == 0
    assert train_main([*common, "--epochs", "1", "--model-out", str(half)]) == 0
    saved = load_checkpoint(half).optimizer
    assert saved["adam_steps"] > 0 and "l0_Wh_m" in saved and "l0_Wh_v" in saved
    resumed = tmp_path / "resumed.npz"
    assert train_main([*common, "--resume", str(half), "--epochs", "1",
                       "--model-out", str(resumed)]) == 0
    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert [r["epoch"] for r in b.state["history"]] == [1, 2]
    for name, value in a.params.items():
        np.testing.assert_allclose(b.params[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    assert b.optimizer["adam_steps"] == a.optimizer["adam_steps"]


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through a private temporary file; the result is an ordinary file."""
    import os
    from rnn_theano.atomic import write_json
    write_json(tmp_path / "log.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "log.json").stat().st_mode & 0o777 == 0o666 & ~mask
