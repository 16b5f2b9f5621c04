"""experiments/plot_curves.py: training-curve figures from ``--log-json`` files."""

import json

from experiments_loader import load

plot_curves = load("plot_curves")

PNG = b"\x89PNG\r\n\x1a\n"


def training_log(path, settings, epochs=3):
    """A log shaped like ``rnn-theano train --log-json``'s: settings and per-epoch history."""
    history = [{"epoch": e, "learning_rate": 1.0, "train_ppl": 300.0 / e, "valid_ppl": 250.0 / e,
                "test_ppl": 240.0 / e, "seconds": 60.0 * e} for e in range(1, epochs + 1)]
    path.write_text(json.dumps({"settings": settings, "parameters": 4_650_000,
                                "history": history}))
    return path


FLAT = {"cell": "gru", "layers": 2, "hidden_dim": 200, "optimizer": "sgd",
        "learning_rate": 5.0, "tie_weights": False, "dropout": 0.0}
GROUPED = {"model": {"arch": "lstm", "layers": 1, "hidden_dim": 64, "tie_weights": True,
                     "dropout": 0.3},
           "train": {"optimizer": "adam", "lr": 0.002, "recurrent_lr_scale": 0.25}}


def test_titles_read_flat_and_grouped_settings():
    assert plot_curves.run_title({"settings": FLAT, "parameters": 4_650_000}) == \
        "2x200 GRU, sgd lr 5, 4.65M parameters"
    assert plot_curves.run_title({"settings": GROUPED, "parameters": 1_000_000}) == \
        "1x64 LSTM, tied, dropout 0.3, adam lr 0.002 (Wh x0.25), 1.00M parameters"


def test_subtitles_say_when_averaging_began(tmp_path):
    run = json.loads(training_log(tmp_path / "rnn.json", FLAT, epochs=4).read_text())
    assert plot_curves.run_subtitle(run) == "4 epochs, 4 min"
    run["history"][1]["averaging"] = True  # the trainer marks the epoch that triggered it
    assert plot_curves.run_subtitle(run) == "4 epochs, 4 min, averaged after epoch 2"


def test_one_panel_per_log_with_the_reference(tmp_path, capsys):
    gru = training_log(tmp_path / "gru.json", FLAT)
    lstm = training_log(tmp_path / "lstm.json", GROUPED, epochs=1)
    out = tmp_path / "figures" / "curves.png"
    assert plot_curves.main([str(gru), str(lstm), "--reference", "gru=120",
                             "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == PNG
    assert capsys.readouterr().out.strip() == f"wrote {out}"


def check_user_error(argv, capsys, needle):
    """Exit status 2 and exactly one line on stderr that names the problem."""
    assert plot_curves.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_refuses_what_is_not_a_training_log(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text('{"settings": {}, "history": []}')
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff\xfe not json")
    check_user_error([str(tmp_path / "missing.json")], capsys, "no such file")
    check_user_error([str(garbage)], capsys, "not a training log")
    check_user_error([str(empty)], capsys, "no finished epoch")
    check_user_error([str(empty), "--reference", "x=abc"], capsys, "NAME=PPL")
    check_user_error([str(empty), "--reference", "x=-1"], capsys, "positive number")
    check_user_error([], capsys, "the following arguments are required")



def png_size(path):
    """(width, height) in pixels from a PNG's header."""
    head = path.read_bytes()[:24]
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_more_than_three_logs_go_in_rows_of_three(tmp_path):
    logs = [str(training_log(tmp_path / f"run{i}.json", FLAT)) for i in range(4)]
    two, four = tmp_path / "two.png", tmp_path / "four.png"
    assert plot_curves.main([*logs[:2], "--out", str(two)]) == 0
    assert plot_curves.main([*logs, "--out", str(four)]) == 0
    (w2, h2), (w4, h4) = png_size(two), png_size(four)
    assert abs(w4 / w2 - 3 / 2) < 0.02 and abs(h4 / h2 - 2) < 0.02
