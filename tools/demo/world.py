#!/usr/bin/env python3
"""world.py — the synthetic "shapes world" the demo model is trained on, and its pixel classifier.

Pure Python + numpy (no torch, no PIL), so the tests in tests/demo can import it with Debian's
python3 and python3-numpy.

A scene is one or two flat-coloured shapes on a flat background, no antialiasing:
  * 8 colours (PALETTE), 5 shapes (circle, square, triangle, star, heart), 2 sizes (small,
    large), 9 positions (a 3×3 grid: corners, edges, centre).
  * Kinds of scene: one shape; two equal shapes (same colour, shape and size) in a row, a
    column or on a diagonal; two different shapes side by side or one above the other.
  * Captions in a varied grammar (counts "two" / "2" / "a pair of", with or without an
    arrangement phrase; synonyms big/large, little/small, centre/center; several corner and
    background phrasings; optional articles; several word orders; one shape may go without
    its colour, "a triangle", or its shape, "a purple shape"). An attribute a caption
    does not mention is drawn at random, and `spec` records exactly what the caption asserts
    (the evaluator checks only that).
HELD_OUT names attribute combinations that never appear in training images, and so never in
training captions (`sample(..., train=True)` rejects them).

Geometry (the pixel sizes): V2, the current world, draws 128×128 pictures, 16×16 patches of
8×8 pixels (256 image tokens); shapes sit on their cell's centre, a multiple of 8 pixels, so
every 8×8 patch stays a flat colour or one cut-out of a shape (patch_codes.py). V1 is the
64×64 world of the model in models/demo until it is retrained (docs/demo-model.md): the same
scenes drawn smaller. Captions and scenes do not depend on the geometry.

Everything is deterministic: `sample(seed)` gives the same scene on every machine (Python's
random.Random with an integer seed; rendering has no randomness).

    python3 tools/demo/world.py --check 2000      # classifier accuracy on the generator's own images
"""
import argparse
import itertools
import random
from collections import deque

import numpy as np

PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 30),
    "purple": (140, 50, 190),
    "orange": (250, 130, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLORS = list(PALETTE)
SHAPES = ["circle", "square", "triangle", "star", "heart"]
SIZE_NAMES = ["small", "large"]
PLURAL = {s: s + "s" for s in SHAPES}


class Geometry:
    """pixel sizes of a world: res × res pictures, shape half-extents per size and the 3 cell
    centres (x or y)"""

    def __init__(self, res, sizes, cells):
        self.res, self.sizes, self.cells = res, sizes, cells
        self.scale = res / 64.0
        # a centroid's row / column: the cell whose centre is nearest (midpoints between centres)
        self.bounds = [(cells[0] + cells[1]) / 2.0, (cells[1] + cells[2]) / 2.0]
        yy, xx = np.mgrid[0:res, 0:res].astype(np.float64) + 0.5
        self.yy, self.xx = yy, xx

    def cell_of(self, c):
        return 0 if c < self.bounds[0] else (1 if c < self.bounds[1] else 2)


V1 = Geometry(64, {"small": 8.0, "large": 14.0}, [16.0, 32.0, 48.0])
V2 = Geometry(128, {"small": 16.0, "large": 28.0}, [32.0, 64.0, 96.0])
GEOMETRIES = {g.res: g for g in (V1, V2)}
GEO = V2


def geometry(res):
    """the world geometry of res × res pictures"""
    if res not in GEOMETRIES:
        raise ValueError(f"no world of {res}×{res} pictures (have {sorted(GEOMETRIES)})")
    return GEOMETRIES[res]


# Held-out combinations: never in a training image (and so never in a training caption).
HELD_OUT = [
    ("color+shape", "purple", "triangle"),
    ("color+shape", "orange", "heart"),
    ("shape+background", "star", "blue"),
]


def is_held_out(scene):
    for obj in scene["objects"]:
        for kind, a, b in HELD_OUT:
            if kind == "color+shape" and obj.get("color") == a and obj.get("shape") == b:
                return True
            if kind == "shape+background" and obj.get("shape") == a and scene.get("bg") == b:
                return True
    return False


# ----------------------------------------------------------------------------------------------
# rendering


def _poly_mask(px, py, verts):
    """even-odd point-in-polygon for arrays of points."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(verts)
    for i in range(n):
        x1, y1 = verts[i]
        x2, y2 = verts[(i + 1) % n]
        cond = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (py - y1) / (y2 - y1) + x1
        inside ^= cond & (px < xint)
    return inside


def shape_mask(shape, cx, cy, h, xx, yy):
    """bool mask of a shape with centre (cx, cy) and half-extent h over the pixel centres xx, yy"""
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= h * h
    if shape == "square":
        s = 0.85 * h
        return (np.abs(dx) <= s) & (np.abs(dy) <= s)
    if shape == "triangle":
        return _poly_mask(dx, dy, [(0.0, -h), (h, 0.85 * h), (-h, 0.85 * h)])
    if shape == "star":
        verts = []
        for k in range(10):
            r = h if k % 2 == 0 else 0.45 * h
            a = -np.pi / 2 + k * np.pi / 5
            verts.append((r * np.cos(a), r * np.sin(a) + 0.1 * h))
        return _poly_mask(dx, dy, verts)
    if shape == "heart":
        x = dx / (0.82 * h)
        y = -(dy + 0.1 * h) / (0.82 * h)  # up is +y
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    raise ValueError(shape)


def centre(o, geo=GEO):
    """(cx, cy) of a scene object in geo's pixels"""
    return geo.cells[o["col"]], geo.cells[o["row"]]


def render(scene, geo=GEO):
    """scene -> uint8 [R, R, 3]"""
    img = np.empty((geo.res, geo.res, 3), dtype=np.uint8)
    img[:] = PALETTE[scene["bg"]]
    for o in scene["objects"]:
        cx, cy = centre(o, geo)
        img[shape_mask(o["shape"], cx, cy, geo.sizes[o["size"]], geo.xx, geo.yy)] = PALETTE[o["color"]]
    return img


# ----------------------------------------------------------------------------------------------
# scenes and captions

SIZE_WORDS = {"small": ["small", "little"], "large": ["large", "big"]}
COUNT_WORDS = ["two", "2", "a pair of"]
OMIT = 0.1  # the share of one-shape captions that leave out the colour, and again the shape
# (row, col) -> phrases
POS_PHRASES = {
    (0, 0): ["in the top left corner", "at the top left", "in the upper left corner", "top left"],
    (0, 1): ["at the top", "at the top center", "at the top centre", "at the top middle"],
    (0, 2): ["in the top right corner", "at the top right", "in the upper right corner", "top right"],
    (1, 0): ["on the left", "at the left", "on the left side"],
    (1, 1): ["in the center", "in the centre", "in the middle"],
    (1, 2): ["on the right", "at the right", "on the right side"],
    (2, 0): ["in the bottom left corner", "at the bottom left", "in the lower left corner", "bottom left"],
    (2, 1): ["at the bottom", "at the bottom center", "at the bottom centre", "at the bottom middle"],
    (2, 2): ["in the bottom right corner", "at the bottom right", "in the lower right corner", "bottom right"],
}
# two equal shapes: (cells, arrangement phrases; empty = only bare counts describe it, spec
# constraints the phrases assert)
PAIR_LAYOUTS = [
    ([(0, 0), (0, 2)], ["at the top", "side by side at the top"], {"row": 0}),
    ([(1, 0), (1, 2)], ["side by side", "next to each other", "side by side in the middle"], {"row": 1}),
    ([(2, 0), (2, 2)], ["at the bottom", "side by side at the bottom"], {"row": 2}),
    ([(0, 0), (2, 0)], ["one above the other on the left", "stacked on the left"], {"col": 0}),
    ([(0, 1), (2, 1)], ["one above the other", "stacked vertically"], {"col": 1}),
    ([(0, 2), (2, 2)], ["one above the other on the right", "stacked on the right"], {"col": 2}),
    ([(0, 0), (2, 2)], [], {}),
    ([(0, 2), (2, 0)], [], {}),
]


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


class _Say:
    """one caption's choices: articles kept or dropped, size words"""

    def __init__(self, rng):
        self.rng = rng
        self.articles = rng.random() < 0.75

    def a(self, phrase):
        """phrase with its indefinite article, or bare"""
        return f"{_article(phrase)} {phrase}" if self.articles else phrase

    def size(self, size):
        return self.rng.choice(SIZE_WORDS[size])

    def bg(self, bg):
        """a background phrase that follows the objects"""
        return self.rng.choice([f"on {self.a(bg + ' background')}", f"on {bg}",
                                f"against {self.a(bg + ' background')}", f"with {self.a(bg + ' background')}"])


def _obj_words(say, o, say_size, omit=None):
    """"[size] colour shape"; omit="color" leaves the colour out ("a triangle"), omit="shape"
    the shape ("a purple shape")"""
    return " ".join(([say.size(o["size"])] if say_size else []) + ([o["color"]] if omit != "color" else []) +
                    ["shape" if omit == "shape" else o["shape"]])


def _single(rng, omit=None):
    say = _Say(rng)
    bg = rng.choice(COLORS)
    color = rng.choice([c for c in COLORS if c != bg])
    size = rng.choice(SIZE_NAMES)
    o = dict({"shape": rng.choice(SHAPES), "color": color, "size": size},
             row=rng.randrange(3), col=rng.randrange(3))
    say_size, say_pos, say_bg = rng.random() < 0.5, rng.random() < 0.6, rng.random() < 0.75
    obj = say.a(_obj_words(say, o, say_size, omit))
    pos = rng.choice(POS_PHRASES[(o["row"], o["col"])])
    bgp = say.bg(bg)
    bgn = say.a(f"{bg} background")
    if say_pos and say_bg:
        cap = rng.choice([f"{obj} {pos} {bgp}", f"{obj} {bgp} {pos}", f"{bgn} with {obj} {pos}",
                          f"{pos} {obj} {bgp}"])
    elif say_pos:
        cap = rng.choice([f"{obj} {pos}", f"{pos} {obj}"])
    elif say_bg:
        cap = rng.choice([f"{obj} {bgp}", f"{bgn} with {obj}"])
    else:
        cap = rng.choice([obj, f"a picture of {obj}"])
    spec_o = {k: o[k] for k in ("shape", "color") if k != omit}
    if say_size:
        spec_o["size"] = size
    if say_pos:
        spec_o["row"], spec_o["col"] = o["row"], o["col"]
    spec = {"objects": [spec_o]}
    if say_bg:
        spec["bg"] = bg
    return {"bg": bg, "objects": [o]}, cap, spec


def _pair_same(rng):
    say = _Say(rng)
    bg = rng.choice(COLORS)
    color = rng.choice([c for c in COLORS if c != bg])
    shape, size = rng.choice(SHAPES), rng.choice(SIZE_NAMES)
    cells, arrangements, constr = rng.choice(PAIR_LAYOUTS)
    objs = [{"shape": shape, "color": color, "size": size, "row": r, "col": c} for r, c in cells]
    say_size, say_bg = rng.random() < 0.4, rng.random() < 0.7
    arranged = bool(arrangements) and rng.random() < 0.5
    words = ([say.size(size)] if say_size else []) + [color, PLURAL[shape]]
    obj = rng.choice(COUNT_WORDS) + " " + " ".join(words)
    cap = f"{obj} {rng.choice(arrangements)}" if arranged else obj
    if say_bg:
        cap = rng.choice([f"{cap} {say.bg(bg)}", f"{say.a(bg + ' background')} with {cap}"])
    so = {"shape": shape, "color": color}
    if say_size:
        so["size"] = size
    c = constr if arranged else {}
    spec = {"objects": [dict(so, **c), dict(so, **c)]}
    if say_bg:
        spec["bg"] = bg
    return {"bg": bg, "objects": objs}, cap, spec


def _pair_diff(rng):
    say = _Say(rng)
    bg = rng.choice(COLORS)
    fg = [c for c in COLORS if c != bg]
    c1, c2 = rng.choice(fg), rng.choice(fg)
    s1 = rng.choice(SHAPES)
    s2 = rng.choice([s for s in SHAPES if s != s1] if c1 == c2 else SHAPES)
    size = rng.choice(SIZE_NAMES)
    vertical = rng.random() < 0.3
    line = rng.randrange(3)
    cells = [(0, line), (2, line)] if vertical else [(line, 0), (line, 2)]
    objs = [{"shape": s, "color": c, "size": size, "row": r, "col": k}
            for s, c, (r, k) in zip((s1, s2), (c1, c2), cells)]
    a = say.a(_obj_words(say, objs[0], False))
    b = say.a(_obj_words(say, objs[1], False))
    say_bg = rng.random() < 0.7
    ordered = rng.random() < 0.6
    if not ordered:
        cap = f"{a} and {b}"
    elif vertical:
        cap = rng.choice([f"{a} above {b}", f"{a} at the top and {b} at the bottom"])
    else:
        cap = rng.choice([f"{a} to the left of {b}", f"{a} on the left and {b} on the right"])
    if say_bg:
        cap += " " + say.bg(bg)
    spec = {"objects": [{"shape": s1, "color": c1}, {"shape": s2, "color": c2}]}
    if ordered:
        key = "row" if vertical else "col"
        spec["objects"][0][key], spec["objects"][1][key] = 0, 2
    if say_bg:
        spec["bg"] = bg
    return {"bg": bg, "objects": objs}, cap, spec


# what a model of this world says about itself (config.json "description" and "examples":
# GET /info and the web page; export.py writes them)
EXAMPLES = [
    "a red square on a blue background",
    "two red hearts on a yellow background",
    "a small yellow star in the top left corner on a black background",
    "2 green circles side by side on white",
    "a big white triangle at the bottom against a red background",
    "a purple heart on the left and an orange circle on the right on a black background",
]


def describe(geo=GEO):
    """the description of a model trained on this world at geo's size"""
    return (f"A small demo model trained on a synthetic world: {geo.res}x{geo.res} pictures of one or two "
            "flat shapes on a flat background. It knows nothing else: other words are ignored or draw "
            "random shapes.\nColours: " + ", ".join(COLORS) + ". Shapes: " + ", ".join(SHAPES) +
            "; small or large (little, big). One shape may leave out its colour (a triangle) or its "
            "shape (a purple shape), and the model picks one. Places: in the center (centre, middle), "
            "at the top, at the bottom, on the left, on the right, in the top left corner (and the other corners). "
            "Backgrounds: on a <colour> background, on <colour>, against a <colour> background.\n"
            "Two equal shapes: two (2, a pair of) <colour> <shape>s, side by side, one above the other or "
            "anywhere. Two different shapes: a <shape> on the left and a <shape> on the right, a <shape> "
            "above a <shape>, or a <shape> and a <shape>.")


def sample(seed, train=True):
    """(scene, caption, spec) for an integer seed; train=True skips held-out combinations."""
    rng = random.Random(int(seed) * 7919 + 17)
    leave = random.Random(int(seed) * 104729 + 3)  # its own stream: rng draws what it always drew
    while True:
        u, v = rng.random(), leave.random()
        if u < 0.55:
            scene, cap, spec = _single(rng, "color" if v < OMIT else ("shape" if v < 2 * OMIT else None))
        else:
            scene, cap, spec = (_pair_same if u < 0.8 else _pair_diff)(rng)
        if not (train and is_held_out(scene)):
            return scene, cap, spec


def room(spec, cap=8):
    """how many different pictures (scenes the world draws) satisfy spec, counted up to cap"""
    want = spec["objects"]
    kinds = [[(w["color"], w["shape"]) for w in want]] if len(want) == 2 else \
        [[(c, s)] for c in ([want[0]["color"]] if "color" in want[0] else COLORS)
         for s in ([want[0]["shape"]] if "shape" in want[0] else SHAPES)]
    if len(want) == 1:
        layouts = [[(r, c)] for r in range(3) for c in range(3)]
    else:
        same = kinds[0][0] == kinds[0][1]
        layouts = [cells for cells, _, _ in (PAIR_LAYOUTS if same else PAIR_LAYOUTS[:6])]
        kinds += [] if same else [kinds[0][::-1]]
    n = 0
    for bg, size, objs, cells in itertools.product([spec["bg"]] if "bg" in spec else COLORS, SIZE_NAMES,
                                                    kinds, layouts):
        if any(c == bg for c, _ in objs):
            continue
        sc = {"bg": bg, "objects": [{"color": c, "shape": s, "size": size, "row": r, "col": k}
                                    for (c, s), (r, k) in zip(objs, cells)]}
        if matches(spec, sc):
            n += 1
            if n >= cap:
                return n
    return n


# ----------------------------------------------------------------------------------------------
# prompts for evaluation


def _spec_from(bg, objs, **extra):
    spec = {"objects": objs}
    if bg:
        spec["bg"] = bg
    spec.update(extra)
    return spec


def spec_is_held_out(spec):
    """does a caption (its spec) ask for a held-out combination?"""
    return is_held_out({"bg": spec.get("bg"), "objects": spec["objects"]})


def random_eval_prompts(n, seed0=900_000_000):
    """(in_domain, held_out): n captions each drawn by the generator from seeds far from every
    training range — in-domain ones from sample(train=True), held-out ones from the scenes
    whose caption asks for a held-out combination. Complements the hand-written eval_prompts()
    with prompts nobody chose."""
    ind = [sample(seed0 + i, train=True)[1:] for i in range(n)]
    held, seed = [], seed0 + 10_000_000
    while len(held) < n:
        _, cap, spec = sample(seed, train=False)
        seed += 1
        if spec_is_held_out(spec):
            held.append((cap, spec))
    return ind, held


def eval_prompts():
    """(in_domain, held_out): lists of (caption, spec). Fixed, hand-written, covering every
    kind of scene; the in-domain ones avoid every held-out combination."""
    P = lambda shape, color, **k: dict(shape=shape, color=color, **k)  # noqa: E731
    ind = [
        ("a red square on a blue background", _spec_from("blue", [P("square", "red")])),
        ("a yellow circle on a black background", _spec_from("black", [P("circle", "yellow")])),
        ("a large green triangle in the center on a white background",
         _spec_from("white", [P("triangle", "green", size="large", row=1, col=1)])),
        ("a small blue star in the top left corner on a yellow background",
         _spec_from("yellow", [P("star", "blue", size="small", row=0, col=0)])),
        ("a red heart on a white background", _spec_from("white", [P("heart", "red")])),
        ("a white circle in the bottom right corner on a purple background",
         _spec_from("purple", [P("circle", "white", row=2, col=2)])),
        ("an orange square at the top on a green background",
         _spec_from("green", [P("square", "orange", row=0, col=1)])),
        ("a black triangle on a yellow background", _spec_from("yellow", [P("triangle", "black")])),
        ("a large purple circle on an orange background",
         _spec_from("orange", [P("circle", "purple", size="large")])),
        ("a green star on a black background", _spec_from("black", [P("star", "green")])),
        ("a small yellow heart on the right on a blue background",
         _spec_from("blue", [P("heart", "yellow", size="small", row=1, col=2)])),
        ("a blue square in the bottom left corner on a white background",
         _spec_from("white", [P("square", "blue", row=2, col=0)])),
        ("two red circles side by side on a white background",
         _spec_from("white", [P("circle", "red"), P("circle", "red")])),
        ("two green squares at the top on a black background",
         _spec_from("black", [P("square", "green", row=0), P("square", "green", row=0)])),
        ("two yellow triangles at the bottom on a purple background",
         _spec_from("purple", [P("triangle", "yellow", row=2), P("triangle", "yellow", row=2)])),
        ("a red circle to the left of a blue square on a white background",
         _spec_from("white", [P("circle", "red", col=0), P("square", "blue", col=2)])),
        ("a yellow star on the left and a green circle on the right on a black background",
         _spec_from("black", [P("star", "yellow", col=0), P("circle", "green", col=2)])),
        ("a white heart and a blue triangle on an orange background",
         _spec_from("orange", [P("heart", "white"), P("triangle", "blue")])),
        ("an orange circle on a purple background", _spec_from("purple", [P("circle", "orange")])),
        ("a large black square on a green background",
         _spec_from("green", [P("square", "black", size="large")])),
    ]
    held = [
        ("a purple triangle on a white background", _spec_from("white", [P("triangle", "purple")])),
        ("a large purple triangle in the center on a yellow background",
         _spec_from("yellow", [P("triangle", "purple", size="large", row=1, col=1)])),
        ("a purple triangle on a green background", _spec_from("green", [P("triangle", "purple")])),
        ("two purple triangles side by side on a black background",
         _spec_from("black", [P("triangle", "purple"), P("triangle", "purple")])),
        ("an orange heart on a blue background", _spec_from("blue", [P("heart", "orange")])),
        ("a large orange heart on a white background",
         _spec_from("white", [P("heart", "orange", size="large")])),
        ("an orange heart in the top right corner on a black background",
         _spec_from("black", [P("heart", "orange", row=0, col=2)])),
        ("two orange hearts side by side on a green background",
         _spec_from("green", [P("heart", "orange"), P("heart", "orange")])),
        ("a yellow star on a blue background", _spec_from("blue", [P("star", "yellow")])),
        ("a large white star on a blue background", _spec_from("blue", [P("star", "white", size="large")])),
        ("a red star in the center on a blue background",
         _spec_from("blue", [P("star", "red", row=1, col=1)])),
        ("a green star on the left and a red circle on the right on a blue background",
         _spec_from("blue", [P("star", "green", col=0), P("circle", "red", col=2)])),
    ]
    return ind, held


def bare_count_prompts():
    """(in_domain, held_out): two equal shapes asked for by a count alone ("two red hearts",
    "2 …", "a pair of …"), no arrangement phrase: any two places will do."""
    P = lambda shape, color, **k: dict(shape=shape, color=color, **k)  # noqa: E731
    two = lambda bg, shape, color, **k: _spec_from(bg, [P(shape, color, **k), P(shape, color, **k)])  # noqa: E731
    ind = [
        ("two red hearts on a yellow background", two("yellow", "heart", "red")),
        ("two blue circles on a white background", two("white", "circle", "blue")),
        ("2 green squares on a black background", two("black", "square", "green")),
        ("a pair of yellow stars on a purple background", two("purple", "star", "yellow")),
        ("two small white triangles on a red background", two("red", "triangle", "white", size="small")),
        ("two big orange circles on a blue background", two("blue", "circle", "orange", size="large")),
        ("2 black hearts on white", two("white", "heart", "black")),
        ("two red squares", two(None, "square", "red")),
        ("a green background with two purple circles", two("green", "circle", "purple")),
        ("a pair of little blue squares on an orange background", two("orange", "square", "blue", size="small")),
    ]
    held = [
        ("two purple triangles on a white background", two("white", "triangle", "purple")),
        ("2 orange hearts on a green background", two("green", "heart", "orange")),
        ("a pair of white stars on a blue background", two("blue", "star", "white")),
        ("two orange hearts", two(None, "heart", "orange")),
    ]
    return ind, held



# ----------------------------------------------------------------------------------------------
# pixel classifier

_PAL = np.array([PALETTE[c] for c in COLORS], dtype=np.float64)
_TPL = 24


def _resize_mask(m, n=_TPL):
    h, w = m.shape
    ys = ((np.arange(n) + 0.5) * h / n).astype(int)
    xs = ((np.arange(n) + 0.5) * w / n).astype(int)
    return m[ys][:, xs]


def _templates():
    g = 256
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float64) + 0.5
    out = {}
    for s in SHAPES:
        m = shape_mask(s, g / 2, g / 2, g * 0.4, xx, yy)
        ys, xs = np.nonzero(m)
        out[s] = _resize_mask(m[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    return out


TEMPLATES = _templates()


def _components(mask):
    """4-connected components of a bool mask -> list of index arrays (ys, xs)."""
    h, w = mask.shape
    seen = np.zeros_like(mask)
    comps = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        q = deque([(y0, x0)])
        seen[y0, x0] = True
        ys, xs = [], []
        while q:
            y, x = q.popleft()
            ys.append(y)
            xs.append(x)
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    q.append((ny, nx))
        comps.append((np.array(ys), np.array(xs)))
    return comps


def _interior(lab):
    """bool [H, W]: pixels whose four neighbours have their label (image edges count as equal)"""
    p = np.pad(lab, 1, mode="edge")
    return (p[:-2, 1:-1] == lab) & (p[2:, 1:-1] == lab) & (p[1:-1, :-2] == lab) & (p[1:-1, 2:] == lab)


def classify(img, min_area=30, min_core=12, max_dist=110.0):
    """uint8 [R, R, 3] (R a world geometry's size) -> {"bg": colour, "objects": [{shape, color,
    size, row, col, area, iou}]}

    An object is a 4-connected component of one palette colour (not the background's) with at
    least min_area pixels, min_core of them interior (both counted at 64×64 and scaled with the
    area): a band one or two pixels wide, where a generated edge blends two colours into a
    third one (orange over blue reads as purple), is a colour fringe, not an object. Size
    from the extent (large above the midpoint of the two sizes' extents), row and column from
    the nearest cell centre."""
    geo = geometry(img.shape[0])
    area_scale = geo.scale * geo.scale
    large_from = geo.sizes["small"] + geo.sizes["large"]  # the midpoint of the two extents
    px = img.reshape(-1, 3).astype(np.float64)
    d = ((px[:, None, :] - _PAL[None, :, :]) ** 2).sum(-1)
    lab = d.argmin(1)
    lab[np.sqrt(d.min(1)) > max_dist] = -1
    lab = lab.reshape(img.shape[:2])
    border = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]])
    border = border[border >= 0]
    bg = int(np.bincount(border, minlength=len(COLORS)).argmax()) if len(border) else 0
    inner = _interior(lab)
    objs = []
    for ci in range(len(COLORS)):
        if ci == bg:
            continue
        for ys, xs in _components(lab == ci):
            if len(ys) < min_area * area_scale or inner[ys, xs].sum() < min_core * area_scale:
                continue
            y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
            crop = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=bool)
            crop[ys - y0, xs - x0] = True
            m = _resize_mask(crop)
            best, best_iou = None, -1.0
            for s, t in TEMPLATES.items():
                iou = (m & t).sum() / max(1, (m | t).sum())
                if iou > best_iou:
                    best, best_iou = s, iou
            cx, cy = (x0 + x1 + 1) / 2.0, (y0 + y1 + 1) / 2.0
            extent = max(x1 - x0 + 1, y1 - y0 + 1)
            objs.append({"shape": best, "color": COLORS[ci], "size": "large" if extent >= large_from else "small",
                         "row": geo.cell_of(cy), "col": geo.cell_of(cx),
                         "area": int(len(ys)), "iou": float(best_iou)})
    return {"bg": COLORS[bg], "objects": objs}


def _obj_ok(want, got):
    return all(got.get(k) == v for k, v in want.items())


def colours_ok(spec, found):
    """every colour spec names is in the picture found (a colour it leaves open matches any)"""
    return all(any(o["color"] == w.get("color", o["color"]) for o in found["objects"]) for w in spec["objects"])


def matches(spec, found):
    """True if the classified image satisfies everything the caption asserts."""
    if "bg" in spec and found["bg"] != spec["bg"]:
        return False
    want, got = spec["objects"], found["objects"]
    if len(got) != len(want):
        return False
    if len(want) == 1:
        return _obj_ok(want[0], got[0])
    return (_obj_ok(want[0], got[0]) and _obj_ok(want[1], got[1])) or \
        (_obj_ok(want[0], got[1]) and _obj_ok(want[1], got[0]))


def truth_matches(scene, found):
    """every attribute of the true scene recovered (stricter than matches)."""
    if found["bg"] != scene["bg"] or len(found["objects"]) != len(scene["objects"]):
        return False
    keys = ("shape", "color", "size", "row", "col")
    want = sorted(tuple(o[k] for k in keys) for o in scene["objects"])
    got = sorted(tuple(o[k] for k in keys) for o in found["objects"])
    return want == got


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", type=int, default=1000, help="scenes to classify")
    ap.add_argument("--seed0", type=int, default=10_000_000)
    ap.add_argument("--show", type=int, default=10)
    args = ap.parse_args()
    ok_spec = ok_truth = 0
    for i in range(args.check):
        scene, cap, spec = sample(args.seed0 + i, train=False)
        f = classify(render(scene))
        ok_spec += matches(spec, f)
        ok_truth += truth_matches(scene, f)
        if i < args.show:
            print(cap)
    print(f"classifier on {args.check} generator images: caption satisfied {ok_spec / args.check:.4f}, "
          f"every attribute recovered {ok_truth / args.check:.4f}")


if __name__ == "__main__":
    main()
