#!/usr/bin/env bash
# Install LDSeg into ./.venv (created if missing). Works offline-first: torch is
# pinned to 2.13.0, which pip takes from the local wheel cache where there is
# one (a plain `torch` requirement would pull a multi-GB CUDA build).
#   EXTRAS=test     also installs what the tests need;
#   EXTRAS=example  what the main job's example image needs (scripts/segment-example.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -c "import torch" 2>/dev/null || pip install -q "torch==2.13.0"
if [ "${EXTRAS:-}" = "test" ]; then
    pip install -q -e ".[test]"
    [ -f requirements-slicer-test.txt ] && pip install -q -r requirements-slicer-test.txt
elif [ -n "${EXTRAS:-}" ]; then
    pip install -q -e ".[$EXTRAS]"
else
    pip install -q -e .
fi
python -c "import ldseg, torch; print(f'ldseg {ldseg.__version__} with torch {torch.__version__} installed in .venv')"
