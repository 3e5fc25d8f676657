#!/usr/bin/env python3
"""rerank.py — how well would another CLIP have ranked the images an evaluation already made?

Reads the images and result.json that `eval.py` stored for every prompt (its --work folder,
e.g. build/demo_eval/sweep/4:1:1), judges each image with the world's classifier, and prints
per prompt set: the prompts, how often the image our C code ranked first is right, how often
any of the n is right (the best a ranking could do), and how often the image each given CLIP
checkpoint (train_clip.py's clip_last.pt) scores highest is right. The checkpoints score in
fp32 with transformers' CLIPModel on the stored JPEGs (eval.py writes them at quality 100,
4:4:4), so they agree with the C ranking of the same weights except for near ties.
The prompt sets must be the ones the images were made for (the same world.py).

    .venv-demo/bin/python tools/demo/rerank.py --dir build/demo_eval/sweep/4:1:1 \\
        build/demo_train/clip/clip_last.pt other/clip_last.pt
"""
import argparse
import json
import os
import sys

import numpy as np
import open_clip
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import eval as ev  # noqa: E402
import world  # noqa: E402
from train_clip import build, pixels  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="eval.py's folder of one evaluation (sets → prompts → images)")
    ap.add_argument("--random", type=int, default=40, help="generator-drawn prompts per random set, as eval.py")
    ap.add_argument("clips", nargs="+", help="train_clip.py checkpoints")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = open_clip.get_tokenizer("ViT-B-32")
    models = []
    for path in args.clips:
        m = build()
        m.load_state_dict(torch.load(path, map_location="cpu", weights_only=False)["model"])
        models.append(m.eval())
    totals = {}
    print(f"{'set':22s} prompts  C's pick  any right  " + "  ".join(f"clip {i + 1}" for i in range(len(models))))
    for name, prompts in ev.prompt_sets(args.random):
        counts = np.zeros(3 + len(models))  # prompts, C's pick right, any right, each CLIP's pick right
        for k, (prompt, spec) in enumerate(prompts):
            d = os.path.join(args.dir, name, str(k))
            with open(os.path.join(d, "result.json")) as f:
                res = json.load(f)
            imgs = np.stack([np.asarray(Image.open(os.path.join(d, im["file"])).convert("RGB")) for im in res["images"]])
            ok = [bool(world.matches(spec, world.classify(im))) for im in imgs]  # [n]
            row = [1, ok[0], any(ok)]
            ids = tok([prompt])
            ids = ids[:, :int((ids != 0).sum())]
            with torch.no_grad():
                for m in models:
                    scores = m(input_ids=ids, attention_mask=(ids != 0).long(), pixel_values=pixels(imgs))
                    row.append(ok[int(scores.logits_per_image[:, 0].argmax())])
            counts += row
        totals[name] = counts
        print(f"{name:22s} {int(counts[0]):7d}  " + "  ".join(f"{c / counts[0]:8.1%}" for c in counts[1:]), flush=True)
    for label, pick in (("in-domain", lambda n: "held-out" not in n), ("held-out", lambda n: "held-out" in n)):
        c = sum(v for n, v in totals.items() if pick(n))
        print(f"{'all ' + label:22s} {int(c[0]):7d}  " + "  ".join(f"{x / c[0]:8.1%}" for x in c[1:]))


if __name__ == "__main__":
    main()
