#!/usr/bin/env python3
"""eval.py — how well the demo model draws what it is asked, measured from pixels.

1. The pixel classifier (world.classify: palette colours, background from the border,
   4-connected components, size from the extent, position from the centroid, shape by IoU
   with templates) is first checked on the generator's own images: the fraction whose
   caption is satisfied and the fraction with every attribute recovered.
2. For each evaluation prompt (world.eval_prompts(): 20 in-domain, 12 held-out combinations
   that never occur in training), our C CLI generates n = 8 images with a fixed seed
   (`dalle-cli generate`, JPEG quality 100, 4:4:4 so compression does not move colours);
   an image is correct when the classifier finds exactly what the caption asserts
   (world.matches). Reported: accuracy of the CLIP top-ranked image, and of a random pick
   (the expected accuracy of a uniform pick = the mean over the 8 images); two partial
   scores: background colour right, every colour the caption asks for present; and the
   DalleBart alone: the same 8 code grids (`dalle-cli tokens`, same seed) painted exactly by
   patch_codes.paint instead of the VQGAN decoder, then classified.
3. With --grid, a picture of prompts → their top image (docs/demo_grid.png).

    /work/venv-ref/bin/python tools/demo/eval.py [--cli build/dalle-cli] [--model models/demo] \
        [--out tools/demo/eval_results.json] [--grid docs/demo_grid.png]
Deterministic: fixed seeds; the same binary and model give the same numbers.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import patch_codes  # noqa: E402
import world  # noqa: E402

GRID_PROMPTS = [
    ("a red square on a blue background", False),
    ("a yellow circle on a black background", False),
    ("a small blue star in the top left corner on a yellow background", False),
    ("two red circles side by side on a white background", False),
    ("a red circle to the left of a blue square on a white background", False),
    ("a purple triangle on a white background", True),
    ("an orange heart on a blue background", True),
    ("a yellow star on a blue background", True),
]


def classifier_check(n):
    ok_spec = ok_truth = 0
    for i in range(n):
        scene, _, spec = world.sample(10_000_000 + i, train=False)
        f = world.classify(world.render(scene))
        ok_spec += world.matches(spec, f)
        ok_truth += world.truth_matches(scene, f)
    return ok_spec / n, ok_truth / n


def generate(cli, model, prompt, n, seed, out, extra):
    os.makedirs(out, exist_ok=True)
    cmd = [cli, "generate", "--model", model, "--prompt", prompt, "-n", str(n), "--seed", str(seed),
           "--threads", "1", "--quality", "100", "--subsampling", "444", "--out", out] + extra
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(out, "result.json")) as f:
        res = json.load(f)
    imgs = [np.asarray(Image.open(os.path.join(out, im["file"])).convert("RGB")) for im in res["images"]]
    return res, imgs


def painted_ok(cli, model, prompt, n, seed, spec, extra):
    """DalleBart alone: are the code grids right when painted exactly (no VQGAN)?"""
    cmd = [cli, "tokens", "--model", model, "--prompt", prompt, "-n", str(n), "--seed", str(seed),
           "--threads", "1"] + extra
    grids = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)["tokens"]
    return [bool(world.matches(spec, world.classify(patch_codes.paint(g)))) for g in grids]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", default=os.path.join(ROOT, os.environ.get("BUILD", "build"), "dalle-cli"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--check", type=int, default=1000)
    ap.add_argument("--work", default="/tmp/demo_eval")
    ap.add_argument("--out", default=os.path.join(HERE, "eval_results.json"))
    ap.add_argument("--grid", default=os.path.join(ROOT, "docs", "demo_grid.png"))
    ap.add_argument("--limit", type=int, default=0, help="prompts per set (0 = all)")
    ap.add_argument("--random", type=int, default=40, help="generator-drawn prompts per random set")
    ap.add_argument("--cond-scale", type=float)
    ap.add_argument("--top-k", type=int)
    args = ap.parse_args()
    extra = []
    if args.cond_scale is not None:
        extra += ["--cond-scale", str(args.cond_scale)]
    if args.top_k is not None:
        extra += ["--top-k", str(args.top_k)]

    t0 = time.time()
    spec_acc, truth_acc = classifier_check(args.check)
    print(f"classifier on {args.check} generator images: caption satisfied {spec_acc:.4f}, "
          f"every attribute {truth_acc:.4f}", flush=True)
    ind, held = world.eval_prompts()
    rind, rheld = world.random_eval_prompts(args.random)
    if args.limit:
        ind, held, rind, rheld = ind[: args.limit], held[: args.limit], rind[: args.limit], rheld[: args.limit]
    results = {"classifier": {"images": args.check, "caption_satisfied": spec_acc, "all_attributes": truth_acc},
               "n": args.n, "seed": args.seed, "settings": extra, "sets": {}}
    for name, prompts in (("in-domain", ind), ("held-out", held), ("in-domain random", rind),
                          ("held-out random", rheld)):
        rows = []
        for k, (prompt, spec) in enumerate(prompts):
            res, imgs = generate(args.cli, args.model, prompt, args.n, args.seed + k,
                                 os.path.join(args.work, name, str(k)), extra)
            found = [world.classify(im) for im in imgs]
            ok = [bool(world.matches(spec, f)) for f in found]
            bg_ok = [spec.get("bg", f["bg"]) == f["bg"] for f in found]
            col_ok = [all(any(o["color"] == w["color"] for o in f["objects"]) for w in spec["objects"]) for f in found]
            codes_ok = painted_ok(args.cli, args.model, prompt, args.n, args.seed + k, spec, extra)
            rows.append({"prompt": prompt, "top_ok": ok[0], "mean_ok": float(np.mean(ok)), "ok": ok,
                         "top_bg_ok": bool(bg_ok[0]), "mean_bg_ok": float(np.mean(bg_ok)),
                         "top_colors_ok": bool(col_ok[0]), "mean_colors_ok": float(np.mean(col_ok)),
                         "mean_codes_ok": float(np.mean(codes_ok)),
                         "scores": [im["score"] for im in res["images"]],
                         "top_found": world.classify(imgs[0])})
            print(f"{name:16s} top {'✓' if ok[0] else '✗'} {np.mean(ok):.2f}  {prompt}", flush=True)
        top = float(np.mean([r["top_ok"] for r in rows]))
        rnd = float(np.mean([r["mean_ok"] for r in rows]))
        part = {k: float(np.mean([r[k] for r in rows])) for k in
                ("top_bg_ok", "mean_bg_ok", "top_colors_ok", "mean_colors_ok", "mean_codes_ok")}
        results["sets"][name] = dict({"prompts": len(rows), "top_ranked": top, "random_pick": rnd}, **part, rows=rows)
        print(f"== {name}: top-ranked {top:.3f}, random pick {rnd:.3f} ({len(rows)} prompts × {args.n}); "
              f"background right: top {part['top_bg_ok']:.3f} random {part['mean_bg_ok']:.3f}; "
              f"every asked colour present: top {part['top_colors_ok']:.3f} random {part['mean_colors_ok']:.3f}; "
              f"DalleBart alone (codes painted exactly): {part['mean_codes_ok']:.3f}",
              flush=True)
    results["seconds"] = round(time.time() - t0, 1)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")

    if args.grid:
        tiles = []
        for k, (prompt, held_out) in enumerate(GRID_PROMPTS):
            res, imgs = generate(args.cli, args.model, prompt, args.n, 7 + k,
                                 os.path.join(args.work, "grid", str(k)), extra)
            tiles.append((prompt, held_out, imgs[0]))
        save_grid(tiles, args.grid)
        print(f"wrote {args.grid}")


def save_grid(tiles, path, scale=3):
    font = ImageFont.load_default()
    tw, th = 64 * scale, 64 * scale
    cols = 4
    cap_h = 44
    rows = (len(tiles) + cols - 1) // cols
    W, H = cols * (tw + 12) + 12, rows * (th + cap_h + 12) + 12
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    for i, (prompt, held_out, img) in enumerate(tiles):
        x, y = 12 + (i % cols) * (tw + 12), 12 + (i // cols) * (th + cap_h + 12)
        canvas.paste(Image.fromarray(img).resize((tw, th), Image.NEAREST), (x, y))
        words, lines, line = prompt.split(), [], ""
        for w_ in words:
            if len(line) + len(w_) + 1 > 30:
                lines.append(line)
                line = w_
            else:
                line = (line + " " + w_).strip()
        lines.append(line)
        if held_out:
            lines[-1] += "  [held out]"
        for j, ln in enumerate(lines[:3]):
            d.text((x, y + th + 3 + 13 * j), ln, fill=(200, 0, 0) if held_out else (0, 0, 0), font=font)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    canvas.save(path)


if __name__ == "__main__":
    main()
