#!/usr/bin/env bash
# Round 24: capacity on a long budget. GlaS 64x96 small, 25 min each, seed 0, two variants of the
# default at the same time, one thread each (round 22's conditions; its decay0.99 run is the
# default's seed 0): a 16-channel image latent, and a refiner 32 wide.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r24
declare -A flags=([ilat16]="--image-latent-channels 16" [refine32]="--refine-width 32")
for v in ilat16 refine32; do
  resume=""; [ -d runs/r24/$v.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r24/$v.safetensors --size small --grid 64 96 \
    --time-budget 25 --seed 0 ${flags[$v]} --progress none $resume > runs/r24/$v.stderr 2>&1 &
done
wait
for v in ilat16 refine32; do
  OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r24/$v.safetensors ../shared/data/glas/train --samples 10 \
    --json runs/r24/$v.probe.json > runs/r24/$v.probe.txt 2>&1 &
done
wait
date > runs/r24/done
