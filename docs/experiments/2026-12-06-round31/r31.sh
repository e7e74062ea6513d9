#!/usr/bin/env bash
# Round 31: the report's "new task from few cases" pair again, with today's 2D default (refiner 32, round 26;
# flip-spread sampling, round 29). runs/fewcases links the first 20 sorted file names of glas/train (round 13).
# Both architectures, default settings, --time-budget 20, seed 0, at the same time, one thread each, nothing
# else running. Then the held-out probe (the other 65 glas/train images) and the report's few-cases section.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r31
src=$(realpath ../shared/data/glas/train)
if [ ! -d runs/fewcases ]; then
  mkdir -p runs/fewcases/images runs/fewcases/labels
  for name in $(ls "$src/images" | sort | head -20); do
    ln -s "$src/images/$name" runs/fewcases/images/$name; ln -s "$src/labels/$name" runs/fewcases/labels/$name
  done
fi
for arch in ldseg resunet; do
  resume=""; [ -d runs/r31/fewcases-$arch.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train runs/fewcases -o runs/r31/fewcases-$arch.safetensors --architecture $arch \
    --time-budget 20 --seed 0 --progress none $resume > runs/r31/fewcases-$arch.stderr 2>&1 &
done
wait
OMP_NUM_THREADS=2 python scripts/heldout_probe.py ../shared/data/glas/train runs/r31/fewcases-{ldseg,resunet}.safetensors \
  --samples 10 --sigma 0.2 --json runs/r31/heldout.json > runs/r31/heldout.txt 2>&1
date > runs/r31/done
