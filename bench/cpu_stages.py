#!/usr/bin/env python3
"""cpu_stages.py — one image through every stage at DALL·E mini size on the CPU, ours vs the
peer implementations, in the same run, with the ratio per stage.

Random weights, generated here at run time and never stored: DalleBart mini (d 1024, 12+12
layers, 16 heads, GLU 2730, text vocab 50264) with min-dalle's classes, the VQGAN f16 16384
decoder with taming-transformers' Decoder, CLIP ViT-B/32 with transformers' CLIPModel. The
BART checkpoint goes through tools/convert.py; VQGAN and CLIP are saved as safetensors with
their published names. Then:
  ours:  build/dalle-cli generate -n 1 (its per-stage timings_ms)
  peers: min-dalle encoder + 256-step sample_tokens loop; taming decode of the same codes;
         transformers CLIP (image tower on PIL-preprocessed pixels + text tower).
Same thread count for both (torch.set_num_threads). Timings on a shared 2-core machine are
noisy: run it on a quiet machine and compare ratios, not absolutes.

usage: /work/venv-ref/bin/python bench/cpu_stages.py [--threads 2]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tools", "reference"))
import cpu_bart  # noqa: E402
from make_tiny_clip import clip_config  # noqa: E402
from make_tiny_vqgan import TamingDecodePath  # noqa: E402

VQGAN_F16_16384 = {"codebook_size": 16384, "embed_dim": 256, "z_channels": 256, "ch": 128,
                   "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16],
                   "resolution": 256, "out_ch": 3, "groups": 32, "eps": 1e-6}
CLIP_B32 = {"embed_dim": 512, "layer_norm_eps": 1e-5, "logit_scale_from_weights": True,
            "vision": {"image_size": 224, "patch_size": 32, "width": 768, "layers": 12, "heads": 12,
                       "mlp_dim": 3072},
            "text": {"context_length": 77, "vocab_size": 49408, "width": 512, "layers": 12, "heads": 8,
                     "mlp_dim": 2048}}
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)
PROMPT = "a red bicycle leaning against a brick wall"


def build_model_dir(out):
    """Random mini-size model directory; returns the torch peers."""
    enc, dec = cpu_bart.build("mini")
    src = os.path.join(out + "-pt")
    os.makedirs(src)
    cpu_bart.save_min_dalle(enc, dec, src)
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert.py"), "--from", "min-dalle",
                    "--src", src, "--vocab", os.path.join(ROOT, "models/tiny/vocab.json"),
                    "--merges", os.path.join(ROOT, "models/tiny/merges.txt"), "--dtype", "f16",
                    "--start-token", "16383", "--clip-merges", os.path.join(ROOT, "models/tiny/clip_merges.txt"),
                    "--out", out], check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(src)
    torch.manual_seed(1)
    vq = TamingDecodePath(VQGAN_F16_16384).eval()
    with torch.no_grad():
        for p in vq.parameters():
            p.copy_(p.half().float())
    save_file({TamingDecodePath.to_file_name(k): v.half().contiguous() for k, v in vq.state_dict().items()},
              os.path.join(out, "vqgan.safetensors"))
    clip = CLIPModel(clip_config(CLIP_B32)).eval()
    with torch.no_grad():
        for p in clip.parameters():
            p.copy_(p.half().float())
    with tempfile.TemporaryDirectory() as tmp:
        clip.half().save_pretrained(tmp)
        shutil.copyfile(os.path.join(tmp, "model.safetensors"), os.path.join(out, "clip.safetensors"))
    clip.float()
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    cfg["vqgan"], cfg["clip"] = VQGAN_F16_16384, CLIP_B32
    cfg["files"].update(vqgan="vqgan.safetensors", clip="clip.safetensors")
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return enc, dec, vq, clip


def timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, (time.perf_counter() - t0) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    cli = os.path.join(ROOT, "build", "dalle-cli")
    if not os.access(cli, os.X_OK):
        sys.exit("build/dalle-cli is missing: run make first")
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        enc, dec, vq, clip = build_model_dir(model)
        run = lambda *args: subprocess.run([cli, *args], check=True, capture_output=True, text=True).stdout
        tok = json.loads(run("tokenize", "--model", model, "--prompt", PROMPT))
        codes = json.loads(run("tokens", "--model", model, "--prompt", PROMPT, "--seed", "1"))["tokens"]
        res, wall = timed(lambda: json.loads(run("generate", "--model", model, "--prompt", PROMPT, "-n", "1",
                                                 "--seed", "1", "--top-k", "50", "--cond-scale", "10",
                                                 "--threads", str(a.threads), "--out", os.path.join(tmp, "out"))))
    ours = res["timings_ms"]
    peer = {}
    peer["encode"], peer["decode"] = cpu_bart.time_min_dalle(enc, dec, [[0, 2] + [1] * 62, tok["ids"]], 1, a.threads)
    with torch.no_grad():
        img, peer["vqgan"] = timed(lambda: vq(torch.tensor(codes[:1])))
        pixels = (img.clamp(0, 1) * 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()

        def clip_peer():
            pil = Image.fromarray(pixels).resize((224, 224), Image.BICUBIC)
            x = (np.asarray(pil, dtype=np.float32) / 255 - MEAN) / STD
            ie = clip.get_image_features(pixel_values=torch.from_numpy(x).permute(2, 0, 1)[None])
            te = clip.get_text_features(input_ids=torch.tensor([tok["clip_ids"]]))
            return ie, te
        _, peer["clip"] = timed(clip_peer)
    print(f"one image, DALL·E mini size, random weights, {a.threads} threads, CPU fp32; "
          f"torch {torch.__version__}")
    print(f"{'stage':<18}{'dalle-server ms':>16}{'peer ms':>12}{'speed-up':>10}  peer")
    names = {"encode": "min-dalle", "decode": "min-dalle (256 steps)", "vqgan": "taming-transformers",
             "clip": "transformers CLIP"}
    for k in ("encode", "decode", "vqgan", "clip"):
        print(f"{k:<18}{ours[k]:>16.1f}{peer[k]:>12.1f}{peer[k] / ours[k]:>9.2f}x  {names[k]}")
    print(f"{'text':<18}{ours['text']:>16.2f}")
    print(f"{'jpeg':<18}{ours['jpeg']:>16.2f}")
    print(f"{'total':<18}{ours['total']:>16.1f}{sum(peer.values()):>12.1f}"
          f"{sum(peer.values()) / ours['total']:>9.2f}x")
    print(f"(our CLI call incl. loading the model: {wall:.0f} ms)")


if __name__ == "__main__":
    main()
