#!/usr/bin/env bash
# The pretrain -> fine-tune ablation at CPU scale on a 2-core machine (docs/benchmarks.md, "Pretrain →
# fine-tune"): two single-thread processes at a time. Resumable: rerun the same command after an
# interruption; finished stage-2 runs are read from benchmarks/results/ablation_finetune_cpu.csv and
# stage 1 resumes from OUT/stage1/last.pth.
#
#   PYTHON=.venv/bin/python bash benchmarks/ablation_finetune_cpu.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
TORCHRUN=${TORCHRUN:-$(dirname "$PYTHON")/torchrun}
OUT=${1:-runs/ablation_finetune}
export OMP_NUM_THREADS=1
A=(benchmarks/ablation.py --preset finetune --out "$OUT" --threads 1)
# 1. scenes and test renderings (one process)
"$PYTHON" "${A[@]}" --stage data
# 2. stage 1: plain Mask R-CNN on clean scenes, 2 processes (DDP, gloo) x batch 2
"$TORCHRUN" --standalone --nproc_per_node 2 "${A[@]}" --stage pretrain
# 3. stage 2: two processes, variants split so that both take about as long (DSL runs cost ~2x)
"$PYTHON" "${A[@]}" --stage finetune --variants none plain awd scb sensor > "$OUT/finetune_a.log" 2>&1 &
"$PYTHON" "${A[@]}" --stage finetune --variants dsl full > "$OUT/finetune_b.log" 2>&1
wait
# 4. tables into docs/benchmarks.md
"$PYTHON" "${A[@]}" --stage report --write-docs
