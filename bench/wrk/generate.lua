-- wrk script for POST /generate (native dialect).
--   wrk -t2 -c8 -d60s --timeout 300s -s bench/wrk/generate.lua http://127.0.0.1:8080
-- Env: PROMPT (default "a red bicycle"), N (images per request, default 1). Every request
-- gets its own seed. Non-2xx answers (429 when the queue is full) are counted by wrk as
-- "Non-2xx or 3xx responses".
local counter = 0
local prompt = os.getenv("PROMPT") or "a red bicycle"
local n = tonumber(os.getenv("N") or "1")

function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
end

function init(args)
    seq = 0
end

request = function()
    seq = seq + 1
    local body = string.format('{"prompt": "%s", "n": %d, "seed": %d}', prompt, n, id * 1000000 + seq)
    return wrk.format("POST", "/generate", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("requests %d, p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, non-2xx %d, " ..
        "socket errors %d\n", summary.requests, latency:percentile(50) / 1000,
        latency:percentile(90) / 1000, latency:percentile(99) / 1000, e.status,
        e.connect + e.read + e.write + e.timeout))
end
