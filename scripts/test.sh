#!/usr/bin/env bash
# One command: set up (if needed, Chromium for the browser test included), lint, and run the test suite.
# Usage: bash scripts/test.sh [extra pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --browser
export KEDRO_DISABLE_TELEMETRY=1
# The habits the style asks for, enforced: lint (complexity included) and formatting.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
