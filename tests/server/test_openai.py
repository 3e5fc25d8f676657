"""The OpenAI Images API dialect: POST /v1/images/generations and GET /v1/models, with
OpenAI's error objects (400 for every request error)."""
import base64
import time

import pytest

from conftest import jpeg_size


def test_models(server):
    j = server.get("/v1/models").json()
    assert j == {"object": "list", "data": [{"id": "tiny-random", "object": "model",
                                             "created": 0, "owned_by": "dalle-server"}]}


def test_generations(server):
    t0 = int(time.time())
    r = server.post("/v1/images/generations",
                    {"prompt": "a red bicycle", "n": 2, "size": "256x256",
                     "response_format": "b64_json", "model": "dall-e-2", "user": "u1"},
                    headers={"Authorization": "Bearer sk-anything"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    j = r.json()
    assert set(j) == {"created", "data"} and t0 - 5 <= j["created"] <= time.time() + 5
    assert len(j["data"]) == 2
    for item in j["data"]:
        assert set(item) == {"b64_json"}
        assert jpeg_size(base64.b64decode(item["b64_json"])) == (64, 64)


def test_generations_defaults(server):
    j = server.post("/v1/images/generations", {"prompt": "a cat", "size": "auto"}).json()
    assert len(j["data"]) == 1


@pytest.mark.parametrize("body,code,param", [
    ({"prompt": "a", "size": "1024x1024"}, "unsupported", "size"),
    ({"prompt": "a", "size": 256}, "invalid_type", "size"),
    ({"prompt": "a", "response_format": "url"}, "unsupported", "response_format"),
    ({"prompt": "a", "n": 0}, "out_of_range", "n"),
    ({"prompt": "a", "n": 11}, "out_of_range", "n"),
    ({"prompt": "a", "n": "2"}, "invalid_type", "n"),
    ({"prompt": ""}, "empty_prompt", "prompt"),
    ({"prompt": 5}, "invalid_type", "prompt"),
    ({}, "missing_field", "prompt"),
    ({"prompt": "a", "seed": 1}, "unknown_field", "seed"),
    ({"prompt": "a", "model": 3}, "invalid_type", "model"),
], ids=["size 1024", "size number", "url format", "n 0", "n 11", "n string", "empty prompt", "prompt number", "missing prompt", "unknown field",
        "model number"])
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
