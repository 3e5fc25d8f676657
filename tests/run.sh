#!/usr/bin/env bash
# tests/run.sh BIN… — runs each Criterion test binary from the repository root, then the
# shell tests under tests/cli/, then every tests/<dir>/ holding test_*.py with pytest (one run per directory,
# each has its own conftest; Python: .venv-test/bin/python when `make deps` made it (Debian's
# python3 with the pinned tests/requirements.txt on top), else Debian's /usr/bin/python3), and
# prints one closing line "N passed, N failed".
# tests/run.sh --bins-only BIN… runs the Criterion binaries only; TEST_EXEC, when set, is the
# command that runs each of them (make arm64-test: timeout + qemu-aarch64).
set -u
cd "$(dirname "$0")/.." || exit 2
bins_only=0
[ "${1:-}" = --bins-only ] && { bins_only=1; shift; }
passed=0; failed=0
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
for bin in "$@"; do
    echo "== $bin"
    out=$(${TEST_EXEC:-} "$bin" --jobs 1 2>&1); rc=$?
    printf '%s\n' "$out"
    syn=$(printf '%s\n' "$out" | grep 'Synthesis:' | tail -1)
    t=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$syn"); t=${t:-0}
    p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$syn"); p=${p:-0}
    passed=$((passed + p)); failed=$((failed + t - p))
    if [ "$rc" -ne 0 ] && [ "$t" -eq "$p" ]; then failed=$((failed + 1)); echo "!! $bin exited $rc"; fi
done
if [ "$bins_only" = 1 ]; then
    echo "Tests: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]; exit
fi
for t in tests/cli/*.sh; do
    [ -e "$t" ] || continue
    echo "== $t"
    if BUILD="${BUILD:-build}" bash "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "!! $t failed"; fi
done
PY=/usr/bin/python3
[ -x .venv-test/bin/python ] && PY=.venv-test/bin/python
for dir in tests/*/; do
    dir=${dir%/}
    compgen -G "$dir/test_*.py" >/dev/null || continue
    echo "== $dir (pytest, $PY)"
    out=$(BUILD="${BUILD:-build}" "$PY" -m pytest -q -p no:cacheprovider "$dir" 2>&1); rc=$?
    printf '%s\n' "$out" | tail -40
    summary=$(printf '%s\n' "$out" | grep -E '^(=+ )?[0-9]+ (passed|failed|skipped)' | tail -1)
    p=$(grep -oE '[0-9]+ passed' <<<"$summary" | grep -oE '[0-9]+'); p=${p:-0}
    f=$(grep -oE '[0-9]+ failed' <<<"$summary" | grep -oE '[0-9]+'); f=${f:-0}
    e=$(grep -oE '[0-9]+ error' <<<"$summary" | grep -oE '[0-9]+'); e=${e:-0}
    passed=$((passed + p)); failed=$((failed + f + e))
    if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then failed=$((failed + 1)); echo "!! pytest $dir exited $rc"; fi
done
echo "Tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
