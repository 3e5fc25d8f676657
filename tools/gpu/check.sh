#!/usr/bin/env bash
# tools/gpu/check.sh — `make gpu-check`: the one script a GPU session runs (< 5 minutes on an
# H100). On a bare CUDA machine (nvcc + gcc, no network, none of our Debian libraries):
#   1. unpack .gpu-bundle/*.deb (made here by `make gpu-bundle`) into a private prefix
#      ($DALLE_DEPS, default /tmp/deps; never into /) and point gcc at it (CPATH,
#      LIBRARY_PATH, an RPATH in the binaries — nothing global is changed);
#   2. build the library, dalle-cli and the GPU programs with nvcc for $CUDA_ARCH (sm_90);
#   3. tests/gpu/gpu_ops: every CUDA op vs the CPU op, fp32 weights, then f16 and bf16, and
#      the small cases once more under compute-sanitizer memcheck;
#   4. tests/gpu/gpu_e2e: models/tiny end to end on both backends (fp32 with recorded decode
#      steps, fp32 eager — DALLE_CUDA_GRAPHS=0 —, f16 weights + f16 KV cache);
#   5. dalle-cli generate --backend cuda on models/tiny (JPEGs under $OUT);
#   6. tools/gpu/gpu_bench --quick (op-sequence smoke test), then bench/gpu/run.sh: ours vs
#      min-dalle (PyTorch fp16, from the bundle) at mini / Mega size, batch 1, 8, 32, 64,
#      with ratios to the H100 floor — in what is left of ~5 minutes (skipped under 45 s;
#      BENCH_S=SECONDS forces a run of that length).
# Prints a summary table; everything is also written under $OUT/gpu-check/ when OUT is set.
# Exit 0: all passed. 1: something failed (the table says what). 2: no CUDA device (a dry
# run: steps 1-2 only).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
t_start=$(date +%s)
LOGDIR=${OUT:+$OUT/gpu-check}
LOGDIR=${LOGDIR:-/tmp/gpu-check}
mkdir -p "$LOGDIR"
exec > >(tee "$LOGDIR/summary.log") 2>&1
DEPS=${DALLE_DEPS:-/tmp/deps}
BUILD=${BUILD:-build-gpu}
CUDA_ARCH=${CUDA_ARCH:-sm_90}
JOBS=$(nproc 2>/dev/null || echo 8)
export DEPS BUILD CUDA_ARCH JOBS
rows=()
failed=0

# step NAME TIMEOUT_S CMD… — runs CMD with its output in $LOGDIR/NAME.log (and on the
# console), records PASS or FAIL (exit 2 = no CUDA device is a failure once nvidia-smi has
# seen a GPU) with the seconds it took.
step() {
    local name=$1 limit=$2; shift 2
    local t0=$(date +%s) rc
    echo; echo "=== $name: $*"
    timeout "$limit" bash -c '"$@"' _ "$@" 2>&1 | tee "$LOGDIR/$name.log"
    rc=${PIPESTATUS[0]}
    local dt=$(( $(date +%s) - t0 )) res=PASS
    if [ "$rc" -eq 2 ]; then res="FAIL (no CUDA device)"; failed=1
    elif [ "$rc" -eq 124 ]; then res="FAIL (timeout ${limit}s)"; failed=1
    elif [ "$rc" -ne 0 ]; then res="FAIL (exit $rc)"; failed=1; fi
    rows+=("$(printf '| %-22s | %-18s | %4ss |' "$name" "$res" "$dt")")
    return "$rc"
}

echo "=== environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: no GPU visible"
command -v nvcc >/dev/null && nvcc --version | tail -2 || echo "nvcc: not found"
gcc --version 2>/dev/null | head -1 || echo "gcc: not found"
echo "repo $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | grep -c . || true) changed paths"

# ---- 1. dependencies
unpack() {
    [ -d .gpu-bundle ] || { echo "no .gpu-bundle/: using the system's libraries"; return 0; }
    mkdir -p "$DEPS"
    local n=0
    for f in .gpu-bundle/*.deb; do
        if command -v dpkg >/dev/null; then dpkg -x "$f" "$DEPS" || return 1
        else (t=$(mktemp -d) && cd "$t" && ar x "$OLDPWD/$f" && tar xf data.tar.* -C "$DEPS" && rm -rf "$t") || return 1; fi
        n=$((n + 1))
    done
    echo "unpacked $n packages into $DEPS"
}
export -f unpack
step deps 120 unpack
L=$DEPS/usr/lib/x86_64-linux-gnu
export CPATH="$DEPS/usr/include${CPATH:+:$CPATH}"
export LIBRARY_PATH="$L${LIBRARY_PATH:+:$LIBRARY_PATH}"
export LDFLAGS="-Wl,--disable-new-dtags -Wl,-rpath,$L"
command -v make >/dev/null || export PATH="$PATH:$DEPS/usr/bin"
# cuBLAS / cudart: the toolkit's lib64 beside nvcc; when that has no cuBLAS, the pip wheels
# of the Python stack (nvidia-cublas, nvidia-cuda-runtime), linked through a folder of
# unversioned names.
if command -v nvcc >/dev/null; then
    CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")
    echo "CUDA_HOME $CUDA_HOME: $(ls "$CUDA_HOME"/lib64 2>/dev/null | grep -E '^lib(cublas|cudart)\.so' | tr '\n' ' ')"
    if ! ls "$CUDA_HOME"/lib64/libcublas.so >/dev/null 2>&1; then
        mkdir -p "$DEPS/cudalink"
        for lib in cublas cublasLt cudart; do
            f=$(python3 - "$lib" 2>/dev/null <<'PY'
import glob, os, sys
import nvidia
for root in nvidia.__path__:
    for f in glob.glob(os.path.join(root, "*", "lib", "lib%s.so.*" % sys.argv[1])):
        print(f); raise SystemExit
PY
)
            [ -n "$f" ] && ln -sf "$f" "$DEPS/cudalink/lib$lib.so" && echo "using $f"
            [ -n "$f" ] && LDFLAGS="$LDFLAGS -Wl,-rpath,$(dirname "$f")"
        done
        export LIBRARY_PATH="$DEPS/cudalink:$LIBRARY_PATH" LDFLAGS
    fi
    if [ ! -e "$CUDA_HOME/include/cublas_v2.h" ]; then
        inc=$(python3 -c 'import glob, nvidia; print(":".join(d for r in nvidia.__path__ for d in glob.glob(r + "/*/include")))' 2>/dev/null)
        [ -n "$inc" ] && export CPATH="$CPATH:$inc" && echo "cuBLAS headers from the pip wheels: $inc"
    fi
fi

# ---- 2. build
build() {
    make BUILD="$BUILD" CUDA_ARCH="$CUDA_ARCH" info &&
    make BUILD="$BUILD" CUDA_ARCH="$CUDA_ARCH" -j"$JOBS" "$BUILD/libdalle.a" "$BUILD/dalle-cli" gpu-test
}
export -f build
if ! step build 300 build; then
    echo "BUILD FAILED — see $LOGDIR/build.log"
    printf '%s\n' "| step | result | time |" "|---|---|---|" "${rows[@]}"
    exit 1
fi

# ---- 3-6. on the GPU
if ! nvidia-smi -L >/dev/null 2>&1; then
    "$BUILD/tests/gpu/gpu_ops" | head -1
    "$BUILD/dalle-cli" generate --model models/tiny --prompt "a cat" --backend cuda --out /tmp/gpu-check-out 2>&1 | head -1
    echo "dry run: no CUDA device, so steps 3-6 were not run"
    printf '%s\n' "| step | result | time |" "|---|---|---|" "${rows[@]}"
    exit 2
fi
step ops_f32 120 "$BUILD/tests/gpu/gpu_ops" --weights f32
step ops_f16 90 "$BUILD/tests/gpu/gpu_ops" --weights f16
step ops_bf16 90 "$BUILD/tests/gpu/gpu_ops" --weights bf16
if command -v compute-sanitizer >/dev/null; then
    step memcheck 150 compute-sanitizer --tool memcheck --error-exitcode 1 \
        "$BUILD/tests/gpu/gpu_ops" --small
else
    echo "compute-sanitizer not found: memcheck skipped"
fi
step e2e_tiny_f32 120 "$BUILD/tests/gpu/gpu_e2e" models/tiny
step e2e_tiny_f32_eager 120 env DALLE_CUDA_GRAPHS=0 "$BUILD/tests/gpu/gpu_e2e" models/tiny
step e2e_tiny_f16 120 env DALLE_CUDA_WEIGHTS=f16 "$BUILD/tests/gpu/gpu_e2e" models/tiny
step cli_generate 60 "$BUILD/dalle-cli" generate --backend cuda --model models/tiny \
    --prompt "a red bicycle leaning against a brick wall" -n 4 --seed 1 --out "$LOGDIR/images"
step bench 60 "$BUILD/tools/gpu/gpu_bench" --quick
# the side-by-side benchmark gets what is left of ~295 s (each side capped inside run.sh in
# proportion); under 45 s left it is skipped with a note — BENCH_S=SECONDS forces a run of
# that length (or run `BUILD=$BUILD bash bench/gpu/run.sh` on its own afterwards)
left=$(( 295 - ($(date +%s) - t_start) ))
if [ -z "${BENCH_S:-}" ] && [ "$left" -lt 45 ]; then
    echo "bench/gpu skipped: only ${left}s of the 5-minute budget left (BENCH_S=150 forces it)"
    rows+=("$(printf '| %-22s | %-18s | %4ss |' bench_vs_min_dalle "SKIPPED (time)" 0)")
else
    BENCH_S=${BENCH_S:-$left}
    step bench_vs_min_dalle $((BENCH_S + 15)) env BUILD="$BUILD" OUT_DIR="$LOGDIR/bench-gpu" \
        OURS_S=$((BENCH_S * 2 / 5)) PEER_S=$((BENCH_S * 3 / 5)) PEER_BUDGET_S=3 bash bench/gpu/run.sh
fi

echo
echo "=== gpu-check summary ($(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $(( $(date +%s) - t_start ))s)"
printf '%s\n' "| step | result | time |" "|---|---|---|" "${rows[@]}"
echo
echo "worst max_rel per op:"
for w in f32 f16 bf16; do
    echo "  weights $w:"; sed -n '/^worst max_rel/,/^gpu_ops:/p' "$LOGDIR/ops_$w.log" | grep -v '^worst\|^gpu_ops' | sed 's/^/  /'
done
grep -h '^FAIL' "$LOGDIR"/ops_*.log "$LOGDIR"/e2e_*.log 2>/dev/null | sed 's/^/mismatch: /'
echo
grep -A40 '^gpu_bench: decode' "$LOGDIR/bench.log" 2>/dev/null
echo
cat "$LOGDIR/bench-gpu/table.md" 2>/dev/null || echo "bench/gpu: no table"
if [ "$failed" -ne 0 ]; then echo "GPU CHECK FAILED"; exit 1; fi
echo "GPU CHECK PASSED"
