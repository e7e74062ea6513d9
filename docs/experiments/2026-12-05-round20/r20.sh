#!/usr/bin/env bash
# Round 20: --energy-weight 1 LDSeg against the Res-UNet at the same budget, GlaS 64x96 small,
# 75 min each, seeds 0 and 1, all four at the same time (one thread each on 2 cores: equal
# shares, as round 19). The LDSeg runs repeat round 19's energy runs.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r20
for seed in 0 1; do
  for v in es resunet; do
    extra="--energy-weight 1"; [ $v = resunet ] && extra="--architecture resunet"
    OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r20/$v-s$seed.safetensors --size small --grid 64 96 --time-budget 75 --seed $seed --progress none $extra > runs/r20/$v-s$seed.stderr 2>&1 &
  done
done
wait
for f in runs/r20/*-s?.safetensors; do
  OMP_NUM_THREADS=2 python scripts/recipe_probe.py $f ../shared/data/glas/train --samples 10 --json ${f%.safetensors}.probe.json > ${f%.safetensors}.probe.txt 2>&1
done
date > runs/r20/done
