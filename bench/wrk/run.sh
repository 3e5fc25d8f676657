#!/usr/bin/env bash
# bench/wrk/run.sh — starts $BUILD/dalle-server (BUILD defaults to build) on a free port with
# MODEL (models/tiny) and SERVER_ARGS (--max-batch 16 --queue 64), then runs
#   wrk -t2 -c64 -d${HEALTH_S}s  -s bench/wrk/health.lua    (HEALTH_S 30)
#   N=1 wrk -t2 -c8 -d${GENERATE_S}s --timeout 300s -s bench/wrk/generate.lua   (GENERATE_S 60)
# and prints wrk's report with the p50/p90/p99 line of each. wrk comes from apt (make deps).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BUILD:-build}/dalle-server
MODEL=${MODEL:-models/tiny}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[ -x "$BIN" ] || { echo "no $BIN: run make (or set BUILD)" >&2; exit 2; }
log=$(mktemp)
# shellcheck disable=SC2086
"$BIN" --model "$MODEL" --port 0 ${SERVER_ARGS:---max-batch 16 --queue 64} 2>"$log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; rm -f "$log"' EXIT
port=
for _ in $(seq 300); do
    port=$(sed -n '1s/^listening on .*:\([0-9]*\)$/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
[ -n "$port" ] || { echo "server did not start: $(cat "$log")" >&2; exit 1; }
url=http://127.0.0.1:$port
until curl -sf "$url/ready" >/dev/null; do sleep 0.1; done
curl -sf "$url/generate" -d '{"prompt": "warm up", "seed": 0}' >/dev/null
echo "== /health ($MODEL, $(nproc) cores)"
wrk -t2 -c64 -d"${HEALTH_S:-30}s" -s bench/wrk/health.lua "$url"
echo "== /generate, 1 image per request ($MODEL, ${SERVER_ARGS:---max-batch 16 --queue 64})"
N=1 wrk -t2 -c8 -d"${GENERATE_S:-60}s" --timeout 300s -s bench/wrk/generate.lua "$url"
