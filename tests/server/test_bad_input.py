"""Named bad inputs (docs/serving.md, "Bad inputs"): exact status, error code and param for
each, a JSON error body with CORS and a request id, and the server still healthy afterwards."""
import json
import socket

import pytest

OK = '{"prompt": "a cat", "seed": 1}'

# name: (body, status, code, param)
CASES = {
    "empty body": ("", 400, "invalid_json", None),
    "whitespace only": ("  \n\t ", 400, "invalid_json", None),
    "trailing comma": ('{"prompt": "a",}', 400, "invalid_json", None),
    "single quotes": ("{'prompt': 'a'}", 400, "invalid_json", None),
    "comment": ('{"prompt": "a" /* c */}', 400, "invalid_json", None),
    "raw control character": ('{"prompt": "a\x01b"}', 400, "invalid_json", None),
    "trailing garbage": ('{"prompt": "a"} x', 400, "invalid_json", None),
    "two documents": ('{"prompt": "a"}{"prompt": "b"}', 400, "invalid_json", None),
    "utf-8 bom": ("\ufeff" + OK, 400, "invalid_json", None),
    "invalid utf-8": (b'{"prompt": "\xff\xfe"}', 400, "invalid_json", None),
    "lone surrogate": ('{"prompt": "\\ud800"}', 400, "invalid_json", None),
    "escaped nul": ('{"prompt": "a\\u0000b"}', 400, "invalid_json", None),
    "top level number": ("42", 400, "invalid_json", None),
    "top level string": ('"x"', 400, "invalid_json", None),
    "top level array": ("[]", 422, "invalid_type", None),
    "depth 33": ("[" * 33 + "]" * 33, 400, "invalid_json", None),
    "depth 60000": ("[" * 60000, 400, "invalid_json", None),
    "deep object": ('{"a":' * 40 + "1" + "}" * 40, 400, "invalid_json", None),
    "many small objects": ("[" + "{}," * 21000 + "{}]", 422, "invalid_type", None),
    "duplicate keys": ('{"prompt": "a", "n": 1, "n": 1000}', 400, "invalid_json", None),
    "NaN": ('{"prompt": "a", "temperature": NaN}', 400, "invalid_json", None),
    "Infinity": ('{"prompt": "a", "temperature": Infinity}', 400, "invalid_json", None),
    "1e999": ('{"prompt": "a", "temperature": 1e999}', 400, "invalid_json", None),
    "integer overflow": ('{"prompt": "a", "seed": 99999999999999999999}', 400, "invalid_json", None),
    "seed 2^63": ('{"prompt": "a", "seed": 9223372036854775808}', 400, "invalid_json", None),
    "1e-999 temperature": ('{"prompt": "a", "temperature": 1e-999}', 422, "out_of_range", "temperature"),
    "-0.0 temperature": ('{"prompt": "a", "temperature": -0.0}', 422, "out_of_range", "temperature"),
    "missing prompt": ("{}", 422, "missing_field", "prompt"),
    "only n": ('{"n": 2}', 422, "missing_field", "prompt"),
    "prompt number": ('{"prompt": 42}', 422, "invalid_type", "prompt"),
    "prompt array": ('{"prompt": ["a"]}', 422, "invalid_type", "prompt"),
    "prompt object": ('{"prompt": {"a": 1}}', 422, "invalid_type", "prompt"),
    "prompt null": ('{"prompt": null}', 422, "invalid_type", "prompt"),
    "prompt bool": ('{"prompt": true}', 422, "invalid_type", "prompt"),
    "prompt empty": ('{"prompt": ""}', 422, "empty_prompt", "prompt"),
    "prompt whitespace": ('{"prompt": " \\t\\n "}', 422, "empty_prompt", "prompt"),
    "prompt too long": (json.dumps({"prompt": "a" * 1025}), 422, "prompt_too_long", "prompt"),
    "text number": ('{"text": 1}', 422, "invalid_type", "text"),
    "text empty": ('{"text": "", "num_images": 1}', 422, "empty_prompt", "text"),
    "prompt and text": ('{"prompt": "a", "text": "b"}', 400, "conflict", "text"),
    "n and num_images": ('{"prompt": "a", "n": 1, "num_images": 1}', 400, "conflict", "num_images"),
    "n 0": ('{"prompt": "a", "n": 0}', 422, "out_of_range", "n"),
    "n negative": ('{"prompt": "a", "n": -1}', 422, "out_of_range", "n"),
    "n above max images": ('{"prompt": "a", "n": 17}', 422, "out_of_range", "n"),
    "n 1000000": ('{"prompt": "a", "n": 1000000}', 422, "out_of_range", "n"),
    "n float": ('{"prompt": "a", "n": 2.5}', 422, "invalid_type", "n"),
    "n 2.0": ('{"prompt": "a", "n": 2.0}', 422, "invalid_type", "n"),
    "n string": ('{"prompt": "a", "n": "2"}', 422, "invalid_type", "n"),
    "num_images 0": ('{"text": "a", "num_images": 0}', 422, "out_of_range", "num_images"),
    "seed negative": ('{"prompt": "a", "seed": -1}', 422, "out_of_range", "seed"),
    "seed float": ('{"prompt": "a", "seed": 1.5}', 422, "invalid_type", "seed"),
    "seed string": ('{"prompt": "a", "seed": "1"}', 422, "invalid_type", "seed"),
    "temperature 0": ('{"prompt": "a", "temperature": 0}', 422, "out_of_range", "temperature"),
    "temperature above max": ('{"prompt": "a", "temperature": 101}', 422, "out_of_range", "temperature"),
    "temperature string": ('{"prompt": "a", "temperature": "0.7"}', 422, "invalid_type", "temperature"),
    "temperature bool": ('{"prompt": "a", "temperature": true}', 422, "invalid_type", "temperature"),
    "temperature null": ('{"prompt": "a", "temperature": null}', 422, "invalid_type", "temperature"),
    "top_k 0": ('{"prompt": "a", "top_k": 0}', 422, "out_of_range", "top_k"),
    "top_k above vocab": ('{"prompt": "a", "top_k": 16385}', 422, "out_of_range", "top_k"),
    "top_k float": ('{"prompt": "a", "top_k": 20.5}', 422, "invalid_type", "top_k"),
    "top_p 0": ('{"prompt": "a", "top_p": 0}', 422, "out_of_range", "top_p"),
    # below FLT_TRUE_MIN: positive as a double, 0 as the float the sampler uses
    "1e-270 temperature": ('{"prompt": "a", "temperature": 1e-270}', 422, "out_of_range", "temperature"),
    "1e-46 temperature stream": ('{"prompt": "a", "temperature": 1e-46, "stream": true}', 422, "out_of_range", "temperature"),
    "2^-150 temperature": ('{"prompt": "a", "temperature": 7.006492321624085e-46}', 422, "out_of_range", "temperature"),
    "1e-300 top_p": ('{"prompt": "a", "top_p": 1e-300}', 422, "out_of_range", "top_p"),
    "top_p above 1": ('{"prompt": "a", "top_p": 1.5}', 422, "out_of_range", "top_p"),
    "cond_scale negative": ('{"prompt": "a", "cond_scale": -1}', 422, "out_of_range", "cond_scale"),
    "cond_scale above max": ('{"prompt": "a", "cond_scale": 1001}', 422, "out_of_range", "cond_scale"),
    "quality 0": ('{"prompt": "a", "quality": 0}', 422, "out_of_range", "quality"),
    "quality 101": ('{"prompt": "a", "quality": 101}', 422, "out_of_range", "quality"),
    "subsampling 411": ('{"prompt": "a", "subsampling": 411}', 422, "out_of_range", "subsampling"),
    "subsampling 443": ('{"prompt": "a", "subsampling": 443}', 422, "out_of_range", "subsampling"),
    "subsampling string": ('{"prompt": "a", "subsampling": "444"}', 422, "invalid_type", "subsampling"),
    "rank string": ('{"prompt": "a", "rank": "yes"}', 422, "invalid_type", "rank"),
    "unknown field": ('{"prompt": "a", "tempreature": 1}', 400, "unknown_field", "tempreature"),
    "stream string": ('{"prompt": "a", "stream": "yes"}', 422, "invalid_type", "stream"),
    # error texts that quote the body: a cut multi-byte character must not cost the reply
    "bad escape after emoji": ('{"prompt": "caf\u00e9 \\u00e\U0001F600"}', 400, "invalid_json", None),
    "long non-ascii unknown field": ('{"prompt": "a", "' + "\u00e9" * 40 + '": 1}', 400,
                                     "unknown_field", "\u00e9" * 31 + "?"),
}


def check_error(r, status, code, param):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["X-Request-Id"]
    err = r.json()["error"]
    assert set(err) == {"code", "message", "param", "type"}
    assert err["code"] == code, err
    assert err["param"] == param, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == ("invalid_request_error" if status < 500 else err["type"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(server, name):
    body, status, code, param = CASES[name]
    data = body.encode() if isinstance(body, str) else body
    r = server.post("/generate", data=data, headers={"Content-Type": "text/plain"})
    check_error(r, status, code, param)


def test_prompt_at_limit_is_accepted(server):
    r = server.post("/generate", {"prompt": "a" * 1024, "seed": 1})
    assert r.status_code == 200, r.text


def test_body_too_large_content_length(server):
    r = server.post("/generate", data=b" " * 65537)
    check_error(r, 413, "body_too_large", None)


def test_body_at_limit_is_parsed(server):
    body = b'{"prompt": "a", "seed": 1}'
    body += b" " * (65536 - len(body))
    r = server.post("/generate", data=body)
    assert r.status_code == 200, r.text


def test_body_too_large_chunked(server):
    def chunks():
        for _ in range(70):
            yield b" " * 1024
    r = server.post("/generate", data=chunks())
    check_error(r, 413, "body_too_large", None)


def raw(server, request: bytes):
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as s:
        s.sendall(request)
        data = b""
        while True:
            part = s.recv(65536)
            if not part:
                break
            data += part
            head, _, body = data.partition(b"\r\n\r\n")
            if b"Content-Length:" in head:
                n = int(head.split(b"Content-Length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.decode(), body


@pytest.mark.parametrize("headers", [
    b"Content-Length: 15\r\nContent-Length: 16\r\n",
    b"Content-Length: 15\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
], ids=["two content-lengths", "content-length and chunked", "two transfer-encodings"])
def test_conflicting_framing(server, headers):
    req = (b"POST /generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers +
           b"\r\n" + b'{"prompt":"a"}\r\n')
    status, head, body = raw(server, req)
    assert status == 400
    assert "Access-Control-Allow-Origin: *" in head
    assert json.loads(body)["error"]["code"] == "bad_framing"


def test_still_healthy_after_bad_inputs(server):
    assert server.get("/health").status_code == 200
    r = server.post("/generate", {"prompt": "still fine", "seed": 3})
    assert r.status_code == 200
