"""Training over several devices and processes (``--devices``, ``--coordinator``...), on this
machine's CPU: simulated devices (``XLA_FLAGS=--xla_force_host_platform_device_count``) and
processes joined over a loopback coordinator. Each run is a process of its own, since XLA
reads the device count once, at start."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rnn_theano.checkpoint import load_checkpoint
from rnn_theano.cli import train_main
from test_cli import check_user_error

HERE = Path(__file__).resolve().parent
TINY_LM = ["--arch", "lstm", "--layers", "2", "--hidden-dim", "16", "--embed-dim", "16",
           "--vocab-size", "100", "--stream", "--batch-size", "8", "--bptt-len", "10",
           "--optimizer", "adam", "--mode", "JAX", "--format", "lines"]


def env(devices: int) -> dict[str, str]:
    return os.environ | {"XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(argv: list[str], devices: int = 1, **kwargs) -> subprocess.Popen:
    code = "import sys; from rnn_theano.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "train", *argv],
                            env=env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def finished(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def one_error_line(err: str) -> str:
    """The stderr of a run stopped on purpose: no traceback, its last line an ``error:``."""
    assert "Traceback" not in err and "Check failure" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: "), err[-2000:]
    return last


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    """A few hundred lines of repetitive text: enough for a few dozen stream windows."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    lines = [" ".join(rng.choice(words, rng.integers(3, 12))) for _ in range(400)]
    path = tmp_path_factory.mktemp("text") / "train.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_every_task_trains_over_devices_as_on_one():
    """A few steps of each task's engine over 4 devices, and the language model's over 2,
    end where one device ends, dropout masks included: the language model in stream mode
    (the state carried) and in sentence mode, the classifier (each with a short last batch
    that does not split and runs whole), the translator, the recogniser. The step XLA
    compiles all-reduces: the batch is split, not computed whole on every device."""
    proc = subprocess.run([sys.executable, str(HERE / "parallel_worker.py"), "4"], env=env(4),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(report) == {"lm_stream 2", "lm_stream 4", "lm_sentences 2", "lm_sentences 4",
                           "classifier 4", "translation 4", "speech 4"}
    for case, gaps in report.items():
        assert gaps.pop("all_reduce") is True, case
        for what, gap in gaps.items():
            assert gap < 1e-5, (case, what, gap)


def test_two_processes_train_as_one_process_with_two_devices(text, tmp_path):
    """Two processes of one device each, joined over a loopback coordinator, train the model
    one process trains over two devices; only process 0 writes the checkpoint and the log."""
    common = [*TINY_LM, "--data", str(text), "--epochs", "2", "--devices", "all"]
    alone = train([*common, "--model-out", str(tmp_path / "alone.npz"),
                   "--log-json", str(tmp_path / "alone.json")], devices=2)
    assert finished(alone)[0] == 0
    port = free_port()
    procs = [train([*common, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                    "--process-id", str(i), "--model-out", str(tmp_path / f"p{i}.npz"),
                    "--log-json", str(tmp_path / f"p{i}.json")]) for i in (0, 1)]
    for proc in procs:
        code, err = finished(proc)
        assert code == 0, err[-2000:]
    assert not (tmp_path / "p1.npz").exists() and not (tmp_path / "p1.json").exists()
    histories = [json.loads((tmp_path / f"{name}.json").read_text())["history"]
                 for name in ("alone", "p0")]
    assert len(histories[0]) == len(histories[1]) >= 2
    for a, b in zip(*histories):  # held-out scores of parameters trained alike
        assert b["valid_loss"] == pytest.approx(a["valid_loss"], rel=1e-5)
    a, b = (load_checkpoint(tmp_path / name) for name in ("alone.npz", "p0.npz"))
    for name, value in a.params.items():
        np.testing.assert_allclose(b.params[name], value, rtol=1e-5, atol=1e-7)


def test_a_lost_process_stops_the_other_and_the_checkpoint_resumes(text, tmp_path):
    """Process 1 killed mid-run: process 0 stops with one error line within its
    --peer-timeout, and the last checkpoint resumes on one device."""
    out = tmp_path / "run.npz"
    port = free_port()
    procs = [train([*TINY_LM, "--data", str(text), "--epochs", "200", "--devices", "all",
                    "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                    "--process-id", str(i), "--peer-timeout", "20", "--model-out", str(out)])
             for i in (0, 1)]
    deadline = time.monotonic() + 300
    while not out.exists() and procs[0].poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert out.exists(), finished(procs[0], 10)[1][-2000:]
    procs[1].kill()
    killed = time.monotonic()
    code, err = finished(procs[0], 120)
    assert code == 2 and time.monotonic() - killed < 30
    assert "--resume" in one_error_line(err)
    procs[1].communicate()
    assert load_checkpoint(out).state["epoch"] >= 1
    resumed = train(["--resume", str(out), "--epochs", "1"])
    code, err = finished(resumed)
    assert code == 0, err[-2000:]


def test_processes_given_different_settings_stop(text, tmp_path):
    """Process 1 given another --seed (another order of the batches): both stop with one
    error line before the first step, neither writes a checkpoint."""
    port = free_port()
    procs = [train([*TINY_LM, "--data", str(text), "--devices", "all", "--coordinator",
                    f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i),
                    "--seed", str(i), "--model-out", str(tmp_path / "m.npz")]) for i in (0, 1)]
    for proc in procs:
        code, err = finished(proc, 120)
        assert code == 2
        assert "differ in their settings" in one_error_line(err)
    assert not (tmp_path / "m.npz").exists()


def test_a_coordinator_that_never_answers_is_an_error_within_the_timeout(text, tmp_path):
    start = time.monotonic()
    proc = train([*TINY_LM, "--data", str(text), "--devices", "all", "--coordinator",
                  f"127.0.0.1:{free_port()}", "--num-processes", "2", "--process-id", "1",
                  "--peer-timeout", "3", "--model-out", str(tmp_path / "m.npz")])
    code, err = finished(proc, 120)
    assert code == 2 and time.monotonic() - start < 60
    assert "--coordinator" in one_error_line(err)


@pytest.mark.parametrize("flags, needles", [
    (["--devices", "3"], ["--devices 3", "batch of 8", "multiple of 3", "e.g. 9"]),
    (["--devices", "two"], ["--devices", "'two'"]),
    (["--devices", "2", "--mode", "NUMBA"], ["--devices", "JAX"]),
    (["--num-processes", "2", "--process-id", "2"], ["--process-id", "0 to"]),
    (["--num-processes", "2", "--process-id", "1"], ["--coordinator", "HOST:PORT"]),
    (["--devices", "16", "--batch-size", "16"], ["--devices 16", "more devices than JAX sees"]),
])
def test_bad_device_settings(text, tmp_path, capsys, flags, needles):
    argv = [*TINY_LM, "--data", str(text), "--model-out", str(tmp_path / "m.npz"), *flags]
    check_user_error(train_main, argv, capsys, *needles)
    assert not (tmp_path / "m.npz").exists()


def test_the_tutorial_model_refuses_devices(text, tmp_path, capsys):
    argv = ["--data", str(text), "--format", "lines", "--devices", "2",
            "--model-out", str(tmp_path / "m.npz")]
    check_user_error(train_main, argv, capsys, "tutorial", "--devices")
