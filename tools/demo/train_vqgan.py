#!/usr/bin/env python3
"""train_vqgan.py — trains the demo VQGAN decoder (8×8 codes → 64×64 images) on the shapes world.

The network is exactly taming-transformers' decode path — its VectorQuantizer (the codebook
embedding, read with get_codebook_entry), a 1×1 post_quant_conv and its own `Decoder` class
(taming.modules.diffusionmodules.model) — which is what our C VQGAN runs (model spec §5, the
path tools/reference/make_tiny_vqgan.py builds); exported with min-dalle's detokenizer names.
Configuration (CONFIG): 2048 codes of dimension 32, z_channels 64, ch 32, ch_mult
(1, 1, 1, 2) → 3 upsamplings (f8), one ResBlock per level (num_res_blocks 0), attention in
the middle block only, GroupNorm(32, 1e-6) as taming hard-codes.

The codes come from patch_codes.py (a fixed patch quantizer) instead of a learned encoder;
see that file for why. The codebook embedding, post_quant_conv and decoder learn together to
reproduce the world image from its codes: L1 + MSE on pixels in [0, 1] (min-dalle reads the
decoder output as [0, 1] and clips). No GAN or perceptual loss: the world is flat colours.
Initialisation: every ResBlock's conv2 and the attention proj_out start at zero (each block
starts as the identity) and conv_out starts near mid-grey, so the decoder starts as a plain
upsampler. Whole 64×64 images, small batches (the machine was shared by many jobs; a first
run with default init and 32×32 crops did not converge in the time available).
(--full-frac < 1 trains the first part of the time on random 32×32 crops, 4×4 codes.)
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
    "codebook_size": 2048,
    "embed_dim": 32,
    "z_channels": 64,
    "ch": 32,
    "ch_mult": [1, 1, 1, 2],
    "num_res_blocks": 0,
    "attn_resolutions": [],
    "resolution": 64,
    "out_ch": 3,
    "groups": 32,
    "eps": 1e-6,
}
SEED = 20260127


class DecodePath(torch.nn.Module):
    """taming's VQModel.decode_code without the encoder, loss and Lightning parts."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.quantize = VectorQuantizer(cfg["codebook_size"], cfg["embed_dim"], beta=0.25)
        self.post_quant_conv = torch.nn.Conv2d(cfg["embed_dim"], cfg["z_channels"], 1)
        self.decoder = Decoder(
            ch=cfg["ch"], out_ch=cfg["out_ch"], ch_mult=tuple(cfg["ch_mult"]),
            num_res_blocks=cfg["num_res_blocks"], attn_resolutions=cfg["attn_resolutions"],
            dropout=0.0, resamp_with_conv=True, in_channels=cfg["out_ch"],
            resolution=cfg["resolution"], z_channels=cfg["z_channels"])
        self.latent = cfg["resolution"] >> (len(cfg["ch_mult"]) - 1)

    def forward(self, codes, side=None):
        """codes [B, side*side] → float image [B, 3, 8·side, 8·side] (NCHW, before clipping)."""
        side = side or self.latent
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


def batch(step, bs, seed_base, crop, gen):
    imgs, codes = [], []
    for i in range(bs):
        img = world.render(world.sample(seed_base + step * bs + i, train=True)[0])
        c = patch_codes.encode_batch(img[None])[0].reshape(8, 8)
        if crop:
            y, x = torch.randint(0, 5, (2,), generator=gen).tolist()
            img, c = img[8 * y:8 * y + 32, 8 * x:8 * x + 32], c[y:y + 4, x:x + 4]
        imgs.append(img)
        codes.append(c.reshape(-1))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255.0
    return x, torch.from_numpy(np.stack(codes))


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
    ap.add_argument("--full-frac", type=float, default=1.0)
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
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    step = 0
    if args.resume:  # continue a run (model and optimiser state; a fresh lr schedule)
        ck = torch.load(args.resume, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step = ck["step"]
        print(f"resumed from {args.resume} at step {step}", flush=True)
    start_step = step
    gen = torch.Generator().manual_seed(args.seed)
    seed_base = 1_000_000
    t0 = time.time()
    last_ckpt, deadline = t0, t0 + args.minutes * 60
    log = open(os.path.join(args.out, "vqgan_log.csv"), "a" if args.resume else "w", newline="")
    w = csv.writer(log)
    if not args.resume:
        w.writerow(["step", "seconds", "loss", "l1", "mse", "full", "lr"])
    while step < args.steps and time.time() < deadline:
        frac = min(1.0, (time.time() - t0) / (args.minutes * 60))
        full = frac >= 1 - args.full_frac
        bs = args.bs if full else args.bs * 2
        x, codes = batch(step, bs, seed_base, not full, gen)
        lr = args.lr * min(1.0, (step - start_step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        rec = model(codes, side=8 if full else 4)
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        loss = l1 + mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            w.writerow([step, round(time.time() - t0, 1), f"{loss.item():.5f}", f"{l1.item():.5f}",
                        f"{mse.item():.6f}", int(full), f"{lr:.2e}"])
            log.flush()
        if step % 100 == 0:
            print(f"step {step} t {time.time() - t0:.0f}s loss {loss.item():.4f} l1 {l1.item():.4f} "
                  f"mse {mse.item():.5f} full {int(full)}", flush=True)
        if time.time() - last_ckpt > args.ckpt_min * 60:
            save(model, opt, step, args.out)
            last_ckpt = time.time()
        step += 1
    save(model, opt, step, args.out)
    print(f"done: {step} steps in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
