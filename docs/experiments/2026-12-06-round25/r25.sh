#!/usr/bin/env bash
# Round 25: round 24's lead (a refiner 32 wide) against the default on a second seed. GlaS 64x96 small,
# 25 min each, seed 1, both at the same time, one thread each (rounds 22 and 24's conditions).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r25
declare -A flags=([default-s1]="" [refine32-s1]="--refine-width 32")
for v in default-s1 refine32-s1; do
  resume=""; [ -d runs/r25/$v.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r25/$v.safetensors --size small --grid 64 96 \
    --time-budget 25 --seed 1 ${flags[$v]} --progress none $resume > runs/r25/$v.stderr 2>&1 &
done
wait
for v in default-s1 refine32-s1; do
  OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r25/$v.safetensors ../shared/data/glas/train --samples 10 \
    --json runs/r25/$v.probe.json > runs/r25/$v.probe.txt 2>&1 &
done
wait
date > runs/r25/done
