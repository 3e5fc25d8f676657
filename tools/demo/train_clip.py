#!/usr/bin/env python3
"""train_clip.py — trains the demo CLIP (transformers CLIPModel, tiny) contrastively on the shapes world.

Model: transformers' CLIPModel built from the dalle-server "clip" section (SECTION below)
through tools/reference/make_tiny_clip.clip_config — the same mapping the CLIP parity
fixtures use. Vision: 128×128 images (the demo VQGAN's output size, so our C preprocessing's
bicubic resize is the identity), patch 32 (16 patches + class token; a small shape is one
patch wide). Text: the real CLIP
vocabulary (49408 ids; the C tokenizer derives its ids from clip_merges.txt, open_clip's
bundled BPE), context 77, tokenised with open_clip's SimpleTokenizer on the raw caption, as
our C code does.

Inputs as our C code prepares them: uint8 RGB → /255 → (x − CLIP mean) / CLIP std.
Training: symmetric InfoNCE (CLIP's loss) with the learnable logit scale, AdamW, warm-up +
cosine decay over the planned steps; --resume continues a killed run exactly. Augmentation so that the model also scores the
VQGAN's slightly blurry outputs: half of the images get a 3×3 blur and light noise.
Text is cut after the longest caption of the batch while training: the text tower is causal
and pools at the first EOT, so the positions after it never change the pooled output.

    .venv-demo/bin/python tools/demo/train_clip.py --out build/demo_train/clip --steps 600
"""
import argparse
import math
import os
import sys

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from transformers import CLIPModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import runstate  # noqa: E402
import world  # noqa: E402
from make_tiny_clip import clip_config  # noqa: E402

SECTION = {
    "embed_dim": 64,
    "layer_norm_eps": 1e-5,
    "logit_scale_from_weights": True,
    "vision": {"image_size": world.GEO.res, "patch_size": 32, "width": 128, "layers": 2, "heads": 4, "mlp_dim": 256},
    "text": {"context_length": 77, "vocab_size": 49408, "width": 64, "layers": 2, "heads": 2, "mlp_dim": 128},
}
MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
SEED = 20260128


def pixels(u8):
    """uint8 [B, H, W, 3] (numpy or torch) → normalised NCHW float."""
    x = torch.as_tensor(np.asarray(u8)).permute(0, 3, 1, 2).float() / 255.0
    return (x - MEAN) / STD


def augment(u8, gen):
    x = torch.as_tensor(u8).permute(0, 3, 1, 2).float()
    B = x.shape[0]
    pick = torch.rand(B, generator=gen) < 0.5
    if pick.any():
        k = torch.ones(3, 1, 3, 3) / 9.0
        blurred = F.conv2d(F.pad(x[pick], (1, 1, 1, 1), mode="replicate"), k, groups=3)
        blurred = blurred + torch.randn(blurred.shape, generator=gen) * 6.0
        x[pick] = blurred
    x = x.clamp(0, 255).round() / 255.0
    return (x - MEAN) / STD


def build():
    return CLIPModel(clip_config(SECTION))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, required=True, help="planned steps (the schedule's length)")
    ap.add_argument("--bs", type=int, default=96)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ckpt-min", type=float, default=3.0, help="minutes between checkpoints")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--resume", action="store_true", help="continue from OUT/clip_last.pt if there is one")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    tok = open_clip.get_tokenizer("ViT-B-32")
    model = build().train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(args.seed)
    ck = runstate.last(args.out, "clip") if args.resume else None
    if ck:
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        gen.set_state(ck["gen"])
        print(f"resumed at step {ck['step']}", flush=True)
    run = runstate.Run(args.out, "clip", ["step", "seconds", "loss", "acc_i2t", "logit_scale", "lr"], args.ckpt_min, ck)
    seed_base = 5_000_000
    step = run.start

    def checkpoint():
        run.checkpoint({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()}, step)
        print(f"step {step}: checkpoint", flush=True)

    while step < args.steps:
        scenes = [world.sample(seed_base + step * args.bs + i, train=True) for i in range(args.bs)]
        caps = [c for _, c, _ in scenes]
        u8 = np.stack([world.render(s) for s, _, _ in scenes])
        ids = tok(caps)
        L = int((ids != 0).sum(1).max())
        ids = ids[:, :L]
        lr = runstate.lr_at(args.lr, step, args.steps, 100, 0.02)
        for g in opt.param_groups:
            g["lr"] = lr
        out = model(input_ids=ids, attention_mask=(ids != 0).long(), pixel_values=augment(u8, gen))
        logits = out.logits_per_image
        # captions that are identical strings are not negatives of each other
        same = torch.tensor([[a == b for b in caps] for a in caps])
        target = same.float() / same.float().sum(1, keepdim=True)
        loss = 0.5 * (-(target * F.log_softmax(logits, 1)).sum(1).mean()
                      - (target * F.log_softmax(logits.t(), 1)).sum(1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 10 == 0:
            acc = (logits.argmax(1) == torch.arange(len(caps))).float().mean().item()
            run.row([step, run.seconds(), f"{loss.item():.5f}", f"{acc:.4f}",
                     f"{model.logit_scale.exp().item():.3f}", f"{lr:.2e}"])
            if step % 50 == 0:
                print(f"step {step} t {run.seconds():.0f}s loss {loss.item():.4f} acc {acc:.3f} "
                      f"scale {model.logit_scale.exp().item():.1f}", flush=True)
        step += 1
        if run.due():
            checkpoint()
    line = run.done(step)  # before the final checkpoint's own work
    checkpoint()
    print(line, flush=True)


if __name__ == "__main__":
    main()
