#!/usr/bin/env bash
# The main job: install LDSeg into ./.venv, make the example image -- a crop around the left
# hippocampus of the MNI152 T1 template that ships inside the nilearn wheel (the `example`
# extra; nothing is downloaded at run time beyond pip) -- and segment it with the shipped
# default model (hippocampus), 10 samples for the uncertainty. Writes to out/example/:
# mni152_left_hippocampus.nii.gz (the image) and mni152_left_hippocampus_{labels,sd,
# probabilities}.nii.gz, _preview.png (image, segmentation, SD map) and _result.json.
#   bash scripts/segment-example.sh [IMAGE] [OUTDIR]    (IMAGE: segment your own crop instead)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=example bash scripts/install.sh
. .venv/bin/activate
OUTDIR=${2:-out/example}
IMAGE=${1:-$OUTDIR/mni152_left_hippocampus.nii.gz}
[ $# -ge 1 ] || python scripts/make_example_image.py -o "$IMAGE"
# out/example is this script's own folder: a second run replaces its results there (and only there)
REPLACE=$([ $# -ge 2 ] || echo --overwrite)
ldseg segment "$IMAGE" -o "$OUTDIR" --samples 10 $REPLACE
echo "Done: segmentation, SD map, probabilities, preview and result of $IMAGE are in $OUTDIR/"
