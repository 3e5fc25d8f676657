"""What an operator reads: the access log (RFC 3339 time, client, route, status, error code,
images, queue and total ms, request id; key=value text or --log-format json) and /metrics
(dalle_request_duration_seconds by route, CORS preflights as their own route, the standard
process_* metrics; `promtool check metrics` when promtool is installed)."""
import datetime
import json
import re
import shutil
import subprocess
import time

import pytest
import requests

from conftest import BIN, MODEL, Server

TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(scope="module")
def keyed():
    s = Server("--api-key", "k", "--max-batch", "4")
    yield s
    assert s.stop() == 0


def test_text_access_lines(keyed):
    keyed.get("/nowhere", headers={"X-Request-Id": "obs-404"})
    keyed.wait_log(TS + r" access id=obs-404 client=127\.0\.0\.1 method=GET route=other "
                   r"path=/nowhere status=404 error=not_found images=0 queue_ms=0\.0 ms=[0-9.]+")
    keyed.post("/generate", {"prompt": "a"}, headers={"X-Request-Id": "obs-401"})
    keyed.wait_log(TS + r" access id=obs-401 client=127\.0\.0\.1 method=POST route=/generate "
                   r"path=/generate status=401 error=invalid_api_key images=0 .*")
    r = keyed.post("/generate", {"prompt": "a", "n": 2, "seed": 1},
                   headers={"X-Request-Id": "obs-ok", "Authorization": "Bearer k"})
    assert r.status_code == 200
    line = keyed.wait_log(TS + r" access id=obs-ok client=127\.0\.0\.1 method=POST "
                          r"route=/generate path=/generate status=200 error=- images=2 "
                          r"queue_ms=[0-9.]+ ms=[0-9.]+")
    queue, total = map(float, re.search(r"queue_ms=(\S+) ms=(\S+)", line).groups())
    assert 0 <= queue <= total
    keyed.post("/generate", {"prompt": "a", "n": 99}, headers={"Authorization": "Bearer k",
                                                              "X-Request-Id": "obs-422"})
    keyed.wait_log(TS + r" access id=obs-422 .* status=422 error=out_of_range images=0 .*")
    requests.options(keyed.url("/v1/images/generations"), headers={"X-Request-Id": "obs-pre"},
                     timeout=30)
    keyed.wait_log(TS + r" access id=obs-pre client=127\.0\.0\.1 method=OPTIONS route=preflight "
                   r"path=/v1/images/generations status=204 error=- .*")
    stamp = re.match(TS, line).group(0)
    t = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert abs((now - t).total_seconds()) < 120


def test_json_access_lines():
    s = Server("--log-format", "json")
    try:
        s.get("/health", headers={"X-Request-Id": "j-health"})
        s.post("/generate", {"prompt": "a", "n": 3, "seed": 2}, headers={"X-Request-Id": "j-ok"})
        s.post("/generate", {"prompt": "a", "bogus": 1}, headers={"X-Request-Id": "j-400"})
        rows = {}
        deadline = time.time() + 30
        want = {"j-health", "j-ok", "j-400"}  # /ready's lines of start-up come first
        while not want <= rows.keys() and time.time() < deadline:
            for line in list(s.log):
                if line.startswith("{"):
                    o = json.loads(line)
                    rows[o["id"]] = o
            time.sleep(0.05)
        ok = rows["j-ok"]
        assert set(ok) == {"time", "msg", "id", "client", "method", "route", "path", "status",
                           "error", "images", "queue_ms", "ms", "closed_early"}
        assert re.fullmatch(TS, ok["time"]) and ok["msg"] == "access"
        assert (ok["client"], ok["method"], ok["route"], ok["status"], ok["error"],
                ok["images"], ok["closed_early"]) == ("127.0.0.1", "POST", "/generate", 200,
                                                      None, 3, False)
        assert 0 <= ok["queue_ms"] <= ok["ms"]
        assert rows["j-health"]["route"] == "/health" and rows["j-health"]["error"] is None
        bad = rows["j-400"]
        assert (bad["status"], bad["error"], bad["images"]) == (400, "unknown_field", 0)
    finally:
        assert s.stop() == 0


def test_bad_log_format_is_refused():
    r = subprocess.run([str(BIN), "--model", str(MODEL), "--log-format", "xml"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr == "dalle-server: --log-format: 'xml' is not text or json\n"


def _series(text, name):
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            k, v = line.rsplit(" ", 1)
            out[k] = float(v)
    return out


def test_duration_by_route_and_process_metrics(keyed):
    for _ in range(3):
        keyed.get("/health")
    requests.options(keyed.url("/generate"), timeout=30)
    keyed.post("/generate", {"prompt": "a", "seed": 3}, headers={"Authorization": "Bearer k"})
    time.sleep(0.3)  # a request is counted when its connection completes
    text = keyed.get("/metrics").text
    d = _series(text, "dalle_request_duration_seconds_count")
    assert d['dalle_request_duration_seconds_count{route="/health"}'] >= 3
    assert d['dalle_request_duration_seconds_count{route="preflight"}'] >= 1
    assert d['dalle_request_duration_seconds_count{route="/generate"}'] >= 1
    gen = _series(text, 'dalle_request_duration_seconds_sum{route="/generate"}')
    assert list(gen.values())[0] > 0
    assert 'route="other"' in text and text.count("# TYPE dalle_request_duration_seconds ") == 1
    assert _series(text, "dalle_requests_total")['dalle_requests_total{route="preflight",status="204"}'] >= 1

    p = _series(text, "process_")
    assert p["process_resident_memory_bytes"] > 1e6
    assert p["process_virtual_memory_bytes"] >= p["process_resident_memory_bytes"]
    assert p["process_open_fds"] >= 3 and p["process_max_fds"] >= p["process_open_fds"]
    assert 0 < p["process_cpu_seconds_total"] < 3600
    assert time.time() - 600 < p["process_start_time_seconds"] <= time.time()
    # CPU seconds grow with work
    keyed.post("/generate", {"prompt": "more work", "n": 4, "seed": 4},
               headers={"Authorization": "Bearer k"})
    later = _series(keyed.get("/metrics").text, "process_cpu_seconds_total")
    assert later["process_cpu_seconds_total"] > p["process_cpu_seconds_total"]


def test_promtool_check_metrics(keyed):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    keyed.post("/v1/images/generations", {"prompt": "a"}, headers={"Authorization": "Bearer k"})
    text = keyed.get("/metrics").content
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    # and it can fail: a malformed exposition is refused
    bad = subprocess.run([promtool, "check", "metrics"], input=b"dalle_x{le=} 1\n",
                         capture_output=True, timeout=60)
    assert bad.returncode != 0
