"""The demo model's image tokenizer (tools/demo/patch_codes.py) against the world and the
committed model: exact round trip in both world geometries (the current 128×128 one, 256
codes an image, and the 64×64 one of models/demo), refusal of patches the world cannot draw,
and the committed VQGAN codebook being the tokenizer's own analytic table.
Needs python3-numpy (Debian) only.
"""
import itertools
import json
import pathlib
import struct
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "demo"
sys.path.insert(0, str(ROOT / "tools" / "demo"))
import patch_codes  # noqa: E402
import world  # noqa: E402


def read_safetensor(path, name):
    """one tensor of a safetensors file as float32 numpy (F16/F32 only)"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        meta = header[name]
        a, b = meta["data_offsets"]
        f.seek(8 + n + a)
        raw = f.read(b - a)
    dtype = {"F16": np.float16, "F32": np.float32}[meta["dtype"]]
    return np.frombuffer(raw, dtype=dtype).reshape(meta["shape"]).astype(np.float32)


@pytest.mark.parametrize("res", sorted(world.GEOMETRIES))
@pytest.mark.parametrize("train", [True, False])
def test_round_trip_is_exact(train, res):
    geo, cd = world.geometry(res), patch_codes.codec(res)
    scenes = [world.sample(31_000 + i, train=train)[0] for i in range(300)]
    imgs = np.stack([world.render(s, geo) for s in scenes])
    codes = cd.encode_batch(imgs)
    assert codes.shape == (300, (res // 8) ** 2)
    assert codes.min() >= 0 and codes.max() < cd.codebook
    for img, c in zip(imgs, codes):
        np.testing.assert_array_equal(cd.paint(c), img)


def test_the_current_world_has_256_codes_an_image_and_every_placement_round_trips():
    assert world.GEO.res == 128 and patch_codes.SIDE ** 2 == 256
    geo, cd = world.V2, patch_codes.CURRENT
    for shape, size in itertools.product(world.SHAPES, world.SIZE_NAMES):  # every cell: only known cut-outs
        for r in range(3):
            for c in range(3):
                o = {"shape": shape, "color": "red", "size": size, "row": r, "col": c}
                img = world.render({"bg": "blue", "objects": [o]}, geo)
                np.testing.assert_array_equal(cd.paint(cd.encode(img)), img)


def test_held_out_scenes_use_codes_training_never_shows():
    """the point of the tied attributes: a purple triangle's edges are codes of their own"""
    train = set()
    for i in range(2000):
        train.update(patch_codes.encode(world.render(world.sample(40_000 + i, train=True)[0])).tolist())
    scene = {"bg": "white", "objects": [{"shape": "triangle", "color": "purple", "size": "large", "row": 1, "col": 1}]}
    held = set(patch_codes.encode(world.render(scene)).tolist())
    unseen = held - train
    assert unseen, "every purple-triangle code also occurs in training scenes"
    for c in unseen:
        f, b, g = patch_codes.decode_code(c)
        assert world.COLORS[f] == "purple" and world.COLORS[b] == "white" and g is not None


def test_patches_the_world_cannot_draw_are_refused():
    img = world.render({"bg": "blue", "objects": []})
    img[3, 3] = world.PALETTE["red"]  # a one-pixel cut-out no shape makes
    with pytest.raises(ValueError, match="cut-out"):
        patch_codes.encode(img)
    img = world.render({"bg": "blue", "objects": []})
    img[10, 10], img[11, 11] = world.PALETTE["red"], world.PALETTE["green"]  # three colours in a patch
    with pytest.raises(ValueError, match="colours"):
        patch_codes.encode(img)
    with pytest.raises(ValueError):
        patch_codes.decode_code(patch_codes.CODEBOOK)
    with pytest.raises(ValueError, match="64×64 images"):
        patch_codes.encode(world.render({"bg": "blue", "objects": []}, world.V1))


def test_features_name_each_code_attributes():
    phi = patch_codes.features()
    assert phi.shape == (patch_codes.CODEBOOK + 1, patch_codes.K)
    sums = phi.sum(1)
    assert (sums[: len(world.COLORS)] == 1).all()  # flat colours: one attribute
    assert (sums[len(world.COLORS): patch_codes.CODEBOOK] == 3).all()  # shape colour, background, mask
    assert phi[patch_codes.CODEBOOK, patch_codes.CURRENT.f_bos] == 1 and sums[-1] == 1
    assert len({r.tobytes() for r in phi}) == len(phi), "two codes with the same attributes"


def test_committed_model_uses_this_tokenizer():
    """models/demo's codebook is the table of the world geometry of its image size"""
    cfg = json.loads((MODEL / "config.json").read_text())
    cd = patch_codes.codec(cfg["vqgan"]["resolution"])
    assert cfg["vqgan"]["codebook_size"] == cd.codebook
    assert cfg["bart"]["image_vocab_size"] == cd.codebook
    assert cfg["bart"]["image_length"] == cd.side ** 2
    assert cfg["vqgan"]["embed_dim"] == cd.embed_dim
    book = read_safetensor(MODEL / "vqgan.safetensors", "embedding.weight")
    want = cd.codebook_vectors()
    assert book.shape == want.shape
    assert np.abs(book - want).max() <= 1e-3  # F16 rounding of values in [-1, 1]
