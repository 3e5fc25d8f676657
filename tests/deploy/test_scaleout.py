"""Scale-out and failover through nginx with docker/nginx.conf (tests/deploy/scaleout.py).

3 dalle-server replicas on loopback (models/tiny, --threads 1) behind Debian's nginx running
the same nginx.conf as the compose setup: 200 generation requests from 16 concurrent clients;
after 30 % of the answers one replica is killed with SIGKILL, after 60 % another gets SIGTERM.
Every request must be served with the right image (retried on another replica where needed)
or get a clear 5xx/429 JSON error; none may hang or get a broken answer. The same run first
measures images/s through nginx with 1 replica and with 3, and the CPU time the replicas used
per image (reported, not asserted: CI has 2 cores shared with everything else).

Under ASan (BUILD contains "asan") a generation is >10× slower: the failover runs 48 requests
and the throughput runs are skipped. DALLE_SCALEOUT_REQUESTS overrides the request count.
The report is written to $BUILD/deploy/scaleout.json.
"""
import json
import os
import re

import pytest

from conftest import BUILD, ROOT, SERVER_BIN
import scaleout

ASAN = "asan" in BUILD.name


def test_nginx_config_renders_and_passes_nginx_t(tmp_path):
    nginx = scaleout.nginx_binary()
    if not nginx:
        pytest.skip("nginx is not installed (make deps installs it)")
    text = scaleout.render(scaleout.TEMPLATE.read_text(), ["127.0.0.1:1", "127.0.0.1:2"], 9,
                           tmp_path / "access.log")
    assert text.count("server 127.0.0.1:") == 2
    for must in ("least_conn;", "proxy_buffering off;", "non_idempotent", "http_429", "http_503",
                 "http_502", "proxy_set_header X-Request-Id", "proxy_request_buffering on;"):
        assert must in text, must
    read = int(text.split("proxy_read_timeout ")[1].split("s;")[0])
    assert read > 300, "above the server's queue deadline plus a generation"
    (tmp_path / "dalle.conf").write_text(text)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; events {{}} http {{ include {tmp_path}/dalle.conf; }}\n")
    import subprocess
    r = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                        "-e", str(tmp_path / "error.log")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_scaleout_and_failover():
    if not scaleout.nginx_binary():
        pytest.skip("nginx is not installed (make deps installs it)")
    if not SERVER_BIN.exists():
        pytest.skip(f"{SERVER_BIN} not built")
    requests_ = int(os.environ.get("DALLE_SCALEOUT_REQUESTS", 48 if ASAN else 200))
    rep = scaleout.run(SERVER_BIN, ROOT / "models" / "tiny", replicas=3, requests_=requests_,
                       clients=16, tput_requests=0 if ASAN else 48,
                       hang_s=900 if ASAN else 600)
    out = BUILD / "deploy" / "scaleout.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep, indent=2) + "\n")
    print(json.dumps(rep, indent=2))
    f = rep["failover"]
    msg = json.dumps(rep)
    assert f["hung"] == 0, msg
    assert f["bad"] == 0, msg
    assert f["served"] + f["failed"] == requests_, msg
    assert f["served"] >= requests_ // 2, msg
    assert f["retried"] >= 1, "killing a busy replica must make nginx retry elsewhere: " + msg
    assert f["sigterm_exit"] == 0, msg
    assert f["survivor_ready"] == 200, msg
    assert f["survivor_exit"] == 0, msg


def test_stream_and_request_id_through_nginx(tmp_path):
    """Through docker/nginx.conf: the event stream reaches the client as it is produced
    (progress events arrive well before the result, not held back until the end; nginx 1.22
    passes these chunks on even with proxy_buffering on, so this shows the stream works
    through the balancer rather than proving the setting is needed), and a request without
    X-Request-Id gets nginx's own id, which the replica echoes."""
    if not scaleout.nginx_binary():
        pytest.skip("nginx is not installed (make deps installs it)")
    if not SERVER_BIN.exists():
        pytest.skip(f"{SERVER_BIN} not built")
    import http.client
    import time
    rep = scaleout.Replica(SERVER_BIN, ROOT / "models" / "tiny", ("--threads", "1", "--max-batch", "4"))
    lb = None
    try:
        rep.wait_ready()
        lb = scaleout.Nginx([rep.addr], tmp_path, "stream")
        st, hdr, _ = scaleout.request(lb.addr, "GET", "/health")
        assert st == 200 and re.fullmatch(r"[0-9a-f]{32}", hdr.get("X-Request-Id", "")), hdr

        c = http.client.HTTPConnection("127.0.0.1", lb.port, timeout=600)
        c.request("POST", "/generate", json.dumps({"prompt": "a red bicycle", "n": 4, "seed": 3,
                                                   "stream": True}),
                  {"Content-Type": "application/json", "X-Request-Id": "stream-1"})
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type", "").startswith("text/event-stream")
        assert r.getheader("X-Request-Id") == "stream-1"
        t0 = time.time()
        seen = []
        while True:
            line = r.fp.readline()
            if not line:
                break
            if line.startswith(b"event: "):
                seen.append((line[7:].strip().decode(), time.time() - t0))
                if seen[-1][0] in ("result", "error"):
                    break
        c.close()
        names = [n for n, _ in seen]
        assert names[-1] == "result", names
        progress = [t for n, t in seen if n == "progress"]
        assert len(progress) >= 2, names
        # held back, every event would come in the same read at the end
        assert seen[-1][1] - progress[0] > 0.05, seen
    finally:
        if lb:
            lb.stop()
        assert rep.stop() == 0
