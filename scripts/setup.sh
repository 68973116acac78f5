#!/usr/bin/env bash
# Set up mess-kedro on a fresh machine: system synthesizer library and SoundFont, a virtual
# environment in .venv, torch (CPU unless one is already there), the project.
# Idempotent: a second run only checks. Usage: bash scripts/setup.sh [--dev] [--browser]
# --dev also installs the test tools (pytest, hypothesis, playwright, ...);
# --browser also installs Debian's Chromium for the listening room's browser test
# (Playwright drives it through executable_path: no browser is downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."

BROWSER=0
DEV=0
for arg in "$@"; do
  case "$arg" in
    --browser) BROWSER=1 ;;
    --dev) DEV=1 ;;
    *) echo "[setup] unknown option $arg (usage: bash scripts/setup.sh [--dev] [--browser])" >&2; exit 2 ;;
  esac
done

export KEDRO_DISABLE_TELEMETRY=1
PYTHON=${PYTHON:-python3}

have_fluidsynth() {
  ldconfig -p 2>/dev/null | grep -q 'libfluidsynth\.so' \
    || ls /usr/lib/*/libfluidsynth.so* /usr/local/lib/libfluidsynth* /opt/homebrew/lib/libfluidsynth* >/dev/null 2>&1
}

# 1. FluidSynth renders the demo corpus (pyfluidsynth loads libfluidsynth at import).
if ! have_fluidsynth; then
  echo "[setup] installing the FluidSynth library"
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends libfluidsynth3
  elif command -v brew >/dev/null 2>&1; then
    brew install fluid-synth
  else
    echo "[setup] please install FluidSynth (libfluidsynth) with your package manager, then rerun" >&2
    exit 1
  fi
fi

# 1b. A second General MIDI SoundFont (FluidR3_GM): the demo renders half its renditions
#     with it, so a map fitted on one sample set can be tested on another.
if [ ! -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ]; then
  echo "[setup] installing the FluidR3_GM SoundFont"
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fluid-soundfont-gm
  else
    echo "[setup] no apt-get: put FluidR3_GM.sf2 somewhere and set demo_corpus.synth.soundfonts.FluidR3_GM" \
      "in conf/local/parameters_ingest.yml (or drop the soundfont choice)" >&2
  fi
fi

# 2. Virtual environment.
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip -q --disable-pip-version-check)
"${PIP[@]}" install --upgrade pip >/dev/null

# 3. torch before anything that depends on it: keep a torch already installed
#    (a user's CUDA build), otherwise take the pinned CPU build.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch from constraints.txt"
  "${PIP[@]}" install -c constraints.txt torch
fi

# 4. The project (editable, so kedro finds the package); with --dev its test tools too
#    (the main job needs none of them: leaving them out saves the demo a fresh install).
if [ "$DEV" = 1 ]; then
  echo "[setup] installing mess-kedro, its dependencies and its test tools"
  "${PIP[@]}" install -e ".[dev]"
else
  echo "[setup] installing mess-kedro and its dependencies"
  "${PIP[@]}" install -e .
fi

# 5. The musicnn wheel, for its pretrained checkpoints only (converted to
#    PyTorch at first use). --no-deps: its metadata pins TensorFlow 1.x and an
#    old numpy, none of which the project runs.
"${PIP[@]}" install --no-deps "musicnn==0.1.0"

# 6. basic-pitch, for its ONNX transcription model (notes for recordings without
#    MIDI). --no-deps: its metadata pins TensorFlow, which the ONNX model does not need.
"${PIP[@]}" install --no-deps "basic-pitch==0.4.0"

# 7. synctoolbox (audio and note alignment: MrMsDTW over chroma and DLNCO features) and
#    libfmp, whose path helpers it imports. --no-deps: their metadata caps pandas below 3
#    and pins older numba and music21; the alignment code runs on the versions installed
#    above (tests/pipelines/alignment/test_nodes.py checks it on real renditions).
"${PIP[@]}" install --no-deps "synctoolbox==1.4.2" "libfmp==1.3.0"

# 8. Chromium for the browser test, when asked. A machine where it cannot be installed still
#    sets up: the browser test is then skipped and says why.
if [ "$BROWSER" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing Debian's chromium for the browser test"
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; }; then
      echo "[setup] chromium could not be installed: the browser test will be skipped" >&2
    fi
  else
    echo "[setup] no apt-get: install Chromium yourself (or set MESS_KEDRO_CHROMIUM); the browser test will be skipped" >&2
  fi
fi

.venv/bin/python -c "import fluidsynth, torch; print('[setup] ok: torch', torch.__version__, '| FluidSynth found')"
