"""tools/demo/cells.py: the tally of where single shapes land must count exactly the shapes of
the stored images, by set group, size and cell, and only on prompts that leave the place open.
Needs python3-numpy and python3-pil (Debian) only.
"""
import json
import pathlib
import sys

from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "demo"))
import cells  # noqa: E402
import world  # noqa: E402


def store(folder, name, k, scenes):
    """one prompt's images as eval.py stores them: <set>/<k>/<file> listed in result.json"""
    d = folder / name / str(k)
    d.mkdir(parents=True)
    files = []
    for i, sc in enumerate(scenes):
        Image.fromarray(world.render(sc, world.geometry(128))).save(d / f"{i}.png")
        files.append({"file": f"{i}.png"})
    (d / "result.json").write_text(json.dumps({"images": files}))


def one(color, shape, size, row, col, bg="white"):
    return {"bg": bg, "objects": [{"shape": shape, "color": color, "size": size, "row": row, "col": col}]}


def test_tally_counts_each_shape_by_group_size_and_cell(tmp_path):
    free = {"objects": [{"shape": "triangle", "color": "purple"}], "bg": "white"}
    placed = {"objects": [{"shape": "circle", "color": "red", "row": 0, "col": 0}], "bg": "white"}
    pair = {"objects": [{"shape": "circle", "color": "red"}, {"shape": "square", "color": "blue"}], "bg": "white"}
    store(tmp_path, "held-out", 0, [one("purple", "triangle", "small", 2, 2)] * 2 +
          [one("purple", "triangle", "large", 1, 1)])
    store(tmp_path, "held-out", 1, [one("red", "circle", "small", 0, 1)])  # a placed prompt: skipped
    store(tmp_path, "in-domain random", 0, [one("red", "circle", "small", 0, 2), one("red", "square", "small", 1, 0)])
    store(tmp_path, "in-domain random", 1, [one("red", "circle", "large", 2, 0)])  # two shapes asked: skipped
    sets = [("held-out", [("a purple triangle", free), ("a red circle top left", placed)]),
            ("in-domain random", [("a red circle", dict(free, objects=[{"shape": "circle", "color": "red"}])),
                                  ("a red circle and a blue square", pair)])]
    got, images = cells.tally(str(tmp_path), sets)
    assert images == {"held-out": 3, "in-domain": 2}
    assert got["held-out"] == {("small", 2, 2): 2, ("large", 1, 1): 1}
    assert got["in-domain"] == {("small", 0, 2): 1, ("small", 1, 0): 1}
    text = cells.report(got, images)
    assert "held-out: 3 images, 3 shapes; busiest small at row 2 col 2: 2 (67 %)" in text
