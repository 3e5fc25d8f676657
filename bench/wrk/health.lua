-- wrk script for GET /health (the HTTP front end alone, no generation).
--   wrk -t2 -c64 -d30s -s bench/wrk/health.lua http://127.0.0.1:8080
wrk.method = "GET"
wrk.path = "/health"

function done(summary, latency, requests)
    io.write(string.format("requests %d, p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, errors %d\n",
        summary.requests, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
        latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect +
        summary.errors.read + summary.errors.write + summary.errors.timeout))
end
