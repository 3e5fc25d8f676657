"""Every route of dalle-server: GET routes, CORS, request ids, 404/405, both dialects of
POST /generate and its /dalle alias, determinism and concurrency."""
import concurrent.futures
import json
import re
import time
import subprocess

import requests
import yaml

from conftest import (BIN, MODEL, REQ_TIMEOUT, ROOT, Server, decode_images, jpeg_size,
                      jpeg_subsampling)


def test_health(server):
    r = server.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_ready(server):
    r = server.get("/ready")
    assert r.status_code == 200 and r.json() == {"status": "ready"}


def test_root_is_playground_health(server):
    r = server.get("/", headers={"Accept": "*/*"})
    assert r.status_code == 200 and r.json() == {"success": True}


def test_root_is_the_web_page_for_browsers(server):
    r = server.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert r.content == (ROOT / "web" / "index.html").read_bytes()
    assert '<form id="form">' in r.text and 'fetch("/generate"' in r.text


def test_info(server):
    info = server.get("/info").json()
    assert info["version"] == "0.1.0"
    assert info["model"] == {"name": "tiny-random", "backend": "cpu", "image_size": 64,
                             "image_length": 256, "rank": True, "description": "",
                             "examples": []}
    assert info["api_key_required"] is False
    assert info["limits"] == {"max_images": 16, "max_prompt_bytes": 1024,
                              "body_limit_bytes": 65536, "queue_capacity": 64,
                              "deadline_s": 300, "preview_min_every": 16, "jpeg_threads": 2}
    # no GPU in CI: --device auto (the default) falls back to the one CPU scheduler
    assert info["device"] == "auto"
    assert info["devices"] == [{"name": "cpu", "backend": "cpu", "queued": 0, "in_flight": 0,
                                "batch_images": 0}]


def test_openapi_embedded_and_lists_routes(server):
    r = server.get("/openapi.yaml")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/yaml"
    spec = yaml.safe_load(r.text)
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {"/generate", "/dalle", "/", "/health", "/ready", "/info",
                                  "/metrics", "/openapi.yaml", "/v1/images/generations",
                                  "/v1/models"}
    assert (ROOT / "openapi.yaml").read_bytes() == r.content


def test_metrics_format(server):
    server.get("/health")
    r = server.get("/metrics")
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = server.metrics()
    assert m["dalle_queue_capacity"] == 64
    assert m["dalle_queue_size"] == 0
    assert m['dalle_requests_total{route="/health",status="200"}'] >= 1
    assert m['dalle_build_info{version="0.1.0"}'] == 1
    for line in r.text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+', line), line


def test_options_preflight(server):
    r = requests.options(server.url("/generate"), timeout=30, headers={
        "Origin": "http://example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "bypass-tunnel-reminder, content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"] == "bypass-tunnel-reminder, content-type"
    assert r.content == b""


def test_options_on_any_path(server):
    assert requests.options(server.url("/health"), timeout=30).status_code == 204


def test_not_found(server):
    r = server.get("/nope")
    assert r.status_code == 404
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.json()["error"]["code"] == "not_found"


def test_method_not_allowed(server):
    r = server.get("/generate")
    assert r.status_code == 405
    assert r.headers["Allow"] == "POST, OPTIONS"
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = requests.post(server.url("/health"), timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "GET, OPTIONS"


def test_request_id_echoed_or_generated(server):
    r = server.get("/health", headers={"X-Request-Id": "abc-123"})
    assert r.headers["X-Request-Id"] == "abc-123"
    r = server.get("/health", headers={"X-Request-Id": "bad id with spaces"})
    assert r.headers["X-Request-Id"] != "bad id with spaces" and r.headers["X-Request-Id"]
    a, b = server.get("/health"), server.get("/health")
    assert a.headers["X-Request-Id"] != b.headers["X-Request-Id"]


def test_generate_native(server):
    r = server.post("/generate", {"prompt": "a red bicycle", "n": 3, "seed": 7},
                    headers={"X-Request-Id": "native-1"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    j = r.json()
    assert set(j) == {"images", "scores", "indices", "version", "id", "model", "prompt", "seed",
                      "timings_ms"}
    assert j["id"] == "native-1" and j["model"] == "tiny-random" and j["seed"] == 7
    assert j["prompt"] == "a red bicycle" and j["version"] == "0.1.0"
    assert len(j["images"]) == 3
    for img in decode_images(j["images"]):
        assert jpeg_size(img) == (64, 64)
    assert sorted(j["indices"]) == [0, 1, 2]
    assert j["scores"] == sorted(j["scores"], reverse=True)
    assert set(j["timings_ms"]) == {"queue", "text", "decode", "vqgan", "clip", "jpeg", "total"}
    assert all(v >= 0 for v in j["timings_ms"].values())
    assert j["timings_ms"]["total"] >= j["timings_ms"]["decode"] > 0


def test_generate_defaults_and_random_seed(server):
    a = server.post("/generate", {"prompt": "a cat"}).json()
    b = server.post("/generate", {"prompt": "a cat"}).json()
    assert len(a["images"]) == 1 and a["seed"] != b["seed"]


def test_generate_unranked_and_quality(server):
    j = server.post("/generate", {"prompt": "a cat", "n": 2, "seed": 1, "rank": False,
                                  "quality": 50}).json()
    assert j["indices"] == [0, 1] and j["scores"] == [0, 0]


def test_jpeg_subsampling_default_and_per_request(server):
    """the model makes 64×64 images: full chroma (4:4:4) by default, any of the three on
    request"""
    body = {"prompt": "a red square", "seed": 3}
    images = decode_images(server.post("/generate", body).json()["images"])
    assert jpeg_size(images[0]) == (64, 64) and jpeg_subsampling(images[0]) == 444
    for ss in (420, 422, 444):
        j = server.post("/generate", dict(body, subsampling=ss)).json()
        assert jpeg_subsampling(decode_images(j["images"])[0]) == ss


def test_playground_dialect(server):
    for path in ("/generate", "/dalle"):
        r = server.post(path, {"text": "a dog", "num_images": 2})
        assert r.status_code == 200, r.text
        j = r.json()
        assert set(j) == {"generatedImgs", "generatedImgsFormat"}
        assert j["generatedImgsFormat"] == "jpeg" and len(j["generatedImgs"]) == 2
        decode_images(j["generatedImgs"])


def test_num_images_in_native_dialect(server):
    j = server.post("/dalle", {"prompt": "a dog", "num_images": 2, "seed": 1}).json()
    assert len(j["images"]) == 2


def test_same_seed_same_images(server):
    body = {"prompt": "a lighthouse at dusk", "n": 2, "seed": 42, "temperature": 1.5,
            "top_k": 100, "top_p": 0.9, "cond_scale": 5}
    a = server.post("/generate", body).json()
    b = server.post("/generate", body).json()
    assert a["images"] == b["images"] and a["scores"] == b["scores"]
    c = server.post("/generate", {**body, "seed": 43}).json()
    assert c["images"] != a["images"]


def test_parallel_clients_match_solo_runs(server):
    prompts = [f"prompt number {i}" for i in range(8)]
    solo = {p: server.post("/generate", {"prompt": p, "n": 2, "seed": 11}).json()["images"]
            for p in prompts}
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = {p: ex.submit(server.post, "/generate", {"prompt": p, "n": 2, "seed": 11})
                for p in prompts}
        for p, f in futs.items():
            r = f.result()
            assert r.status_code == 200, r.text
            assert r.json()["images"] == solo[p], p
    m = server.metrics()
    assert m["dalle_requests_in_flight"] == 0 and m["dalle_queue_size"] == 0


def test_jpeg_pool_answers_equal_the_engine_without_pool(tmp_path):
    """JPEG + base64 run on --jpeg-threads pool threads: concurrent requests all complete,
    and their images are byte for byte the files dalle-cli generate writes for the same
    prompt and seed (the engine encodes those itself, on its own thread)."""
    s = Server("--max-batch", "8", "--jpeg-threads", "3")
    try:
        prompts = [f"pool prompt {i}" for i in range(6)]
        with concurrent.futures.ThreadPoolExecutor(6) as ex:
            futs = {p: ex.submit(s.post, "/generate", {"prompt": p, "n": 2, "seed": 5})
                    for p in prompts}
            got = {p: f.result() for p, f in futs.items()}
        assert all(r.status_code == 200 for r in got.values())
        for p in prompts[:2]:
            out = tmp_path / p.replace(" ", "_")
            cli = subprocess.run([str(BIN.parent / "dalle-cli"), "generate", "--model",
                                  str(MODEL), "--prompt", p, "-n", "2", "--seed", "5",
                                  "--out", str(out)], capture_output=True, timeout=REQ_TIMEOUT)
            assert cli.returncode == 0, cli.stderr
            files = [(out / f"{k}.jpg").read_bytes() for k in range(2)]
            assert decode_images(got[p].json()["images"]) == files, p
        assert s.get("/info").json()["limits"]["jpeg_threads"] == 3
    finally:
        assert s.stop() == 0


def test_info_describes_the_demo_model():
    """models/demo/config.json's description and examples reach /info; with --api-key /info
    says that a key is needed (and stays open itself)."""
    s = Server("--model", str(ROOT / "models" / "demo"), "--api-key", "k")
    try:
        cfg = json.loads((ROOT / "models" / "demo" / "config.json").read_text())
        info = s.get("/info").json()
        assert info["api_key_required"] is True
        m = info["model"]
        res = cfg["vqgan"]["resolution"]
        assert m["name"] == "demo-shapes" and m["image_size"] == res
        assert m["description"] == cfg["description"] and f"{res}x{res}" in m["description"]
        assert m["examples"] == cfg["examples"] and len(m["examples"]) >= 3
        # the examples stay inside the demo's world: every word is one the world uses
        world = (ROOT / "tools" / "demo" / "world.py").read_text()
        for ex in m["examples"]:
            for w in ex.split():
                assert re.search(rf"\b{w.rstrip('s')}", world), (ex, w)
    finally:
        assert s.stop() == 0


def test_seeds_are_exact(server):
    """A seed above 2^53 is echoed exactly and draws its own images (not those of a
    neighbour a double would round it to); 2^63 - 1 is the largest; seeds the server picks
    are below 2^53."""
    a = server.post("/generate", {"prompt": "seeds", "seed": 2 ** 53 + 1})
    assert a.status_code == 200 and f'"seed":{2 ** 53 + 1}'.encode() in a.content
    b = server.post("/generate", {"prompt": "seeds", "seed": 2 ** 53}).json()
    assert a.json()["images"] != b["images"]
    top = server.post("/generate", {"prompt": "seeds", "seed": 2 ** 63 - 1})
    assert f'"seed":{2 ** 63 - 1}'.encode() in top.content
    r = server.post("/generate", data=f'{{"prompt": "seeds", "seed": {2 ** 63}}}')
    assert r.status_code in (400, 422), r.text
    picked = [server.post("/v1/images/generations", {"prompt": "seeds"}).json()["seed"]
              for _ in range(12)]
    assert all(0 <= p < 2 ** 53 for p in picked) and len(set(picked)) == 12, picked


def test_access_log(server):
    server.get("/health", headers={"X-Request-Id": "log-me"})
    server.wait_log(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z access id=log-me "
                    r"client=127\.0\.0\.1 method=GET route=/health path=/health status=200 "
                    r"error=- images=0 queue_ms=0\.0 ms=[0-9.]+")


def test_stage_and_batch_histograms(server):
    server.post("/generate", {"prompt": "histograms", "n": 3, "seed": 2})
    stages = ("text_encode", "decode", "vqgan", "clip", "jpeg")

    def ok_requests(m):
        return sum(v for k, v in m.items()
                   if k.startswith("dalle_requests_total{") and 'status="200"' in k
                   and ("/generate" in k or "/dalle" in k or "/v1/images" in k))
    # a request is counted when its connection completes, possibly after the client has its
    # reply: wait for the counters to settle before comparing them
    deadline = time.time() + 30
    while True:
        m = server.metrics()
        ok = ok_requests(m)
        settled = all(m[f'dalle_batch_duration_seconds_count{{stage="{st}"}}'] == ok
                      for st in stages)
        if settled or time.time() > deadline:
            break
        time.sleep(0.05)
    for stage in stages:
        assert m[f'dalle_batch_duration_seconds_count{{stage="{stage}"}}'] == ok, stage
    assert m['dalle_batch_duration_seconds_sum{stage="decode"}'] > 0
    assert m["dalle_batch_size_count"] >= 256  # one observation per decode step
    assert m['dalle_batch_size_bucket{le="+Inf"}'] == m["dalle_batch_size_count"]
