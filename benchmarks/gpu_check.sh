#!/usr/bin/env bash
# The GPU checks of a session that has a CUDA machine: the training benchmark in bf16, then the
# gpu-marked tests (the torch.compile one compiles with max-autotune: minutes). Run from the
# repository root; logs go to $OUT (or ./gpu-check). Extra arguments go to bench_train.py.
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" | tee -a "$OUT/gpu.txt"
timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/bench_train.py --device cuda --precision bf16-mixed "$@" 2>&1 | tee "$OUT/bench-train-gpu.log" | tail -12
timeout "${TESTS_TIMEOUT:-600}" python3 -m pytest -v -p no:cacheprovider -o addopts="" -m gpu tests 2>&1 | tee "$OUT/gpu-tests.log" | tail -15
