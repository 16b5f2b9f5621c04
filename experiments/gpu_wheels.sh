#!/usr/bin/env bash
# Download into .whl/ the wheels that experiments/gpu_check.sh installs on a GPU machine without
# a package index, one that has Python 3.12, jax with CUDA, torch, numpy, scipy and numba but
# lacks PyTensor, its small dependencies and NLTK; copy PTB's training text there too when the
# data directory ($RNN_THEANO_DATA, else ./data) has it.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PY:-.venv/bin/python}
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  "pytensor==$("$PY" -c 'import pytensor; print(pytensor.__version__)')" \
  etuples logical-unification miniKanren cons nltk
ptb="${RNN_THEANO_DATA:-data}/ptb/ptb.train.txt"
if [ -f "$ptb" ]; then mkdir -p .whl/data/ptb && cp "$ptb" .whl/data/ptb/; fi
ls -R .whl
