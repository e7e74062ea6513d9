#!/usr/bin/env bash
# Round 29: flip-spread sampling on fresh models of today's 2D default (refiner 32). GlaS 64x96 small,
# 25 min each, seeds 2 and 3, both at the same time, one thread each (rounds 22, 24 and 25's conditions),
# then each probed plain and with --flips (N = 10, validation images, model grid).
# Rerunnable: resumes run folders present.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r29
for s in 2 3; do
  resume=""; [ -d runs/r29/default-s$s.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r29/default-s$s.safetensors --size small --grid 64 96 \
    --time-budget 25 --seed $s --progress none $resume > runs/r29/default-s$s.stderr 2>&1 &
done
wait
for s in 2 3; do
  for f in plain flips; do
    flag=""; [ $f = flips ] && flag="--flips"
    OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r29/default-s$s.safetensors ../shared/data/glas/train \
      --samples 10 $flag --json runs/r29/default-s$s-$f.probe.json > runs/r29/default-s$s-$f.probe.txt 2>&1 &
  done
  wait
done
date > runs/r29/done
