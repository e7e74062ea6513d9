#!/usr/bin/env bash
# Install everything the tests need, then check formatting and lint, then run
# the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/install.sh
. .venv/bin/activate
ruff format --check --quiet . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
ruff check --quiet .
# Slicer 5.8's Python 3.9 runs the module and the engine: every shipped file keeps to 3.9's syntax and stdlib.
vermin --quiet --no-tips --violations --eval-annotations --target=3.9- LDSegCore/ldseg LDSegExtension
python -m pytest Testing -q "$@"
