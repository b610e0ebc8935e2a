#!/usr/bin/env bash
# The main job: grounded MNER on the tweets of examples/tweets.jsonl with their scikit-image photos.
# Sets up .venv (if missing), installs riveg-hf, runs `riveg predict`.
#   RIVEG_MODEL=DIR  use a local composite checkpoint instead of the Hub default
#   RIVEG_TASK=segmented-mner  also produce masks (SAM 2)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import riveg_hf, skimage" 2>/dev/null; then
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  "$PY" -m pip install -q -e ".[demo]"
fi
IMAGES=$("$PY" -c "import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), 'data'))")
mkdir -p examples/output
ARGS=(--input examples/tweets.jsonl --images "$IMAGES" --task "${RIVEG_TASK:-grounded-mner}"
      --output examples/output/predictions.jsonl --draw examples/output/drawings)
if [ -n "${RIVEG_MODEL:-}" ]; then
  ARGS+=(--model "$RIVEG_MODEL")
fi
rm -f examples/output/predictions.jsonl
"$VENV/bin/riveg" predict "${ARGS[@]}"
echo "predictions: examples/output/predictions.jsonl; drawings: examples/output/drawings/"
