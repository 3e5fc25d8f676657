#!/usr/bin/env bash
# tools/gpu/emu_check.sh — `make gpu-emu`: the CUDA backend on the emulated device
# (docs/gpu-emulator.md), no GPU needed. Runs $BUILD/emu/gpu_ops --tiny with f32, f16 and
# bf16 weights (every launch in two thread schedules, forward and reversed, which must write
# the same bytes) and $BUILD/emu/gpu_e2e --quick on models/tiny (fp32: greedy codes identical
# to the CPU backend, VQGAN pixels, CLIP scores; f16 weights: images within tolerance; one
# schedule), then prints the table: per kernel its launches, blocks, a few grid/block
# shapes, the ops whose comparisons used it with their max error (relative, or a count of
# differing values/tokens), and the launches whose two schedules were compared; then
# "kernels executed N / M" against the __global__ kernels in kernels/cuda/*.cu.
# Exit 0: every program passed and every kernel ran. 1: otherwise.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${BUILD:-build}
stats=$(mktemp)
trap 'rm -f "$stats"' EXIT
export DALLE_EMU_STATS=$stats
# idle OpenMP / OpenBLAS workers of the CPU backend sleep instead of spinning: the emulator
# runs on one thread and needs the cores
export OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
failed=0

# step NAME CMD… — runs CMD, prints its summary line and wall time, keeps its log on failure
step() {
    local name=$1; shift
    local t0 t1 rc
    t0=$(date +%s.%N)
    "$@" > "$BUILD/emu/$name.log" 2>&1; rc=$?
    t1=$(date +%s.%N)
    printf '%-4s %-24s %6.1f s  %s\n' "$([ $rc -eq 0 ] && echo ok || echo FAIL)" "$name" \
        "$(echo "$t1 - $t0" | bc)" "$(grep -E '^gpu_(ops|e2e): ' "$BUILD/emu/$name.log" | tail -1)"
    if [ $rc -ne 0 ]; then failed=1; tail -20 "$BUILD/emu/$name.log"; fi
}

step gpu_ops_f32 "$BUILD/emu/gpu_ops" --tiny --weights f32
step gpu_ops_f16 "$BUILD/emu/gpu_ops" --tiny --weights f16
step gpu_ops_bf16 "$BUILD/emu/gpu_ops" --tiny --weights bf16
DALLE_EMU_SCHEDULES=forward step gpu_e2e_f32 "$BUILD/emu/gpu_e2e" models/tiny --quick
DALLE_EMU_SCHEDULES=forward DALLE_CUDA_WEIGHTS=f16 step gpu_e2e_f16 "$BUILD/emu/gpu_e2e" models/tiny --quick

kernels=$(perl -0777 -ne 'print "$1\n" while /__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?(\w+)/g' \
          kernels/cuda/*.cu | sort -u)
echo
printf '%-20s %8s %9s %-28s %-28s %9s %s\n' kernel launches blocks "shapes (grid/threads)" ops \
    "max error" "schedules compared"
awk -F'\t' -v kernels="$kernels" '
    BEGIN { n = split(kernels, k, "\n"); for (i = 1; i <= n; i++) if (k[i] != "") want[k[i]] = 1 }
    {
        name = $1; L[name] += $2; B[name] += $3; C[name] += $4
        if (!(name in S)) S[name] = $6
        if ($7 != "-") {
            m = split($7, o, ",")
            for (j = 1; j <= m; j++)
                if (index("," O[name] ",", "," o[j] ",") == 0) O[name] = O[name] (O[name] == "" ? "" : ",") o[j]
            if (!(name in E) || $8 + 0 > E[name] + 0) E[name] = $8
        }
    }
    END {
        ran = 0; total = 0
        for (name in want) { total++; if (name in L) ran++; else printf "%-20s %8d   NOT EXECUTED\n", name, 0 }
        for (name in L)
            printf "%-20s %8d %9d %-28s %-28s %9s %d/%d%s\n", name, L[name], B[name], substr(S[name], 1, 28),
                   substr(O[name] == "" ? "(gpu_e2e only)" : O[name], 1, 28),
                   (name in E) ? sprintf("%.2e", E[name]) : "-", C[name], L[name],
                   (name in want) ? "" : "  (cuBLAS call)"
        printf "~ kernels executed %d / %d __global__ kernels in kernels/cuda\n", ran, total
    }' "$stats" | LC_ALL=C sort > "$BUILD/emu/table.txt"
sed 's/^~ //' "$BUILD/emu/table.txt"
grep -q 'NOT EXECUTED' "$BUILD/emu/table.txt" && failed=1
exit $failed
