"""The demo world's pixel classifier (tools/demo/world.py), the judge of tools/demo/eval.py:
it must read the generator's own images perfectly and must not be fooled by colour fringes
or missing pieces. Needs python3-numpy (Debian) only.
"""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "demo"))
import world  # noqa: E402


def scene(bg, *objs):
    return {"bg": bg, "objects": [dict(zip(("shape", "color", "size", "row", "col"), o)) for o in objs]}


def test_generator_images_are_read_exactly():
    for i in range(300):
        sc, _, spec = world.sample(60_000 + i, train=False)
        found = world.classify(world.render(sc))
        assert world.truth_matches(sc, found), (sc, found)
        assert world.matches(spec, found)


def test_every_shape_is_told_apart():
    for shape in world.SHAPES:
        for size in world.SIZES:
            sc = scene("white", (shape, "red", size, 1, 1))
            found = world.classify(world.render(sc))
            assert [o["shape"] for o in found["objects"]] == [shape], (shape, size, found)
            assert found["objects"][0]["size"] == size


def test_a_thin_fringe_is_not_an_object_but_a_band_is():
    sc = scene("blue", ("square", "orange", "large", 1, 1))
    img = world.render(sc)
    ys, xs = np.nonzero((img == world.PALETTE["orange"]).all(-1))
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    fringe = img.copy()
    fringe[y0 - 2:y0, x0:x1 + 1] = world.PALETTE["purple"]  # two rows of blended colour
    fringe[y0:y1 + 1, x1 + 1:x1 + 3] = world.PALETTE["purple"]
    assert world.truth_matches(sc, world.classify(fringe))
    band = img.copy()
    band[2:8, 2:40] = world.PALETTE["purple"]  # six rows: a real (wrong) object
    found = world.classify(band)
    assert not world.truth_matches(sc, found)
    assert {o["color"] for o in found["objects"]} == {"orange", "purple"}


def test_wrong_pictures_fail_the_caption():
    spec = {"bg": "blue", "objects": [{"shape": "square", "color": "red"}]}
    right = world.render(scene("blue", ("square", "red", "large", 1, 1)))
    assert world.matches(spec, world.classify(right))
    for wrong in (scene("blue", ("circle", "red", "large", 1, 1)),
                  scene("green", ("square", "red", "large", 1, 1)),
                  scene("blue", ("square", "yellow", "large", 1, 1)),
                  scene("blue", ("square", "red", "small", 1, 0), ("square", "red", "small", 1, 2))):
        assert not world.matches(spec, world.classify(world.render(wrong))), wrong
