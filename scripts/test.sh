#!/usr/bin/env bash
# Install everything the tests need, then check formatting and lint, then run
# the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/install.sh
. .venv/bin/activate
ruff format --check --quiet . || { echo "ruff format: run 'ruff format .'" >&2; exit 1; }
ruff check --quiet .
python -m pytest Testing -q "$@"
