#!/usr/bin/env bash
# Install everything the tests need, then run the whole test suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/install.sh
. .venv/bin/activate
python -m pytest Testing -q "$@"
