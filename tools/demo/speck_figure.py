#!/usr/bin/env python3
"""speck_figure.py — the demo VQGAN's flat-colour error and the JPEG chroma crops, before/after.

Two checks of a demo model's pixels, each through our C decoder (`dalle-cli decode`):
  * flat error: a code grid of one flat palette colour must decode to that colour everywhere;
    prints, per model, the worst pixel error over the 8 colours (in 1/255, at quality 100 and
    4:4:4 so JPEG adds almost nothing) and where it sits — the "speck" of docs/demo-model.md;
  * chroma: the exact codes of "a small red square on a blue background" decoded at quality 90
    with 4:2:0 and with 4:4:4; prints how many pixels are closer to purple than to red or blue.
Writes one picture (default docs/demo_speck_chroma.png): the flat-black image's top-left
corner of each model magnified, then the square with 4:2:0 and with 4:4:4.

    /usr/bin/python3 tools/demo/speck_figure.py --before OLD_MODEL_DIR [--after models/demo]

OLD_MODEL_DIR: e.g. an earlier models/demo from git (`git archive REV models/demo | tar -x -C
DIR`). Needs numpy and Pillow (Debian: python3-numpy python3-pil).
"""
import argparse
import io
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import patch_codes  # noqa: E402
import world  # noqa: E402

ZOOM = 6       # magnification of the corner crops
CORNER = 32    # side of the corner crop, pixels


def decode(cli, model, grids, quality, subsampling):
    """code grids [n, L] → uint8 images [n, R, R, 3] through dalle-cli decode"""
    with tempfile.TemporaryDirectory() as work:
        tok = os.path.join(work, "tokens.json")
        with open(tok, "w") as f:
            json.dump({"tokens": [list(map(int, g)) for g in grids]}, f)
        subprocess.run([cli, "decode", "--model", model, "--tokens", tok, "--quality", str(quality),
                        "--subsampling", str(subsampling), "--out", work], check=True,
                       capture_output=True, timeout=600)
        return np.stack([np.asarray(Image.open(os.path.join(work, f"{i}.jpg")).convert("RGB"))
                         for i in range(len(grids))])


def resolution(model):
    with open(os.path.join(model, "config.json")) as f:
        return json.load(f)["vqgan"]["resolution"]


def flat_error(cli, model):
    """worst |pixel − colour| over the 8 flat-colour grids → (error, colour, y, x, black image)"""
    cd = patch_codes.codec(resolution(model))
    grids = [[c] * (cd.side * cd.side) for c in range(len(world.COLORS))]
    imgs = decode(cli, model, grids, 100, 444).astype(np.int32)
    pal = np.array([world.PALETTE[c] for c in world.COLORS], dtype=np.int32)
    err = np.abs(imgs - pal[:, None, None, :]).max(axis=3)  # [8, R, R]
    c, y, x = np.unravel_index(int(err.argmax()), err.shape)
    black = imgs[world.COLORS.index("black")].astype(np.uint8)
    return int(err.max()), world.COLORS[c], int(y), int(x), black


def chroma(cli, model):
    """the small red square on blue, 4:2:0 and 4:4:4 → (images, purple-ish pixel counts, box)"""
    res = resolution(model)
    geo = world.geometry(res)
    cd = patch_codes.codec(res)
    scene = {"bg": "blue", "objects": [{"shape": "square", "color": "red", "size": "small",
                                        "row": 1, "col": 1}]}
    codes = cd.encode(world.render(scene, geo))
    pal = {k: np.array(world.PALETTE[k], dtype=np.float64) for k in ("red", "blue", "purple")}
    out, purple = [], []
    for ss in (420, 444):
        img = decode(cli, model, [codes.reshape(-1)], 90, ss)[0]
        d = {k: np.linalg.norm(img.astype(np.float64) - v, axis=2) for k, v in pal.items()}
        purple.append(int((d["purple"] < np.minimum(d["red"], d["blue"])).sum()))
        out.append(img)
    h = int(geo.sizes["small"]) + 8
    c = int(geo.cells[1])
    return out, purple, (c - h, c + h)


def zoom(img):
    """a square crop magnified to the panel side (CORNER × ZOOM pixels), nearest neighbour"""
    return Image.fromarray(img).resize((CORNER * ZOOM, CORNER * ZOOM), Image.NEAREST)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, help="the earlier demo model directory")
    ap.add_argument("--after", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--cli", default=os.path.join(ROOT, os.environ.get("BUILD", "build"), "dalle-cli"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "demo_speck_chroma.png"))
    args = ap.parse_args()

    panels = []
    for name, model in (("before", args.before), ("after", args.after)):
        e, col, y, x, black = flat_error(args.cli, model)
        print(f"{name}: {resolution(model)}x{resolution(model)}, flat error {e}/255 "
              f"(worst on {col} at x {x}, y {y})")
        panels.append((f"{name}: black; worst {e}/255", zoom(black[:CORNER, :CORNER])))
    imgs, purple, (a, b) = chroma(args.cli, args.after)
    for ss, img, p in zip((420, 444), imgs, purple):
        print(f"after, small red square on blue, quality 90 {ss}: {p} pixels closer to purple")
        panels.append((f"4:{str(ss)[1]}:{str(ss)[2]}: {p} purple px", zoom(img[a:b, a:b])))

    side, pad, label = CORNER * ZOOM, 8, 18
    fig = Image.new("RGB", (len(panels) * (side + pad) + pad, side + label + 2 * pad), "white")
    draw = ImageDraw.Draw(fig)
    for i, (text, im) in enumerate(panels):
        x0 = pad + i * (side + pad)
        draw.text((x0, pad), text, fill="black")
        fig.paste(im, (x0, pad + label))
    buf = io.BytesIO()
    fig.save(buf, format="PNG", optimize=True)
    with open(args.out, "wb") as f:
        f.write(buf.getvalue())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
