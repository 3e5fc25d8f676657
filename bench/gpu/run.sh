#!/usr/bin/env bash
# bench/gpu/run.sh — ours vs min-dalle on this GPU, same prompts, random weights made here
# (nothing stored or downloaded): images/s at batch 1, 8, 32, 64 and batch-1 latency for
# DALL·E mini and Mega, each also as a fraction of the H100 floor (bench/gpu/compare.py).
#   ours:      $BUILD/tools/gpu/gpu_bench --e2e (model/bart.c with f16 weights + f16 KV
#              cache, recorded decode steps; VQGAN op sequence per image);
#   min-dalle: bench/gpu/min_dalle_gpu.py (PyTorch fp16) — the package comes from
#              .gpu-bundle/py/min-dalle-*.tar.gz (make gpu-bundle), else from python3's path.
# Env: BUILD (build-gpu), OUT_DIR (/tmp/bench-gpu), SIZES (mini,mega), BATCHES (1,8,32,64),
# OURS_S / PEER_S: time caps of each side in seconds (100 / 130), PEER_BUDGET_S: seconds of
# decode steps timed per min-dalle configuration (5). Exit 0 when both sides produced rows
# (the table prints whatever exists), 1 otherwise, 2 without a GPU.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build-gpu}
OUT_DIR=${OUT_DIR:-/tmp/bench-gpu}
SIZES=${SIZES:-mini,mega}
BATCHES=${BATCHES:-1,8,32,64}
DEPS=${DALLE_DEPS:-/tmp/deps}
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR/ours.jsonl" "$OUT_DIR/min_dalle.jsonl"
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
[ -n "$gpu" ] || { echo "bench/gpu: no GPU visible (nvidia-smi)"; exit 2; }

echo "=== ours: gpu_bench --e2e (cap ${OURS_S:-100}s)"
timeout "${OURS_S:-100}" "$BUILD/tools/gpu/gpu_bench" --e2e "$OUT_DIR/ours.jsonl" \
    --sizes "$SIZES" --batches "$BATCHES"
echo "gpu_bench exit $?"

echo "=== min-dalle (cap ${PEER_S:-130}s)"
sdist=$(ls .gpu-bundle/py/min-dalle-*.tar.gz 2>/dev/null | head -1)
if [ -n "$sdist" ]; then
    mkdir -p "$DEPS/py" && tar xzf "$sdist" -C "$DEPS/py"
    src=$(ls -d "$DEPS"/py/min-dalle-*/ | head -1)
    export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}"
    echo "min-dalle from $sdist"
fi
timeout "${PEER_S:-130}" python3 bench/gpu/min_dalle_gpu.py --out "$OUT_DIR/min_dalle.jsonl" \
    --sizes "$SIZES" --batches "$BATCHES" --budget-s "${PEER_BUDGET_S:-5}"
echo "min_dalle_gpu exit $?"

echo
python3 bench/gpu/compare.py "$OUT_DIR/ours.jsonl" "$OUT_DIR/min_dalle.jsonl" "$gpu" | tee "$OUT_DIR/table.md"
[ -s "$OUT_DIR/ours.jsonl" ] && [ -s "$OUT_DIR/min_dalle.jsonl" ]
