#!/usr/bin/env python3
"""gen_vqgan_golden.py — golden VQGAN decoder outputs from peer code, for
tests/model/test_vqgan_golden.c.

Default mode (committed fixtures): the tiny model (models/tiny/config.json "vqgan" section +
models/tiny/vqgan.safetensors) is loaded into taming-transformers' own classes (VectorQuantizer
codebook lookup, 1x1 post_quant_conv, Decoder; the path of taming's VQModel.decode_code) and
decodes 3 fixed 16x16 code grids in one batch:
  grid 0: seeded random codes with code 0 at position 0 and codebook_size-1 at the last one;
  grid 1: codes (37 t + 11) mod codebook_size, t = 0..255, then 0 and codebook_size-1 again
          at positions 17 and 200;
  grid 2: a checkerboard of 0 and codebook_size-1.
Written to OUT/tiny_golden.safetensors (all F32):
  codes      [3, 256]        the grids (exact integers)
  image_f32  [3, R, R, 3]    decoder output before clipping (taming's NCHW transposed to NHWC)
  image_u8   [3, R, R, 3]    clip(0,1)*255 truncated to uint8 (torch .to(torch.uint8)), as F32
and OUT/tiny_golden.json describing them (sources, versions, shapes, value ranges).

--min-dalle DIR mode (not committed, ~190 MB): min-dalle's VQGanDetokenizer has its sizes
hard-coded (16384 x 256 codebook, 128..512 channels, 256x256 output), so it cannot be built
small. This mode builds it at full size with seeded random weights (GroupNorm eps 1e-5, torch's
default), decodes one grid, and writes DIR/vqgan.json (our "vqgan" section for it),
DIR/vqgan.safetensors (its state dict, F32) and DIR/golden.safetensors (codes, image_f32 from
detokenizer.decoder, image_u8 = detokenizer.forward(...).to(torch.uint8) as min-dalle does).
The C test runs against it when DALLE_VQGAN_MINDALLE_DIR=DIR is set.

    /work/venv-ref/bin/python tools/reference/gen_vqgan_golden.py [--model models/tiny] \
        [--out tests/golden/vqgan]
    /work/venv-ref/bin/python tools/reference/gen_vqgan_golden.py --min-dalle /tmp/vqgan_md
"""
import argparse
import hashlib
import importlib.metadata as md
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_vqgan import TamingDecodePath  # noqa: E402

N_GRIDS = 3
GRID_SEED = 7
MD_SEED = 20220803
MD_CONFIG = {  # min-dalle's VQGanDetokenizer, hard-coded there (docs/model-spec.md §5.1)
    "codebook_size": 16384,
    "embed_dim": 256,
    "z_channels": 256,
    "ch": 128,
    "ch_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [16],
    "resolution": 256,
    "out_ch": 3,
    "groups": 32,
    "eps": 1e-5,
}


def grids(n_codes, tokens):
    g = torch.Generator().manual_seed(GRID_SEED)
    last = n_codes - 1
    g0 = torch.randint(0, n_codes, (tokens,), generator=g)
    g0[0], g0[-1] = 0, last
    g1 = (torch.arange(tokens) * 37 + 11) % n_codes
    g1[17], g1[200 % tokens] = 0, last
    side = int(tokens**0.5)
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    g2 = ((yy + xx) % 2 * last).reshape(-1)
    return torch.stack([g0, g1, g2]).long()


def to_outputs(nchw):
    img = nchw.permute(0, 2, 3, 1).contiguous()  # [B, R, R, C]
    u8 = (img.clamp(0.0, 1.0) * 255).to(torch.uint8)
    return img, u8


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def version(pkg):
    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return "not installed"


def tiny(args):
    with open(os.path.join(args.model, "config.json"), encoding="utf-8") as f:
        cfg = json.load(f)["vqgan"]
    weights = os.path.join(args.model, "vqgan.safetensors")
    model = TamingDecodePath(cfg).eval()
    sd = {TamingDecodePath.from_file_name(k): v.float() for k, v in load_file(weights).items()}
    model.load_state_dict(sd, strict=True)
    codes = grids(cfg["codebook_size"], model.latent**2)
    with torch.no_grad():
        img, u8 = to_outputs(model(codes))
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "tiny_golden.safetensors")
    save_file({"codes": codes.float(), "image_f32": img, "image_u8": u8.float()}, out)
    desc = {
        "what": "tiny VQGAN decoder outputs for 3 fixed code grids (tests/model/test_vqgan_golden.c)",
        "generator": "tools/reference/gen_vqgan_golden.py",
        "reference": "taming-transformers Decoder + VectorQuantizer.get_codebook_entry + "
                     "post_quant_conv (VQModel.decode_code path), fp32 on the CPU",
        "versions": {p: version(p) for p in ("taming-transformers", "torch", "safetensors")},
        "model": {"config": os.path.join(args.model, "config.json") + " (vqgan section)",
                  "weights": weights, "sha256": sha256(weights), "vqgan": cfg},
        "tensors": {
            "codes": {"shape": list(codes.shape), "dtype": "F32 (integers)",
                      "grids": ["seeded random, 0 first and codebook_size-1 last",
                                "(37 t + 11) mod codebook_size, 0 at 17, codebook_size-1 at 200",
                                "checkerboard of 0 and codebook_size-1"]},
            "image_f32": {"shape": list(img.shape), "dtype": "F32", "layout": "NHWC",
                          "min": img.min().item(), "max": img.max().item(),
                          "clipped_low": (img < 0).float().mean().item(),
                          "clipped_high": (img > 1).float().mean().item()},
            "image_u8": {"shape": list(u8.shape), "dtype": "F32 holding uint8 values",
                         "rule": "clip(0,1)*255 in fp32, truncated (torch .to(torch.uint8))"},
        },
    }
    with open(os.path.join(args.out, "tiny_golden.json"), "w", encoding="utf-8") as f:
        json.dump(desc, f, indent=2)
        f.write("\n")
    print(f"wrote {out}: codes {tuple(codes.shape)}, image {tuple(img.shape)}, "
          f"range [{img.min().item():.3f}, {img.max().item():.3f}]")


def min_dalle_full(outdir):
    from min_dalle.models import VQGanDetokenizer

    torch.manual_seed(MD_SEED)
    det = VQGanDetokenizer().eval()
    gen = torch.Generator().manual_seed(MD_SEED)
    with torch.no_grad():
        for m in det.modules():
            if isinstance(m, torch.nn.GroupNorm):
                assert m.eps == MD_CONFIG["eps"] and m.num_groups == MD_CONFIG["groups"]
                m.weight.copy_(1 + (torch.rand(m.weight.shape, generator=gen) * 2 - 1) * 0.2)
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * 0.2)
        det.embedding.weight.copy_(torch.randn(det.embedding.weight.shape, generator=gen))
        codes = grids(MD_CONFIG["codebook_size"], 256)[:1]
        # calibrate conv_out like make_tiny_vqgan.py so the pixels span [0, 1]
        # its forward calls decoder.forward directly (no module hooks): wrap it to keep the
        # float output before clipping
        captured, decoder_forward = {}, det.decoder.forward

        def keep(z):
            captured["f"] = decoder_forward(z).clone()
            return captured["f"]

        det.decoder.forward = keep
        det.forward(False, codes)
        conv = det.decoder.conv_out
        raw = captured["f"] - conv.bias.view(1, -1, 1, 1)
        s = 0.3 / raw.std(dim=(0, 2, 3))
        conv.weight.mul_(s.view(-1, 1, 1, 1))
        conv.bias.copy_(0.5 - s * raw.mean(dim=(0, 2, 3)))
        scaled = det.forward(False, codes)  # clip(0,1)*255, [256, 256, 3] for one image
        img = captured["f"].permute(0, 2, 3, 1).contiguous()
        u8 = scaled.to(torch.uint8).unsqueeze(0).contiguous()
    os.makedirs(outdir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in det.state_dict().items()},
              os.path.join(outdir, "vqgan.safetensors"))
    save_file({"codes": codes.float(), "image_f32": img, "image_u8": u8.float()},
              os.path.join(outdir, "golden.safetensors"))
    with open(os.path.join(outdir, "vqgan.json"), "w", encoding="utf-8") as f:
        json.dump(MD_CONFIG, f)
    print(f"wrote {outdir}: min-dalle {version('min-dalle')} VQGanDetokenizer, "
          f"range [{img.min().item():.3f}, {img.max().item():.3f}]")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/tiny")
    ap.add_argument("--out", default="tests/golden/vqgan")
    ap.add_argument("--min-dalle", metavar="DIR", help="full-size min-dalle check files (not committed)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.min_dalle:
        min_dalle_full(args.min_dalle)
    else:
        tiny(args)


if __name__ == "__main__":
    main()
