#!/usr/bin/env bash
# The GPU measurements of issue 14, as one short script for a machine with CUDA (about 5 min):
#   bash benchmarks/gpu_check.sh            # results under benchmarks/results/ (and $OUT if set)
# 1. ViT-B-16 (random weights, 224 px) encoding in fp32 and bf16: images/s, GFLOP per image and
#    the fraction of the GPU's bf16 dense peak (bench_gpu_vit.py);
# 2. the batched tuning grid against sequential fits on CUDA (bench_grid.py --device cuda).
# Without CUDA it says so and writes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device here; nothing measured"; exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY benchmarks/bench_gpu_vit.py --out benchmarks/results/embed_gpu_vit
$PY benchmarks/bench_grid.py --device cuda --threads 1 --out benchmarks/results/grid_cuda
if [ -n "${OUT:-}" ]; then cp benchmarks/results/embed_gpu_vit.* benchmarks/results/grid_cuda.* "$OUT"/; fi
