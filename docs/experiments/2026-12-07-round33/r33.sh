#!/usr/bin/env bash
# Round 33: the second seed of round 30's finer latent against the 3D default. The hippocampus LDSeg as shipped
# until round 32 (round 7's command, today's defaults) with and without --downsamplings 2, 80 minutes each,
# seed 1, both at the same time, one thread each, nothing else running; then round 30's probes, the
# full-resolution validation (33 cases, N = 10), two at a time, one thread each, and the Dice lost at
# sigma = 0.2 on the same validation cases (heldout_probe.py --validation). Rerunnable: resumes.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r33/val
declare -A flags=([ldseg-d2]="--downsamplings 2" [ldseg-default]="")
for v in ldseg-d2 ldseg-default; do
  [ -f runs/r33/$v.safetensors ] && [ -f runs/r33/$v.trained ] && continue
  resume=""; [ -d runs/r33/$v.run ] && resume="--resume"
  (OMP_NUM_THREADS=1 ldseg train ../shared/data/hippocampus -o runs/r33/$v.safetensors --cases 166 --size small \
    --grid 40 56 40 --class-names background anterior posterior --label-values 0 1 2 --intensity percentile \
    --time-budget 80 --batch-size 4 --modality MR --name hippocampus --seed 1 ${flags[$v]} \
    --title "Hippocampus, anterior and posterior (T1 MR)" --progress none $resume >> runs/r33/$v.stderr 2>&1 \
    && date > runs/r33/$v.trained) &
done
wait
for v in ldseg-d2 ldseg-default; do
  OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r33/$v.safetensors ../shared/data/hippocampus --samples 10 \
    --json runs/r33/$v.probe.json > runs/r33/$v.probe.txt 2>&1 &
done
wait
cases=$(ls ../shared/data/hippocampus/images | sort | sed -n '134,166p' | sed 's/.nii.gz//')
for v in ldseg-d2 ldseg-default; do
  OMP_NUM_THREADS=1 ldseg evaluate runs/r33/$v.safetensors ../shared/data/hippocampus --cases $cases --samples 10 \
    --progress none -o runs/r33/val/$v > runs/r33/val/$v.txt 2>&1 &
done
wait
OMP_NUM_THREADS=2 python scripts/heldout_probe.py ../shared/data/hippocampus runs/r33/ldseg-d2.safetensors \
  runs/r33/ldseg-default.safetensors --validation --samples 10 --sigma 0.2 --json runs/r33/noise.json > runs/r33/noise.txt 2>&1
date > runs/r33/done
