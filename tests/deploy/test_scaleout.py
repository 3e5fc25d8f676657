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
