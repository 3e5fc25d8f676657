"""Streaming ("stream": true → text/event-stream): queued, progress every 16 steps, optional
previews every k steps (JPEGs of the codes so far), then the result (the same body as without
streaming or previews) or an error event; a client that leaves mid-stream is cancelled."""
import concurrent.futures
import json
import re
import shutil
import signal
import socket
import subprocess

import pytest
import requests

from conftest import REQ_TIMEOUT, ROOT, Server, decode_images, jpeg_size
from test_lifecycle import in_flight


def events(resp):
    """[(event, data)] of an SSE response."""
    out, name = [], None
    for line in resp.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
    return out


def stream(server, body):
    return requests.post(server.url("/generate"), data=json.dumps({**body, "stream": True}),
                         stream=True, timeout=REQ_TIMEOUT)


def test_stream_events_and_same_result(server):
    body = {"prompt": "a streamed lighthouse", "n": 2, "seed": 9}
    plain = server.post("/generate", body).json()
    r = stream(server, body)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/event-stream"
    assert r.headers["Access-Control-Allow-Origin"] == "*" and r.headers["Cache-Control"] == "no-cache"
    ev = events(r)
    assert ev[0][0] == "queued" and ev[0][1]["position"] >= 0
    steps = [d["step"] for name, d in ev if name == "progress"]
    assert steps == list(range(16, 256, 16)), steps
    assert all(d["steps"] == 256 for name, d in ev if name == "progress")
    name, result = ev[-1]
    assert name == "result"
    assert result["images"] == plain["images"] and result["scores"] == plain["scores"]
    assert result["seed"] == 9 and result["id"] == r.headers["X-Request-Id"]


def test_preview_events_are_jpegs_and_leave_the_result_unchanged(server):
    body = {"prompt": "a previewed lighthouse", "n": 2, "seed": 21}
    plain = server.post("/generate", body).json()
    ev = events(stream(server, {**body, "preview_every": 64}))
    previews = [d for name, d in ev if name == "preview"]
    assert [d["step"] for d in previews] == [64, 128, 192]
    for d in previews:
        assert d["steps"] == 256 and len(d["images"]) == 2
        for jpg in decode_images(d["images"]):
            assert jpeg_size(jpg) == (64, 64)
    assert previews[0]["images"] != previews[-1]["images"]  # the picture fills in
    assert [d["step"] for name, d in ev if name == "progress"] == list(range(16, 256, 16))
    name, result = ev[-1]
    assert name == "result" and result["images"] == plain["images"]
    assert result["scores"] == plain["scores"]


def test_preview_every_smallest_gives_the_most_previews(server):
    ev = events(stream(server, {"prompt": "many previews", "seed": 3, "preview_every": 16}))
    assert [d["step"] for name, d in ev if name == "preview"] == list(range(16, 256, 16))
    assert ev[-1][0] == "result"


@pytest.mark.parametrize("extra,status,code", [
    ({"stream": True, "preview_every": 15}, 422, "out_of_range"),
    ({"stream": True, "preview_every": 257}, 422, "out_of_range"),
    ({"stream": True, "preview_every": 0}, 422, "out_of_range"),
    ({"stream": True, "preview_every": "32"}, 422, "invalid_type"),
    ({"stream": True, "preview_every": 32.5}, 422, "invalid_type"),
    ({"preview_every": 32}, 400, "conflict"),
    ({"stream": False, "preview_every": 32}, 400, "conflict"),
], ids=["below 16", "above 256", "zero", "string", "float", "without stream", "stream false"])
def test_preview_every_bounds(server, extra, status, code):
    r = server.post("/generate", {"prompt": "bounded", **extra})
    assert r.status_code == status and r.headers["Content-Type"] == "application/json"
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == "preview_every", err


def test_stream_playground_dialect(server):
    ev = events(stream(server, {"text": "a dog", "num_images": 1}))
    assert ev[-1][0] == "result" and set(ev[-1][1]) == {"generatedImgs", "generatedImgsFormat"}


def test_stream_validation_errors_are_plain_json(server):
    r = server.post("/generate", {"prompt": "", "stream": True})
    assert r.status_code == 422 and r.headers["Content-Type"] == "application/json"


def test_stream_client_leaving_is_cancelled():
    s = Server("--max-batch", "16", "--queue", "4")
    try:
        sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
        data = json.dumps({"prompt": "leaving", "n": 16, "seed": 1, "stream": True}).encode()
        sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(data), data))
        got = b""
        while b"event: progress" not in got:
            got += sock.recv(4096)
        sock.close()
        s.wait_metric('dalle_request_failures_total{err="cancelled"}', lambda v: v == 1)
        s.wait_metric("dalle_batch_images", lambda v: v == 0)
        m = s.metrics()
        assert m["dalle_images_generated_total"] == 0 and m["dalle_requests_in_flight"] == 0
        assert s.post("/generate", {"prompt": "after", "seed": 1}).status_code == 200
    finally:
        assert s.stop() == 0


def test_stream_gets_error_event_when_drain_stops_it():
    s = Server("--max-batch", "16", "--queue", "4", "--drain", "0")
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(lambda: events(stream(s, {"prompt": "stopped", "n": 16, "seed": 1})))
        in_flight(s)
        s.proc.send_signal(signal.SIGTERM)
        ev = fut.result()
    assert ev[0][0] == "queued"
    name, err = ev[-1]
    assert name == "error" and err["error"]["code"] == "shutting_down"
    assert s.stop() == 0
    # the access line: the stream's status is 200 (sent first); its error event's code
    s.wait_log(r"\S+ access id=\S+ client=\S+ method=POST route=/generate path=/generate "
               r"status=200 error=shutting_down images=0 queue_ms=[0-9.]+ ms=[0-9.]+")


def run_page(server, prompt, seed="", key=""):
    """The page's own script (web/index.html) in node with a DOM stand-in; key: the API key
    the page finds in its localStorage."""
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    out = subprocess.run([node, str(ROOT / "tests" / "server" / "page_driver.js"), server.base,
                          prompt, seed, key], capture_output=True, text=True,
                         timeout=REQ_TIMEOUT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_web_page_script_moves_progress_bar_and_shows_images(server):
    r = run_page(server, "a red bicycle")
    assert not r["error"] and r["images"] == 2 and r["status"].startswith("seed ")
    assert r["progress"] == [0] + list(range(16, 256, 16))


def test_web_page_script_shows_errors(server):
    r = run_page(server, "   ")
    assert r["error"] and r["status"] == "Error 422. prompt must not be empty"


def test_web_page_script_keeps_seeds_exact(server):
    """2^53 + 1 is no JavaScript number: the page sends, shows and names downloads with the
    seed's exact digits; a seed that is not a whole number in range is refused on the page."""
    big = "9007199254740993"
    r = run_page(server, "a red bicycle", seed=big)
    assert not r["error"] and r["images"] == 2, r
    assert f'"seed":{big}' in r["body"]
    assert r["status"].startswith(f"seed {big} · ")
    assert sorted(r["downloads"]) == [f"dalle-{big}-0.jpg", f"dalle-{big}-1.jpg"]
    for bad in ("-1", "1.5", "1e3", "92233720368547758070"):
        r = run_page(server, "a red bicycle", seed=bad)
        assert r["error"] and r["body"] is None and "seed" in r["status"], (bad, r)


def test_web_page_script_random_seed_is_shown_exactly(server):
    r = run_page(server, "a red bicycle")
    seed = re.match(r"seed (\d+) · ", r["status"]).group(1)
    assert int(seed) < 2 ** 53 and r["downloads"][0].startswith(f"dalle-{seed}-")


def test_web_page_script_shows_the_model():
    """models/demo describes itself: the page shows its name, image size, description and
    its example prompts (the first one as the prompt's placeholder); the key field stays
    hidden when the server needs no key."""
    s = Server("--model", str(ROOT / "models" / "demo"))
    try:
        cfg = json.loads((ROOT / "models" / "demo" / "config.json").read_text())
        r = run_page(s, cfg["examples"][0])
        assert not r["error"], r
        res = cfg["vqgan"]["resolution"]
        assert r["model"] == f"demo-shapes · {res}×{res} images"
        assert r["description"] == cfg["description"]
        assert r["examples"] == cfg["examples"] and r["placeholder"] == cfg["examples"][0]
        assert r["keyHidden"] and r["authorization"] is None
    finally:
        assert s.stop() == 0


def test_web_page_script_api_key():
    """With --api-key the key field shows (/info api_key_required); the stored key is sent as
    a Bearer token; without one the page says that a key is needed."""
    s = Server("--api-key", "sesame")
    try:
        r = run_page(s, "a red bicycle", key="sesame")
        assert not r["keyHidden"] and r["authorization"] == "Bearer sesame"
        assert not r["error"] and r["images"] == 2, r
        r = run_page(s, "a red bicycle")
        assert r["error"] and not r["keyHidden"] and r["authorization"] is None
        assert r["status"].startswith("The server needs an API key"), r["status"]
        r = run_page(s, "a red bicycle", key="wrong")
        assert r["error"] and r["status"].startswith("The server needs an API key")
    finally:
        assert s.stop() == 0
