"""The command line end to end on small real data, and every bad input the issue names."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import generate_main, train_main

ROOT = Path(__file__).resolve().parents[1]
# Small but real: the Reddit sample, a tiny network, one epoch. The graph is the tutorial's
# default (truncate 4), shared with the other tests through the compile cache.
SMALL = ["--vocab-size", "300", "--hidden-dim", "16", "--epochs", "2", "--learning-rate", "0.05"]


@pytest.fixture(scope="module")
def reddit(shared_data) -> Path:
    return shared_data / "reddit" / "reddit-comments-2015-08-sample.csv"


@pytest.fixture(scope="module")
def trained(reddit, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "model.npz"
    with pytest.warns(UserWarning, match="cut off"):
        assert train_main(["--data", str(reddit), *SMALL, "--model-out", str(out)]) == 0
    return out


def test_train_writes_a_checkpoint_that_beats_the_unigram_model(trained):
    ckpt = load_checkpoint(trained)
    assert len(ckpt.vocab) == 300
    assert ckpt.params["U"].shape == (16, 300)
    history = ckpt.state["history"]
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 1.0
    assert ckpt.config["hidden_dim"] == 16 and ckpt.config["bptt_truncate"] == 4


def test_generate_reads_the_checkpoint(trained, capsys):
    argv = ["--model", str(trained), "--num-sentences", "3", "--min-length", "3", "--seed", "1"]
    assert generate_main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 3 and all(line.strip() for line in first)
    assert "UNKNOWN_TOKEN" not in " ".join(first) and "SENTENCE_" not in " ".join(first)
    assert generate_main(argv) == 0
    assert capsys.readouterr().out.splitlines() == first  # --seed makes it reproducible


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
    assert not np.array_equal(after.params["W"], before.params["W"])


def test_numpy_implementation_trains_too(reddit, tmp_path):
    out = tmp_path / "numpy.npz"
    with pytest.warns(UserWarning):
        assert train_main(["--data", str(reddit), "--impl", "numpy", "--vocab-size", "100",
                           "--hidden-dim", "8", "--max-sentences", "200", "--epochs", "1",
                           "--model-out", str(out)]) == 0
    assert load_checkpoint(out).config["impl"] == "numpy"


def check_user_error(main, argv, capsys, *needles, after_progress=False):
    """Exit 2 and exactly one line on stderr that names the problem (after the progress bar's
    lines, for a failure during training)."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    if after_progress:
        err = [line for line in err if not line.startswith("epoch ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0]


@pytest.fixture
def precious(tmp_path) -> Path:
    """An existing checkpoint path whose bytes a failed run must leave alone."""
    path = tmp_path / "precious.npz"
    path.write_bytes(b"previous work")
    return path


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


@pytest.mark.parametrize("case", ["missing", "empty", "binary", "undecodable", "no body column",
                                  "blank", "no sentence"])
def test_bad_data_files(case, tmp_path, precious, capsys):
    path, needle = bad_files(tmp_path)[case]
    check_user_error(train_main, ["--data", str(path), "--model-out", str(precious)], capsys,
                     needle)
    assert precious.read_bytes() == b"previous work"


@pytest.mark.parametrize("flags, needle", [
    (["--vocab-size", "2"], "--vocab-size"),
    (["--hidden-dim", "0"], "--hidden-dim"),
    (["--hidden-dim", "-5"], "--hidden-dim"),
    (["--epochs", "0"], "--epochs"),
    (["--learning-rate", "-0.1"], "--learning-rate"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--mode", "GPU"], "--mode"),
    (["--mode", "JAX"], "JAX"),
    (["--blas-threads", "-1"], "--blas-threads"),
    (["--corpus", "wikipedia"], "wikipedia"),
    (["--epochs", "many"], "--epochs"),
    (["--resume", "missing.npz"], "missing.npz"),
])
def test_impossible_flags(flags, needle, tmp_path, precious, capsys):
    check_user_error(train_main, [*flags, "--model-out", str(precious)], capsys, needle)
    assert precious.read_bytes() == b"previous work"


def test_generate_bad_checkpoints(tmp_path, precious, capsys):
    check_user_error(generate_main, ["--model", str(tmp_path / "none.npz")], capsys, "not found")
    check_user_error(generate_main, ["--model", str(precious)], capsys, "not a usable")
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, U=np.zeros((2, 3)))
    truncated.write_bytes(truncated.read_bytes()[:40])
    check_user_error(generate_main, ["--model", str(truncated)], capsys, "not a usable")
    no_meta = tmp_path / "plain.npz"
    np.savez(no_meta, U=np.zeros((2, 3)))
    check_user_error(generate_main, ["--model", str(no_meta)], capsys, "__meta__")
    check_user_error(generate_main, ["--model", str(no_meta), "--temperature", "0"], capsys,
                     "--temperature")


def test_corrupt_checkpoint_for_resume_is_kept(tmp_path, precious, capsys):
    check_user_error(train_main, ["--resume", str(precious), "--model-out", str(precious)],
                     capsys, "not a usable")
    assert precious.read_bytes() == b"previous work"


def test_scripts_exit_2_without_traceback(tmp_path):
    """The real entry points, as a user runs them."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "train_lm.py"),
                             "--data", str(tmp_path / "missing.csv")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "missing.csv" in result.stderr


@pytest.mark.parametrize("family", [[], ["--cell", "gru", "--batch-size", "8"]],
                         ids=["tutorial", "engine"])
def test_ctrl_c_saves_the_model_and_exits_130(reddit, tmp_path, family):
    """SIGINT mid-training: a complete checkpoint, marked interrupted, and no traceback."""
    import signal
    import time

    out = tmp_path / "interrupted.npz"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train_lm.py"),
                             "--data", str(reddit), *SMALL[:-4], *family, "--epochs", "1000",
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
    assert len(ckpt.vocab) == 300
    if family:  # the engine's checkpoint keeps the best model of the epochs completed
        assert ckpt.state["epoch"] >= 1 and ckpt.state["history"]
    else:  # the tutorial's loop saves the model as it was when interrupted
        assert ckpt.state["interrupted"]
