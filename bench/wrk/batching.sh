#!/usr/bin/env bash
# bench/wrk/batching.sh — images/s of dalle-server with --max-batch 1 vs --max-batch 16 under 16
# concurrent clients (1 image per request), on the same model; prints both and the ratio.
#   bench/wrk/batching.sh [MODEL_DIR (models/tiny)] [REQUESTS (64)]
# Uses $BUILD/dalle-server (BUILD defaults to build) and Debian's python3 with requests.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-models/tiny}
REQUESTS=${2:-64}
BIN=${BUILD:-build}/dalle-server

run() { # max_batch → prints images/s
    local log pid port
    log=$(mktemp)
    "$BIN" --model "$MODEL" --port 0 --max-batch "$1" --queue 64 2>"$log" &
    pid=$!
    for _ in $(seq 100); do port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$log"); [ -n "$port" ] && break; sleep 0.1; done
    /usr/bin/python3 - "$port" "$REQUESTS" <<'PY'
import concurrent.futures, sys, time, requests
port, n = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
while requests.get(base + "/ready", timeout=30).status_code != 200:
    time.sleep(0.1)
requests.post(base + "/generate", json={"prompt": "warm up", "seed": 0}, timeout=600)
def one(i):
    r = requests.post(base + "/generate", json={"prompt": f"prompt {i}", "seed": i}, timeout=600)
    r.raise_for_status()
    return len(r.json()["images"])
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    images = sum(ex.map(one, range(n)))
print(f"{images / (time.time() - t0):.2f}")
PY
    kill -TERM "$pid"; wait "$pid" || true
    rm -f "$log"
}

b1=$(run 1)
b16=$(run 16)
echo "max batch 1:  $b1 images/s"
echo "max batch 16: $b16 images/s"
echo "ratio: $(/usr/bin/python3 -c "print(f'{$b16 / $b1:.2f}')")x  ($MODEL, 16 clients, $REQUESTS requests, $(nproc) cores)"
