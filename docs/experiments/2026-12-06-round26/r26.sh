#!/usr/bin/env bash
# Round 26: round 21's GlaS pair (128x192, small, 80 min, both at the same time, one thread each, nothing
# else running) with the LDSeg's refiner 32 wide; the Res-UNet is round 21's command again.
# Rerunnable: with run folders present it resumes them (the budget counts across resumes).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r26
declare -A flags=([ldseg]="--refine-width 32" [resunet]="")
for arch in ldseg resunet; do
  resume=""; [ -d runs/r26/glas-$arch.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r26/glas-$arch.safetensors --architecture $arch \
    --size small --grid 128 192 --intensity minmax --class-names background gland --time-budget 80 \
    --batch-size 4 --modality "H&E-histology-RGB" --name glas ${flags[$arch]} \
    --title "Gland segmentation (GlaS, H&E colon histology)" --progress json $resume \
    > runs/r26/glas-$arch.stdout 2> runs/r26/glas-$arch.progress.jsonl &
done
wait
# selection as round 21: the 17 validation images at full resolution, N = 10
cases=$(for i in $(seq 71 85) 8 9; do printf "train_%s " $i; done)
ev() { OMP_NUM_THREADS=1 ldseg evaluate "$1" ../shared/data/glas/train --cases $cases --samples 10 --progress none -o runs/r26/val/$2 > runs/r26/val/$2.txt 2>&1; }
mkdir -p runs/r26/val
ev runs/r26/glas-ldseg.safetensors new-ldseg & ev runs/r26/glas-resunet.safetensors new-resunet & wait
for arch in ldseg resunet; do
  OMP_NUM_THREADS=1 python scripts/recipe_probe.py runs/r26/glas-$arch.safetensors ../shared/data/glas/train --samples 10 \
    --json runs/r26/glas-$arch.probe.json > runs/r26/glas-$arch.probe.txt 2>&1 &
done
wait
date > runs/r26/done
