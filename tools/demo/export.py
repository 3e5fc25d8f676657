#!/usr/bin/env python3
"""export.py — writes the trained demo model into a dalle-server model directory (models/demo).

Inputs: the checkpoints of train_vqgan.py, train_bart.py (and its BPE files) and
train_clip.py. Output (format "dalle-server-model" v1, see models/tiny and README "Model
directory"):
  config.json                 bart / text / generation / vqgan / clip sections and file names
                              and the world's description and example prompts (world.describe)
  encoder.safetensors         DalleBart encoder, min-dalle names, F16
  decoder.safetensors         DalleBart decoder + lm_head, min-dalle names, F16 (256 positions)
  vocab.json, merges.txt      the BART byte-level BPE trained on world captions
  vqgan.safetensors           taming decode path, min-dalle detokenizer names, F16
  clip.safetensors            transformers CLIPModel.save_pretrained's model.safetensors, F16
  clip_merges.txt             CLIP's BPE (open_clip's bundled vocabulary; copied from models/tiny)
Every weight is rounded to fp16 once here; the parity fixtures (gen_demo_golden.py) run the
peer code in fp32 on exactly these fp16 values.

    .venv-demo/bin/python tools/demo/export.py --train build/demo_train --out models/demo
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import world  # noqa: E402

GENERATION = {"cond_scale": 4.0, "top_k": 32, "top_p": 1.0, "temperature": 1.0}


def f16(sd):
    return {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", default=os.path.join(ROOT, "build", "demo_train"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "demo"))
    ap.add_argument("--cond-scale", type=float, default=GENERATION["cond_scale"])
    ap.add_argument("--top-k", type=int, default=GENERATION["top_k"])
    ap.add_argument("--temperature", type=float, default=GENERATION["temperature"])
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    from train_clip import SECTION, build as build_clip
    from train_vqgan import CONFIG as VQ, DecodePath

    # BART
    ck = torch.load(os.path.join(args.train, "bart", "bart_last.pt"), map_location="cpu", weights_only=False)
    src = {"source": "tools/demo/train_bart.py (min-dalle DalleBart classes), step %d" % ck["step"]}
    save_file(f16(ck["encoder"]), os.path.join(args.out, "encoder.safetensors"), metadata=src)
    save_file(f16(ck["decoder"]), os.path.join(args.out, "decoder.safetensors"), metadata=src)
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(args.train, "bart", f), os.path.join(args.out, f))
    text_vocab = ck["text_vocab"]
    hp = ck["hp"]  # the sizes it was trained at

    # VQGAN
    vk = torch.load(os.path.join(args.train, "vqgan", "vqgan_last.pt"), map_location="cpu", weights_only=False)
    vq = DecodePath(VQ)
    vq.load_state_dict(vk["model"])
    save_file(f16(vq.decoder_state_dict()), os.path.join(args.out, "vqgan.safetensors"),
              metadata={"source": "tools/demo/train_vqgan.py (taming-transformers 0.0.1 Decoder), step %d" % vk["step"]})

    # CLIP
    cl = torch.load(os.path.join(args.train, "clip", "clip_last.pt"), map_location="cpu", weights_only=False)
    model = build_clip()
    model.load_state_dict(cl["model"])
    model = model.half()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        shutil.copyfile(os.path.join(tmp, "model.safetensors"), os.path.join(args.out, "clip.safetensors"))
    shutil.copyfile(os.path.join(ROOT, "models", "tiny", "clip_merges.txt"), os.path.join(args.out, "clip_merges.txt"))

    cfg = {
        "format": "dalle-server-model",
        "format_version": 1,
        "name": "demo-shapes",
        "description": world.describe(),  # what the model says about itself (/info, the web page)
        "examples": world.EXAMPLES,
        "bart": {
            "d_model": hp["d_model"],
            "encoder_layers": hp["encoder_layers"],
            "decoder_layers": hp["decoder_layers"],
            "attention_heads": hp["heads"],
            "glu_dim": hp["glu_dim"],
            "text_vocab_size": text_vocab,
            "text_length": hp["text_length"],
            "image_vocab_size": hp["image_vocab_size"],
            "image_length": hp["image_length"],
            "lm_head_size": hp["image_vocab_size"] + 1,
            "start_token": hp["image_vocab_size"],
            "layer_norm_eps": 1e-05,
        },
        "text": {"normalize": True, "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "unk_token_id": 3},
        "generation": dict(GENERATION, cond_scale=args.cond_scale, top_k=args.top_k, temperature=args.temperature),
        "files": {
            "encoder": "encoder.safetensors",
            "decoder": "decoder.safetensors",
            "vocab": "vocab.json",
            "merges": "merges.txt",
            "clip_merges": "clip_merges.txt",
            "vqgan": "vqgan.safetensors",
            "clip": "clip.safetensors",
        },
        "vqgan": VQ,
        "clip": SECTION,
    }
    cfg_path = os.path.join(args.out, "config.json")
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {args.out}: {total / 1e6:.1f} MB; bart step {ck['step']}, vqgan step {vk['step']}, clip step {cl['step']}")


if __name__ == "__main__":
    main()
