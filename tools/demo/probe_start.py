#!/usr/bin/env python3
"""probe_start.py — does a trained DalleBart dare to start an object it never saw?

Teacher-forces the exact codes of a rendered scene (one shape in the centre cell) through
a DalleBart checkpoint of train_bart.py and prints, at the first patch of the object, the
probability of the right code, its rank, and the probability of the background code
(which continues an empty picture), the mean log-probability of the object's other codes and
the log-probability of the whole picture. A held-out combination whose start code loses to
the background is left out when sampling.

With --cells the caption names no place ("a small purple triangle on a white background"):
the same shape is rendered on each of the 3×3 cells and the probability of each whole
picture, normalised over the nine, is printed as a grid (top, middle and bottom rows, apart
by |). The world draws a free shape uniformly over the cells, so a model that learnt it gives
each about 11 %; one that is unsure how to start the shape piles it on the last cell.

    .venv-demo/bin/python tools/demo/probe_start.py [--train build/demo_train] [--cells] [SHAPE:COLOUR:BG[:SIZE] ...]
"""
import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import patch_codes  # noqa: E402
import train_bart as tb  # noqa: E402
import world  # noqa: E402

DEFAULT = ["triangle:purple:white", "triangle:red:white", "circle:purple:white", "heart:orange:white",
           "circle:orange:white", "star:white:blue", "star:white:black", "triangle:purple:white:small",
           "triangle:red:white:small", "heart:orange:white:small", "heart:red:white:small"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default=os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "demo_train"))
    ap.add_argument("--cells", action="store_true", help="each shape on each of the nine cells, the place left open")
    ap.add_argument("scenes", nargs="*", default=DEFAULT)
    args = ap.parse_args()
    ck = torch.load(os.path.join(args.train, "bart", "bart_last.pt"), map_location="cpu", weights_only=False)
    enc, dec = tb.build(ck["text_vocab"], ck["hp"])
    enc.load_state_dict(ck["encoder"], strict=False)
    dec.load_state_dict(ck["decoder"], strict=False)
    tied = tb.TiedCodes(tb.HP["d_model"], torch.Generator().manual_seed(0))
    tied.load_state_dict(ck["tied"])
    tok = tb.tokenizer(os.path.join(args.train, "bart"))
    cd = patch_codes.CURRENT

    def picture_logp(caption, scene):
        """the caption's teacher-forced log p of each of the scene's exact codes → ([L], codes [L])"""
        ids = torch.from_numpy(tb.encode_text(tok, [caption], tb.HP["text_length"]))
        codes = torch.from_numpy(cd.encode(world.render(scene)).reshape(-1).astype(np.int64))  # [L]
        with torch.no_grad():
            state = tb.encoder_forward(enc, ids)
            prev = torch.cat([torch.tensor([patch_codes.CODEBOOK]), codes[:-1]])[None]
            logp = tb.decoder_logits(dec, tied, state, ids, prev)[0].log_softmax(-1)  # [L, V + 1]
        return logp, codes

    for s in args.scenes:
        shape, colour, bg, size = (s.split(":") + ["large"])[:4]
        held = " (held out)" if world.spec_is_held_out({"bg": bg, "objects": [{"shape": shape, "color": colour}]}) else ""
        if args.cells:
            caption = f"a {size} {colour} {shape} on a {bg} background"
            whole = []
            for row in range(3):
                for col in range(3):
                    scene = {"bg": bg, "objects": [{"shape": shape, "color": colour, "size": size, "row": row, "col": col}]}
                    logp, codes = picture_logp(caption, scene)
                    whole.append(float(logp[torch.arange(len(codes)), codes].sum()))
            share = np.exp(np.array(whole) - max(whole))
            share = 100 * share / share.sum()  # [9], row-major
            grid = " | ".join(" ".join(f"{v:3.0f}" for v in share[r * 3:r * 3 + 3]) for r in range(3))
            print(f"{caption}{held}: % by cell {grid}; the nine pictures log p {np.logaddexp.reduce(whole):.2f}")
            continue
        caption = f"a {size} {colour} {shape} in the center on a {bg} background"
        scene = {"bg": bg, "objects": [{"shape": shape, "color": colour, "size": size, "row": 1, "col": 1}]}
        logp, codes = picture_logp(caption, scene)
        bgc = int(codes[0])
        obj = codes != bgc
        t = int(torch.nonzero(obj)[0])
        picked = logp[torch.arange(len(codes)), codes]  # [L]
        print(f"{caption}{held}: first object patch {t}: right code p {float(picked[t].exp()):.2f} "
              f"(rank {int((logp[t] > picked[t]).sum())}), background code p {float(logp[t, bgc].exp()):.2f}; "
              f"the object's other codes log p {float(picked[obj][1:].mean()):.2f}; "
              f"the whole picture log p {float(picked.sum()):.2f}")


if __name__ == "__main__":
    main()
