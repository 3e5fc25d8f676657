#!/usr/bin/env python3
"""make_tiny_vqgan.py — builds the tiny random VQGAN decoder used by the VQGAN parity tests.

The network is taming-transformers' own Decoder class (taming.modules.diffusionmodules.model,
PyPI taming-transformers 0.0.1), its VectorQuantizer for the codebook, and a torch 1x1 Conv2d
as post_quant_conv, exactly the pieces of taming's VQModel.decode_code. Sizes (CONFIG below,
also written to config.json as the "vqgan" section):
  * 16384 codes of dimension 16 (the tiny BART samples 16384 image codes), z_channels 48;
  * ch 32, ch_mult (1, 2, 1), num_res_blocks 1: levels of 32, 64 and 32 channels, so both a
    widening and a narrowing ResBlock carry a nin_shortcut; 2 ResBlocks per level;
  * attention in the middle block (always) and at resolutions 16 and 32 (levels 2 and 1);
  * resolution 64 from a 16x16 latent grid (256 codes per image, like the real model);
  * GroupNorm: taming hard-codes 32 groups and eps 1e-6, so every channel count is a multiple
    of 32.
Initialisation (seeded): torch's default init for the convolutions (under torch.manual_seed),
GroupNorm gamma = 1 + U(-0.2, 0.2) and beta = U(-0.2, 0.2), codebook ~ N(0, 1). conv_out is
then rescaled per channel so that the output on random codes has mean 0.5 and std 0.3: the
float output spans [0, 1] and about 5 % of it is clipped on each side, so both the float and
the uint8 comparisons are meaningful. Every parameter is rounded to fp16 and saved as F16,
so the committed file holds exactly the values the fp32 reference runs on.

Output: models/tiny/vqgan.safetensors with min-dalle's detokenizer names (docs/model-spec.md §7.2:
embedding.weight, post_quant_conv.*, decoder.*); with --config, the "vqgan" section and
files.vqgan are written into that config.json (everything else kept).

    /work/venv-ref/bin/python tools/reference/make_tiny_vqgan.py \
        --out models/tiny/vqgan.safetensors --config models/tiny/config.json [--seed 20210310]
"""
import argparse
import json
import os

import torch
from safetensors.torch import save_file
from taming.modules.diffusionmodules.model import Decoder
from taming.modules.vqvae.quantize import VectorQuantizer

CONFIG = {
    "codebook_size": 16384,
    "embed_dim": 16,
    "z_channels": 48,
    "ch": 32,
    "ch_mult": [1, 2, 1],
    "num_res_blocks": 1,
    "attn_resolutions": [16, 32],
    "resolution": 64,
    "out_ch": 3,
    "groups": 32,  # taming's Normalize: fixed
    "eps": 1e-6,  # taming's Normalize: fixed
}
SEED = 20210310  # taming-transformers 0.0.1 release date; any fixed value works
GN_SPREAD = 0.2
OUT_MEAN, OUT_STD = 0.5, 0.3


class TamingDecodePath(torch.nn.Module):
    """taming's VQModel.decode_code without the encoder, loss and Lightning parts."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.quantize = VectorQuantizer(cfg["codebook_size"], cfg["embed_dim"], beta=0.25)
        self.post_quant_conv = torch.nn.Conv2d(cfg["embed_dim"], cfg["z_channels"], 1)
        self.decoder = Decoder(
            ch=cfg["ch"],
            out_ch=cfg["out_ch"],
            ch_mult=tuple(cfg["ch_mult"]),
            num_res_blocks=cfg["num_res_blocks"],
            attn_resolutions=cfg["attn_resolutions"],
            dropout=0.0,
            resamp_with_conv=True,
            in_channels=cfg["out_ch"],
            resolution=cfg["resolution"],
            z_channels=cfg["z_channels"],
        )
        self.latent = cfg["resolution"] >> (len(cfg["ch_mult"]) - 1)

    def forward(self, codes):
        """codes [B, L*L] int64 -> float image [B, out_ch, R, R] (NCHW, before clipping)."""
        B, L = codes.shape[0], self.latent
        quant = self.quantize.get_codebook_entry(codes.reshape(-1), (B, L, L, self.cfg["embed_dim"]))
        return self.decoder(self.post_quant_conv(quant))

    # min-dalle / our names <-> this module's state_dict names (taming calls the codebook
    # quantize.embedding.weight; docs/model-spec.md §7.2)
    @staticmethod
    def to_file_name(name):
        return "embedding.weight" if name == "quantize.embedding.weight" else name

    @staticmethod
    def from_file_name(name):
        return "quantize.embedding.weight" if name == "embedding.weight" else name


def check_taming_norms(cfg):
    if cfg["groups"] != 32 or cfg["eps"] != 1e-6:
        raise SystemExit("taming's Normalize is GroupNorm(32, eps=1e-6): groups/eps must match")
    chans = [cfg["ch"] * m for m in cfg["ch_mult"]]
    if any(c % 32 for c in chans):
        raise SystemExit(f"every level's channels must be a multiple of 32, got {chans}")


def build(cfg, seed):
    torch.manual_seed(seed)
    model = TamingDecodePath(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(1 + (torch.rand(m.weight.shape, generator=gen) * 2 - 1) * GN_SPREAD)
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * GN_SPREAD)
        emb = model.quantize.embedding.weight
        emb.copy_(torch.randn(emb.shape, generator=gen))
        for p in model.parameters():
            p.copy_(p.half().float())
        # calibrate conv_out on random codes: per channel mean OUT_MEAN, std OUT_STD
        codes = torch.randint(0, cfg["codebook_size"], (4, model.latent**2), generator=gen)
        conv = model.decoder.conv_out
        raw = model(codes) - conv.bias.view(1, -1, 1, 1)
        mean, std = raw.mean(dim=(0, 2, 3)), raw.std(dim=(0, 2, 3))
        s = OUT_STD / std
        conv.weight.mul_(s.view(-1, 1, 1, 1))
        conv.bias.copy_(OUT_MEAN - s * mean)
        for p in conv.parameters():
            p.copy_(p.half().float())
    return model


def write_config(path, cfg, weights_name):
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    doc["vqgan"] = cfg
    doc.setdefault("files", {})["vqgan"] = weights_name
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="models/tiny/vqgan.safetensors")
    ap.add_argument("--config", help="config.json to receive the vqgan section and files.vqgan")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()

    check_taming_norms(CONFIG)
    model = build(CONFIG, args.seed)
    sd = {TamingDecodePath.to_file_name(k): v.detach().half().contiguous()
          for k, v in model.state_dict().items()}
    # one metadata key: safetensors writes several in no fixed order, and the file should
    # be byte-identical when regenerated (the sizes live in config.json)
    meta = {"source": f"tools/reference/make_tiny_vqgan.py --seed {args.seed} "
                      "(taming-transformers 0.0.1 Decoder)"}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(sd, args.out, metadata=meta)
    n = sum(v.numel() for v in sd.values())
    print(f"tiny VQGAN: {json.dumps(CONFIG)}, seed {args.seed}")
    print(f"{len(sd)} tensors, {n} params, {os.path.getsize(args.out)} bytes -> {args.out}")
    if args.config:
        write_config(args.config, CONFIG, os.path.basename(args.out))
        print(f"wrote the vqgan section and files.vqgan into {args.config}")


if __name__ == "__main__":
    main()
