#!/usr/bin/env bash
# tests/fuzz/run.sh BIN… — runs each libFuzzer target for FUZZ_S seconds (default 25) from
# the repository root: new inputs go to build-fuzz/corpus/NAME, the committed seeds
# tests/fuzz/corpus/NAME are read only. Prints one line per target (executions, corpus
# size) and exits non-zero when a target found a crash, a leak or undefined behaviour (the
# reproducer is build-fuzz/crash-* and libFuzzer's report is above it).
set -u
cd "$(dirname "$0")/../.." || exit 2
S=${FUZZ_S:-25}
rc=0
summary=""
for bin in "$@"; do
    name=$(basename "$bin")
    work=build-fuzz/corpus/$name
    mkdir -p "$work"
    echo "== $name (${S} s)"
    log=$("$bin" -max_total_time="$S" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix=build-fuzz/ "$work" "tests/fuzz/corpus/$name" 2>&1); r=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' <<<"$log")
    if [ "$r" -ne 0 ]; then
        printf '%s\n' "$log" | tail -60
        rc=1
    fi
    line="$name: ${execs:-?} executions, corpus $(ls "$work" | wc -l) new + $(ls "tests/fuzz/corpus/$name" | wc -l) seeds, exit $r"
    echo "$line"
    summary="$summary$line"$'\n'
done
printf '== fuzz summary\n%s' "$summary"
exit $rc
