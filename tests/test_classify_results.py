"""experiments/classify_results.py: the classification table and TREC's confusion matrix, from
the run logs (the trainings themselves are what the recipes' own tests cover)."""

import json

import numpy as np
import pytest

from experiments_loader import load

classify_results = load("classify_results")


def single_run(path, confusion):
    """A log shaped like ``train-classifier --log-json``'s, with a test confusion matrix."""
    confusion = np.asarray(confusion)
    tp = np.diag(confusion)
    f1 = 2 * tp / (confusion.sum(axis=0) + confusion.sum(axis=1))
    path.write_text(json.dumps({"labels": [str(k) for k in range(len(confusion))],
                                "history": [], "test_confusion": confusion.tolist(),
                                "test_accuracy": tp.sum() / confusion.sum(),
                                "test_macro_f1": f1.mean()}))


def test_table_and_confusion_from_existing_logs(tmp_path, capsys):
    first, second = np.diag([10, 5, 2, 8, 6, 9]), np.diag([9, 5, 2, 8, 6, 9])
    second[0, 1] = 1  # one DESC question taken for ENTY
    single_run(tmp_path / "trec-seed0.json", first)
    single_run(tmp_path / "trec-seed1.json", second)
    for seed, folds in ((0, [0.70, 0.80]), (1, [0.75, 0.75])):  # cross-validation summaries
        (tmp_path / f"mr-seed{seed}.json").write_text(json.dumps(
            {"test_accuracy": folds, "test_macro_f1": folds}))
    assert classify_results.main(["--datasets", "trec", "mr", "--seeds", "0", "1",
                                  "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["accuracy"] for r in results["mr"]] == pytest.approx([75.0, 75.0])
    assert results["trec"][1]["accuracy"] == pytest.approx(100 * 39 / 40)
    table = capsys.readouterr().out
    mean, std = np.mean([100.0, 97.5]), np.std([100.0, 97.5], ddof=1)
    assert f"| TREC | {mean:.2f} ± {std:.2f} |" in table
    assert "| MR (10-fold) | 75.00 ± 0.00 | 75.00 ± 0.00 | 2 | 76.1 |" in table
    summed = classify_results.confusion([tmp_path / "trec-seed0.json",
                                         tmp_path / "trec-seed1.json"])
    assert summed[0].tolist() == [19, 1, 0, 0, 0, 0] and summed.sum() == 80
    assert (tmp_path / "trec-confusion.png").read_bytes().startswith(b"\x89PNG")
