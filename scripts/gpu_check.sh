#!/usr/bin/env bash
# The engine on a GPU through PyTensor's JAX backend, beside PyTorch on the same GPU.
#
# One short run (about 5 minutes): configs b, c and d of scripts/bench.py (the tutorial's
# model in minibatches of 32, LSTM 2x200 and GRU 2x200 on a PTB-shaped stream), the engine
# with --mode JAX against the PyTorch peer with --peer-device cuda, synthetic data of the same
# shapes. Results: the table on stdout and $OUT/gpu_bench.json (or checkpoints/).
#
# With this workplace's device tool: run scripts/gpu_wheels.sh here once, then
#   run(command="bash scripts/gpu_check.sh", carry=[".whl"], timeout_s=480)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# JAX takes 75% of GPU memory up front by default; the peer runs in another process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, pytensor, torch; print('jax', jax.__version__, jax.devices(), \
'| pytensor', pytensor.__version__, '| torch', torch.__version__, torch.cuda.is_available())"
out="${OUT:-checkpoints}/gpu_bench.json"
python3 scripts/bench.py --configs b,c,d --synthetic --mode JAX --peer-device cuda \
  --torch-python python3 --threads 1 --no-cold --reps 3 --out "$out"
