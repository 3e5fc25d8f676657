#!/usr/bin/env python3
"""cells.py — where the model puts a single shape when the prompt leaves the place open.

Reads the images `eval.py` stored for every prompt (its --work folder of one sampling
setting, e.g. build/demo_eval/sweep/16:1:1, as rerank.py does), keeps the single-shape prompts
whose spec names no row and no column, classifies every image (world.classify) and prints,
for the in-domain and the held-out prompts apart, how many of the shapes found are small or
large and on which of the 3×3 cells (a line per size: the top, middle and bottom rows, apart
by |), with the share on the busiest cell. The world draws a free shape uniformly over its
cells, so a sampler that follows it spreads the shapes evenly; a pile on the last cell in
raster order (row 2, column 2) is a model that passes over the earlier cells because it is
unsure how to start the shape there, and draws it where it has no cell left. The prompt sets
must be the ones the images were made for (the same world.py).

    /usr/bin/python3 tools/demo/cells.py --dir build/demo_eval/sweep/16:1:1
"""
import argparse
import collections
import json
import os
import sys

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import eval as ev  # noqa: E402
import world  # noqa: E402


def unplaced_single(spec):
    objs = spec["objects"]
    return len(objs) == 1 and "row" not in objs[0] and "col" not in objs[0]


def tally(folder, sets):
    """{"in-domain" / "held-out": Counter((size, row, col) → shapes found)} and the images read
    for each, over the prompts of sets [(name, [(prompt, spec)])] (eval.prompt_sets) that leave a
    single shape's place open"""
    cells = {"in-domain": collections.Counter(), "held-out": collections.Counter()}
    images = collections.Counter()
    for name, prompts in sets:
        group = "held-out" if "held-out" in name else "in-domain"
        for k, (_, spec) in enumerate(prompts):
            if not unplaced_single(spec):
                continue
            d = os.path.join(folder, name, str(k))
            with open(os.path.join(d, "result.json")) as f:
                files = [im["file"] for im in json.load(f)["images"]]
            for file in files:
                found = world.classify(np.asarray(Image.open(os.path.join(d, file)).convert("RGB")))
                images[group] += 1
                cells[group].update((o["size"], o["row"], o["col"]) for o in found["objects"])
    return cells, images


def report(cells, images):
    lines = []
    for group, c in cells.items():
        total = sum(c.values())
        if not total:
            continue
        (size, row, col), top = c.most_common(1)[0]
        lines.append(f"{group}: {images[group]} images, {total} shapes; busiest {size} at row {row} col {col}: "
                     f"{top} ({100 * top / total:.0f} %)")
        for s in ("small", "large"):
            grid = [[c[(s, r, q)] for q in range(3)] for r in range(3)]
            lines.append(f"  {s:5s} " + " | ".join(" ".join(f"{v:3d}" for v in row) for row in grid))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="an eval.py work folder of one sampling setting")
    ap.add_argument("--random", type=int, default=40, help="generator-drawn prompts per random set, as eval.py")
    args = ap.parse_args()
    print(report(*tally(args.dir, ev.prompt_sets(args.random))))


if __name__ == "__main__":
    main()
