"""experiments/ptb_sweep.py: which runs it starts, its table, and its errors (the trainings
themselves are what the recipes' own tests cover)."""

import json

from experiments_loader import load

ptb_sweep = load("ptb_sweep")


def write_log(path, valid, test, speeds):
    """A log shaped like ``train --log-json``'s, one history entry per epoch."""
    path.write_text(json.dumps({"history": [
        {"epoch": i + 1, "valid_ppl": v, "test_ppl": t, "tokens_per_second": s}
        for i, (v, t, s) in enumerate(zip(valid, test, speeds))]}))


class Finished:
    """A stand-in for a training process: it writes its log and exits with ``rc``."""

    def __init__(self, log, rc):
        self.log, self.rc = log, rc

    def wait(self):
        if self.rc == 0:
            write_log(self.log, [300.0, 200.0, 150.0], [290.0, 190.0, 140.0], [10, 20, 30])
        return self.rc


def fake_start(started, rc=0):
    def start(args, name, flags):
        started.append((name, flags))
        return Finished(args.out / f"{name}.json", rc)
    return start


def test_complete_logs_are_not_rerun_and_the_best_epoch_is_tabled(tmp_path, monkeypatch, capsys):
    write_log(tmp_path / "a.json", [200.0, 150.0, 160.0], [190.0, 140.5, 155.0], [1000, 2000, 3000])
    write_log(tmp_path / "b.json", [250.0], [240.0], [500])  # one epoch of three: run again
    started = []
    monkeypatch.setattr(ptb_sweep, "start", fake_start(started))
    argv = ["--config", "configs/ptb-gru-vd.toml", "--epochs", "3", "--out", str(tmp_path),
            "--run", "a=--learning-rate 5", "--run", "b=--learning-rate 10 --dropout 0.5"]
    assert ptb_sweep.main(argv) == 0
    assert started == [("b", ["--learning-rate", "10", "--dropout", "0.5"])]
    out = capsys.readouterr().out
    assert "| a | `--learning-rate 5` | 3 | 150.00 (2) | 140.50 | 2,000 |" in out
    assert "| b | `--learning-rate 10 --dropout 0.5` | 3 | 150.00 (3) | 140.00 | 20 |" in out


def test_a_failed_run_stops_the_sweep_naming_its_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ptb_sweep, "start", fake_start([], rc=1))
    argv = ["--config", "configs/ptb-gru-vd.toml", "--out", str(tmp_path), "--run", "x="]
    assert ptb_sweep.main(argv) == 2
    assert capsys.readouterr().err == f"error: run x failed: see {tmp_path / 'x.log'}\n"


def test_bad_arguments_are_one_line_errors(tmp_path, capsys):
    assert ptb_sweep.main(["--config", "configs/ptb-gru-vd.toml", "--run", "no flags"]) == 2
    assert "write it as NAME=FLAGS" in capsys.readouterr().err
    assert ptb_sweep.main(["--config", str(tmp_path / "none.toml"), "--run", "a="]) == 2
    assert "no recipe" in capsys.readouterr().err


def test_the_table_alone_runs_nothing_and_shows_runs_stopped_early(tmp_path, monkeypatch, capsys):
    write_log(tmp_path / "short.json", [300.0], [280.0], [900])
    monkeypatch.setattr(ptb_sweep, "start", fake_start(started := []))
    argv = ["--config", "configs/ptb-gru-vd.toml", "--out", str(tmp_path), "--table"]
    assert ptb_sweep.main([*argv, "--run", "short="]) == 0
    assert started == [] and "| short | `` | 1 | 300.00 (1) | 280.00 | 900 |" in capsys.readouterr().out
    assert ptb_sweep.main([*argv, "--run", "absent="]) == 2
    assert "no log" in capsys.readouterr().err
