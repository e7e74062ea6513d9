#!/usr/bin/env bash
# Train and evaluate the `lidc` model (2D CT lung nodules, four raters) on the
# fixed patient split recorded in docs/evaluation/lidc-split.json.
#
#   bash scripts/train_lidc.sh            # the shipped model's run: 60 minutes of training (TIME_BUDGET)
#   SMOKE=1 bash scripts/train_lidc.sh    # a ~2-minute end-to-end check on a few dozen slices (every 150th patient)
#
# The data-set folders are links to ../shared/data/lidc (nothing is copied):
# train + validation patients for `ldseg train`, which validates the recorded
# validation patients (--group-by keeps each patient's slices together and
# --val-fraction picks exactly their number), and the test patients for
# `ldseg evaluate` (GED, HM-IoU, calibration against the four raters).
# Environment: WORK (scratch folder, default a new temp folder), EPOCHS, TIME_BUDGET (minutes),
# SAMPLES (default 16, the field's usual N), DEVICE (default auto).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
WORK=${WORK:-$(mktemp -d)}
DEVICE=${DEVICE:-auto}
SAMPLES=${SAMPLES:-16}
GROUP='^LIDC-IDRI-[0-9]+'
if [[ -n "${SMOKE:-}" ]]; then
    EVERY=150 EPOCHS=${EPOCHS:-2} SIZE=tiny GRID="64 64" MODEL=$WORK/lidc-smoke.safetensors OUT=$WORK/evaluation
    VAL_FRACTION=0.2 SAMPLES=4
else
    EVERY=1 EPOCHS=${EPOCHS:-1000} SIZE=small GRID="64 64" MODEL=Resources/Models/lidc.safetensors
    OUT=docs/evaluation/lidc-ldseg VAL_FRACTION=$(python scripts/lidc_split.py val-fraction)
fi
python scripts/lidc_split.py link trainval "$WORK/lidc-trainval" --patients "$EVERY"
python scripts/lidc_split.py link test "$WORK/lidc-test" --patients "$EVERY"
ldseg train "$WORK/lidc-trainval" -o "$MODEL" --overwrite --run-dir "$WORK/lidc.run" \
    --size "$SIZE" --grid $GRID --class-names background nodule --label-values 0 255 \
    --group-by "$GROUP" --val-fraction "$VAL_FRACTION" --epochs "$EPOCHS" --time-budget "${TIME_BUDGET:-60}" --batch-size 8 \
    --modality CT --name lidc --title "LIDC lung nodule (2D CT)" \
    --description "Lung nodules in 128 x 128 CT crops centred on a nodule (LIDC-IDRI, four raters)" \
    --device "$DEVICE"
ldseg evaluate "$MODEL" "$WORK/lidc-test" -o "$OUT" --samples "$SAMPLES" --device "$DEVICE"
echo "model: $MODEL; evaluation: $OUT (cases.csv, summary.json, reliability.png); scratch: $WORK"
