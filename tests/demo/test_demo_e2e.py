"""End-to-end checks of the trained demo model (models/demo) through the real binaries.

* The server ($BUILD/dalle-server, port 0, models/demo): "a red square on a blue background"
  gives a top-ranked image that is mostly blue with a red shape — margins wide enough to be
  stable across seeds, tight enough to fail on a wrong colour — and that the pixel
  classifier reads as exactly that; a held-out combination (no purple triangle was ever in
  a training image or caption) comes out as one too; a count without an arrangement phrase
  ("two red hearts on a yellow background") draws two shapes.
* CLIP (through `dalle-cli rank`): a rendered image that matches the prompt scores above
  images with the colours swapped, another shape, another background.
* Tokenizer: `dalle-cli tokenize` gives the ids the parity fixture was made from (HF's BPE).
Needs python3-numpy and python3-pil (Debian) and tools/demo/world.py (pure numpy).
"""
import base64
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = ROOT / os.environ.get("BUILD", "build")
MODEL = ROOT / "models" / "demo"
sys.path.insert(0, str(ROOT / "tools" / "demo"))
import world  # noqa: E402

GEO = world.geometry(json.loads((MODEL / "config.json").read_text())["vqgan"]["resolution"])

BLUE, RED = np.array(world.PALETTE["blue"]), np.array(world.PALETTE["red"])


def near(img, rgb, dist=90):
    return np.sqrt(((img.astype(np.float64) - rgb) ** 2).sum(-1)) < dist


@pytest.fixture(scope="module")
def server():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALLE_")}
    proc = subprocess.Popen([str(BUILD / "dalle-server"), "--model", str(MODEL), "--port", "0",
                             "--max-batch", "8"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=env, text=True)
    first = proc.stderr.readline()
    m = re.fullmatch(r"listening on (\S+):(\d+)\n", first)
    assert m, f"unexpected first log line {first!r}"
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    base = f"http://{m.group(1)}:{m.group(2)}"
    deadline = time.time() + 120
    while requests.get(base + "/ready", timeout=10).status_code != 200:
        assert time.time() < deadline, "server never became ready"
        time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(timeout=60)


def decode(b64):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


@pytest.mark.parametrize("seed", [1, 2])
def test_red_square_on_blue(server, seed):
    r = requests.post(server + "/generate", json={"prompt": "a red square on a blue background",
                                                   "n": 8, "seed": seed}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "demo-shapes"
    img = decode(body["images"][0])
    assert img.shape == (GEO.res, GEO.res, 3)
    blue, red = near(img, BLUE).mean(), near(img, RED).mean()
    others = {c: near(img, np.array(rgb)).mean() for c, rgb in world.PALETTE.items() if c not in ("red", "blue")}
    print(f"seed {seed}: blue {blue:.3f} red {red:.3f} others {others} scores {body['scores']}")
    assert blue >= 0.55, f"background not blue enough: {blue:.3f}"
    assert 0.02 <= red <= 0.40, f"red shape area {red:.3f}"
    # edges blend: red-on-blue borders give a few purple-ish pixels
    assert max(others.values()) < 0.10, f"another colour covers {others}"
    found = world.classify(img)
    assert world.matches({"bg": "blue", "objects": [{"shape": "square", "color": "red"}]}, found), found


@pytest.mark.parametrize("seed", [1, 2])
def test_held_out_purple_triangle(server, seed):
    r = requests.post(server + "/generate", json={"prompt": "a purple triangle on a white background",
                                                   "n": 8, "seed": seed}, timeout=300)
    assert r.status_code == 200, r.text
    found = world.classify(decode(r.json()["images"][0]))
    print(f"seed {seed}: {found}")
    assert world.matches({"bg": "white", "objects": [{"shape": "triangle", "color": "purple"}]}, found), found


BARE = dict(world.bare_count_prompts()[0])


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("prompt", ["two red hearts on a yellow background",
                                    "two blue circles on a white background"])
def test_bare_count_draws_two_shapes(server, prompt, seed):
    """a count without an arrangement phrase ("two red hearts", no "side by side") draws two"""
    r = requests.post(server + "/generate", json={"prompt": prompt, "n": 8, "seed": seed}, timeout=300)
    assert r.status_code == 200, r.text
    found = world.classify(decode(r.json()["images"][0]))
    print(f"{prompt!r} seed {seed}: {found}")
    assert world.matches(BARE[prompt], found), found


def rank(prompt, images, tmp_path):
    files = []
    for i, img in enumerate(images):
        p = tmp_path / f"{i}.jpg"
        Image.fromarray(img).save(p, quality=95)
        files.append(str(p))
    out = subprocess.run([str(BUILD / "dalle-cli"), "rank", "--model", str(MODEL), "--prompt", prompt,
                          *files], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["scores"]


def scene(shape, color, bg, row=1, col=1, size="large"):
    return world.render({"bg": bg, "objects": [{"shape": shape, "color": color, "size": size,
                                                "row": row, "col": col}]}, GEO)


def test_clip_prefers_the_matching_image(tmp_path):
    good = scene("square", "red", "blue")
    bad = [scene("square", "blue", "red"),    # colours swapped
           scene("circle", "red", "blue"),    # another shape
           scene("square", "red", "green"),   # another background
           scene("square", "yellow", "blue")]  # another colour
    scores = rank("a red square on a blue background", [good] + bad, tmp_path)
    print("scores", scores)
    assert all(scores[0] > s for s in scores[1:]), scores


def test_tokenizer_matches_the_fixture():
    meta = json.loads((ROOT / "tests" / "demo" / "golden" / "demo_golden.json").read_text())
    for p in meta["prompts"]:
        out = subprocess.run([str(BUILD / "dalle-cli"), "tokenize", "--model", str(MODEL), "--prompt",
                              p["prompt"]], check=True, capture_output=True, text=True).stdout
        assert json.loads(out)["ids"] == p["ids"], p["prompt"]
