#!/usr/bin/env bash
# The engine on a GPU through PyTensor's JAX backend, beside PyTorch on the same GPU.
#
# One short run: configs c and d of experiments/bench.py (LSTM 2x200 and GRU 2x200 on a PTB
# stream; CONFIGS=b,c,d adds the tutorial's model in minibatches), the engine with --mode JAX
# against the PyTorch peer with --peer-device cuda, on the same data of the same shapes: PTB's
# training text when experiments/gpu_wheels.sh put it in .whl/data, else synthetic sentences.
# Both sides compute in full float32 (no TF32): JAX's matrix products at "highest" precision,
# the peer with TF32 switched off. Results: the table on stdout and $OUT/gpu_bench.json (or
# checkpoints/).
#
# On a machine without a package index: run experiments/gpu_wheels.sh where there is one, copy
# the repository with its .whl/ folder over, then: bash experiments/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target .gpu-site .whl/*.whl
  export PYTHONPATH="$PWD/.gpu-site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# JAX takes 75% of GPU memory up front by default; the peer runs in another process.
export XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_DEFAULT_MATMUL_PRECISION=highest
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, pytensor, torch; print('jax', jax.__version__, jax.devices(), \
'| pytensor', pytensor.__version__, '| torch', torch.__version__, torch.cuda.is_available())"
out="${OUT:-checkpoints}/gpu_bench.json"
data=(--synthetic)
[ -f .whl/data/ptb/ptb.train.txt ] && data=(--data-dir .whl/data)
# --tokens 10: a GPU trains the CPU's token budget too fast to time well.
# Config b (sentences) is left out by default: the JAX engine compiles one function per padded
# sentence length, each taking seconds on the GPU (docs/benchmarks.md).
python3 experiments/bench.py --configs "${CONFIGS:-c,d}" "${data[@]}" --tokens 10 --mode JAX \
  --peer-device cuda --torch-python python3 --threads 1 --no-cold --reps 5 --out "$out"
