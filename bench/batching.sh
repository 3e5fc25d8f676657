#!/usr/bin/env bash
# bench/batching.sh — images/s of dalle-server with --max-batch 1 vs --max-batch 16 under 16
# concurrent clients (1 image per request, each its own seed), on the same model; prints both,
# the mean images per decode step (from /metrics) and the ratio.
#   bench/batching.sh [MODEL_DIR (models/tiny)] [REQUESTS (64)]
# Uses $BUILD/dalle-server (BUILD defaults to build), built first with `make`, and Debian's
# python3 with requests. Extra server flags: SERVER_ARGS="--threads 2".
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/tiny}
REQUESTS=${2:-64}
BIN=${BUILD:-build}/dalle-server
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # spinning OpenMP threads hurt on shared cores
[ -x "$BIN" ] || { echo "no $BIN: run make (or set BUILD)" >&2; exit 2; }

pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; true' EXIT

run() { # max_batch → prints "images/s mean_batch"
    local log port=
    log=$(mktemp)
    # shellcheck disable=SC2086
    "$BIN" --model "$MODEL" --port 0 --max-batch "$1" --queue 64 ${SERVER_ARGS:-} 2>"$log" &
    pid=$!
    for _ in $(seq 300); do
        port=$(sed -n '1s/^listening on .*:\([0-9]*\)$/\1/p' "$log")
        [ -n "$port" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$port" ] || { echo "server did not start: $(cat "$log")" >&2; exit 1; }
    /usr/bin/python3 - "$port" "$REQUESTS" <<'PY'
import concurrent.futures, sys, time, requests
port, n = sys.argv[1], int(sys.argv[2])
base = f"http://127.0.0.1:{port}"
while requests.get(base + "/ready", timeout=30).status_code != 200:
    time.sleep(0.1)
requests.post(base + "/generate", json={"prompt": "warm up", "seed": 0}, timeout=600)
def metrics():
    out = {}
    for line in requests.get(base + "/metrics", timeout=30).text.splitlines():
        if line.startswith("dalle_batch_size_sum") or line.startswith("dalle_batch_size_count"):
            k, v = line.split()
            out[k] = float(v)
    return out
def one(i):
    r = requests.post(base + "/generate", json={"prompt": f"prompt {i}", "seed": i}, timeout=600)
    r.raise_for_status()
    return len(r.json()["images"])
m0 = metrics()
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(16) as ex:
    images = sum(ex.map(one, range(n)))
dt = time.time() - t0
m1 = metrics()
steps = m1["dalle_batch_size_count"] - m0["dalle_batch_size_count"]
print(f"{images / dt:.2f} {(m1['dalle_batch_size_sum'] - m0['dalle_batch_size_sum']) / steps:.1f}")
PY
    kill -TERM "$pid"; wait "$pid" || true
    pid=
    rm -f "$log"
}

read -r b1 m1 <<<"$(run 1)"
read -r b16 m16 <<<"$(run 16)"
echo "max batch 1:  $b1 images/s (mean $m1 images per decode step)"
echo "max batch 16: $b16 images/s (mean $m16 images per decode step)"
echo "ratio: $(/usr/bin/python3 -c "print(f'{$b16 / $b1:.2f}')")x  ($MODEL, 16 clients, $REQUESTS requests of 1 image, $(nproc) cores)"
