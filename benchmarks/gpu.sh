#!/usr/bin/env bash
# The one prepared GPU benchmark: the throughput table's GPU column (batch 1 / 8 / 32, fp32 and bf16, default
# preset in full) and the VLM preset's cost and throughput in bf16. About 6 minutes on one H200; each part has
# its own time limit so one slow part cannot eat the others. It measures and prints; it never fails on time.
#
#   bash benchmarks/gpu.sh --prepare   # here, with PyPI reachable: wheels the GPU machine may lack -> .whl/
#                                      (for its Python, PYVER=3.12 by default: the device image's)
#   bash benchmarks/gpu.sh             # there: logs to $OUT (or benchmarks/results/gpu-<date>/)
#   DEVICE=cpu bash benchmarks/gpu.sh --smoke   # only the first part (tiny presets in bf16, seconds), anywhere
#
# On a machine without this package's pins (the device tool's image had transformers 5.17 and no pycocotools)
# the wheels in .whl/ are installed into /tmp/site first; carry `.whl` with the working tree.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--prepare" ]]; then
    PY=${PYTHON:-python3}
    ver() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
    # downloaded beside, swapped in when complete: a killed --prepare leaves the previous .whl/ or none
    rm -rf .whl.tmp && mkdir -p .whl.tmp
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl.tmp "transformers==$(ver transformers)" "pycocotools==$(ver pycocotools)" \
        "defusedxml==$(ver defusedxml)" || exit 1
    rm -rf .whl && mv .whl.tmp .whl
    ls -la .whl
    exit 0
fi

export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
LOG=${OUT:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M)}
mkdir -p "$LOG"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$LOG/hardware.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$LOG/hardware.txt"

DEVICE=${DEVICE:-cuda}
SMOKE='
import sys, time, torch
from PIL import Image
from riveg_hf.testing import tiny_preset
image = Image.new("RGB", (320, 240), (120, 80, 40))
for name in ("riveg-2024", "vlm", "sam3"):
    t0 = time.perf_counter()
    pipe = tiny_preset(name, box_threshold=0.0, device=sys.argv[1], dtype=torch.bfloat16)
    out = pipe([{"text": "Obama Paris", "image": image}] * 4, batch_size=4)
    assert all(len(o) == 2 for o in out), out
    print(f"{name}: tiny preset in bf16 on {sys.argv[1]} ok ({time.perf_counter() - t0:.1f} s)")
'

part() {  # part NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$LOG/$name.txt"
    echo "== $name: exit ${PIPESTATUS[0]}"
}
part smoke 120 python3 -c "$SMOKE" "$DEVICE"
[[ "$(tail -1 "$LOG/smoke.txt")" == *"sam3: tiny preset"* ]] || { echo "smoke failed: see $LOG/smoke.txt"; exit 1; }
[[ "${1:-}" == "--smoke" ]] && exit 0
part default-fp32 150 python3 benchmarks/pipeline.py --expander --device $DEVICE --tweets 64 --batch-sizes 1,8,32 \
    --skip-entity-sections
part default-bf16 150 python3 benchmarks/pipeline.py --expander --device $DEVICE --dtype bfloat16 --tweets 64 \
    --batch-sizes 1,8,32 --skip-entity-sections
part vlm-bf16 240 python3 benchmarks/presets.py --presets vlm --device $DEVICE --dtype bfloat16 --entities 1,2,4,8 \
    --tweets 32 --batch-sizes 1,8:1,8,32
