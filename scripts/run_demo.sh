#!/usr/bin/env bash
# One command: set up (if needed) and run the main job on the embedded demo corpus.
# Usage: bash scripts/run_demo.sh [extra kedro run options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KEDRO_DISABLE_TELEMETRY=1
exec .venv/bin/kedro run "$@"
