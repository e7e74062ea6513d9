#!/usr/bin/env bash
# Round 19: default vs --energy-weight 1 at a long budget, GlaS 64x96 small, 75 min each,
# seeds 0 and 1, all four at the same time (one thread each on 2 cores: equal shares).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r19
for seed in 0 1; do
  for v in base es; do
    extra=""; [ $v = es ] && extra="--energy-weight 1"
    OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r19/$v-s$seed.safetensors --size small --grid 64 96 --time-budget 75 --seed $seed --progress none $extra > runs/r19/$v-s$seed.stderr 2>&1 &
  done
done
wait
for f in runs/r19/*-s?.safetensors; do
  OMP_NUM_THREADS=2 python scripts/recipe_probe.py $f ../shared/data/glas/train --samples 10 --json ${f%.safetensors}.probe.json > ${f%.safetensors}.probe.txt 2>&1
done
date > runs/r19/done
