#!/usr/bin/env python3
"""gen_clip_golden.py — CLIP preprocessing and CLIP model fixtures from the peer code.

Peers: Pillow's Image.resize(BICUBIC) and transformers' CLIPImageProcessorPil (the PIL
backend of CLIPImageProcessor: PIL bicubic resize of the short side, center crop, ×1/255,
(x − mean)/std) for preprocessing; transformers' CLIPModel in fp32 for the towers, built
from the "clip" section of the model's config.json (so our schema is what is tested) and
loaded from the model's CLIP safetensors file (make_tiny_clip.py).

Inputs made here, all deterministic:
  * six synthetic 256×256 RGB uint8 images (IMAGES below: gradients, noise, shapes, a
    checkerboard, smooth waves) — the size the VQGAN produces;
  * three prompts tokenised by open_clip's SimpleTokenizer with the real CLIP vocabulary
    (bundled with open_clip), 77 ids each, 0-padded as OpenAI's code does;
  * RESIZE cases: plain Image.resize at several sizes (odd sizes, upscaling, one axis up and
    the other down, extreme downscaling, one axis unchanged, a grayscale image);
  * PREP cases: the full CLIP preprocessing at crop size 64 on non-square sources.

Outputs (the C tests read them with our own safetensors reader):
  tests/golden/clip/images.safetensors — the uint8 images, stored as F16 (every integer
      0…255 is exact in fp16; our reader takes F32/F16/BF16 only):
        images [6,256,256,3]; resize{i}.out [oh,ow,c] from either resize{i}.image [1] (an
        index into images) or resize{i}.src [h,w,c];
        prep{i}.src [h,w,3] (F16) and prep{i}.pixels [64,64,3] (F32, NHWC);
  tests/golden/clip/clip_golden.safetensors — F32:
        pixel_values [6,224,224,3] (NHWC), input_ids [3,77],
        image_embeds_raw [6,E], text_embeds_raw [3,E] (projections before normalisation),
        image_embeds [6,E], text_embeds [3,E] (L2-normalised),
        logits_per_image [6,3], ranking [3,6] (per prompt: image indexes by descending logit,
        ties by index);
  tests/golden/clip/clip_golden.json — what the tensors are, prompts, versions, and the
        smallest gap between neighbouring logits per prompt (how robust the ranking is).

    /work/venv-ref/bin/python tools/reference/gen_clip_golden.py [--model models/tiny] \
        [--out tests/golden/clip]
"""
import argparse
import json
import os
import sys

import numpy as np
import open_clip
import PIL
import torch
import transformers
from PIL import Image
from safetensors.numpy import save_file
from transformers import CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_clip import clip_config  # noqa: E402  (the schema → HF mapping, defined once)

SEED = 6  # numpy Generator seed for the synthetic images
SIZE = 256
PROMPTS = [
    "a red bicycle leaning against a brick wall",
    "an astronaut riding a horse on the moon, digital art",
    "a bowl of soup that looks like a monster, knitted out of wool",
]
PREP_SIZE = 64


def synthetic_images(rng):
    """Six deterministic SIZE×SIZE RGB uint8 images, with their descriptions."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    imgs, names = [], []

    def add(name, a):
        names.append(name)
        imgs.append(np.clip(np.rint(a), 0, 255).astype(np.uint8))

    add("gradient: r = x, g = y, b = (x+y)/2", np.stack([x, y, (x + y) / 2], -1))
    r = np.hypot(x - 128, y - 100)
    add("radial rings", np.stack([127.5 + 127.5 * np.sin(r / 9), 127.5 + 127.5 * np.cos(r / 17), 255 - r], -1))
    add("uniform noise", rng.integers(0, 256, (SIZE, SIZE, 3)))
    shapes = np.empty((SIZE, SIZE, 3))
    shapes[:] = (30, 90, 160)
    shapes[np.hypot(x - 80, y - 90) < 50] = (250, 220, 40)
    shapes[(x > 130) & (x < 230) & (y > 150) & (y < 220)] = (200, 30, 30)
    shapes[(y > 20) & (y < 120) & (x - 150 > 0) & (x - 150 < (y - 20))] = (20, 200, 90)
    add("shapes: circle, rectangle, triangle on blue", shapes)
    checker = ((x // 8 + y // 8) % 2) * 255
    add("8-pixel checkerboard with a 3-pixel stripe colour pattern",
        np.stack([checker, 255 - checker, ((x // 3) % 2) * 255], -1))
    waves = [127.5 + 60 * np.sin(x / 13 + c) + 60 * np.cos(y / (7 + 5 * c)) for c in range(3)]
    add("smooth waves", np.stack(waves, -1))
    return np.stack(imgs), names


def pil(a):
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


def resize_cases(rng):
    """(description, source, (out_w, out_h)) for plain PIL bicubic resizes; the source is an
    index into the six images or an own uint8 array [h, w, c]."""
    noise = lambda h, w, c=3: rng.integers(0, 256, (h, w, c)).astype(np.uint8)  # noqa: E731
    return [
        ("noise 256x256 -> 224x224", 2, (224, 224)),
        ("shapes 256x256 -> 224x224", 3, (224, 224)),
        ("checkerboard 256x256 -> 97x131 (odd, unequal scales)", 4, (97, 131)),
        ("noise 37x23 -> 200x150 (upscale)", noise(23, 37), (200, 150)),
        ("noise 61x300 -> 97x53 (x up, y down)", noise(300, 61), (97, 53)),
        ("gradient 256x256 -> 7x9 (wide support)", 0, (7, 9)),
        ("noise 5x3 -> 2x7", noise(3, 5), (2, 7)),
        ("grayscale (mode L) noise 40x30 -> 100x75", noise(30, 40, 1), (100, 75)),
        ("waves 256x256 -> 256x200 (width unchanged)", 5, (256, 200)),
        # Pillow 13 runs the vertical pass first when the height shrinks by more than twice
        # as many pixels as the width; the pass order changes the rounding.
        ("noise 100x100 -> 90x79 (dy 21 > 2*dx 20: vertical first)", noise(100, 100), (90, 79)),
        ("noise 100x100 -> 90x80 (dy 20 = 2*dx: horizontal first)", noise(100, 100), (90, 80)),
        ("noise 21x119 -> 6x85 (vertical first, though x shrinks by the larger factor)",
         noise(119, 21), (6, 85)),
    ]


def prep_cases(rng):
    """(description, src [h,w,3] uint8) for the full preprocessing at crop PREP_SIZE."""
    noise = lambda h, w: rng.integers(0, 256, (h, w, 3)).astype(np.uint8)  # noqa: E731
    return [
        ("noise 150x100 (landscape, downscale, crop in x)", noise(100, 150)),
        ("noise 31x47 (portrait, upscale, crop in y)", noise(47, 31)),
        ("noise 201x64 (short side already 64: no resize, crop in x)", noise(64, 201)),
        ("noise 65x67 (crop offset rounds down)", noise(67, 65)),
    ]


def preprocess(processor, srcs):
    """HF CLIPImageProcessorPil output as NHWC float32."""
    out = processor(images=[pil(s) for s in srcs], return_tensors="np")["pixel_values"]
    return np.ascontiguousarray(out.transpose(0, 2, 3, 1)).astype(np.float32)


def ranking(logits_per_image):
    """Per prompt, image indexes by descending logit, ties by index."""
    return np.stack([np.argsort(-logits_per_image[:, p], kind="stable") for p in range(logits_per_image.shape[1])])


def min_gaps(logits_per_image, rank):
    return [float(np.min(-np.diff(logits_per_image[r, p]))) for p, r in enumerate(rank)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/tiny")
    ap.add_argument("--out", default="tests/golden/clip")
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    with open(os.path.join(args.model, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    section = cfg["clip"]
    S = section["vision"]["image_size"]
    model = CLIPModel(clip_config(section)).eval()
    from safetensors.torch import load_file

    state = load_file(os.path.join(args.model, cfg["files"]["clip"]))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing or unexpected:
        sys.exit(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model = model.float()

    rng = np.random.default_rng(SEED)
    imgs, names = synthetic_images(rng)
    images_st = {"images": imgs.astype(np.float16)}
    resizes = resize_cases(rng)
    for i, (desc, src, (ow, oh)) in enumerate(resizes):
        if isinstance(src, int):
            images_st[f"resize{i}.image"] = np.array([src], dtype=np.float16)
            src = imgs[src]
        else:
            images_st[f"resize{i}.src"] = src.astype(np.float16)
        out = np.asarray(pil(src).resize((ow, oh), Image.BICUBIC)).reshape(oh, ow, src.shape[2])
        images_st[f"resize{i}.out"] = out.astype(np.float16)
    small = CLIPImageProcessorPil(size={"shortest_edge": PREP_SIZE},
                                  crop_size={"height": PREP_SIZE, "width": PREP_SIZE})
    preps = prep_cases(rng)
    for i, (desc, src) in enumerate(preps):
        images_st[f"prep{i}.src"] = src.astype(np.float16)
        images_st[f"prep{i}.pixels"] = preprocess(small, [src])[0]

    processor = CLIPImageProcessorPil(size={"shortest_edge": S}, crop_size={"height": S, "width": S})
    pixels = preprocess(processor, list(imgs))  # [6, S, S, 3]
    ids = open_clip.get_tokenizer("ViT-B-32")(PROMPTS).numpy()  # [3, 77], 0-padded
    ids_t = torch.from_numpy(ids).long()
    pv = torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())
    img_raw = model.visual_projection(model.vision_model(pixel_values=pv).pooler_output)
    txt_raw = model.text_projection(model.text_model(input_ids=ids_t).pooler_output)
    out = model(input_ids=ids_t, pixel_values=pv)
    lpi = out.logits_per_image.numpy()
    if not np.allclose(out.image_embeds.numpy(), (img_raw / img_raw.norm(dim=-1, keepdim=True)).numpy()):
        sys.exit("CLIPModel image_embeds are not the normalised projection")
    rank = ranking(lpi)
    golden = {
        "pixel_values": pixels,
        "input_ids": ids.astype(np.float32),
        "image_embeds_raw": img_raw.numpy(),
        "text_embeds_raw": txt_raw.numpy(),
        "image_embeds": out.image_embeds.numpy(),
        "text_embeds": out.text_embeds.numpy(),
        "logits_per_image": lpi,
        "ranking": rank.astype(np.float32),
    }
    os.makedirs(args.out, exist_ok=True)
    save_file(images_st, os.path.join(args.out, "images.safetensors"))
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in golden.items()},
              os.path.join(args.out, "clip_golden.safetensors"))
    meta = {
        "generator": "tools/reference/gen_clip_golden.py",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__,
                     "pillow": PIL.__version__, "open_clip_torch": open_clip.__version__,
                     "numpy": np.__version__},
        "model": os.path.join(args.model, cfg["files"]["clip"]),
        "images": names,
        "prompts": PROMPTS,
        "resize_cases": [{"name": f"resize{i}", "what": d, "out_wh": list(o)} for i, (d, _, o) in enumerate(resizes)],
        "prep_cases": [{"name": f"prep{i}", "what": d, "src_hw_c": list(s.shape), "crop": PREP_SIZE}
                       for i, (d, s) in enumerate(preps)],
        "logit_scale_exp": float(model.logit_scale.exp()),
        "ranking": rank.tolist(),
        "min_logit_gap_per_prompt": min_gaps(lpi, rank),
    }
    with open(os.path.join(args.out, "clip_golden.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print(json.dumps({k: meta[k] for k in ("ranking", "min_logit_gap_per_prompt", "logit_scale_exp")}))
    print("logits_per_image:\n", np.array2string(lpi, precision=4))
    for fn in ("images.safetensors", "clip_golden.safetensors", "clip_golden.json"):
        print(f"{args.out}/{fn}: {os.path.getsize(os.path.join(args.out, fn))} bytes")


if __name__ == "__main__":
    main()
