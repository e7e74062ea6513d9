#!/usr/bin/env bash
# Round 28: a refiner 64 wide, round 24's conditions (GlaS 64x96, small, seed 0, 25 min, one thread, beside one
# other one-thread run, this AMX machine). Compared with round 24's refiner-32 and round 22's default runs.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r28
resume=""; [ -d runs/r28/refine64.run ] && resume="--resume"
OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r28/refine64.safetensors --size small --grid 64 96 \
  --time-budget 25 --seed 0 --refine-width 64 --progress none $resume > runs/r28/refine64.stderr 2>&1
OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r28/refine64.safetensors ../shared/data/glas/train --samples 10 \
  --json runs/r28/refine64.probe.json > runs/r28/refine64.probe.txt 2>&1
date > runs/r28/done
