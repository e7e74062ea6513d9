#!/usr/bin/env bash
# Remakes round 26's two model files (lost with that machine) without the 80-minute budget: the learning
# rate decays per epoch, not per minute, and every epoch's random streams are seeded from (seed, epoch),
# so a run stopped after epoch 170 (LDSeg) or 110 (Res-UNet) follows round 26's run exactly on the same
# CPU kind, and its best validation epoch (159, 98) is round 26's model. The logs are compared with
# round 26's afterwards; a mismatch means the file is NOT round 26's model.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r26
declare -A flags=([ldseg]="--refine-width 32 --epochs 170" [resunet]="--epochs 110")
for arch in ldseg resunet; do
  resume=""; [ -d runs/r26/glas-$arch.run ] && resume="--resume"
  OMP_NUM_THREADS=1 ldseg train ../shared/data/glas/train -o runs/r26/glas-$arch.safetensors --architecture $arch \
    --size small --grid 128 192 --intensity minmax --class-names background gland \
    --batch-size 4 --modality "H&E-histology-RGB" --name glas ${flags[$arch]} \
    --title "Gland segmentation (GlaS, H&E colon histology)" --progress json $resume \
    > runs/r26/glas-$arch.stdout 2> runs/r26/glas-$arch.progress.jsonl &
done
wait
date > runs/r26/trained
