#!/usr/bin/env python3
"""train_vqgan.py — trains the demo VQGAN decoder (8×8 codes → 64×64 images) on the shapes world.

The network is exactly taming-transformers' decode path — its VectorQuantizer (the codebook
embedding, read with get_codebook_entry), a 1×1 post_quant_conv and its own `Decoder` class
(taming.modules.diffusionmodules.model) — which is what our C VQGAN runs (model spec §5, the
path tools/reference/make_tiny_vqgan.py builds); exported with min-dalle's detokenizer names.
Configuration (CONFIG): 4152 codes of dimension 282, z_channels 64, ch 32, ch_mult
(1, 1, 2, 2) → 3 upsamplings (f8), two ResBlocks per level (num_res_blocks 1), attention in
the middle block only, GroupNorm(32, 1e-6) as taming hard-codes.

The codes come from patch_codes.py (an exact patch code) instead of a learned encoder, and
the codebook is that file's frozen analytic table (each code's own 8×8×3 pixels and one-hots
of its mask and colours, embed_dim 282): post_quant_conv and the decoder only learn to put a code's pixels in place, so they
draw a code they never saw in training (a purple triangle's edge) from its pixels. Loss:
L1 + MSE on pixels in [0, 1] (min-dalle reads the decoder output as [0, 1] and clips),
weighted ×4 on the cells around shape edges (where the detail is). No GAN or perceptual
loss: the world is flat colours.
Initialisation: every ResBlock's conv2 and the attention proj_out start at zero (each block
starts as the identity) and conv_out starts near mid-grey, so the decoder starts as a plain
upsampler. Whole 64×64 images, small batches.
Held-out combinations are excluded from the training images (world.sample(train=True)).
Seeded; runs for --minutes of wall time, checkpoints every --ckpt-min minutes.

    /work/venv-ref/bin/python tools/demo/train_vqgan.py --out /tmp/demo_train/vqgan --minutes 20
"""
import argparse
import csv
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from taming.modules.diffusionmodules.model import Decoder
from taming.modules.vqvae.quantize import VectorQuantizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import patch_codes  # noqa: E402
import world  # noqa: E402

CONFIG = {
    "codebook_size": patch_codes.CODEBOOK,
    "embed_dim": patch_codes.EMBED_DIM,
    "z_channels": 64,
    "ch": 32,
    "ch_mult": [1, 1, 2, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [],
    "resolution": 64,
    "out_ch": 3,
    "groups": 32,
    "eps": 1e-6,
}
SEED = 20260127
EDGE_WEIGHT = 4.0


class DecodePath(torch.nn.Module):
    """taming's VQModel.decode_code without the encoder, loss and Lightning parts."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.quantize = VectorQuantizer(cfg["codebook_size"], cfg["embed_dim"], beta=0.25)
        with torch.no_grad():
            self.quantize.embedding.weight.copy_(torch.from_numpy(patch_codes.codebook_vectors()))
        self.quantize.embedding.weight.requires_grad_(False)
        self.post_quant_conv = torch.nn.Conv2d(cfg["embed_dim"], cfg["z_channels"], 1)
        self.decoder = Decoder(
            ch=cfg["ch"], out_ch=cfg["out_ch"], ch_mult=tuple(cfg["ch_mult"]),
            num_res_blocks=cfg["num_res_blocks"], attn_resolutions=cfg["attn_resolutions"],
            dropout=0.0, resamp_with_conv=True, in_channels=cfg["out_ch"],
            resolution=cfg["resolution"], z_channels=cfg["z_channels"])
        self.latent = cfg["resolution"] >> (len(cfg["ch_mult"]) - 1)

    def forward(self, codes):
        """codes [B, 64] → float image [B, 3, 64, 64] (NCHW, before clipping)."""
        side = self.latent
        B = codes.shape[0]
        q = self.quantize.get_codebook_entry(codes.reshape(-1), (B, side, side, self.cfg["embed_dim"]))
        return self.decoder(self.post_quant_conv(q))

    def decoder_state_dict(self):
        """min-dalle detokenizer names (model spec §7.2): taming's quantize.embedding.weight
        is min-dalle's embedding.weight."""
        return {("embedding.weight" if k == "quantize.embedding.weight" else k): v.detach().clone()
                for k, v in self.state_dict().items()}


def zero_init_residuals(model):
    """Start every ResBlock and AttnBlock as the identity (their last conv / proj_out = 0) and
    the output at mid-grey: the decoder starts as a plain upsampler and learns much faster."""
    with torch.no_grad():
        for name, m in model.decoder.named_modules():
            if name.endswith("conv2") or name.endswith("proj_out"):
                m.weight.zero_()
                m.bias.zero_()
        model.decoder.conv_out.weight.mul_(0.1)
        model.decoder.conv_out.bias.fill_(0.5)


def batch(step, bs, seed_base):
    """world images [B, 3, 64, 64] in [0, 1], their codes [B, 64] and a loss weight per pixel
    [B, 1, 64, 64]: EDGE_WEIGHT on the cells that hold a shape's edge and their neighbours
    (where the decoder has to place detail), 1 elsewhere"""
    imgs = np.stack([world.render(world.sample(seed_base + step * bs + i, train=True)[0]) for i in range(bs)])
    codes = torch.from_numpy(patch_codes.encode_batch(imgs))
    edge = (codes >= patch_codes.NC).float().reshape(bs, 1, 8, 8)
    edge = F.max_pool2d(edge, 3, stride=1, padding=1)
    weight = 1 + (EDGE_WEIGHT - 1) * F.interpolate(edge, scale_factor=8, mode="nearest")
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    return x, codes, weight


def resume(model, opt, path):
    """load a vqgan_last.pt; the codebook is never read (it is patch_codes' table), and a
    checkpoint trained with a narrower codebook (its first columns) warm-starts this one: the
    new post_quant_conv inputs start at zero, with a fresh optimiser"""
    ck = torch.load(path, map_location="cpu", weights_only=False)
    src = {k: v for k, v in ck["model"].items() if k != "quantize.embedding.weight"}
    own = model.state_dict()["post_quant_conv.weight"]
    old = src["post_quant_conv.weight"]
    widened = old.shape != own.shape
    if widened:
        w = torch.zeros_like(own)
        w[:, : old.shape[1]] = old
        src["post_quant_conv.weight"] = w
    missing, unexpected = model.load_state_dict(src, strict=False)
    assert missing == ["quantize.embedding.weight"] and not unexpected, (missing, unexpected)
    if not widened:
        opt.load_state_dict(ck["opt"])
    print(f"resumed from {path} at step {ck['step']}" + (f", codebook {old.shape[1]} → {own.shape[1]} dims" if widened else ""),
          flush=True)
    return ck["step"]


def save(model, opt, step, out, tag="last"):
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "config": model.cfg},
               os.path.join(out, f"vqgan_{tag}.pt"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=10**9)
    ap.add_argument("--bs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ckpt-min", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--resume", help="a vqgan_last.pt to continue from")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    model = DecodePath(CONFIG)
    zero_init_residuals(model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.99))
    step = resume(model, opt, args.resume) if args.resume else 0  # a fresh lr schedule either way
    start_step = step
    seed_base = 1_000_000
    t0 = time.time()
    last_ckpt, deadline = t0, t0 + args.minutes * 60
    log = open(os.path.join(args.out, "vqgan_log.csv"), "a" if args.resume else "w", newline="")
    w = csv.writer(log)
    if not args.resume:
        w.writerow(["step", "seconds", "loss", "l1", "mse", "lr"])
    while step < args.steps and time.time() < deadline:
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        x, codes, weight = batch(step, args.bs, seed_base)
        lr = args.lr * min(1.0, (step - start_step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        rec = model(codes)
        norm = weight.sum() * 3
        l1 = ((rec - x).abs() * weight).sum() / norm
        mse = ((rec - x) ** 2 * weight).sum() / norm
        loss = l1 + mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            w.writerow([step, round(time.time() - t0, 1), f"{loss.item():.5f}", f"{l1.item():.5f}",
                        f"{mse.item():.6f}", f"{lr:.2e}"])
            log.flush()
        if step % 100 == 0:
            print(f"step {step} t {time.time() - t0:.0f}s loss {loss.item():.4f} l1 {l1.item():.4f} "
                  f"mse {mse.item():.5f}", flush=True)
        if time.time() - last_ckpt > args.ckpt_min * 60:
            save(model, opt, step, args.out)
            last_ckpt = time.time()
        step += 1
    save(model, opt, step, args.out)
    print(f"done: {step} steps in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
