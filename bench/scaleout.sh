#!/usr/bin/env bash
# bench/scaleout.sh — images/s through nginx (docker/nginx.conf) with 1 replica vs N, then the
# failover run (SIGKILL one replica at 30 %, SIGTERM another at 60 %), on loopback.
#   bench/scaleout.sh                        3 replicas, models/tiny, 200 requests, 16 clients
#   MODEL=models/demo REPLICAS=3 REQUESTS=400 TPUT=96 THREADS=1 bench/scaleout.sh
# Needs nginx (make deps) and a built server ($BUILD/dalle-server, BUILD defaults to build).
# Each replica gets --threads $THREADS: on a machine with C cores, more than C/THREADS
# replicas only share the same cores (one replica per GPU is the deployment this models).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MODEL=${MODEL:-models/tiny}
[ -x "$BUILD/dalle-server" ] || make BUILD="$BUILD" "$BUILD/dalle-server"
exec /usr/bin/python3 tests/deploy/scaleout.py --bin "$BUILD/dalle-server" --model "$MODEL" \
    --replicas "${REPLICAS:-3}" --requests "${REQUESTS:-200}" --clients "${CLIENTS:-16}" \
    --throughput-requests "${TPUT:-48}" --threads "${THREADS:-1}" --max-batch "${MAX_BATCH:-4}" "$@"
