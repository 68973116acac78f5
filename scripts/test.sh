#!/usr/bin/env bash
# One command: set up (if needed) and run the test suite.
# Usage: bash scripts/test.sh [extra pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KEDRO_DISABLE_TELEMETRY=1
exec .venv/bin/python -m pytest "$@"
