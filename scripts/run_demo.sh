#!/usr/bin/env bash
# One command: set up (if needed), run the main job on the embedded demo corpus,
# and print its summary (corpus, top layers, evaluation, an example query).
# Usage: bash scripts/run_demo.sh [extra kedro run options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export KEDRO_DISABLE_TELEMETRY=1
.venv/bin/kedro run "$@"
summary=$(ls -d data/08_reporting/run_summary.md/*/ 2>/dev/null | sort | tail -n 1)
if [ -n "$summary" ]; then
  echo
  cat "${summary}run_summary.md"
fi
