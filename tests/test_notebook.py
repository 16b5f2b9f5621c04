"""The tutorial notebook runs end to end, on small sizes, and shows what it says it shows.

The notebook's ``parameters`` cell is replaced by small sizes, the notebook is executed in a
kernel of this interpreter, and one appended cell prints the ``results`` the notebook gathered
as JSON, which the assertions read. The kernel is declared in a temporary kernelspec that
names ``sys.executable``, so the run never depends on which ``python`` a ``PATH`` finds.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "rnn_tutorial.ipynb"
KERNEL = "rnn-theano-notebook-test"

# HIDDEN = 6 and BPTT_TRUNCATE = 4 build the very sgd_step graph that test_theano_rnn.py
# compiles (the hidden size and the truncation are constants of the graph, the vocabulary size
# is not), so PyTensor's compile cache pays the cold Numba compile once for both files.
SMALL = """\
N_SENTENCES = 240
VOCAB = 300
HIDDEN = 6
EPOCHS = 2
LEARNING_RATE = 0.01
BPTT_TRUNCATE = 4
MODE = "NUMBA"
BLAS_THREADS = 1
N_TIMED = 5
MAX_K = 10
SEED = 0
"""

REPORT = "import json\nprint(json.dumps(results))"


def parameter_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    """The notebook run at the small sizes, with a last cell that prints ``results``."""
    tmp = tmp_path_factory.mktemp("notebook")
    spec_dir = tmp / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rnn-theano test kernel", "language": "python"}))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    (cell,) = parameter_cells(nb)
    defaults = cell.source
    cell.source = SMALL
    assert set(_names(defaults)) == set(_names(SMALL)), "the test sets every parameter"
    nb.cells.append(nbformat.v4.new_code_cell(REPORT))

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
        # A cold Numba compile of sgd_step takes tens of seconds; no other cell comes close.
        NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                       resources={"metadata": {"path": str(tmp)}}).execute()
    return nb


@pytest.fixture(scope="module")
def results(executed: nbformat.NotebookNode) -> dict:
    outputs = executed.cells[-1].outputs
    return json.loads("".join(o.get("text", "") for o in outputs if o.output_type == "stream"))


def _names(source: str) -> list[str]:
    return [line.split("=")[0].strip() for line in source.splitlines() if "=" in line]


def test_committed_notebook_is_clean():
    """Stored without outputs, with exactly one cell of parameters for tools to replace."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert len(parameter_cells(nb)) == 1
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_runs_without_errors_and_draws_both_figures(executed):
    outputs = [o for cell in executed.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2


def test_loss_at_init_is_ln_c(results):
    assert results["ln_C"] == pytest.approx(math.log(300))
    assert abs(results["init_loss"] - results["ln_C"]) < 0.05


def test_gradient_check_passed(results):
    assert 0 < results["gradient_check_max_error"] < 0.01


def test_numpy_and_pytensor_steps_agree(results):
    assert results["max_loss_difference"] < 1e-8
    assert results["speedup"] > 0  # reported only: timing depends on the machine


def test_training_lowers_the_loss(results):
    held_out, train = results["held_out_losses"], results["train_losses"]
    assert len(held_out) == 3 and len(train) == 2
    assert held_out[-1] < held_out[0] - 0.3
    assert train[1] < train[0]


def test_generates_sentences(results):
    assert results["generated"]
    assert all(isinstance(s, str) and s.strip() for s in results["generated"])


def test_gradient_vanishes(results):
    assert results["n_long_sentences"] >= 20
    for label in ("initial", "trained"):
        log_norms = results["log10_norms"][label]
        assert len(log_norms) == 11
        # At least a factor of ten lost over ten steps back, for both sets of parameters.
        assert log_norms[-1] < log_norms[0] - 1, label
