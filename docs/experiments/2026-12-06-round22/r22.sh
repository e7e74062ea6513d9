#!/usr/bin/env bash
# Round 22: the per-epoch learning-rate decay on a long budget. GlaS 64x96 small, 25 min each,
# seed 0, the default decay 0.99 against 0.997, both at the same time, one thread each.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r22
for d in 0.99 0.997; do
  resume=""; [ -d runs/r22/decay$d.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r22/decay$d.safetensors --size small --grid 64 96 \
    --time-budget 25 --seed 0 --lr-decay $d --progress none $resume > runs/r22/decay$d.stderr 2>&1 &
done
wait
for d in 0.99 0.997; do
  OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r22/decay$d.safetensors ../shared/data/glas/train --samples 10 \
    --json runs/r22/decay$d.probe.json > runs/r22/decay$d.probe.txt 2>&1 &
done
wait
date > runs/r22/done
