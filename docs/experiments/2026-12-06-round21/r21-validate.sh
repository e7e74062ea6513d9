#!/usr/bin/env bash
# Round 21's selection: the 17 GlaS validation images at full resolution, N = 10, as round 9,
# for the new pair and the shipped pair (measured again on this machine). Two at a time, one thread each.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r21/val
cases=$(for i in $(seq 71 85) 8 9; do printf "train_%s " $i; done)
ev() { OMP_NUM_THREADS=1 ldseg evaluate "$1" ../shared/data/glas/train --cases $cases --samples 10 --progress none -o runs/r21/val/$2 > runs/r21/val/$2.txt 2>&1; }
ev Resources/Models/glas.safetensors shipped-ldseg & ev runs/r21/glas-ldseg.safetensors new-ldseg & wait
ev Resources/Baselines/glas-resunet.safetensors shipped-resunet & ev runs/r21/glas-resunet.safetensors new-resunet & wait
date > runs/r21/val/done
