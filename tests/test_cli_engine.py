"""The engine through the command line: sentence and stream training, evaluate, generate,
fill in the blank, version-1 engine checkpoints, and the flag combinations that make no
sense."""

import dataclasses
import importlib.util
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from rnn_theano import backends, cli
from rnn_theano.atomic import write_json
from rnn_theano.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from rnn_theano.cli import evaluate_main, fill_blank_main, generate_main, train_main
from rnn_theano.config import DataSettings, ModelSettings, TrainConfig
from rnn_theano.data.corpus import load_sentences
from rnn_theano.tasks.lm import graph_config, model_from_checkpoint
from rnn_theano.tasks.lm_graph import LMConfig, init_lm_params
from test_cli import (ROW_FIELDS, check_refused, check_user_error, outputs,  # noqa: F401
                      precious, small_vocabulary, write_v1_checkpoint)

SMALL_LSTM = ["--arch", "lstm", "--hidden-dim", "16", "--batch-size", "8",
              "--vocab-size", "300", "--optimizer", "adam", "--learning-rate", "0.01"]


@pytest.fixture(scope="module")
def reddit(shared_data) -> Path:
    return shared_data / "reddit" / "reddit-comments-2015-08-sample.csv"


@pytest.fixture(scope="module")
def short_reddit(reddit, tmp_path_factory) -> tuple[Path, Path]:
    """The Reddit sample's sentences of up to 14 words, one per line: training and test text.

    Under JAX the engine compiles one function per batch shape; short sentences pad to two
    lengths (8 and 16), so the module compiles a few functions instead of dozens.
    """
    with pytest.warns(UserWarning, match="cut off"):
        sentences = [s for s in load_sentences(reddit) if len(s) <= 14]
    folder = tmp_path_factory.mktemp("reddit")
    train, test = folder / "train.txt", folder / "test.txt"
    train.write_text("".join(" ".join(s) + "\n" for s in sentences[:-150]))
    test.write_text("".join(" ".join(s) + "\n" for s in sentences[-150:]))
    return train, test


@pytest.fixture(scope="module")
def sentence_model(short_reddit, tmp_path_factory):
    train, test = short_reddit
    out = tmp_path_factory.mktemp("engine") / "lstm.npz"
    assert train_main(["--data", str(train), *SMALL_LSTM, "--epochs", "2",
                       "--test", str(test), "--model-out", str(out)]) == 0
    return out


def test_sentence_mode_checkpoint_records_the_architecture(sentence_model):
    ckpt = load_checkpoint(sentence_model)
    model = ckpt.settings.model
    assert model.arch == "lstm" and model.family == "engine" and model.hidden_dim == 16
    assert ckpt.params["l0_Wh"].shape == (16, 4 * 16)  # fused gates i, f, g, o
    assert model.forget_bias == 1.0 and not model.no_bias
    assert ckpt.settings.data.batch_size == 8 and ckpt.settings.train.optimizer == "adam"
    history = ckpt.state["history"]
    assert [row["epoch"] for row in history] == [1, 2]  # the engine has no untrained row
    assert all(set(row) == ROW_FIELDS | {"test_loss", "test_ppl"} for row in history)
    assert history[-1]["valid_ppl"] < history[0]["train_ppl"]
    assert ckpt.state["best"] == min(row["valid_loss"] for row in history)
    assert all(math.isfinite(row["test_ppl"]) for row in history)  # --test: scored every epoch
    assert ckpt.optimizer["adam_steps"] > 0


def test_evaluate_agrees_with_the_test_score_of_training(sentence_model, short_reddit, capsys):
    """evaluate on the --test file gives the perplexity training reported for it."""
    assert evaluate_main(["--model", str(sentence_model), "--data", str(short_reddit[1]),
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
                       "--max-sentences", "800", "--stream", "--arch", "gru", "--layers", "2",
                       "--hidden-dim", "16", "--batch-size", "10", "--bptt-len", "10",
                       "--vocab-size", "2000", "--clip-norm", "0.25", "--learning-rate", "5",
                       "--lr-decay", "0.5", "--decay-after", "1", "--epochs", "2",
                       "--model-out", str(out), "--log-json", str(log)]) == 0
    ckpt = load_checkpoint(out)
    assert "<eos>" in ckpt.vocab and "<unk>" == ckpt.vocab.words[0]
    assert "SENTENCE_START" not in ckpt.vocab and "N" in ckpt.vocab  # case kept in stream mode
    assert [row["learning_rate"] for row in ckpt.state["history"]] == [5.0, 2.5]
    assert all(set(row) == ROW_FIELDS for row in ckpt.state["history"])  # no --test
    run = json.loads(log.read_text())  # --log-json: every epoch, the settings, the outcome
    assert run["history"] == ckpt.state["history"]
    assert run["settings"] == ckpt.settings.to_dict()
    assert run["settings"]["model"]["arch"] == "gru" and run["vocab_size"] == len(ckpt.vocab)
    assert run["parameters"] == sum(p.size for p in ckpt.params.values())
    assert run["best_valid_ppl"] == pytest.approx(min(r["valid_ppl"] for r in run["history"]))
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
    assert train_main(["--data", str(data), "--format", "lines", "--arch", "gru",
                       "--bidirectional", "--hidden-dim", "16", "--batch-size", "16",
                       "--optimizer", "adam", "--learning-rate", "0.02", "--epochs", "6",
                       "--model-out", str(model)]) == 0
    capsys.readouterr()
    for last, expected in (("one", "alpha"), ("two", "beta")):
        assert fill_blank_main(["--model", str(model), "--top-k", "2",
                                f"___ red blue {last}"]) == 0
        first_line = capsys.readouterr().out.splitlines()[0].split()
        assert first_line[0] == expected and float(first_line[1]) > 0.8
    check_user_error(generate_main, ["--model", str(model)], capsys, "fill-blank")


def test_divergence_stops_with_a_clear_message_and_keeps_the_checkpoint(small_text, precious,
                                                                         capsys):
    check_refused(train_main, ["--data", str(small_text), *SMALL_LSTM[:-4],
                               "--learning-rate", "1e38", "--model-out", str(precious)],
                  capsys, precious, "NaN or infinite", after_progress=True)


@pytest.mark.parametrize("flags, needles", [
    (["--arch", "gru", "--stream", "--bidirectional"], ["--stream"]),
    (["--arch", "lstm", "--activation", "relu"], ["--arch lstm", "--activation"]),
    (["--arch", "gru", "--bptt-truncate", "8"], ["--arch gru", "--bptt-truncate"]),
    (["--arch", "rnn", "--impl", "numpy"], ["--arch rnn", "--impl"]),
    (["--arch", "gru", "--eval-every", "2"], ["--arch gru", "--eval-every"]),
    (["--arch", "gru", "--tie-weights", "--softmax-classes", "3"], ["--softmax-classes", "tied"]),
    (["--dropout", "1.5", "--arch", "lstm"], ["--dropout"]),
    (["--arch", "gru", "--lr-decay", "0"], ["--lr-decay"]),
    (["--arch", "gru", "--recurrent-lr-scale", "0"], ["--recurrent-lr-scale"]),
    (["--arch", "rnn", "--weight-drop", "1"], ["--weight-drop"]),
    (["--arch", "gru", "--layers", "0"], ["--layers"]),
    (["--arch", "gru", "--batch-size", "0"], ["--batch-size"]),
    (["--arch", "gru", "--optimizer", "lbfgs"], ["--optimizer"]),
    (["--softmax-classes", "1", "--arch", "gru"], ["--softmax-classes"]),
    (["--arch", "gru", "--identity-init"], ["identity"]),
])
def test_bad_engine_flags(flags, needles, small_text, precious, capsys):
    check_refused(train_main, ["--data", str(small_text), *flags, "--model-out", str(precious)],
                  capsys, precious, *needles)


def hide_jax(monkeypatch) -> None:
    """From here on the test sees a Python without jax (without the [jax] extra)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "jax" else find_spec(name, *a))


def test_jax_mode_without_jax_names_the_install(small_text, precious, tmp_path, capsys,
                                                monkeypatch):
    vocab = small_vocabulary(small_text)
    settings = TrainConfig(DataSettings(data=str(small_text)),
                           ModelSettings(arch="gru", hidden_dim=4, mode="JAX"))
    jax_trained = tmp_path / "jax-trained.npz"
    params = init_lm_params(graph_config(settings.model, len(vocab), seed=0))
    save_checkpoint(jax_trained, Checkpoint(params, vocab, settings, {"epoch": 1}))
    hide_jax(monkeypatch)
    check_refused(train_main, ["--data", str(small_text), "--arch", "gru", "--mode", "JAX",
                               "--model-out", str(precious)], capsys, precious, "[jax]")
    # a run trained under JAX goes on under Numba, the same graph
    config, _ = cli.train_config(["--resume", str(jax_trained)])
    assert config.model.mode == "AUTO" and config.model.arch == "gru"
    assert backends.resolve(config.model.mode, fixed_shapes=True) == "NUMBA"


def test_the_engine_runs_under_jax_by_default_and_numba_without_it(sentence_model, tmp_path,
                                                                   monkeypatch):
    """--mode AUTO (the default): XLA for the engine when jax is installed (it is a test
    dependency), Numba without it, and Numba for the tutorial's model either way."""
    ckpt = load_checkpoint(sentence_model)
    assert ckpt.settings.model.mode == "AUTO"  # resolved when loaded, so the file stays portable
    assert model_from_checkpoint(ckpt).mode == "JAX"
    assert backends.resolve("AUTO", fixed_shapes=False) == "NUMBA"
    assert backends.resolve("CVM", fixed_shapes=True) == "CVM"
    # A file trained with --mode JAX (as the Penn Treebank recipes do)...
    jax_trained = tmp_path / "jax-trained.npz"
    model = dataclasses.replace(ckpt.settings.model, mode="JAX")
    save_checkpoint(jax_trained, dataclasses.replace(
        ckpt, settings=dataclasses.replace(ckpt.settings, model=model)))
    assert model_from_checkpoint(load_checkpoint(jax_trained)).mode == "JAX"
    hide_jax(monkeypatch)
    assert backends.resolve("AUTO", fixed_shapes=True) == "NUMBA"
    assert model_from_checkpoint(ckpt).mode == "NUMBA"
    # ... loads too where jax is not installed, under Numba.
    assert model_from_checkpoint(load_checkpoint(jax_trained)).mode == "NUMBA"


def test_bad_evaluate_and_fill_blank_input(sentence_model, capsys):
    check_user_error(evaluate_main, ["--model", str(sentence_model)], capsys, "--data")
    check_user_error(fill_blank_main, ["--model", str(sentence_model), "no blank here"], capsys,
                     "___")
    check_user_error(fill_blank_main, ["--model", str(sentence_model), "two ___ ___"], capsys,
                     "exactly one")
    check_user_error(evaluate_main, ["--model", str(sentence_model), "--data", "nope.txt"],
                     capsys, "nope.txt")


def test_resume_keeps_the_engine_and_its_settings(sentence_model, short_reddit, tmp_path,
                                                  capsys):
    out = tmp_path / "more.npz"
    for flag, value in (("--hidden-dim", "32"), ("--seed", "5"), ("--valid-fraction", "0.2")):
        assert train_main(["--resume", str(sentence_model), flag, value,
                           "--model-out", str(out)]) == 2  # the network, the split: kept
        err = capsys.readouterr().err
        assert f"{flag} {value} cannot change when resuming" in err and not out.exists()
    assert train_main(["--resume", str(sentence_model), "--model-out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.settings.model == load_checkpoint(sentence_model).settings.model
    # the data too, unless given: the same files, the same batches
    assert ckpt.settings.data.data == str(short_reddit[0])
    assert ckpt.settings.data.batch_size == 8 and ckpt.settings.data.test == str(short_reddit[1])
    assert ckpt.settings.train.optimizer == "adam" and ckpt.state["epoch"] == 3
    assert len(ckpt.state["history"]) == 3


def test_class_softmax_trains_and_evaluates(shared_data, tmp_path, capsys):
    ptb = shared_data / "ptb"
    out = tmp_path / "classes.npz"
    assert train_main(["--data", str(ptb / "ptb.valid.txt"), "--valid", str(ptb / "ptb.test.txt"),
                       "--test", str(ptb / "ptb.test.txt"), "--max-sentences", "600", "--stream",
                       "--arch", "gru", "--hidden-dim", "16", "--batch-size", "10",
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


def test_a_version_1_engine_checkpoint_generates_and_evaluates(small_text, tmp_path, capsys):
    vocab = small_vocabulary(small_text)
    flat = {"family": "engine", "cell": "gru", "hidden_dim": 8, "embed_dim": 0, "layers": 1,
            "batch_size": 4, "bptt_len": 20, "optimizer": "adam", "learning_rate": 0.01,
            "stream": False, "dropout": 0.0, "clip_norm": 0.0, "lr_decay": 1.0,
            # version 1 also wrote the tutorial's settings, and the graph's own as "lm"
            "impl": "theano", "activation": "tanh", "bptt_truncate": 4, "eval_every": 1,
            "lm": {"cell": "gru", "vocab_size": len(vocab), "hidden_dim": 8}}
    params = init_lm_params(LMConfig(cell="gru", vocab_size=len(vocab), embed_dim=8,
                                     hidden_dim=8))
    v1 = write_v1_checkpoint(tmp_path / "v1.npz", params, vocab, flat)
    ckpt = load_checkpoint(v1)
    model, data = ckpt.settings.model, ckpt.settings.data
    assert (model.arch, model.hidden_dim, model.embed_dim, model.layers) == ("gru", 8, 0, 1)
    assert (data.batch_size, ckpt.settings.train.optimizer) == (4, "adam")
    assert model.bptt_truncate == 4 and model.impl == "theano"  # the defaults, not read
    text = outputs(generate_main, ["--model", str(v1), "--num-sentences", "2",
                                   "--min-length", "1", "--seed", "0"], capsys)
    assert len(text.splitlines()) == 2
    text = outputs(evaluate_main, ["--model", str(v1), "--data", str(small_text)], capsys)
    ppl = float(re.search(r"perplexity ([\d.]+)", text).group(1))
    assert 1.0 < ppl < 10 * len(vocab)  # untrained: near the vocabulary's size


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through a private temporary file; the result is an ordinary file."""
    write_json(tmp_path / "log.json", {"a": 1})
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "log.json").stat().st_mode & 0o777 == 0o666 & ~mask
