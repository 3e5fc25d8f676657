"""The demo world (tools/demo/world.py): its pixel classifier, the judge of tools/demo/eval.py,
must read the generator's own images perfectly (in both geometries) and must not be fooled by
colour fringes or missing pieces; its caption grammar must cover every phrasing it promises
and keep the held-out combinations out of training images and captions.
Needs python3-numpy (Debian) only.
"""
import pathlib
import re
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "demo"))
import world  # noqa: E402


def scene(bg, *objs):
    return {"bg": bg, "objects": [dict(zip(("shape", "color", "size", "row", "col"), o)) for o in objs]}


@pytest.mark.parametrize("res", sorted(world.GEOMETRIES))
def test_generator_images_are_read_exactly(res):
    geo = world.geometry(res)
    for i in range(300):
        sc, cap, spec = world.sample(60_000 + i, train=False)
        found = world.classify(world.render(sc, geo))
        assert world.truth_matches(sc, found), (cap, sc, found)
        assert world.matches(spec, found), cap


def test_small_shapes_are_read_in_every_cell():
    for r in range(3):
        for c in range(3):
            for shape in world.SHAPES:
                sc = scene("black", (shape, "white", "small", r, c))
                assert world.truth_matches(sc, world.classify(world.render(sc, world.V2))), sc


def training_captions(n=4000):
    return [world.sample(70_000 + i, train=True) for i in range(n)]


def test_grammar_covers_counts_synonyms_corners_articles_and_word_orders():
    caps = [c for _, c, _ in training_captions()]
    text = "\n".join(caps)
    for phrase in ("two ", "\n2 ", "a pair of ", " big ", " large ", " little ", " small ", "centre", "center",
                   "in the middle", "in the top left corner", "at the top left", "in the upper left corner",
                   "\ntop left ", "lower right corner", "on the left side", "side by side", "one above the other",
                   "to the left of", " above ", "against ", "background with ", " on blue"):
        assert phrase in "\n" + text, phrase
    articles = re.compile(r"\b(a|an)\b")
    assert any(not articles.search(c.replace("a pair of", "")) for c in caps), "no caption without articles"
    starts = {c.split()[0] for c in caps}
    assert {"in", "at", "two", "2", "a", "an"} <= starts, starts  # position first, count first, object first
    assert any(re.match(r"^(a |an )?\w+ background with ", c) for c in caps)  # background first


def test_a_shape_may_leave_out_its_colour_or_its_shape():
    colourless = shapeless = 0
    for sc, cap, spec in training_captions():
        o, want = sc["objects"][0], spec["objects"][0]
        if len(sc["objects"]) != 1:
            continue
        words = cap.split()
        if "color" not in want:  # "a triangle": no colour word in front of the shape
            colourless += 1
            i = words.index(o["shape"])
            assert words[i - 1] not in world.COLORS if i else True, cap
        if "shape" not in want:  # "a purple shape"
            shapeless += 1
            assert f"{o['color']} shape" in cap and not set(world.SHAPES) & set(words), cap
        assert "color" in want or "shape" in want, cap
    n = sum(len(sc["objects"]) == 1 for sc, _, _ in training_captions())
    assert 0.05 * n < colourless < 0.15 * n and 0.05 * n < shapeless < 0.15 * n, (colourless, shapeless, n)
    # the pictures such a caption leaves open: every colour but the background's, or every shape
    centre = {"size": "large", "row": 1, "col": 1}
    assert world.room({"objects": [dict(shape="triangle", **centre)], "bg": "red"}, cap=99) == 7
    assert world.room({"objects": [dict(color="green", **centre)], "bg": "red"}, cap=99) == 5


def test_bare_counts_assert_no_place_and_arrangements_do():
    bare = arranged = 0
    for sc, cap, spec in training_captions():
        objs = spec["objects"]
        if len(objs) == 2 and objs[0]["shape"] == objs[1]["shape"] and objs[0]["color"] == objs[1]["color"]:
            placed = any(k in o for o in objs for k in ("row", "col"))
            words = cap.replace("a pair of", "two")
            has_phrase = any(p in words for p in ("side by side", "next to", "above the other", "stacked",
                                                   "at the top", "at the bottom"))
            assert placed == has_phrase, cap
            bare += not placed
            arranged += placed
        assert world.matches(spec, sc), cap  # a caption asserts only what its scene shows
    assert bare > 100 and arranged > 100, (bare, arranged)


def test_held_out_combinations_never_reach_training():
    for sc, cap, spec in training_captions(6000):
        assert not world.is_held_out(sc), cap
        assert not world.spec_is_held_out(spec), cap
        for a, b in (("purple", "triangle"), ("orange", "heart")):
            assert not re.search(rf"\b{a} ({b}|{b}s)\b", cap), cap
            assert not re.search(rf"\b{a} (small|little|large|big) ({b}|{b}s)\b", cap), cap
        if "star" in cap:
            assert sc["bg"] != "blue", cap
    held = [world.sample(80_000 + i, train=False) for i in range(3000)]
    assert sum(world.is_held_out(sc) for sc, _, _ in held) > 30  # the generator can draw them


def test_room_counts_the_pictures_a_caption_leaves_open():
    P = world._spec_from
    assert world.room(P("white", [dict(shape="triangle", color="green", size="large", row=1, col=1)])) == 1
    small = P("yellow", [dict(shape="star", color="blue", size="small", row=0, col=0)])
    assert world.room(small, cap=100) == 1
    two = P("yellow", [dict(shape="heart", color="red"), dict(shape="heart", color="red")])
    assert world.room(two, cap=100) == 16  # 8 layouts × 2 sizes
    assert world.room(P(None, [dict(shape="heart", color="red")])) == 8
    assert world.room(P("red", [dict(shape="heart", color="red")])) == 0  # no red on red


def test_bare_count_prompts_are_drawable_and_held_out_where_they_say():
    ind, held = world.bare_count_prompts()
    for cap, spec in ind + held:
        assert world.room(spec) >= 8, cap
        assert not any(k in o for o in spec["objects"] for k in ("row", "col")), cap
    assert not any(world.spec_is_held_out(s) for _, s in ind)
    assert all(world.spec_is_held_out(s) for _, s in held)


def test_every_shape_is_told_apart():
    for shape in world.SHAPES:
        for size in world.SIZE_NAMES:
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


def test_the_model_describes_its_world():
    """export.py writes describe() and EXAMPLES into the model's config.json (GET /info, the page)"""
    assert "64x64 pictures" in world.describe(world.V1) and "128x128 pictures" in world.describe(world.V2)
    text = world.describe()
    for word in world.COLORS + world.SHAPES:
        assert word in text, word
    for ex in world.EXAMPLES:  # examples a newcomer clicks first: inside the training world
        for a, b in (("purple", "triangle"), ("orange", "heart")):
            assert not re.search(rf"\b{a} (\w+ )?{b}s?\b", ex), ex
        assert not ("star" in ex and "blue" in ex), ex


def test_colours_ok_checks_only_the_colours_a_caption_names():
    found = {"bg": "white", "objects": [{"shape": "circle", "color": "red", "size": "small", "row": 1, "col": 1}]}
    assert world.colours_ok({"objects": [{"shape": "square", "color": "red"}]}, found)
    assert not world.colours_ok({"objects": [{"shape": "circle", "color": "green"}]}, found)
    assert world.colours_ok({"objects": [{"shape": "triangle"}]}, found)  # "a triangle": any colour
    two = {"objects": [{"shape": "circle", "color": "red"}, {"shape": "star", "color": "blue"}]}
    assert not world.colours_ok(two, found)
