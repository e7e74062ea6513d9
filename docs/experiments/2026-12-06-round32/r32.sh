#!/usr/bin/env bash
# Round 32: round 30's pair (hippocampus, LDSeg --downsamplings 2 and its Res-UNet, seed 0) resumed from its
# checkpoints to 140 minutes each (round 10's budget), both at the same time, one thread each, nothing else
# running; then the probes and the full-resolution validation (round 30's). Run folders are copied from
# runs/r30 once, so round 30's 80-minute files stay. Rerunnable: resumes where it stopped.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r32/val
declare -A flags=([ldseg-d2]="--downsamplings 2" [resunet]="--architecture resunet")
for v in ldseg-d2 resunet; do
  [ -d runs/r32/$v.run ] || cp -a runs/r30/$v.run runs/r32/$v.run
  OMP_NUM_THREADS=1 ldseg train ../shared/data/hippocampus -o runs/r32/$v.safetensors --cases 166 --size small \
    --grid 40 56 40 --class-names background anterior posterior --label-values 0 1 2 --intensity percentile \
    --time-budget 140 --batch-size 4 --modality MR --name hippocampus --seed 0 ${flags[$v]} \
    --title "Hippocampus, anterior and posterior (T1 MR)" --progress none --resume >> runs/r32/$v.stderr 2>&1 &
done
wait
cases=$(ls ../shared/data/hippocampus/images | sort | sed -n '134,166p' | sed 's/.nii.gz//')
for v in ldseg-d2 resunet; do
  OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r32/$v.safetensors ../shared/data/hippocampus --samples 10 \
    --json runs/r32/$v.probe.json > runs/r32/$v.probe.txt 2>&1 &
done
wait
for v in ldseg-d2 resunet; do
  OMP_NUM_THREADS=1 ldseg evaluate runs/r32/$v.safetensors ../shared/data/hippocampus --cases $cases --samples 10 \
    --progress none -o runs/r32/val/$v > runs/r32/val/$v.txt 2>&1 &
done
wait
date > runs/r32/done
