#!/usr/bin/env bash
# Round 30: a finer latent in 3D. The hippocampus LDSeg as shipped (round 7's command, today's defaults
# otherwise) with --downsamplings 2 (latent 10 x 14 x 10 instead of 5 x 7 x 5), beside its same-budget
# Res-UNet, 80 minutes each, seed 0, both at the same time, one thread each, nothing else running.
# Rerunnable: resumes run folders present.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r30
declare -A flags=([ldseg-d2]="--downsamplings 2" [resunet]="--architecture resunet")
for v in ldseg-d2 resunet; do
  resume=""; [ -d runs/r30/$v.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/hippocampus -o runs/r30/$v.safetensors --cases 166 --size small \
    --grid 40 56 40 --class-names background anterior posterior --label-values 0 1 2 --intensity percentile \
    --time-budget 80 --batch-size 4 --modality MR --name hippocampus --seed 0 ${flags[$v]} \
    --title "Hippocampus, anterior and posterior (T1 MR)" --progress none $resume > runs/r30/$v.stderr 2>&1 &
done
wait
OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r30/ldseg-d2.safetensors ../shared/data/hippocampus --samples 10 \
  --json runs/r30/ldseg-d2.probe.json > runs/r30/ldseg-d2.probe.txt 2>&1 &
OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r30/resunet.safetensors ../shared/data/hippocampus --samples 10 \
  --json runs/r30/resunet.probe.json > runs/r30/resunet.probe.txt 2>&1 &
wait
date > runs/r30/done
