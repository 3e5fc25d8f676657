"""The OpenAI Images API dialect: POST /v1/images/generations and GET /v1/models, with
OpenAI's error objects (400 for every request error)."""
import base64
import json
import time

import pytest

from conftest import ROOT, Server, jpeg_size


def test_models(server):
    j = server.get("/v1/models").json()
    assert j == {"object": "list", "data": [{"id": "tiny-random", "object": "model",
                                             "created": 0, "owned_by": "dalle-server"}]}


def test_generations(server):
    t0 = int(time.time())
    r = server.post("/v1/images/generations",
                    {"prompt": "a red bicycle", "n": 2, "size": "64x64",
                     "response_format": "b64_json", "model": "dall-e-2", "user": "u1"},
                    headers={"Authorization": "Bearer sk-anything"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    j = r.json()
    assert set(j) == {"created", "data", "seed"} and t0 - 5 <= j["created"] <= time.time() + 5
    assert 0 <= j["seed"] < 2 ** 53
    assert len(j["data"]) == 2
    for item in j["data"]:
        assert set(item) == {"b64_json"}
        assert jpeg_size(base64.b64decode(item["b64_json"])) == (64, 64)


def test_generations_defaults(server):
    j = server.post("/v1/images/generations", {"prompt": "a cat", "size": "auto"}).json()
    assert len(j["data"]) == 1


def test_generations_seed_and_user(server):
    """seed (an extension of the OpenAI body) gives the images of /generate's seed and is
    echoed exactly, above 2^53 too; user is accepted and changes nothing."""
    seed = 2 ** 53 + 1
    a = server.post("/v1/images/generations", {"prompt": "a cat", "n": 2, "seed": seed,
                                                "user": "someone"})
    assert a.status_code == 200, a.text
    assert f'"seed":{seed}'.encode() in a.content
    b = server.post("/v1/images/generations", {"prompt": "a cat", "n": 2, "seed": seed}).json()
    assert [d["b64_json"] for d in a.json()["data"]] == [d["b64_json"] for d in b["data"]]
    native = server.post("/generate", {"prompt": "a cat", "n": 2, "seed": seed}).json()
    assert sorted(d["b64_json"] for d in b["data"]) == sorted(native["images"])


def test_size_comes_from_the_model(server):
    """The tiny model makes 64x64: "64x64" and "auto" work, 256x256 is refused with the
    model's own size in the message."""
    for size in ("64x64", "auto"):
        j = server.post("/v1/images/generations", {"prompt": "a cat", "size": size}).json()
        assert jpeg_size(base64.b64decode(j["data"][0]["b64_json"])) == (64, 64)
    r = server.post("/v1/images/generations", {"prompt": "a cat", "size": "256x256"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == \
        "size must be 64x64 or auto (this model makes 64x64 images)"


def test_size_follows_the_loaded_model():
    """models/demo, whose image size is its own (config.json's vqgan.resolution): that size
    and "auto" work, another model's size is refused with the demo's size in the message."""
    demo = ROOT / "models" / "demo"
    res = json.loads((demo / "config.json").read_text())["vqgan"]["resolution"]
    other = 256 if res == 64 else 64
    s = Server("--model", str(demo))
    try:
        for size in (f"{res}x{res}", "auto"):
            r = s.post("/v1/images/generations", {"prompt": "a red square", "size": size})
            assert r.status_code == 200, r.text
            assert jpeg_size(base64.b64decode(r.json()["data"][0]["b64_json"])) == (res, res)
        r = s.post("/v1/images/generations", {"prompt": "a red square", "size": f"{other}x{other}"})
        assert r.status_code == 400
        assert r.json()["error"]["message"] == \
            f"size must be {res}x{res} or auto (this model makes {res}x{res} images)"
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize("body,code,param", [
    ({"prompt": "a", "size": "1024x1024"}, "unsupported", "size"),
    ({"prompt": "a", "size": "256x256"}, "unsupported", "size"),
    ({"prompt": "a", "size": "64x64 "}, "unsupported", "size"),
    ({"prompt": "a", "size": 256}, "invalid_type", "size"),
    ({"prompt": "a", "response_format": "url"}, "unsupported", "response_format"),
    ({"prompt": "a", "n": 0}, "out_of_range", "n"),
    ({"prompt": "a", "n": 11}, "out_of_range", "n"),
    ({"prompt": "a", "n": "2"}, "invalid_type", "n"),
    ({"prompt": ""}, "empty_prompt", "prompt"),
    ({"prompt": 5}, "invalid_type", "prompt"),
    ({}, "missing_field", "prompt"),
    ({"prompt": "a", "seed": -1}, "out_of_range", "seed"),
    ({"prompt": "a", "seed": "1"}, "invalid_type", "seed"),
    ({"prompt": "a", "seed": 1.0}, "invalid_type", "seed"),
    ({"prompt": "a", "user": 5}, "invalid_type", "user"),
    ({"prompt": "a", "steps": 1}, "unknown_field", "steps"),
    ({"prompt": "a", "model": 3}, "invalid_type", "model"),
], ids=["size 1024", "size 256", "size with a space", "size number", "url format", "n 0",
        "n 11", "n string", "empty prompt", "prompt number",
        "missing prompt", "seed negative", "seed string", "seed float", "user number",
        "unknown field", "model number"])
def test_generations_errors_are_400(server, body, code, param):
    r = server.post("/v1/images/generations", body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == param
    assert err["type"] == "invalid_request_error" and err["message"]


def test_generations_bad_json_is_400(server):
    r = server.post("/v1/images/generations", data=b"{")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = server.post("/v1/images/generations", data=b"[]")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_type"
