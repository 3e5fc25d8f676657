"""Real clients against the real server: the openai Python client, schemathesis driven by the
committed openapi.yaml, and 32 parallel clients whose seeded results must equal the same
requests run alone, on every CPU GEMM variant this machine runs (DALLE_CPU_GEMM; the portable
variant, ~10x slower on x86 where fmaf is a library call, with 8 clients).

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
    raw = client.images.with_raw_response.generate(prompt="a red bicycle", n=3, size="64x64",
                                                   response_format="b64_json", user="u-1",
                                                   extra_body={"seed": 2 ** 53 + 3})
    assert raw.status_code == 200
    assert raw.headers["x-request-id"]
    resp = raw.parse()
    assert resp.created > 0 and len(resp.data) == 3
    for item in resp.data:
        assert item.url is None
        w, h = jpeg_size(base64.b64decode(item.b64_json))
        assert (w, h) == (64, 64)
    assert resp.seed == 2 ** 53 + 3  # the extension field, exact


def test_openai_defaults(client):
    """Parameters left out are not sent: n 1, size and response_format by the server's
    defaults (b64_json)."""
    resp = client.images.generate(prompt="a cat")
    assert len(resp.data) == 1 and base64.b64decode(resp.data[0].b64_json)[:2] == b"\xff\xd8"


@pytest.mark.parametrize("kwargs,param", [
    ({"size": "1024x1024"}, "size"),
    ({"size": "256x256"}, "size"),
    ({"response_format": "url"}, "response_format"),
    ({"n": 11}, "n"),
    ({"n": 0}, "n"),
], ids=["size 1024", "size 256", "url", "n 11", "n 0"])
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


INT_FIELDS = ("n", "num_images", "seed", "top_k", "quality", "subsampling", "preview_every")


def _valid_generate_body(body):
    """The spec states "exactly one of prompt/text", "not blank" and "not both n and
    num_images" itself; what it cannot state are the limits set by the server's flags and the
    model (n at most --max-batch, kept small here so that a case is quick; top_k at most the
    model's image vocabulary) and the lexical rule that an integer is written without a
    fraction (JSON Schema counts 2.0 as an integer, the server refuses it, as documented)."""
    body = dict(body)
    for k in INT_FIELDS:
        if isinstance(body.get(k), float) and body[k].is_integer():
            body[k] = int(body[k])
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
    generating = label in GENERATING
    statuses = {}
    examples = (4 if SANITIZED else 10) if generating else 15

    @settings(max_examples=examples, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        if generating and mode_name == "positive" and isinstance(case.body, dict):
            case.body = _valid_generate_body(case.body)
        # every check on every reply: a streamed one's events are each validated against
        # the text/event-stream schema (StreamEvent: event name and its JSON data)
        r = case.call_and_validate(base_url=st_server.base, checks=checks, timeout=REQ_TIMEOUT)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1

    run()
    if generating and mode_name == "positive" and "v1" not in path:
        # streamed replies for certain (hypothesis may draw none): every event is validated
        # against the text/event-stream schema, data included (queued, progress, preview,
        # result in both dialects)
        for body in ({"prompt": "a red bicycle", "seed": 1, "stream": True, "preview_every": 128},
                     {"text": "a red bicycle", "num_images": 1, "stream": True}):
            r = op.Case(body=body, media_type="application/json").call_and_validate(
                base_url=st_server.base, checks=checks, timeout=REQ_TIMEOUT)
            assert r.status_code == 200, r.text
            assert r.headers["content-type"][0].startswith("text/event-stream")
            assert "event: result" in r.text and (
                "event: preview" in r.text or "preview_every" not in body), r.text
    assert sum(statuses.values()) > 0
    if mode_name == "positive":
        assert 200 in statuses, statuses  # at least one real reply checked against its schema
    else:
        assert all(400 <= s < 500 for s in statuses), statuses
    assert requests.get(st_server.url("/health"), timeout=30).status_code == 200


# Bodies at the edges of the prompt/text, n/num_images and float rules: openapi.yaml's
# GenerateRequest (OpenAIRequest for the openai ones) must accept exactly those the server
# accepts.
EDGE_BODIES = {
    "empty": {},
    "prompt and text": {"prompt": "a", "text": "b"},
    "empty prompt": {"prompt": ""},
    "blank prompt": {"prompt": " \t\n\v\f\r"},
    "blank text": {"text": "  "},
    "nbsp prompt": {"prompt": "\u00a0", "seed": 1},
    "text": {"text": "x", "num_images": 1},
    "n and num_images": {"prompt": "a", "n": 1, "num_images": 1},
    "temperature 1e-270": {"prompt": "a", "temperature": 1e-270},
    "temperature 2^-150": {"prompt": "a", "temperature": 2.0 ** -150},
    "top_p 1e-300": {"prompt": "a", "top_p": 1e-300},
    "top_p above 2^-150": {"prompt": "a", "top_p": 2.0 ** -149, "seed": 1},
    "openai empty prompt": {"prompt": ""},
    "openai blank prompt": {"prompt": " \r\n"},
    "openai nbsp prompt": {"prompt": "\u00a0"},
}


@pytest.mark.parametrize("name", sorted(EDGE_BODIES))
def test_spec_matches_server(st_server, name):
    jsonschema = _need("jsonschema")
    spec = yaml.safe_load(SPEC.read_text())
    openai = name.startswith("openai")
    validator = jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/" + ("OpenAIRequest" if openai else "GenerateRequest"),
         "components": spec["components"]})
    body = EDGE_BODIES[name]
    r = requests.post(st_server.url("/v1/images/generations" if openai else "/generate"),
                      json=body, timeout=REQ_TIMEOUT)
    assert r.status_code in (200, 400, 422), r.text
    assert validator.is_valid(body) == (r.status_code == 200), r.text


# ---------------------------------------------------------------------------------------------
# 3. 32 parallel clients: all answered, seeded results identical to the same requests alone

CLIENTS = {"avx512": 32, "avx2": 32, "portable": 8}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _variant_runs(variant):
    """Whether this CPU has the instructions of a GEMM variant (kernels/cpu/linalg.c)."""
    need = {"avx512": {"avx512f"}, "avx2": {"avx2", "fma", "f16c"}, "portable": set()}[variant]
    return need <= _cpu_flags()


@pytest.fixture(scope="module", params=sorted(CLIENTS))
def big_server(request):
    variant = request.param
    if not _variant_runs(variant):
        pytest.skip(f"this CPU has no {variant}")
    if SANITIZED and variant == "portable":
        pytest.skip("portable GEMM under ASan: too slow for CI (its bits equal the other "
                    "variants', tests/kernels/test_cpu_gemm.c)")
    s = Server("--max-batch", "16", "--queue", "64", "--http-threads", "4",
               env={"DALLE_CPU_GEMM": variant})
    s.variant = variant
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
    clients = CLIENTS[big_server.variant]
    before = big_server.metrics()
    barrier = threading.Barrier(clients)

    def together(i):
        barrier.wait(timeout=60)
        return _post(big_server, _request(i))

    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        parallel = list(ex.map(together, range(clients)))
    after = big_server.metrics()
    # they were really batched together: some decode steps ran more than 1 image
    steps = after["dalle_batch_size_count"] - before.get("dalle_batch_size_count", 0)
    single = (after['dalle_batch_size_bucket{le="1"}']
              - before.get('dalle_batch_size_bucket{le="1"}', 0))
    assert steps > 0 and single < steps
    assert after["dalle_images_generated_total"] - before.get("dalle_images_generated_total", 0) \
        == sum(_request(i)["n"] for i in range(clients))

    assert [len(p[0]) for p in parallel] == [_request(i)["n"] for i in range(clients)]
    differ = []
    # one at a time: nothing else in the batch (under ASan every 4th: ~10 s per run alone)
    for i in range(0, clients, 4 if SANITIZED else 1):
        alone = _post(big_server, _request(i))
        assert parallel[i][3] == alone[3] == _request(i)["seed"]
        if parallel[i] != alone:
            differ.append(f"{i} {_request(i)} scores {parallel[i][1]} vs alone {alone[1]}")
    # kernels/cpu/linalg.c computes every row in one order whatever the batch's row count
    assert not differ, f"{big_server.variant}: {len(differ)} of {clients} seeded requests differ " \
        "when batched: " \
        + "; ".join(differ)
