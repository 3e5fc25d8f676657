"""Requests larger than --max-batch: up to --max-images images (default 16) decode in parts of
--max-batch images, one after another, and give the same seeded images, scores and ranking as
when they fit in one batch (the CPU backend is batch-invariant); progress and previews cover the
whole request; past --max-images is 422 (OpenAI route: 400, at most 10)."""
import pytest

from conftest import Server, decode_images
from test_stream import events, stream


@pytest.fixture(scope="module")
def small():
    s = Server("--max-batch", "2", "--max-images", "7")
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def wide():
    s = Server("--max-batch", "8", "--max-images", "8")
    yield s
    assert s.stop() == 0


def test_a_request_in_parts_equals_one_batch(small, wide):
    body = {"prompt": "a red bicycle", "n": 5, "seed": 41}
    a, b = small.post("/generate", body), wide.post("/generate", body)
    assert a.status_code == 200 and b.status_code == 200, (a.text, b.text)
    ja, jb = a.json(), b.json()
    assert ja["indices"] == jb["indices"] and sorted(ja["indices"]) == list(range(5))
    assert ja["scores"] == jb["scores"]
    assert ja["scores"] == sorted(ja["scores"], reverse=True)
    assert decode_images(ja["images"]) == decode_images(jb["images"])


def test_unranked_parts_keep_index_order(small, wide):
    body = {"prompt": "a snowy cabin", "n": 3, "seed": 5, "rank": False}
    a, b = small.post("/generate", body).json(), wide.post("/generate", body).json()
    assert a["indices"] == [0, 1, 2] and a["images"] == b["images"]


def test_the_limit_is_max_images(small):
    r = small.post("/generate", {"prompt": "x", "n": 8})
    assert r.status_code == 422 and r.json()["error"]["param"] == "n", r.text
    r = small.post("/generate", {"prompt": "x", "n": 7, "seed": 1})
    assert r.status_code == 200 and len(r.json()["images"]) == 7
    r = small.post("/v1/images/generations", {"prompt": "x", "n": 8})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n", r.text
    assert small.get("/info").json()["limits"]["max_images"] == 7


def test_progress_and_previews_cover_every_part(small):
    body = {"prompt": "a red bicycle", "n": 3, "seed": 9, "preview_every": 128}
    r = stream(small, body)
    assert r.status_code == 200
    evs = events(r)
    steps = [d for n, d in evs if n == "progress"]
    assert steps and all(d["steps"] == 2 * 256 for d in steps)  # two parts of 256 steps
    assert max(d["step"] for d in steps) > 256
    previews = [d for n, d in evs if n == "preview"]
    assert [len(d["images"]) for d in previews] == [2, 1 + 2]  # part 1; part 1 done + part 2
    assert evs[-1][0] == "result" and len(evs[-1][1]["images"]) == 3
