#!/usr/bin/env python3
"""make_tiny_clip.py — builds the tiny random CLIP used by the CLIP parity tests.

The model is a Hugging Face transformers CLIPModel (the class whose safetensors names our
loader reads, docs/model-spec.md §7.4), so the file we commit is exactly what save_pretrained writes.
Hyper-parameters (TINY below): vision 224×224 images, patch 32 (7×7 = 49 patches + class
token), width 64, 2 layers, 2 heads, MLP 128; text vocab 49408 (the real CLIP vocabulary, so
the real tokenizer's ids apply), context 77, width 32, 2 layers, 2 heads, MLP 64; projection
32; quick_gelu; LayerNorm eps 1e-5; logit_scale log(1/0.07) as HF initialises it.

Initialisation (seeded, torch.Generator on the CPU), chosen so that every code path carries a
visible signal (no zero biases, no unit LayerNorms) and activations stay of order 1:
  * Linear weights [out, in] ~ N(0, 1/in); the patch convolution [64, 3, 32, 32] likewise
    with in = 3·32·32; projections too;
  * every bias ~ U(-0.1, 0.1); LayerNorm gamma = 1 + U(-0.1, 0.1), beta = U(-0.1, 0.1);
  * token embedding ~ N(0, 1); position embeddings ~ N(0, 0.5²); class embedding ~ N(0, 1).
Every parameter is rounded to fp16 and back, and the model is saved in fp16, so the F16 file
holds exactly the values the fp32 reference (gen_clip_golden.py) runs on.

Output: OUT (default models/tiny/clip.safetensors), the model.safetensors that
save_pretrained wrote (its config.json is not kept: our schema lives in the model
directory's config.json). With --config (default models/tiny/config.json, when it exists) the
script also adds, without touching anything else, the "clip" section (dalle-server schema,
see model/clip.h) and "files": {"clip": <OUT's name>}.

    /work/venv-ref/bin/python tools/reference/make_tiny_clip.py \
        [--out models/tiny/clip.safetensors] [--config models/tiny/config.json] [--seed 20210105]
"""
import argparse
import json
import math
import os
import shutil
import tempfile

import torch
from transformers import CLIPConfig, CLIPModel

SEED = 20210105  # CLIP's announcement date; any fixed value works

# The dalle-server "clip" section (model/clip.h); clip_config() maps it to HF.
TINY = {
    "embed_dim": 32,
    "layer_norm_eps": 1e-5,
    "logit_scale_from_weights": True,
    "vision": {"image_size": 224, "patch_size": 32, "width": 64, "layers": 2, "heads": 2, "mlp_dim": 128},
    "text": {"context_length": 77, "vocab_size": 49408, "width": 32, "layers": 2, "heads": 2, "mlp_dim": 64},
}

BIAS_SPREAD = 0.1
LN_SPREAD = 0.1


def clip_config(section):
    """transformers CLIPConfig for a dalle-server "clip" section."""
    v, t = section["vision"], section["text"]
    common = {"hidden_act": "quick_gelu", "layer_norm_eps": section["layer_norm_eps"]}
    return CLIPConfig(
        projection_dim=section["embed_dim"],
        vision_config=dict(
            common,
            image_size=v["image_size"],
            patch_size=v["patch_size"],
            hidden_size=v["width"],
            num_hidden_layers=v["layers"],
            num_attention_heads=v["heads"],
            intermediate_size=v["mlp_dim"],
            projection_dim=section["embed_dim"],
        ),
        text_config=dict(
            common,
            vocab_size=t["vocab_size"],
            max_position_embeddings=t["context_length"],
            hidden_size=t["width"],
            num_hidden_layers=t["layers"],
            num_attention_heads=t["heads"],
            intermediate_size=t["mlp_dim"],
            projection_dim=section["embed_dim"],
        ),
    )


def uniform(shape, gen, spread):
    return (torch.rand(shape, generator=gen) * 2 - 1) * spread


def init_(model, gen):
    """Seeded init in named_parameters order (see the module docstring)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "logit_scale":
                continue  # keep HF's log(1/0.07)
            if name.endswith("class_embedding"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("token_embedding.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif name.endswith("position_embedding.weight"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
            elif "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                if name.endswith(".weight"):
                    p.copy_(1 + uniform(p.shape, gen, LN_SPREAD))
                else:
                    p.copy_(uniform(p.shape, gen, LN_SPREAD))
            elif name.endswith(".bias"):
                p.copy_(uniform(p.shape, gen, BIAS_SPREAD))
            elif name.endswith(".weight"):
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                raise SystemExit(f"no init rule for {name}")
        for p in model.parameters():  # the committed weights are F16: use exactly those values
            p.copy_(p.half().float())


def update_config(path, out_name):
    """Add the "clip" section and files.clip; everything else stays as it is."""
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["clip"] = TINY
    cfg.setdefault("files", {})["clip"] = out_name
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models/tiny/clip.safetensors")
    ap.add_argument("--config", default="models/tiny/config.json",
                    help="model config.json to add the clip section to (skipped if absent)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    model = CLIPModel(clip_config(TINY)).eval()
    gen = torch.Generator().manual_seed(args.seed)
    init_(model, gen)
    model = model.half()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        shutil.copyfile(os.path.join(tmp, "model.safetensors"), args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"tiny CLIP: {n} params, seed {args.seed} → {args.out} ({os.path.getsize(args.out)} bytes)")
    if os.path.exists(args.config):
        update_config(args.config, os.path.basename(args.out))
        print(f"{args.config}: clip section and files.clip written")


if __name__ == "__main__":
    main()
