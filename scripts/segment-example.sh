#!/usr/bin/env bash
# The main job: install LDSeg into ./.venv, then segment a real T1 MR crop with
# the shipped default model (hippocampus), 10 samples for the uncertainty.
# Writes out/example/<case>_{labels,sd,probabilities}.nii.gz, _preview.png and _result.json.
#   bash scripts/segment-example.sh [IMAGE] [OUTDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
# Default image: a case of the held-out 20% of the hippocampus data (never used
# for training or model selection), used in place from ../shared/data.
IMAGE=${1:-../shared/data/hippocampus/images/hippocampus_393.nii.gz}
OUTDIR=${2:-out/example}
ldseg segment "$IMAGE" -o "$OUTDIR" --samples 10
