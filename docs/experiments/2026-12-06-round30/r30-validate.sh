#!/usr/bin/env bash
# Round 30's selection: the 33 hippocampus validation cases at full resolution, N = 10 (round 7's protocol),
# for the new pair, the shipped pair and round 27's default at 45 minutes, all measured on this machine.
# Two at a time, one thread each.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"; . .venv/bin/activate; mkdir -p runs/r30/val
cases=$(ls ../shared/data/hippocampus/images | sort | sed -n '134,166p' | sed 's/.nii.gz//')
ev() { OMP_NUM_THREADS=1 ldseg evaluate "$1" ../shared/data/hippocampus --cases $cases --samples 10 --progress none \
  -o runs/r30/val/$2 > runs/r30/val/$2.txt 2>&1; }
ev runs/r30/ldseg-d2.safetensors new-ldseg-d2 & ev Resources/Models/hippocampus.safetensors shipped-ldseg & wait
ev runs/r30/resunet.safetensors new-resunet & ev Resources/Baselines/hippocampus-resunet.safetensors shipped-resunet & wait
ev runs/r27/refine16.safetensors r27-default-45min & wait
date > runs/r30/val/done
