#!/usr/bin/env bash
# One command: set up (if needed, Chromium for the browser test included) and run the test suite.
# Usage: bash scripts/test.sh [extra pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --browser
export KEDRO_DISABLE_TELEMETRY=1
exec .venv/bin/python -m pytest "$@"
