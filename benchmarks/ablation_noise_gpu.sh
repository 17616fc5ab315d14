#!/usr/bin/env bash
# The noise study on one GPU (docs/benchmarks.md, "Noise study"): the same rows, seeds, data and test sets
# as the CPU study, stage 2 10x longer (batch 16 x 625 iterations at the paper's lr 0.02 for batch 16,
# warm-up 100, no clipping); stage 1 sees as many images as the CPU one (batch 16 x 750). Stage-2 runs go
# JOBS at a time as separate processes sharing the GPU (small models leave it mostly idle otherwise).
# Resumable: rerun the same command; finished runs are read from benchmarks/results/ablation_noise_gpu.csv.
#
#   PYTHON=.venv/bin/python bash benchmarks/ablation_noise_gpu.sh [OUT]        # then commit the CSVs
#   SMOKE=1 PYTHON=.venv/bin/python bash benchmarks/ablation_noise_gpu.sh      # tiny, on the CPU, seconds
#
# STAGE1=path/to/final.pth reuses a stage-1 checkpoint (e.g. the CPU study's runs/ablation_noise_cpu/
# stage1/final.pth, same data and model) instead of training one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${1:-runs/ablation_noise_gpu}
JOBS=${JOBS:-10}
SEEDS=(0 1 2 3 4)
ROWS=(plain awd scb twoview dsl full)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
A=(benchmarks/ablation.py --preset noise --scale gpu --out "$OUT" --threads "$OMP_NUM_THREADS")
if [[ -n "${SMOKE:-}" ]]; then
  OUT=${1:-runs/ablation_noise_gpu_smoke}
  JOBS=2
  A=(benchmarks/ablation.py --preset noise --scale gpu --out "$OUT" --threads 1 --device cpu
    --results "$OUT/smoke.csv" --docs "$OUT/smoke.md" --size 64 48 --train-images 4 --val-images 2
    --test-images 2 --clutter 1 --stage1-iters 2 --stage1-batch 2 --stage1-evals 1 --iters 2 --batch 2
    --warmup 1 --primary ratio100-300
    --set model.fpn_channels=16 model.box_head_dim=32 model.mask_head_channels=16)
  mkdir -p "$OUT" && printf '# smoke\n' > "$OUT/smoke.md"
else
  A+=(--device cuda)
fi
mkdir -p "$OUT"
if [[ -n "${STAGE1:-}" && ! -f "$OUT/stage1/final.pth" ]]; then
  mkdir -p "$OUT/stage1"
  cp "$STAGE1" "$OUT/stage1/final.pth"
  printf '{"iterations": 0, "seconds": 0.0, "eval_history": {}, "eval": null, "reused_from": "%s"}\n' \
    "$STAGE1" > "$OUT/stage1/summary.json"
fi
t0=$SECONDS
# 1. data (CPU), stage 1 and the pilot (the plain row, seed 0) on the GPU
"$PYTHON" "${A[@]}" --stage pilot > "$OUT/pilot.log" 2>&1 || { tail -20 "$OUT/pilot.log"; exit 1; }
echo "data + stage 1 + pilot: $((SECONDS - t0)) s"
# 2. stage 2: every (seed, row), JOBS processes at a time, seed-major
fail=0
for s in "${SEEDS[@]}"; do
  for v in "${ROWS[@]}"; do
    while (($(jobs -rp | wc -l) >= JOBS)); do wait -n || fail=1; done
    "$PYTHON" "${A[@]}" --stage stage2 --seeds "$s" --variants "$v" > "$OUT/stage2_${v}_seed$s.log" 2>&1 &
  done
done
while (($(jobs -rp | wc -l) > 0)); do wait -n || fail=1; done
echo "stage 2: $((SECONDS - t0)) s in all"
# 3. the tables (docs/benchmarks.md, "Noise study: results (gpu)")
"$PYTHON" "${A[@]}" --stage report --write-docs | tail -3
if ((fail)); then echo "some stage-2 processes failed: see $OUT/stage2_*.log" >&2; exit 1; fi
