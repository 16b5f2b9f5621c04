"""The command line end to end: the tutorial's model on real data, the ``rnn-theano`` entry
point, recipes, version-1 checkpoints, and every bad input, each a one-line error that leaves
an existing checkpoint as it was."""

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnn_theano import cli
from rnn_theano.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from rnn_theano.cli import evaluate_main, generate_main, train_main
from rnn_theano.config import (ARCHS, ClassifyConfig, DataSettings, ModelSettings, TrainConfig,
                               TrainSettings)
from rnn_theano.data.corpus import load_sentences
from rnn_theano.data.vocab import Vocabulary
from rnn_theano.errors import UserError
from rnn_theano.tasks import lm

ROOT = Path(__file__).resolve().parents[1]
# Small but real: the Reddit sample, a tiny network, two epochs. The graph is the tutorial's
# default (truncate 4), shared with the other tests through the compile cache. At a rate of
# 0.05 SGD on this data is erratic: rounding differences (another BLAS, another compile)
# decide whether the second epoch's loss falls or rises; at 0.02 it falls, seed after seed.
LR = 0.02
SMALL = ["--vocab-size", "300", "--hidden-dim", "16", "--epochs", "2", "--learning-rate", str(LR)]
# The time a row took differs between two runs of the same training; everything else must not.
TIME_FIELDS = ("tokens_per_second", "seconds")
ROW_FIELDS = {"epoch", "learning_rate", "train_loss", "train_ppl", "valid_loss", "valid_ppl",
              *TIME_FIELDS}


def console_script() -> Path:
    """The installed ``rnn-theano`` command of the Python running the tests."""
    return Path(sys.executable).parent / "rnn-theano"


def sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reddit(shared_data) -> Path:
    return shared_data / "reddit" / "reddit-comments-2015-08-sample.csv"


@pytest.fixture(scope="module")
def trained(reddit, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model.npz"
    with pytest.warns(UserWarning, match="cut off"):
        assert train_main(["--data", str(reddit), *SMALL, "--model-out", str(out),
                           "--log-json", str(out.with_suffix(".json"))]) == 0
    return out


def test_train_writes_a_checkpoint_that_beats_the_unigram_model(trained):
    ckpt = load_checkpoint(trained)
    run = json.loads(trained.with_suffix(".json").read_text())
    assert run["history"] == ckpt.state["history"]
    assert ckpt.state["history"][-1]["valid_ppl"] < run["unigram_valid_ppl"]
    assert len(ckpt.vocab) == 300
    assert ckpt.params["U"].shape == (16, 300)
    history = ckpt.state["history"]
    # The tutorial's model scores the untrained model first: its row 0 has no training speed.
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert all(set(row) == ROW_FIELDS for row in history)
    assert history[0]["tokens_per_second"] == 0 and history[1]["tokens_per_second"] > 0
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 1.0
    model = ckpt.settings.model
    assert model.arch == "tutorial" and model.hidden_dim == 16 and model.bptt_truncate == 4
    assert ckpt.settings.train.epochs == 2 and ckpt.settings.train.learning_rate == LR
    assert ckpt.state["epoch"] == 2 and "dropout_rng" not in ckpt.state
    assert not ckpt.optimizer  # the tutorial's SGD has no state


def test_generate_reads_the_checkpoint(trained, capsys):
    argv = ["--model", str(trained), "--num-sentences", "3", "--min-length", "3", "--seed", "1"]
    assert generate_main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 3 and all(line.strip() for line in first)
    assert "UNKNOWN_TOKEN" not in " ".join(first) and "SENTENCE_" not in " ".join(first)
    assert generate_main(argv) == 0
    assert capsys.readouterr().out.splitlines() == first  # --seed makes it reproducible
    assert cli.main(["generate", *argv]) == 0  # the same through the subcommand
    assert capsys.readouterr().out.splitlines() == first


def test_generate_with_prime_starts_with_the_prime(trained, capsys):
    argv = ["--model", str(trained), "--num-sentences", "2", "--min-length", "3",
            "--prime", "I think", "--seed", "0", "--temperature", "0.7"]
    assert generate_main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("I think") for line in lines)


def test_resume_continues_the_epoch_count(trained, reddit, tmp_path):
    out = tmp_path / "resumed.npz"
    with pytest.warns(UserWarning):
        assert train_main(["--data", str(reddit), *SMALL[:-4], "--epochs", "1",
                           "--resume", str(trained), "--model-out", str(out)]) == 0
    before, after = load_checkpoint(trained), load_checkpoint(out)
    assert after.state["epoch"] == before.state["epoch"] + 1
    assert after.vocab == before.vocab
    assert after.state["history"][:3] == before.state["history"]
    assert [row["epoch"] for row in after.state["history"]] == [0, 1, 2, 3]
    assert after.settings.train.learning_rate == LR  # carried over, not given again
    assert not np.array_equal(after.params["W"], before.params["W"])


def test_a_resumed_run_goes_on_writing_its_checkpoint(small_text, tmp_path):
    """Without --model-out it writes the file it resumes, and never the first run's log."""
    out, log = tmp_path / "run.npz", tmp_path / "run.json"
    common = ["--data", str(small_text), "--impl", "numpy", "--hidden-dim", "8",
              "--epochs", "1"]
    assert train_main([*common, "--model-out", str(out), "--log-json", str(log)]) == 0
    first_log = log.read_text()
    assert train_main([*common, "--resume", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.state["epoch"] == 2 and ckpt.settings.train.model_out == str(out)
    assert [row["epoch"] for row in ckpt.state["history"]] == [0, 1, 2]
    assert log.read_text() == first_log


def test_numpy_implementation_trains_too(small_text, tmp_path):
    out = tmp_path / "numpy.npz"
    assert train_main(["--data", str(small_text), "--impl", "numpy", "--vocab-size", "100",
                       "--hidden-dim", "8", "--max-sentences", "200", "--epochs", "1",
                       "--model-out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.settings.model.impl == "numpy"
    history = ckpt.state["history"]
    assert [row["epoch"] for row in history] == [0, 1]
    assert history[1]["train_loss"] < history[0]["train_loss"]


def test_bptt_truncate_0_trains_the_recurrent_matrix_with_the_tutorial_truncation(
        small_text, tmp_path, capsys):
    """K = 0 keeps, for each output, the step t itself: dW = outer(delta_t, s_{t-1})."""
    out = tmp_path / "k0.npz"
    assert train_main(["--data", str(small_text), "--impl", "numpy", "--bptt-truncate", "0",
                       "--hidden-dim", "8", "--epochs", "1", "--model-out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.settings.model.bptt_truncate == 0
    assert ckpt.settings.model.truncation == "tutorial"
    untrained = lm.build_model(ckpt.settings, len(ckpt.vocab))  # the same seed
    assert not np.allclose(ckpt.params["W"], untrained.params()["W"])
    history = ckpt.state["history"]
    assert history[1]["train_loss"] < history[0]["train_loss"]
    capsys.readouterr()
    check_refused(train_main, ["--data", str(small_text), "--bptt-truncate", "0",
                               "--truncation", "scan", "--model-out", str(out)],
                  capsys, out, "--bptt-truncate", "scan")


# --- the rnn-theano command -------------------------------------------------------------------

COMMANDS = ("train", "generate", "evaluate", "fill-blank")


def test_rnn_theano_help_lists_the_subcommands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^\s+{name}\s+\w", out, re.M) for name in COMMANDS), out
    assert cli.main([]) == 2  # no command: the same list, as a usage error
    captured = capsys.readouterr()
    assert all(name in captured.out + captured.err for name in COMMANDS)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and f"--arch {{{','.join(ARCHS)}}}" in out


def test_unknown_subcommand_is_one_line(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "'trian'" in err[0]
    assert all(name in err[0] for name in COMMANDS)


def test_the_installed_console_script(tmp_path):
    """``rnn-theano`` as pip installs it (the ``console_scripts`` entry of setup.cfg)."""
    script = console_script()
    assert script.is_file(), f"{script} missing: pip install -e . installs it"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in COMMANDS)
    result = subprocess.run([str(script), "train", "--data", str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "missing.csv" in result.stderr


# --- recipes (--config) -------------------------------------------------------------------------

def recipe(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_flag_overrides_the_recipe(tmp_path):
    path = recipe(tmp_path, 'arch = "gru"\nhidden-dim = 12\nbatch-size = 4\n'
                  'optimizer = "adam"\nepochs = 3\n')
    config, resumed = cli.train_config(["--config", str(path), "--hidden-dim", "10"])
    assert resumed is None
    assert config.model.arch == "gru" and config.model.hidden_dim == 10  # the flag wins
    assert config.data.batch_size == 4 and config.train.optimizer == "adam"  # the recipe
    assert config.train.epochs == 3 and config.lr == 0.001  # adam's default rate
    assert config.model.vocab_size == 8000  # not in either: the default


def test_a_recipe_trains(small_text, tmp_path):
    """A recipe and flags together drive a real run, and the checkpoint records both."""
    path = recipe(tmp_path, 'impl = "numpy"\nhidden-dim = 12\nvocab-size = 20\n'
                  "epochs = 1\n")
    out = tmp_path / "from-recipe.npz"
    assert train_main(["--config", str(path), "--data", str(small_text), "--hidden-dim", "6",
                       "--model-out", str(out)]) == 0
    ckpt = load_checkpoint(out)
    assert ckpt.settings.model.hidden_dim == 6 and ckpt.params["W"].shape == (6, 6)
    assert ckpt.settings.model.impl == "numpy" and len(ckpt.vocab) == 20


def test_the_ptb_lstm_recipe():
    config, _ = cli.train_config(["--config", str(ROOT / "configs" / "ptb-lstm.toml")])
    assert config == TrainConfig(
        data=DataSettings(corpus="ptb", batch_size=20, bptt_len=20),
        model=ModelSettings(arch="lstm", stream=True, vocab_size=10000, mode="JAX", layers=2,
                            hidden_dim=200),
        train=TrainSettings(epochs=13, clip_norm=0.25, lr_decay=0.5, decay_after=4,
                            learning_rate=20.0, model_out="checkpoints/ptb-lstm.npz"))


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("ptb-*.toml")))
def test_every_shipped_lm_recipe_is_an_engine_run_on_ptb(name):
    config, _ = cli.train_config(["--config", str(ROOT / "configs" / name)])
    assert config.model.arch == name.removeprefix("ptb-").removesuffix(".toml").split("-")[0]
    assert config.data.corpus == "ptb" and config.model.stream


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("classify-*.toml")))
def test_every_shipped_classifier_recipe_names_its_dataset(name):
    config, _ = cli.train_config(["--config", str(ROOT / "configs" / name)], ClassifyConfig,
                                 "train-classifier")
    dataset = name.removeprefix("classify-").removesuffix(".toml")
    assert config.data.phrases == dataset.endswith("-phrases")
    assert config.data.dataset == dataset.removesuffix("-phrases")
    assert config.train.model_out == f"checkpoints/{name.removesuffix('.toml')}.npz"
    with pytest.raises(UserError, match="unknown settings .*dataset"):
        cli.train_config(["--config", str(ROOT / "configs" / name)])  # not a language model's


@pytest.mark.parametrize("text, needles", [
    ("hidden-dim = 10\nhiden-layers = 2\nfoo = 1\n", ["unknown settings", "foo", "hiden"]),
    ("hidden-dim = 0\n", ["--hidden-dim", "positive"]),
    ('arch = "gru"\nbptt-truncate = 8\n', ["--arch", "--bptt-truncate"]),
    ("hidden-dim = [1\n", ["not valid TOML"]),
], ids=["unknown key", "bad value", "foreign setting", "not TOML"])
def test_bad_recipes_are_one_line_errors(text, needles, small_text, tmp_path, precious, capsys):
    path = recipe(tmp_path, text)
    check_refused(train_main, ["--config", str(path), "--data", str(small_text),
                               "--model-out", str(precious)], capsys, precious, *needles)


def test_a_missing_recipe_is_one_line(tmp_path, capsys):
    check_user_error(cli.main, ["train", "--config", str(tmp_path / "nope.toml")], capsys,
                     "nope.toml", "not found")


# --- version 1 checkpoints ----------------------------------------------------------------------

V1_COMMON = {"data": None, "format": "auto", "max_sentences": 0, "valid_fraction": 0.05,
             "vocab_size": 50, "keep_case": False, "mode": "AUTO", "float32": False,
             "epochs": 1, "learning_rate": 0.005, "seed": 0, "model_out": "checkpoints/rnn.npz",
             "log_json": None, "resume": None, "blas_threads": 1}


def write_v1_checkpoint(path: Path, params: dict[str, np.ndarray], vocab: Vocabulary,
                        flat: dict) -> Path:
    """A checkpoint as version 1 wrote it: flat settings with ``family`` (and ``cell``)."""
    meta = {"format": "rnn-theano-checkpoint", "version": 1, "vocab": list(vocab.words),
            "config": V1_COMMON | flat, "state": {}}
    np.savez(path, **params, __meta__=np.array(json.dumps(meta)))
    return path


def small_vocabulary(small_text: Path) -> Vocabulary:
    return Vocabulary.build(load_sentences(small_text), 50)


def as_version_2(v1: Path) -> Path:
    """The same checkpoint saved again, in the current format."""
    v2 = v1.with_name(v1.stem + "-v2.npz")
    save_checkpoint(v2, load_checkpoint(v1))
    return v2


def outputs(main, argv: list[str], capsys) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_a_version_1_tutorial_checkpoint_generates_evaluates_and_resumes(small_text, tmp_path,
                                                                         capsys):
    vocab = small_vocabulary(small_text)
    rng = np.random.default_rng(0)
    H, C = 6, len(vocab)
    params = {"U": rng.normal(0, 0.3, (H, C)), "V": rng.normal(0, 0.3, (C, H)),
              "W": rng.normal(0, 0.3, (H, H))}
    v1 = write_v1_checkpoint(tmp_path / "v1.npz", params, vocab, {
        "family": "tutorial", "hidden_dim": H, "impl": "numpy", "activation": "tanh",
        "bptt_truncate": 2, "truncation": "tutorial", "eval_every": 1, "data": str(small_text)})
    ckpt = load_checkpoint(v1)
    model = ckpt.settings.model
    assert (model.arch, model.hidden_dim, model.bptt_truncate, model.impl) == \
        ("tutorial", H, 2, "numpy")
    assert ckpt.vocab == vocab and np.array_equal(ckpt.params["W"], params["W"])
    v2 = as_version_2(v1)
    for main, argv in ((generate_main, ["--num-sentences", "3", "--min-length", "2",
                                        "--seed", "4"]),
                       (evaluate_main, ["--data", str(small_text)])):
        text = outputs(main, ["--model", str(v1), *argv], capsys)
        assert text.strip() and text == outputs(main, ["--model", str(v2), *argv], capsys)
    ppl = float(re.search(r"perplexity ([\d.]+)", text).group(1))
    assert 1.0 < ppl < 10 * C  # random weights: near the vocabulary's size
    out = tmp_path / "resumed.npz"
    assert train_main(["--resume", str(v1), "--epochs", "1", "--model-out", str(out)]) == 0
    resumed = load_checkpoint(out)
    assert resumed.settings.model == model and resumed.vocab == vocab
    assert [row["epoch"] for row in resumed.state["history"]] == [0, 1]


# --- bad input: one line on stderr, exit 2, and no checkpoint harmed ---------------------------

def check_user_error(main, argv, capsys, *needles, after_progress=False):
    """Exit 2 and exactly one line on stderr that names the problem (after the progress bar's
    lines, for a failure during training)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    if after_progress:
        err = [line for line in err if not line.startswith("epoch ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err[0]


def check_refused(main, argv, capsys, kept: Path, *needles, after_progress=False):
    """``check_user_error``, and the checkpoint ``kept`` is byte for byte as it was."""
    before = sha1(kept)
    check_user_error(main, argv, capsys, *needles, after_progress=after_progress)
    assert sha1(kept) == before


def tiny_checkpoint(path: Path) -> Path:
    """A real, loadable tutorial checkpoint (random weights), written without training."""
    vocab = Vocabulary(("UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END", "the", "cat"))
    rng = np.random.default_rng(1)
    params = {"U": rng.normal(size=(4, 5)), "V": rng.normal(size=(5, 4)),
              "W": rng.normal(size=(4, 4))}
    settings = TrainConfig(model=ModelSettings(hidden_dim=4, vocab_size=5))
    save_checkpoint(path, Checkpoint(params, vocab, settings, {"epoch": 1, "history": []}))
    return path


@pytest.fixture
def precious(tmp_path) -> Path:
    """An existing checkpoint whose bytes a failed run must leave alone."""
    return tiny_checkpoint(tmp_path / "precious.npz")


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\x00\x01\x02 binary \x00")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("Caf\xe9 au lait is served here. It is good.\n".encode("latin-1"))
    nobody = tmp_path / "comments.csv"
    nobody.write_text("author,text\nme,Hello there. How are you?\n")
    blank = tmp_path / "blank.txt"
    blank.write_text("\n\n   \n")
    no_text = tmp_path / "no_text.csv"
    no_text.write_text('body\n""\n""\n')
    return {"missing": (tmp_path / "nope.txt", "nope.txt"), "empty": (empty, "empty"),
            "binary": (binary, "binary"), "undecodable": (latin, "UTF-8"),
            "no body column": (nobody, "body"), "blank": (blank, "empty"),
            "no sentence": (no_text, "no sentence")}


BAD_FILES = ["missing", "empty", "binary", "undecodable", "no body column", "blank",
             "no sentence"]


@pytest.mark.parametrize("resume", [[], ["--resume"]], ids=["fresh", "resumed"])
@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_data_files(case, resume, tmp_path, precious, capsys):
    """Resumed: from the file the run would write, as a user continuing a run does; it keeps
    the checkpoint's text, so another --data is refused before it is read."""
    path, needle = bad_files(tmp_path)[case]
    if resume:
        resume, needle = [*resume, str(precious)], "cannot change when resuming"
    check_refused(train_main, ["--data", str(path), *resume, "--model-out", str(precious)],
                  capsys, precious, needle)


@pytest.mark.parametrize("flags, needles", [
    (["--vocab-size", "2"], ["--vocab-size"]),
    (["--hidden-dim", "0"], ["--hidden-dim"]),
    (["--hidden-dim", "-5"], ["--hidden-dim"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--learning-rate", "-0.1"], ["--learning-rate"]),
    (["--learning-rate", "0"], ["--learning-rate"]),
    (["--mode", "GPU"], ["--mode"]),
    (["--mode", "JAX"], ["--mode", "JAX"]),
    (["--blas-threads", "-1"], ["--blas-threads"]),
    (["--corpus", "wikipedia"], ["wikipedia"]),
    (["--epochs", "many"], ["--epochs"]),
    (["--resume", "missing.npz"], ["missing.npz"]),
    (["--arch", "transformer"], ["--arch", "transformer"]),
    (["--cell", "gru"], ["--cell"]),  # replaced by --arch
    (["--bptt-truncate", "-2"], ["--bptt-truncate"]),
    (["--eval-every", "0"], ["--eval-every"]),
    (["--valid-fraction", "0.7"], ["--valid-fraction"]),
    # the engine's settings with the tutorial's model
    (["--batch-size", "8"], ["--arch tutorial", "--batch-size"]),
    (["--arch", "tutorial", "--optimizer", "adam"], ["--arch tutorial", "--optimizer"]),
    (["--dropout", "0.5", "--layers", "2"], ["--arch tutorial", "--dropout", "--layers"]),
    (["--stream"], ["--arch tutorial", "--stream"]),
])
def test_impossible_flags(flags, needles, small_text, tmp_path, precious, capsys):
    # --corpus with --data would be its own error; the named corpus is looked up in tmp_path
    data = ["--data-dir", str(tmp_path)] if "--corpus" in flags else ["--data", str(small_text)]
    check_refused(train_main, [*data, *flags, "--model-out", str(precious)], capsys, precious,
                  *needles)


def test_generate_bad_checkpoints(tmp_path, capsys):
    check_user_error(generate_main, ["--model", str(tmp_path / "none.npz")], capsys, "not found")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"previous work")
    check_user_error(generate_main, ["--model", str(junk)], capsys, "not a usable")
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, U=np.zeros((2, 3)))
    truncated.write_bytes(truncated.read_bytes()[:40])
    check_user_error(generate_main, ["--model", str(truncated)], capsys, "not a usable")
    no_meta = tmp_path / "plain.npz"
    np.savez(no_meta, U=np.zeros((2, 3)))
    check_user_error(generate_main, ["--model", str(no_meta)], capsys, "__meta__")
    check_user_error(generate_main, ["--model", str(no_meta), "--temperature", "0"], capsys,
                     "--temperature")
    future = tmp_path / "future.npz"
    meta = {"format": "rnn-theano-checkpoint", "version": 99, "vocab": ["a", "b", "c"]}
    np.savez(future, __meta__=np.array(json.dumps(meta)))
    check_user_error(generate_main, ["--model", str(future)], capsys, "version 99")


def test_corrupt_checkpoint_for_resume_is_kept(small_text, tmp_path, capsys):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"previous work")
    check_user_error(train_main, ["--data", str(small_text), "--resume", str(junk),
                                  "--model-out", str(junk)], capsys, "not a usable")
    assert junk.read_bytes() == b"previous work"


def test_scripts_exit_2_without_traceback(tmp_path):
    """The real entry points, as a user runs them."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_lm.py"),
                             "--data", str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "missing.csv" in result.stderr


@pytest.mark.parametrize("family", [[], ["--arch", "gru", "--batch-size", "8"]],
                         ids=["tutorial", "engine"])
def test_ctrl_c_saves_the_model_and_exits_130(small_text, tmp_path, family):
    """SIGINT mid-training: a complete checkpoint, and no traceback."""
    out = tmp_path / "interrupted.npz"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train_lm.py"),
                             "--data", str(small_text), *SMALL[:-4], *family, "--epochs", "1000",
                             "--model-out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until training runs
        if line.startswith("epoch "):
            break
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "interrupted" in stdout
    ckpt = load_checkpoint(out)
    words = set(small_text.read_text().split())
    assert len(ckpt.vocab) == len(words) + 3  # every word, the unknown token, start and end
    if family:  # the engine's checkpoint keeps the best model of the epochs completed
        assert ckpt.params["embed"].shape == (len(ckpt.vocab), 16)
        assert ckpt.state["epoch"] >= 1 and ckpt.state["history"]
        best = min(row["valid_loss"] for row in ckpt.state["history"])
        assert ckpt.state["best"] == best
    else:  # the tutorial's loop saves the model as it was when interrupted
        assert ckpt.params["U"].shape == (16, len(ckpt.vocab))
        assert ckpt.state["interrupted"]
