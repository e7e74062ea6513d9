#!/usr/bin/env bash
# Round 27: the refiner 32 wide in 3D, a one-seed probe. The hippocampus LDSeg as shipped (round 7's command,
# today's defaults otherwise) with the default refiner (16) and with --refine-width 32, 45 minutes each, seed 0,
# both at the same time, one thread each, nothing else running. Rerunnable: resumes run folders present.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r27
declare -A flags=([refine16]="" [refine32]="--refine-width 32")
for v in refine16 refine32; do
  resume=""; [ -d runs/r27/$v.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/hippocampus -o runs/r27/$v.safetensors --cases 166 --size small \
    --grid 40 56 40 --class-names background anterior posterior --label-values 0 1 2 --intensity percentile \
    --time-budget 45 --batch-size 4 --modality MR --name hippocampus --seed 0 ${flags[$v]} \
    --title "Hippocampus, anterior and posterior (T1 MR)" --progress none $resume > runs/r27/$v.stderr 2>&1 &
done
wait
for v in refine16 refine32; do
  OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r27/$v.safetensors ../shared/data/hippocampus --samples 10 \
    --json runs/r27/$v.probe.json > runs/r27/$v.probe.txt 2>&1 &
done
wait
date > runs/r27/done
