#!/usr/bin/env python3
"""train_vqgan.py — trains the demo VQGAN decoder (16×16 codes → 128×128 images) on the shapes world.

The network is exactly taming-transformers' decode path — its VectorQuantizer (the codebook
embedding, read with get_codebook_entry), a 1×1 post_quant_conv and its own `Decoder` class
(taming.modules.diffusionmodules.model) — which is what our C VQGAN runs (the
path tools/reference/make_tiny_vqgan.py builds); exported with min-dalle's detokenizer names.
Configuration (CONFIG): the current world's codes (patch_codes: 7680 codes of dimension 345),
z_channels 64, ch 64, ch_mult (1, 1, 1, 1) → 3 upsamplings (f8), two ResBlocks per level
(num_res_blocks 1), attention in the middle block only, GroupNorm(32, 1e-6) as taming
hard-codes. 64 channels at every level so that each of GroupNorm's 32 groups holds two
channels: with one channel a group (32 channels) a flat picture can only be normalised
through a "sink", the cause of the speck (docs/demo-model.md, "The speck").

The codes come from patch_codes.py (an exact patch code) instead of a learned encoder, and
the codebook is that file's frozen analytic table (each code's own 8×8×3 pixels and one-hots
of its mask and colours): post_quant_conv and the decoder only learn to put a code's pixels in place, so they
draw a code they never saw in training (a purple triangle's edge) from its pixels. Loss:
L1 + MSE on pixels in [0, 1] (min-dalle reads the decoder output as [0, 1] and clips),
weighted ×4 on the cells around shape edges (where the detail is) and on a 4-pixel ring along
the image border (where zero padding would leave dark lines), plus the GroupNorm sink
penalty (SinkMeter; docs/demo-model.md, "The speck"). No GAN or perceptual loss: the world is
flat colours.
Initialisation: every ResBlock's conv2 and the attention proj_out start at zero (each block
starts as the identity) and conv_out starts near mid-grey, so the decoder starts as a plain
upsampler. Whole images, small batches.
Held-out combinations are excluded from the training images (world.sample(train=True)).
Seeded; --steps planned steps (the schedule), a checkpoint every --ckpt-min minutes, --resume
continues a killed run exactly (batches are a function of the step).

    .venv-demo/bin/python tools/demo/train_vqgan.py --out build/demo_train/vqgan --steps 4000
"""
import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from taming.modules.diffusionmodules.model import Decoder
from taming.modules.vqvae.quantize import VectorQuantizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import patch_codes  # noqa: E402
import runstate  # noqa: E402
import world  # noqa: E402

CONFIG = {
    "codebook_size": patch_codes.CODEBOOK,
    "embed_dim": patch_codes.EMBED_DIM,
    "z_channels": 64,
    "ch": 64,
    "ch_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "attn_resolutions": [],
    "resolution": world.GEO.res,
    "out_ch": 3,
    "groups": 32,
    "eps": 1e-6,
}
SEED = 20260127
EDGE_WEIGHT = 4.0
BORDER_PX = 4  # the ring along the image border weighted like an edge (batch())
# GroupNorm sink penalty (docs/demo-model.md, "The speck"): in a GroupNorm input of at least
# SINK_MIN_PIXELS pixels, no single element may carry more than SINK_SHARE of its group's
# variance; SINK_WEIGHT scales the excess in the loss.
SINK_MIN_PIXELS = 32 * 32
SINK_SHARE = 0.02
SINK_WEIGHT = 1.0


class DecodePath(torch.nn.Module):
    """taming's VQModel.decode_code without the encoder, loss and Lightning parts."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.codec = patch_codes.codec(cfg["resolution"])
        self.quantize = VectorQuantizer(cfg["codebook_size"], cfg["embed_dim"], beta=0.25)
        with torch.no_grad():
            self.quantize.embedding.weight.copy_(torch.from_numpy(self.codec.codebook_vectors()))
        self.quantize.embedding.weight.requires_grad_(False)
        self.post_quant_conv = torch.nn.Conv2d(cfg["embed_dim"], cfg["z_channels"], 1)
        self.decoder = Decoder(
            ch=cfg["ch"], out_ch=cfg["out_ch"], ch_mult=tuple(cfg["ch_mult"]),
            num_res_blocks=cfg["num_res_blocks"], attn_resolutions=cfg["attn_resolutions"],
            dropout=0.0, resamp_with_conv=True, in_channels=cfg["out_ch"],
            resolution=cfg["resolution"], z_channels=cfg["z_channels"])
        self.latent = cfg["resolution"] >> (len(cfg["ch_mult"]) - 1)

    def forward(self, codes):
        """codes [B, L²] → float image [B, 3, R, R] (NCHW, before clipping; L = R / 8)."""
        side = self.latent
        B = codes.shape[0]
        q = self.quantize.get_codebook_entry(codes.reshape(-1), (B, side, side, self.cfg["embed_dim"]))
        return self.decoder(self.post_quant_conv(q))

    def decoder_state_dict(self):
        """min-dalle detokenizer names: taming's quantize.embedding.weight
        is min-dalle's embedding.weight."""
        return {("embedding.weight" if k == "quantize.embedding.weight" else k): v.detach().clone()
                for k, v in self.state_dict().items()}


class SinkMeter:
    """Forward pre-hooks on the decoder's GroupNorms. Without a penalty the decoder learns a
    "GroupNorm sink" (StyleGAN2's droplet): one huge activation at a fixed place (found
    through the zero padding) that dominates its group's variance, so that normalisation
    squashes everything else — and that place shows as a speck in every image. `excess()`
    is the mean, over the hooked norms, of how far the largest element's share of its group's
    variance goes above SINK_SHARE (0 for a decoder without a sink)."""

    def __init__(self, decoder):
        self.terms = []
        for m in decoder.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.register_forward_pre_hook(self._hook)

    def _hook(self, norm, args):
        x = args[0].float()  # [B, C, H, W]
        if not torch.is_grad_enabled() or x.shape[2] * x.shape[3] < SINK_MIN_PIXELS:
            return  # training forwards only (not flat_error's)
        g = x.reshape(x.shape[0], norm.num_groups, -1)
        dev2 = (g - g.mean(-1, keepdim=True)) ** 2
        share = dev2.amax(-1) / (dev2.sum(-1) + 1e-12)  # [B, groups]
        self.terms.append(F.relu(share - SINK_SHARE).mean())

    def excess(self):
        """the mean excess since the last call (a 0-dim tensor), and reset"""
        out = torch.stack(self.terms).mean() if self.terms else torch.zeros(())
        self.terms = []
        return out


def flat_error(model):
    """the decoder's worst pixel error, in 1/255, over images of one flat colour each (every
    code of the grid the same flat code): 0 for a decoder without a speck"""
    side = model.latent
    with torch.no_grad():
        codes = torch.arange(patch_codes.NC)[:, None].repeat(1, side * side)
        out = model(codes).clamp(0, 1)
        want = (model.quantize.embedding.weight[: patch_codes.NC, :3] + 1) / 2  # [NC, 3]: pixel (0, 0)
    return float((out - want[:, :, None, None]).abs().amax() * 255)


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
    """world images [B, 3, R, R] in [0, 1], their codes [B, L²] and a loss weight per pixel
    [B, 1, R, R]: EDGE_WEIGHT on the cells that hold a shape's edge and their neighbours
    (where the decoder has to place detail) and on the BORDER_PX pixels along the image's
    border (where the convolutions' zero padding shows), 1 elsewhere"""
    imgs = np.stack([world.render(world.sample(seed_base + step * bs + i, train=True)[0]) for i in range(bs)])
    codes = torch.from_numpy(patch_codes.encode_batch(imgs))
    edge = (codes >= patch_codes.NC).float().reshape(bs, 1, patch_codes.SIDE, patch_codes.SIDE)
    edge = F.max_pool2d(edge, 3, stride=1, padding=1)
    weight = 1 + (EDGE_WEIGHT - 1) * F.interpolate(edge, scale_factor=patch_codes.P, mode="nearest")
    R = weight.shape[-1]
    ring = torch.ones(R, R)
    ring[BORDER_PX:R - BORDER_PX, BORDER_PX:R - BORDER_PX] = 0
    weight = torch.maximum(weight, 1 + (EDGE_WEIGHT - 1) * ring)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    return x, codes, weight


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, required=True, help="planned steps (the schedule's length)")
    ap.add_argument("--bs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ckpt-min", type=float, default=3.0, help="minutes between checkpoints")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                    help="bfloat16 autocast for the convolutions (fp32 weights, norms and loss)")
    ap.add_argument("--sink-weight", type=float, default=SINK_WEIGHT, help="0: no sink penalty")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/vqgan_last.pt if there is one")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    model = DecodePath(CONFIG)
    zero_init_residuals(model)
    sinks = SinkMeter(model.decoder)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=(0.9, 0.99))
    ck = runstate.last(args.out, "vqgan") if args.resume else None
    if ck:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        print(f"resumed at step {ck['step']}", flush=True)
    run = runstate.Run(args.out, "vqgan", ["step", "seconds", "loss", "l1", "mse", "sink", "lr"], args.ckpt_min, ck)
    seed_base = 1_000_000
    step = run.start

    def checkpoint():
        run.checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "config": model.cfg}, step)
        print(f"step {step}: checkpoint; flat images' worst pixel error {flat_error(model):.1f}/255", flush=True)

    while step < args.steps:
        x, codes, weight = batch(step, args.bs, seed_base)  # a function of the step: resumes exactly
        lr = runstate.lr_at(args.lr, step, args.steps, 50, 0.05)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            rec = model(codes)
        rec = rec.float()
        norm = weight.sum() * 3
        l1 = ((rec - x).abs() * weight).sum() / norm
        mse = ((rec - x) ** 2 * weight).sum() / norm
        sink = sinks.excess()
        loss = l1 + mse + args.sink_weight * sink
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            run.row([step, run.seconds(), f"{loss.item():.5f}", f"{l1.item():.5f}", f"{mse.item():.6f}",
                     f"{sink.item():.5f}", f"{lr:.2e}"])
        if step % 100 == 0:
            print(f"step {step} t {run.seconds():.0f}s loss {loss.item():.4f} l1 {l1.item():.4f} "
                  f"mse {mse.item():.5f} sink {sink.item():.4f}", flush=True)
        step += 1
        if run.due():
            checkpoint()
    line = run.done(step)  # before the final checkpoint's own work
    checkpoint()
    print(line, flush=True)


if __name__ == "__main__":
    main()
