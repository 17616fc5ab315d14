#!/usr/bin/env bash
# GPU check: every test marked `cuda` and the GPU benchmarks (AMP training step, torchrun + NCCL at world
# size 1, torch synthesis batched on CUDA vs one CPU thread, predict throughput in float32/float16/
# bfloat16) in one go, under a hard budget (default 450 s; each step has its own timeout). Writes
# OUT/gpu_check.log (everything printed) and OUT/gpu_check_summary.json (status, seconds and tables of
# every finished step, rewritten after each step). See benchmarks/gpu_check.py and docs/benchmarks.md,
# "GPU check".
#
#   bash benchmarks/gpu_check.sh --fetch-wheels      # here, with network: wheels the GPU machine lacks
#   bash benchmarks/gpu_check.sh [--out DIR] [--budget S] [--only STEP...]   # on the GPU machine
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --dry-run --out runs/gpu_check_dry  # CPU, tiny
#
# What it assumes of the GPU machine (the workplace's H200 image): python3 (3.12) with torch, torchvision,
# numpy, opencv-python-headless, pyyaml, scipy, matplotlib, tqdm and pytest installed, no network, and no
# darkseg install: darkseg runs from src/ (PYTHONPATH). pycocotools, which darkseg imports and that image
# lacks, comes as a wheel in .whl/ (in .gitignore; --fetch-wheels puts it there; the device tool's call
# names .whl in `carry`) and is installed into /tmp/site. That image's torch (2.11) is older than the
# version pyproject.toml pins; the check runs with whatever torch is there and prints its version.
#
# One command for the device tool (carry [".whl"], timeout_s 540):
#   bash benchmarks/gpu_check.sh --out $OUT
#
# Not included: the GPU noise study, benchmarks/ablation_noise_gpu.sh, a separate and much longer command.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ "${1:-}" == "--fetch-wheels" ]]; then
  mkdir -p .whl
  "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl pycocotools==2.0.11
  exit 0
fi
if ! "$PYTHON" -c "import pycocotools" 2>/dev/null; then
  if compgen -G ".whl/*.whl" > /dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "gpu_check.sh: pycocotools is missing and .whl/ holds no wheels; run: bash benchmarks/gpu_check.sh --fetch-wheels" >&2
    exit 2
  fi
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
