#!/usr/bin/env bash
# Round 21: round 17's GlaS pair (today's 2D default, 128x192, small, 80 min) on a machine with
# fast bf16 (AMX), as round 9 had. Both at the same time, one thread each, nothing else running.
# Rerunnable: with run folders present it resumes them (the budget counts across resumes).
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r21
for arch in ldseg resunet; do
  resume=""; [ -d runs/r21/glas-$arch.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r21/glas-$arch.safetensors --architecture $arch \
    --size small --grid 128 192 --intensity minmax --class-names background gland --time-budget 80 \
    --batch-size 4 --modality "H&E-histology-RGB" --name glas \
    --title "Gland segmentation (GlaS, H&E colon histology)" --progress json $resume \
    > runs/r21/glas-$arch.stdout 2> runs/r21/glas-$arch.progress.jsonl &
done
wait
date > runs/r21/done
